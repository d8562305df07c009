# hstream: the usual entry points. `make test` is what CI runs.
PYTHON ?= python3
PYTEST_ARGS ?=

.PHONY: install bytecode lint test example bench bench-small chaos clean

install:
	$(PYTHON) -m pip install -q -e '.[test]'
	$(MAKE) bytecode

# Bytecode, even where PYTHONDONTWRITEBYTECODE is set: every daemon, zygote and client a test
# starts imports hstream, and compiling it each time is a third of an embedded job's CPU.
bytecode:
	$(PYTHON) -m compileall -q hstream

lint:
	$(PYTHON) -m ruff check hstream tests bench
	$(PYTHON) -m mypy hstream

test: lint bytecode
	$(PYTHON) -m pytest -q --durations=25 $(PYTEST_ARGS) tests

example: install
	rm -rf /tmp/hstream-example-out
	hstream jar-free -mapper examples/wordcount/map.py -reducer examples/wordcount/reduce.sh \
		-input examples/wordcount/input -output /tmp/hstream-example-out
	cat /tmp/hstream-example-out/part-*

bench:
	$(PYTHON) bench/run.py $(BENCH_ARGS)

bench-small:
	$(PYTHON) bench/smallfiles.py $(BENCH_ARGS)

chaos:
	HSTREAM_CHAOS_TRIALS=$${TRIALS:-100} $(PYTHON) -m pytest -q tests -k chaos
	HSTREAM_RESTART_TRIALS=$${TRIALS:-100} $(PYTHON) -m pytest -q tests/test_restart.py

clean:
	rm -rf build dist *.egg-info .pytest_cache bench/data bench/results
