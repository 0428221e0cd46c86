# The two quickstart commands (README): `make demo` and `make test`.
.PHONY: setup demo test bench lint api-docs wheel-check

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

# The API reference, from the docstrings of the public modules (pdoc, the `docs` extra).
api-docs: setup
	rm -rf docs/api
	.venv/bin/python -m pdoc --docformat restructuredtext -o docs/api stac.api stac.runtime stac.errors

# The wheel installs into a fresh virtualenv and compiles from there (also run by .ci/run).
wheel-check:
	bash scripts/check_wheel.sh
