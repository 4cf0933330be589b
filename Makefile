# Convenience targets; the README's commands are the reference.
.PHONY: demo test bench bench-quick
demo:
	python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/audit demo
test:
	bash .ci/run
bench:
	.venv/bin/python benchmarks/scale.py
bench-quick:
	.venv/bin/python benchmarks/scale.py --quick
