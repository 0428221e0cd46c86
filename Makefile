# The two quickstart commands (README): `make demo` and `make test`.
.PHONY: setup demo test bench lint

setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/stac compile --model smollm2-135m --target loihi2-sim --output-dir out/smollm2-135m-loihi2-sim --force

test: setup
	.venv/bin/python -m pytest -q

bench: setup
	.venv/bin/python benchmarks/fidelity.py

lint: setup
	.venv/bin/ruff check stac tests benchmarks examples scripts
	.venv/bin/ruff format --check stac tests benchmarks examples scripts
	.venv/bin/mypy
