"""Pure training logic: the scikit-learn pipeline, the sweep, and evaluation. No Dagster here."""
