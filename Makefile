# Fresh machine:  make demo  (set-up + the main job)   |   make test  (set-up + the test suite)
.PHONY: setup build test demo env gpu-check gpu-acceptance clean-outputs bench-setup bench-ingest bench-pretrain

UORCH := target/release/uorch

setup:
	@bash scripts/setup.sh

build: setup

test: setup
	cargo test --release --locked

DEMO_STORE := checkpoints/data/ml-100k

demo: setup
	$(UORCH) env
	@echo
	$(UORCH) data prepare assets/ml-100k --out $(DEMO_STORE) --force
	$(UORCH) data stats $(DEMO_STORE)
	$(UORCH) data splits $(DEMO_STORE) --window 20 --stride 10 --world 2 --batch-size 32
	$(UORCH) data examples $(DEMO_STORE) --task favorite-category --window 10 --limit 1
	@echo
	$(UORCH) config show experiments/quickstart.yaml --origins
	$(UORCH) launch experiments/quickstart.yaml
	$(UORCH) report checkpoints/quickstart

env: setup
	$(UORCH) env

# Benchmarks: the ingest references (pandas, pyarrow) go into the set-up venv;
# the model references (PyTorch with its CUDA dependencies, ~4 GB, transformers,
# peft) into .uorch/golden, the benches' default --reference-python (the CPU
# part of the torch wheel that set-up extracts cannot be imported by Python:
# torch loads cuDNN and cuBLAS at import). Built under a temporary name, kept
# once it imports.
GOLDEN := .uorch/golden
bench-setup: setup
	@.uorch/venv/bin/python -c 'import pandas, pyarrow' 2>/dev/null || .uorch/venv/bin/python -m pip install -q pandas==3.1.1 pyarrow==26.0.1
	@$(GOLDEN)/bin/python -c 'import torch, transformers, peft' 2>/dev/null || { \
	  rm -rf $(GOLDEN).tmp && python3 -m venv $(GOLDEN).tmp && \
	  $(GOLDEN).tmp/bin/python -m pip install -q torch==2.11.0 transformers==5.24.0 peft==0.21.2 && \
	  $(GOLDEN).tmp/bin/python -c 'import torch, transformers, peft' && \
	  rm -rf $(GOLDEN) && mv $(GOLDEN).tmp $(GOLDEN); }
	@echo "bench-setup: references ready (.uorch/venv: pandas, pyarrow; $(GOLDEN): torch, transformers, peft)"

bench-pretrain: bench-setup
	$(UORCH) bench pretrain

bench-ingest: bench-setup
	$(UORCH) bench ingest

# On a GPU host, with the release binary built elsewhere and carried along.
gpu-check:
	@bash scripts/gpu_check.sh

# The GPU acceptance run: PASS or FAIL per line, within 8 minutes on one H200.
gpu-acceptance:
	@bash scripts/gpu_acceptance.sh

clean-outputs:
	find checkpoints -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
