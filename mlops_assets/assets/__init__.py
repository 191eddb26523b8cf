"""Software-defined assets: thin wiring from the pure modules to Dagster."""
