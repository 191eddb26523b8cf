# Two commands on a fresh machine with Python 3.11 and make: `make run`, then `make test`.
PYTHON ?= python3
VENV := .venv
UV_VERSION := 0.13.9
UV := $(VENV)/bin/uv
STAMP := $(VENV)/.synced-stamp
HOST ?= 127.0.0.1
PORT ?= 3000
MLFLOW_PORT ?= 5000
MLOPS_HOME ?= .mlops

.PHONY: run test lint typecheck pytest dev mlflow-ui lock clean

# The venv is rebuilt from the committed uv.lock whenever the lock or pyproject changes.
$(STAMP): pyproject.toml uv.lock
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@test -x $(UV) || { echo "bootstrapping uv $(UV_VERSION) with pip ..."; \
		$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION); }
	@echo "installing locked dependencies into $(VENV) (uv sync --frozen) ..."
	@# Bytecode compiled once here: where PYTHONDONTWRITEBYTECODE is set (CI, containers) every
	@# process would otherwise compile dagster, mlflow and scikit-learn again (9 s -> 4 s of
	@# imports per run worker on this 2-core machine).
	$(UV) sync --frozen --extra postgres --compile-bytecode
	@touch $@

run: $(STAMP)
	$(VENV)/bin/mlops-assets run

test: lint typecheck pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: $(STAMP)
	$(VENV)/bin/pytest

dev: $(STAMP)
	$(VENV)/bin/mlops-assets dev --host $(HOST) --port $(PORT) --mlflow-port $(MLFLOW_PORT)

mlflow-ui: $(STAMP)
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(abspath $(MLOPS_HOME))/mlflow.db \
		--host $(HOST) --port $(MLFLOW_PORT)

lock: $(STAMP)
	$(UV) lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
