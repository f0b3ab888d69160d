# Two entry points for a fresh machine (see README): `make demo` and `make test`.
# Both create .venv with the machine's python3 and install Pollinator with every extra;
# a second run reuses it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test install bench bench-smoke wheel-smoke clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[all]"
	touch $@

install: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/python scripts/demo.py

# the types of the core, the adapters and the examples (pyproject's [tool.mypy]); `make test` runs it first, so CI does too
typecheck: $(BIN)/.installed
	$(BIN)/python -m mypy

test: typecheck
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: $(BIN)/.installed
	for b in benchmarks/*.py; do $(BIN)/python $$b || exit 1; done

# every benchmark at a small size: proves they run and print their figures (CI runs this after the tests;
# targets are judged at full size with `make bench`, never by a timed test)
bench-smoke: $(BIN)/.installed
	$(BIN)/python benchmarks/local_colony_latency.py --cycles 50 --concurrency 4
	$(BIN)/python benchmarks/pickup_latency.py --jobs 8 --idle 2
	$(BIN)/python benchmarks/run_overhead.py --jobs 3 --lines 20 --cli-runs 3
	$(BIN)/python benchmarks/sync_throughput.py --small 100 --big-mb 10 --many 500 --huge-mb 20 --repeat 1
	$(BIN)/python benchmarks/trigger_scale.py --n 10 --seconds 3
	$(BIN)/python benchmarks/reliability_summary.py --jobs 10 --lines 5 -k "test_load or test_secrets"
	$(BIN)/python benchmarks/fanout.py --n 10

# the wheel and sdist as a user gets them: build, install the wheel (not editable) into a fresh venv, run
# `pollinator new`/`funcspec`, `pollinator dev` without and with the `local` extra, one echo job (CI runs it)
wheel-smoke: $(BIN)/.installed
	SMOKE_PYTHON=$(PYTHON) scripts/wheel_smoke.sh $(BIN)/python

clean:
	rm -rf $(VENV) .pytest_cache
