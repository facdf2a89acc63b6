# `make demo` and `make test` each set up (or reuse) .venv first; see scripts/setup_env.sh.
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: env demo test
env:
	bash scripts/setup_env.sh

demo: env
	$(PY) tools/model_zoo.py

test: env
	$(PY) -m pytest -q $(PYTEST_ARGS)
