#!/usr/bin/env bash
# Mounted into /docker-entrypoint-initdb.d of the postgres container (docker-compose.yml).
# The postgres image creates $POSTGRES_DB (Dagster's database) itself; this adds MLflow's
# database, $MLFLOW_DB, owned by the same $POSTGRES_USER.
# Like every init script it runs only when the data volume is empty: on an existing volume,
# create the database by hand (`docker compose exec postgres createdb -U "$POSTGRES_USER" ...`).
# `set -e` only: the entrypoint sources (rather than runs) a script that lost its exec bit.
set -e

: "${MLFLOW_DB:?MLFLOW_DB must be set for the postgres service}"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v db="$MLFLOW_DB" -v owner="$POSTGRES_USER" <<'SQL'
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'owner')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db')\gexec
SQL
