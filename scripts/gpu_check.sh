#!/usr/bin/env bash
# Run the release binary built on a CPU machine against a GPU host's own
# libtorch (the torch wheel of its python3) and check that it sees CUDA.
# Usage (on the GPU host, from the repo root): bash scripts/gpu_check.sh [BINARY]
# Writes env.txt / env.json to $OUT (or .gpu/) and exits non-zero if no GPU is seen.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/uorch}
OUTDIR=${OUT:-.gpu}
mkdir -p "$OUTDIR"
[[ -x "$BIN" ]] || { echo "gpu_check: no binary at $BIN (build it with make build and carry it)" >&2; exit 1; }
# Locate torch without importing it (importing costs seconds and needs no GPU).
TORCH_DIR=$(python3 -c 'import importlib.util as u; print(u.find_spec("torch").submodule_search_locations[0])') \
  || { echo "gpu_check: python3 has no torch package" >&2; exit 1; }
export LD_LIBRARY_PATH="$TORCH_DIR/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "gpu_check: libtorch from $TORCH_DIR/lib"
"$BIN" env | tee "$OUTDIR/env.txt"
"$BIN" env --json > "$OUTDIR/env.json"
python3 - "$OUTDIR/env.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
cuda = r["cuda"]
names = [d["name"] for d in cuda["devices"]]
print(f"gpu_check: libtorch {r['libtorch']['version']}, CUDA available {cuda['available']}, "
      f"{cuda['device_count']} device(s) {names}, cuDNN {cuda['cudnn_version']}")
sys.exit(0 if cuda["available"] and cuda["device_count"] > 0 and names else 1)
PY
