# The two commands: `make demo` and `make test`. Each sets itself up first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.bluegrass-setup

.PHONY: setup test demo bench lint clean

setup: $(STAMP)

$(STAMP): tools/bootstrap.py requirements-dev.txt core/pyproject.toml laptop-client/pyproject.toml \
          cloud/pyproject.toml appliance/pyproject.toml panel/pyproject.toml
	$(PYTHON) tools/bootstrap.py $(VENV)
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: setup
	$(BIN)/python tools/demo.py

bench: setup
	$(BIN)/python bench/run.py $(BENCH_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache
