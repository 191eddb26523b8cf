"""Dagster resources: storage for asset values, MLflow tracking and the model registry."""
