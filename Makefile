# Convenience targets; the README's commands are the reference.
.PHONY: demo test bench
demo:
	python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/audit demo
test:
	bash .ci/run
bench:
	.venv/bin/python benchmarks/run.py
