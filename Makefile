# Two commands do all set-up on a fresh machine: `make demo` (the main job) and `make test`.
# Both create .venv and install the core and every plugin in it: the demo only what it runs
# (a real IOC and matplotlib for its plot), the tests every extra and the test tools too.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYPROJECTS := pyproject.toml $(wildcard plugins/*/pyproject.toml)
PLUGINS := plugins/emd-ping plugins/emd-hdf5 plugins/emd-processors
DEMO_STAMP := $(VENV)/.installed-demo
TEST_STAMP := $(VENV)/.installed-test

.PHONY: demo test bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(DEMO_STAMP): $(PYPROJECTS) | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[demo]" -e "plugins/emd-collector[plot]" -e plugins/emd-dms $(foreach p,$(PLUGINS),-e $(p))
	touch $@

$(TEST_STAMP): $(PYPROJECTS) | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[test]" -e "plugins/emd-collector[pandas,xarray,plot]" -e "plugins/emd-dms[s3]" -e plugins/emd-ophyd $(foreach p,$(PLUGINS),-e $(p))
	touch $@

demo: $(DEMO_STAMP)
	$(BIN)/python -m emd_ping.demo
	$(BIN)/python -m emd_collector.demo

test: $(TEST_STAMP)
	$(BIN)/ruff check core plugins tests bench
	$(BIN)/python -m pytest

bench: $(TEST_STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
