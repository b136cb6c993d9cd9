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

# --- The Raspberry Pi image (docs/image.md). All of these need root. ---------------------------
# pi-gen release tag `make image` builds with; the build itself needs a networked Linux host.
PIGEN_REF      ?= 2026-06-18-raspios-trixie-arm64
IMAGE_SUITE    ?= trixie
IMAGE_COMPRESS ?= none

.PHONY: image image-debian image-test flash

image: setup
	PIGEN_REF=$(PIGEN_REF) PYTHON=$(BIN)/python image/pigen/build.sh

image-debian: setup
	$(BIN)/python image/debian_image.py --suite $(IMAGE_SUITE) --compress $(IMAGE_COMPRESS)

image-test: setup
	$(BIN)/python image/boottest.py $(if $(IMAGE),--image "$(IMAGE)")

flash:
	$(PYTHON) image/flash.py --device "$(DEVICE)" $(if $(IMAGE),--image "$(IMAGE)")
