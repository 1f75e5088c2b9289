# Developer shortcuts. The venv is whatever `python` is on PATH (activate .venv first).
.PHONY: style quality test test-slow test-all test-packaging bench-cpu tiny

PY ?= python
SRC = src tests bench

style:  ## format + autofix
	$(PY) -m ruff format $(SRC)
	$(PY) -m ruff check --fix $(SRC)

quality:  ## lint, format check, the layers contract, every recipe validates
	$(PY) -m ruff check $(SRC)
	$(PY) -m ruff format --check $(SRC)
	lint-imports
	pretrain validate recipes/*/config.yaml

test:  ## the default (CI) suite: fast tests + a representative subset of slow ones
	$(PY) -m pytest -q -m "not slow"

test-slow:
	$(PY) -m pytest -q -m slow

test-all:
	$(PY) -m pytest -q

test-packaging:  ## build the wheel, install it non-editable in a fresh venv, run `pretrain run tiny` from an empty folder
	$(PY) -m pytest -q -m slow tests/test_packaging.py

bench-cpu:  ## the CPU variants of the benches (figures vary with the machine)
	$(PY) bench/train_throughput.py --device cpu --tiny

tiny:  ## the embedded default recipe end to end
	pretrain run recipes/tiny/config.yaml
