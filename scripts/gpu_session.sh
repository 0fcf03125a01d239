#!/usr/bin/env bash
# Everything a lent GPU session checks, in one go (the GPU host has no Rust:
# carry target/release/uorch and assets/ml-100k). Writes report.txt and logs
# to $OUT (or .gpu/). Steps:
#   1. the CPU-built binary sees CUDA with the host's torch (gpu_check.sh);
#   2. the NCCL plugin builds (build_nccl_plugin.sh) and uorch env reports it;
#   3. a 1-GPU encoder pretraining run on MovieLens-100K trains;
#   4. its throughput beside the PyTorch encoder (benches/encoder_reference.py);
#   5. LLM training-step throughput and MFU beside HF transformers (if installed);
#   6. finetuning throughput and MFU of each strategy, SmolLM2's shape with random
#      weights (carry .uorch/models/smollm2-135m-instruct/config.json and tokenizer.json).
set -uo pipefail
cd "$(dirname "$0")/.."
OUTDIR=${OUT:-.gpu}
mkdir -p "$OUTDIR"
REPORT="$OUTDIR/report.txt"
: > "$REPORT"
log() { echo "$*" | tee -a "$REPORT"; }
BIN=target/release/uorch
TORCH_DIR=$(python3 -c 'import importlib.util as u; print(u.find_spec("torch").submodule_search_locations[0])')
export LD_LIBRARY_PATH="$TORCH_DIR/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

log "== 1. env"
bash scripts/gpu_check.sh "$BIN" >> "$REPORT" 2>&1 || log "gpu_check FAILED"
log "== 2. NCCL plugin"
bash scripts/build_nccl_plugin.sh >> "$REPORT" 2>&1 || log "NCCL plugin build FAILED"
"$BIN" env | grep -E "CUDA|GPU|nccl|gloo" | tee -a "$REPORT"
log "== 3. 1-GPU pretraining"
"$BIN" data prepare assets/ml-100k --out .gpu/ml-100k --force >> "$REPORT" 2>&1
cat > .gpu/pt.yaml <<YAML
name: gpu-pretrain
output_root: .gpu/runs
seed: 7
data: {store: .gpu/ml-100k, window: 50, stride: 25}
encoder: {dim: 64, layers: 2, heads: 4, dropout: 0.1}
pretrain: {steps: 300, batch_size: 64, lr: 2.0e-3, warmup_steps: 30, log_every: 100, checkpoint_every: 0}
dist: {nproc: 1}
YAML
rm -rf .gpu/runs
timeout 300 "$BIN" launch .gpu/pt.yaml 2>&1 | tail -8 | tee -a "$REPORT"
python3 - .gpu/runs/gpu-pretrain/train_log.jsonl 64 <<'PY' | tee -a "$REPORT"
import json, sys
t = [json.loads(l)["elapsed_s"] for l in open(sys.argv[1])]
print(f"uorch 1 GPU: {(len(t) - 10) * int(sys.argv[2]) / (t[-1] - t[9]):.0f} sequences/s")
PY
log "== 4. PyTorch encoder reference"
python3 benches/encoder_reference.py '{"vocab": [1349, 20, 5], "dim": 64, "layers": 2, "heads": 4, "ffn_mult": 4, "window": 50, "dropout": 0.1, "batch": 64, "steps": 290, "warmup": 10, "device": "cuda"}' 2>&1 | sed 's/^/PyTorch 1 GPU sequences\/s: /' | tee -a "$REPORT"
log "== 5. LLM training step"
timeout 400 "$BIN" bench llm --shape smollm2-135m --shape llama-1b --device cuda --steps 10 --warmup 3 --reference-python python3 2>&1 | tee -a "$REPORT"
log "== 6. finetuning strategies"
if [ -f .uorch/models/smollm2-135m-instruct/tokenizer.json ]; then
  timeout 300 "$BIN" bench finetune --store .gpu/ml-100k --device cuda --steps 10 --batch 16 --random-init 2>&1 | tee -a "$REPORT"
else
  log "skipped: .uorch/models/smollm2-135m-instruct/{config,tokenizer}.json were not carried"
fi
log "== done"
