# The two commands of the README: `make demo` and `make test`.  Both set up
# everything they need on a fresh Debian machine first.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test check lint bench venv system-deps deb

venv:
	./scripts/setup-venv

system-deps:
	./scripts/setup-system

demo: venv
	./scripts/demo

lint: venv
	$(VENV)/bin/ruff check
	$(VENV)/bin/ruff format --check
	$(VENV)/bin/mypy

test: system-deps venv lint
	$(VENV)/bin/pytest

bench: system-deps venv
	$(PY) bench/run.py

# dist/gaemail_<version>_<arch>.deb: see packaging/deb/ and scripts/build-deb.
deb:
	./scripts/build-deb
