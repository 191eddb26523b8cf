"""Pure data-quality logic: schemas and validation reports. No Dagster in here."""
