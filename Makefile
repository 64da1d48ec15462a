# Two commands do all set-up on a fresh machine: `make demo` (the main job) and `make test`.
# Both create .venv and install the core and every plugin in it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PLUGINS := $(wildcard plugins/*)
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint clean

$(STAMP): pyproject.toml $(wildcard plugins/*/pyproject.toml)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]" $(foreach p,$(PLUGINS),-e $(p))
	touch $@

demo: $(STAMP)
	$(BIN)/python -m emd_ping.demo
	$(BIN)/python -m emd_collector.demo

test: $(STAMP)
	$(BIN)/ruff check core plugins tests bench
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
