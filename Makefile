# The README's two commands are `scripts/run demo` and `scripts/run test`, which
# need only python3; these targets are the same for those who have make.
.PHONY: demo test lint bench venv system-deps deb

venv:
	./scripts/setup-venv

system-deps:
	./scripts/setup-system

demo:
	./scripts/run demo

test:
	./scripts/run test

lint: venv
	.venv/bin/ruff check
	.venv/bin/ruff format --check
	.venv/bin/mypy

bench: system-deps venv
	.venv/bin/python bench/run.py

# dist/gaemail_<version>_<arch>.deb: see packaging/deb/ and scripts/build-deb.
deb:
	./scripts/build-deb
