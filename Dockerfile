# syntax=docker/dockerfile:1
# One image for the Dagster code server, webserver and daemon (and the MLflow tracking server in
# docker-compose.yml). Dependencies come only from the committed uv.lock, like `make` does locally.
#
#   docker build -t mlops-assets .
#
# Needs the `postgres` extra (dagster-postgres, psycopg2-binary) in pyproject.toml and uv.lock:
# deploy/dagster.prod.yaml stores the instance in PostgreSQL and MLflow's backend store is
# PostgreSQL too.
#
# Only named paths are copied (no `COPY . .`), so a local .env, .venv or .mlops never ends up in
# the image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11

RUN pip install uv==0.13.9

WORKDIR /opt/dagster/app

# Dependencies only: this layer is rebuilt when pyproject.toml or uv.lock change, not on each
# code change.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --extra postgres --no-install-project

# The project itself. README.md is the package's readme in pyproject, so the build needs it.
COPY README.md ./
COPY mlops_assets ./mlops_assets
COPY deploy ./deploy
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --extra postgres

# Writable state lives outside the (root-owned, read-only for the app user) project folder:
#   /opt/dagster/home  DAGSTER_HOME (dagster.yaml is mounted in; storage/ holds compute logs)
#   /opt/mlops         MLOPS_HOME: IO-manager storage, quarantine, landing files
#   /mlartifacts       the MLflow server's artifact store
# Creating them here owned by the app user means named volumes mounted there inherit that owner.
RUN groupadd --system --gid 10001 mlops \
    && useradd --system --uid 10001 --gid mlops --create-home --home-dir /home/mlops \
        --shell /usr/sbin/nologin mlops \
    && mkdir -p /opt/dagster/home/storage /opt/mlops/landing /mlartifacts \
    && chown -R mlops:mlops /opt/dagster/home /opt/mlops /mlartifacts

ENV PATH="/opt/dagster/app/.venv/bin:$PATH" \
    VIRTUAL_ENV=/opt/dagster/app/.venv \
    DAGSTER_HOME=/opt/dagster/home \
    MLOPS_HOME=/opt/mlops \
    MLOPS_PROJECT_DIR=/opt/dagster/app \
    MLOPS_LANDING_DIR=/opt/mlops/landing

USER mlops

EXPOSE 3000 4000 5000

# One entry point, one role per service (docker-compose.yml sets the command): mlflow,
# code-server, webserver, daemon. The tests run this same script (test_production.py).
ENTRYPOINT ["/opt/dagster/app/deploy/entrypoint.sh"]
CMD ["code-server"]
