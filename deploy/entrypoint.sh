#!/bin/sh
# The image's entry point: one command per service of docker-compose.yml.
#
#   entrypoint.sh mlflow        MLflow tracking server, PostgreSQL backend, proxied artifacts
#   entrypoint.sh code-server   Dagster gRPC code server (the run workers run here)
#   entrypoint.sh webserver     Dagster UI and GraphQL API (extra arguments are passed on,
#                               e.g. --read-only for a viewer instance)
#   entrypoint.sh daemon        Dagster daemon: queue, sensors, run monitoring and retries
#   entrypoint.sh <command...>  anything else runs as given (a shell, `dagster ...`)
#
# The tests run this same script as processes against PostgreSQL on 127.0.0.1
# (mlops_assets_tests/test_production.py), so what they prove is what the containers run.
# Every default below is the compose value; the environment overrides it. No password is
# defaulted, and none is ever put on a command line (it would show in `ps` and in logs).
set -eu

: "${MLOPS_APP_DIR:=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)}"

# Dagster's instance (deploy/dagster.prod.yaml) and workspace (deploy/workspace.prod.yaml) read
# these through `env:`; exported so the code server's run workers inherit them.
: "${DAGSTER_PG_PORT:=5432}"
: "${DAGSTER_CODE_SERVER_HOST:=code-server}"
: "${DAGSTER_CODE_SERVER_PORT:=4000}"
: "${DAGSTER_WORKSPACE:=$MLOPS_APP_DIR/deploy/workspace.prod.yaml}"
export DAGSTER_PG_PORT DAGSTER_CODE_SERVER_HOST DAGSTER_CODE_SERVER_PORT

role="${1:-code-server}"
[ "$#" -gt 0 ] && shift

case "$role" in
  mlflow)
    : "${MLFLOW_DB_HOST:=postgres}"
    : "${MLFLOW_DB_PORT:=5432}"
    : "${MLFLOW_DB_USER:?set MLFLOW_DB_USER (the PostgreSQL user of MLflow's database)}"
    : "${MLFLOW_DB:?set MLFLOW_DB (the name of MLflow's database)}"
    # libpq reads the password from PGPASSWORD: it stays out of the URI, `ps` and the logs.
    : "${PGPASSWORD:?set PGPASSWORD (the password of MLFLOW_DB_USER)}"
    export PGPASSWORD
    # MLflow 3's server starts a job runner with seven huey consumers (for GenAI features this
    # platform does not use): about 1 GB of memory and a CPU-heavy start. Off unless asked for.
    : "${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:=false}"
    export MLFLOW_SERVER_ENABLE_JOB_EXECUTION
    exec mlflow server \
      --backend-store-uri "postgresql+psycopg2://${MLFLOW_DB_USER}@${MLFLOW_DB_HOST}:${MLFLOW_DB_PORT}/${MLFLOW_DB}" \
      --artifacts-destination "${MLFLOW_ARTIFACTS_DESTINATION:-/mlartifacts}" \
      --host "${MLFLOW_HOST:-0.0.0.0}" \
      --port "${MLFLOW_PORT:-5000}" \
      --workers "${MLFLOW_WORKERS:-4}" \
      --allowed-hosts "${MLFLOW_ALLOWED_HOSTS:-mlflow:5000,localhost,localhost:*,127.0.0.1,127.0.0.1:*}" \
      "$@"
    ;;
  code-server)
    : "${DAGSTER_HOME:?set DAGSTER_HOME (the folder holding dagster.yaml)}"
    exec dagster code-server start \
      -h "${DAGSTER_CODE_SERVER_BIND:-0.0.0.0}" \
      -p "$DAGSTER_CODE_SERVER_PORT" \
      -m "${DAGSTER_CODE_MODULE:-mlops_assets.definitions}" \
      --location-name "${DAGSTER_LOCATION_NAME:-mlops_assets}" \
      "$@"
    ;;
  webserver)
    : "${DAGSTER_HOME:?set DAGSTER_HOME (the folder holding dagster.yaml)}"
    exec dagster-webserver \
      -h "${DAGSTER_WEBSERVER_HOST:-0.0.0.0}" \
      -p "${DAGSTER_WEBSERVER_PORT:-3000}" \
      -w "$DAGSTER_WORKSPACE" \
      "$@"
    ;;
  daemon)
    : "${DAGSTER_HOME:?set DAGSTER_HOME (the folder holding dagster.yaml)}"
    exec dagster-daemon run -w "$DAGSTER_WORKSPACE" "$@"
    ;;
  *)
    exec "$role" "$@"
    ;;
esac
