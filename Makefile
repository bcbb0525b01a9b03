# Two commands do all the set-up: `make demo` (the main job) and `make test` (the suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.snnctl-installed
RUNS ?= runs

.PHONY: setup demo test test-fast lint bench-layer bench-kernels bench-conversion bench-compile bench-data check-netx kernels clean

setup: $(STAMP)

# torch first, pinned to the CPU wheel on disk; a looser pin would pull a multi-GB CUDA build.
# lava-nc declares Python<3.11 and numpy<2 but runs here (see README, "Lava on Python 3.11").
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps --ignore-requires-python lava-nc==0.10.0
	$(BIN)/pip install -q 'asteval<0.10' networkx
	# Test extras: snnTorch imports our NIR files in the interop test (--no-deps: see PEERS below).
	$(BIN)/pip install -q --no-deps snntorch==1.0.0 nirtorch==2.6
	$(MAKE) kernels
	touch $(STAMP)

# The native CPU kernel (fused LIF forward/backward, OpenMP), loaded through ctypes. Without it the
# fused PyTorch path is used, so a machine with no C compiler still works, only slower.
KERNEL_SO := snnctl/nn/kernels/_lif.so
kernels: $(KERNEL_SO)
$(KERNEL_SO): snnctl/nn/kernels/lif.c
	$(CC) -O3 -march=native -fno-math-errno -fno-trapping-math -fopenmp -shared -fPIC $< -o $@ -lm

demo: setup
	$(BIN)/snnctl train --recipe digits-ann --out $(RUNS)/digits-ann
	$(BIN)/snnctl train --recipe digits-snn --out $(RUNS)/digits-snn
	$(BIN)/snnctl bench $(RUNS)/digits-snn --dataset digits --baseline $(RUNS)/digits-ann

test: setup
	$(BIN)/ruff check .
	$(BIN)/pytest -q

test-fast: setup
	$(BIN)/pytest -q -m "not slow"

lint: setup
	$(BIN)/ruff check .

bench-layer: setup
	$(BIN)/python benchmarks/layer_speed.py

# Peers (snnTorch, SpikingJelly, Norse) are benchmark-only, installed here, not by setup. --no-deps:
# their declared torchvision/torchaudio would replace the CPU torch with a multi-GB CUDA build.
PEERS := snntorch==1.0.0 spikingjelly==2.0.0 norse==1.1.0 nir nirtorch loguru h5py tqdm requests urllib3 idna charset-normalizer certifi
bench-kernels: setup
	$(BIN)/pip install -q --no-deps $(PEERS)
	$(BIN)/python benchmarks/kernels.py --save benchmarks/results/kernels.json

bench-conversion: setup
	$(BIN)/pip install -q --no-deps $(PEERS)
	$(BIN)/python benchmarks/conversion.py --save benchmarks/results/conversion.json

bench-compile: setup
	$(BIN)/python benchmarks/compile.py --save benchmarks/results/compile.json

bench-data: setup
	$(BIN)/python benchmarks/data.py --save benchmarks/results/data.json

# lava-dl's own netx loader reading the loihi target's model.net (lava-dl is not part of the set-up:
# it declares Python < 3.11; installed --no-deps into a separate folder for this check only).
LAVA_DL_DIR ?= /tmp/snnctl-lava-dl
check-netx: setup
	$(BIN)/pip install -q --no-deps --ignore-requires-python --target $(LAVA_DL_DIR) lava-dl==0.6.0
	$(BIN)/snnctl train --recipe digits-loihi-snn --out $(RUNS)/digits-loihi-snn
	$(BIN)/snnctl compile $(RUNS)/digits-loihi-snn --target loihi --dataset digits --out $(RUNS)/loihi-netx
	$(BIN)/python benchmarks/netx_loader.py $(RUNS)/loihi-netx/model.net --lava-dl $(LAVA_DL_DIR) \
		--save benchmarks/results/netx_loader.json

clean:
	rm -rf $(VENV) $(RUNS) build *.egg-info $(KERNEL_SO)
