# The two commands: `make demo` (the main job end to end on the embedded database) and `make test`
# (the whole suite); `make check` is the inner loop's subset; `make dev` is `dg dev` (UI + daemon);
# `make bench` measures each stage against its floor (bench/results.json; not part of the tests).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test check bench install dev clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/bulkgen demo

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

# Leaves out the slow fault-injection and install tests, the browser and webserver tests and the
# reliability suite; every module's own tests still run.
check: $(STAMP)
	$(BIN)/python -m pytest -n 2 -m "not slow" --ignore=tests/ui --ignore=tests/reliability $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

# The one instance: the CLI, `make demo` and `make dev` record and read runs in $DAGSTER_HOME, the project's
# .dagster_home unless set.
DAGSTER_HOME ?= $(CURDIR)/.dagster_home

dev: $(STAMP)
	mkdir -p $(DAGSTER_HOME)
	test -s $(DAGSTER_HOME)/dagster.yaml || cp deploy/local-dagster.yaml $(DAGSTER_HOME)/dagster.yaml
	DAGSTER_HOME=$(DAGSTER_HOME) $(BIN)/dg dev

clean:
	rm -rf $(VENV) .cache .dagster_home
