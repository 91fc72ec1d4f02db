# Quick start: `make demo` and `make test`; each builds .venv by itself the first time.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "torch>=2.11" "torchvision>=0.26"
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m pip install --quiet --no-deps torchaug
	$(VENV)/bin/gpuaug build-ext || echo "warning: the fused extension did not build; gpuaug falls back to plain PyTorch"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/gpuaug preview -o preview.png
	$(VENV)/bin/gpuaug bench --batch-size 64 --repeats 5 --json bench.json --chart bench.png

# the whole suite on the plain-PyTorch backend (the reference), then the torchvision parity and
# pipeline tests again on the fused extension
test: $(STAMP)
	$(PY) -m pytest -q -n 2 --doctest-modules src/gpuaug tests
	GPUAUG_BACKEND=ext $(PY) -m pytest -q -n 2 tests/test_parity.py tests/test_chains.py tests/test_pipeline.py

bench: $(STAMP)
	$(PY) -m pytest -q benchmarks --benchmark-only

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info preview.png bench.json bench.png
