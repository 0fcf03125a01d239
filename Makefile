# Fresh machine:  make demo  (set-up + the main job)   |   make test  (set-up + the test suite)
.PHONY: setup build test demo env gpu-check gpu-acceptance clean-outputs bench-setup bench-ingest

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

# Benchmarks: the Python references (pandas, pyarrow) go into the set-up venv.
bench-setup: setup
	@.uorch/venv/bin/python -c 'import pandas, pyarrow' 2>/dev/null || .uorch/venv/bin/python -m pip install -q pandas==3.1.1 pyarrow==26.0.1

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
