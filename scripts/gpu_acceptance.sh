#!/usr/bin/env bash
# The GPU acceptance run: one command on a GPU host, PASS or FAIL per line,
# within 8 minutes on one H200. The host needs no Rust: carry the release
# binary built on a CPU machine and the assets,
#   target/release/uorch  assets/ml-100k  .uorch/models/smollm2-135m-instruct/{config,tokenizer}.json
# (make gpu-acceptance, or bash scripts/gpu_acceptance.sh). The finetuning
# checks use a 2-layer Llama with SmolLM2's vocabulary and random weights,
# written here by Python's standard library. Logs and report.txt go to $OUT (or .gpu/).
set -uo pipefail
cd "$(dirname "$0")/.."
OUTDIR=${OUT:-.gpu}
W=.gpu/acceptance
rm -rf "$W" && mkdir -p "$W" "$OUTDIR"
REPORT="$OUTDIR/report.txt"
: > "$REPORT"
BIN=target/release/uorch
FAILS=0
pass() { echo "PASS $1: $2" | tee -a "$REPORT"; }
fail() { echo "FAIL $1: $2" | tee -a "$REPORT"; FAILS=$((FAILS + 1)); }
TORCH_DIR=$(python3 -c 'import importlib.util as u; print(u.find_spec("torch").submodule_search_locations[0])' 2>/dev/null)
export LD_LIBRARY_PATH="$TORCH_DIR/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# A value from the last line of a JSON-lines file, or from a JSON file.
jget() { python3 -c 'import json,sys; t=open(sys.argv[1]).read().strip().splitlines(); d=json.loads(t[-1]) if sys.argv[1].endswith(".jsonl") else json.loads("\n".join(t)); print(eval(sys.argv[2], {}, {"d": d}))' "$@"; }

# 1. The environment: the CPU-built binary sees CUDA through the host's libtorch.
if timeout 60 bash scripts/gpu_check.sh "$BIN" > "$W/env.log" 2>&1; then
  pass env "$(grep '^gpu_check: libtorch' "$W/env.log")"
else
  fail env "see $W/env.log: $(tail -1 "$W/env.log")"
fi

# 2. The NCCL plugin builds, and uorch loads it.
if timeout 120 bash scripts/build_nccl_plugin.sh > "$W/plugin.log" 2>&1 && "$BIN" env 2>&1 | grep -qi "nccl.*plugin\|plugin.*nccl"; then
  pass nccl-plugin "$("$BIN" env 2>&1 | grep -i nccl | head -1 | tr -s ' ')"
else
  fail nccl-plugin "see $W/plugin.log: $(tail -1 "$W/plugin.log")"
fi

# Data and the tiny LLM.
timeout 60 "$BIN" data prepare assets/ml-100k --out "$W/ml" --force > "$W/prepare.log" 2>&1 || fail data "see $W/prepare.log"
mkdir -p "$W/llm"
cp .uorch/models/smollm2-135m-instruct/tokenizer.json "$W/llm/" 2>/dev/null || fail data "tokenizer.json was not carried"
timeout 60 python3 - "$W/llm" <<'PY' || fail data "writing the tiny LLM"
import array, json, random, struct, sys
d = sys.argv[1]
h, f, L, v, kv = 64, 128, 2, 49152, 32
cfg = {"model_type": "llama", "hidden_size": h, "intermediate_size": f, "num_hidden_layers": L,
       "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": v, "tie_word_embeddings": True, "eos_token_id": 2}
json.dump(cfg, open(f"{d}/config.json", "w"))
shapes = {"model.embed_tokens.weight": (v, h), "model.norm.weight": (h,)}
for i in range(L):
    p = f"model.layers.{i}."
    shapes.update({p + "input_layernorm.weight": (h,), p + "post_attention_layernorm.weight": (h,),
                   p + "self_attn.q_proj.weight": (h, h), p + "self_attn.k_proj.weight": (kv, h),
                   p + "self_attn.v_proj.weight": (kv, h), p + "self_attn.o_proj.weight": (h, h),
                   p + "mlp.gate_proj.weight": (f, h), p + "mlp.up_proj.weight": (f, h), p + "mlp.down_proj.weight": (h, f)})
rng = random.Random(0)
header, blobs, off = {}, [], 0
for name in sorted(shapes):
    n = 1
    for x in shapes[name]:
        n *= x
    a = array.array("f", [1.0] * n if name.endswith("norm.weight") else [rng.gauss(0.0, 0.05) for _ in range(n)])
    b = a.tobytes()  # little-endian on x86 and ARM hosts
    header[name] = {"dtype": "F32", "shape": list(shapes[name]), "data_offsets": [off, off + len(b)]}
    blobs.append(b)
    off += len(b)
hb = json.dumps(header).encode()
hb += b" " * (-len(hb) % 8)
with open(f"{d}/model.safetensors", "wb") as o:
    o.write(struct.pack("<Q", len(hb)))
    o.write(hb)
    for b in blobs:
        o.write(b)
PY

# A run config: $1 name, $2 extra YAML lines.
config() {
  cat > "$W/$1.yaml" <<YAML
name: $1
output_root: $W/runs
seed: 7
data: {store: $W/ml, window: 30, stride: 30}
encoder: {dim: 32, layers: 1, heads: 2, dropout: 0.0}
$2
YAML
}
PT="pretrain: {steps: 60, batch_size: 32, checkpoint_every: 20, log_every: 20}"
FT="finetune: {model: $W/llm, cross_attention_layers: [1], strategy: lora, steps: 30, batch_size: 4, checkpoint_every: 10, log_every: 10, eval_examples: 16, text_prompt_baseline: false}"

# 3. 1-GPU pretraining and finetuning over NCCL (cross-attention, LoRA),
#    interrupted by SIGINT after a checkpoint and resumed by a second launch.
config nccl "$PT
$FT
dist: {nproc: 1, backend: nccl}"
( timeout 120 "$BIN" launch "$W/nccl.yaml" > "$W/nccl-1.log" 2>&1 & pid=$!
  for _ in $(seq 600); do
    [[ -f "$W/runs/nccl/finetune_log.jsonl" && $(wc -l < "$W/runs/nccl/finetune_log.jsonl") -ge 12 ]] && break; sleep 0.2
  done
  kill -INT $pid 2>/dev/null; wait $pid )
timeout 120 "$BIN" launch "$W/nccl.yaml" > "$W/nccl-2.log" 2>&1
rc=$?
if [[ $rc == 0 ]] && grep -q "data group nccl" "$W/nccl-1.log" && grep -q "interrupted after step" "$W/nccl-1.log" \
   && grep -q "finetune: resuming from" "$W/nccl-2.log" && [[ -f "$W/runs/nccl/finetune_predictions.jsonl" ]]; then
  pass nccl-1gpu "pretrain + finetune (xattn, LoRA) on $(grep -o 'on cuda[^:]*' "$W/nccl-1.log" | head -1), interrupted at $(grep -o 'interrupted after step [0-9]*' "$W/nccl-1.log"), resumed; final loss $(jget "$W/runs/nccl/finetune_metrics.json" 'round(d["final_loss"], 4)')"
else
  fail nccl-1gpu "exit $rc; see $W/nccl-1.log and $W/nccl-2.log: $(grep -m1 -i error "$W"/nccl-*.log)"
fi

# 3b. The training scalars on a GPU: the logged line of the last finetuning step
#     (the same figures as TensorBoard's) has the CUDA allocator's peak, MFU
#     and the step-time split.
pace=$(python3 - "$W/nccl-2.log" <<'PY' 2>&1
import re, sys
lines = [l for l in open(sys.argv[1]) if "finetune step 30/30" in l]
if not lines:
    sys.exit("no line for finetuning step 30")
l = lines[-1]
gpu = re.search(r"([0-9.]+) MiB on the GPU", l)
mfu = re.search(r"MFU ([0-9.e+-]+)%", l)
split = re.search(r"\(data [0-9]+% fwd-bwd [0-9]+% optim [0-9]+% comm [0-9]+%\)", l)
ok = gpu and float(gpu.group(1)) > 0 and mfu and 0 < float(mfu.group(1)) < 100 and split
print(l.split("lr ")[-1].strip())
sys.exit(0 if ok else 1)
PY
)
if [[ $? == 0 ]]; then
  pass training-scalars-cuda "$pace"
else
  fail training-scalars-cuda "'$pace'; see $W/nccl-2.log"
fi

# 4. 2 workers on 1 GPU over Gloo with CUDA tensors against 1 worker, same global batch.
config gloo2 "pretrain: {steps: 40, batch_size: 16, checkpoint_every: 0}
dist: {nproc: 2, backend: gloo}"
config gloo1 "pretrain: {steps: 40, batch_size: 32, checkpoint_every: 0}
dist: {nproc: 1, backend: gloo}"
timeout 120 "$BIN" launch "$W/gloo2.yaml" > "$W/gloo2.log" 2>&1; r2=$?
timeout 120 "$BIN" launch "$W/gloo1.yaml" > "$W/gloo1.log" 2>&1; r1=$?
cmp=$(python3 - "$W/runs" <<'PY' 2>&1
import json, struct, sys, glob
def tensors(run):
    path = sorted(glob.glob(f"{run}/checkpoints/step-*/model.safetensors"))[-1]
    b = open(path, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
    return {k: struct.unpack(f"<{(v['data_offsets'][1] - v['data_offsets'][0]) // 4}f", b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]])
            for k, v in h.items() if k != "__metadata__" and v["dtype"] == "F32"}
a, b = tensors(sys.argv[1] + "/gloo2"), tensors(sys.argv[1] + "/gloo1")
print(f"{max(abs(x - y) for k in a for x, y in zip(a[k], b[k])):.2e}")
PY
)
if [[ $r1 == 0 && $r2 == 0 ]] && grep -q "data group gloo" "$W/gloo2.log" && python3 -c "import sys; sys.exit(0 if float('$cmp') < 1e-3 else 1)" 2>/dev/null; then
  pass gloo-2-workers-1-gpu "2 workers (Gloo, CUDA tensors) vs 1 worker after 40 steps: parameters differ by at most $cmp (tolerance 1e-3; 2.6e-4 on CPU)"
else
  fail gloo-2-workers-1-gpu "exits $r2/$r1, max difference '$cmp'; see $W/gloo2.log"
fi

# 5. Activation checkpointing on CUDA: the first step's gradient norm equals the plain one's.
for ac in false true; do
  config "ac-$ac" "$PT
finetune: {model: $W/llm, cross_attention_layers: [0, 1], strategy: full, steps: 2, batch_size: 4, eval_examples: 2, text_prompt_baseline: false, activation_checkpointing: $ac}
dist: {nproc: 1}"
  timeout 90 "$BIN" launch "$W/ac-$ac.yaml" > "$W/ac-$ac.log" 2>&1
done
g0=$(head -1 "$W/runs/ac-false/finetune_log.jsonl" 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["grad_norm"])' 2>/dev/null)
g1=$(head -1 "$W/runs/ac-true/finetune_log.jsonl" 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["grad_norm"])' 2>/dev/null)
if python3 -c "import sys; a, b = float('$g0'), float('$g1'); sys.exit(0 if abs(a - b) <= 1e-4 * max(a, 1e-12) else 1)" 2>/dev/null; then
  pass recompute-cuda "gradient norm with activation checkpointing $g1, without $g0 (tolerance 1e-4 relative)"
else
  fail recompute-cuda "gradient norms '$g1' vs '$g0'; see $W/ac-*.log"
fi

# 6. Answers on CUDA equal the CPU answers for the model finetuned in check 3.
if timeout 60 "$BIN" export "$W/runs/nccl" --out "$W/export" > "$W/export.log" 2>&1; then
  same=0; n=0
  for u in 1 2 3 4 5 6 7 8; do
    g=$(timeout 30 "$BIN" generate --model "$W/export" --store "$W/ml" --user $u --json 2>/dev/null)
    c=$(CUDA_VISIBLE_DEVICES= timeout 30 "$BIN" generate --model "$W/export" --store "$W/ml" --user $u --json 2>/dev/null)
    n=$((n + 1)); [[ -n "$g" && "$g" == "$c" ]] && same=$((same + 1))
  done
  if [[ $same == "$n" ]]; then
    pass cuda-vs-cpu-answers "$same of $n users get the same answer on CUDA and CPU (exact match of the JSON answers)"
  else
    fail cuda-vs-cpu-answers "$same of $n users answered alike"
  fi
else
  fail cuda-vs-cpu-answers "export failed: see $W/export.log"
fi

# 7. bf16 training-step throughput and MFU of both LLM shapes beside HF transformers eager.
if timeout 150 "$BIN" bench llm --shape smollm2-135m --shape llama-1b --device cuda --steps 8 --warmup 2 --reference-python python3 > "$W/llm.log" 2>&1; then
  pass llm-throughput "$(grep -E '^\|' "$W/llm.log" | grep -v -- '---' | tr '\n' ' ' | tr -s ' ')"
else
  fail llm-throughput "see $W/llm.log: $(tail -1 "$W/llm.log")"
fi

cp "$W"/*.log "$OUTDIR"/ 2>/dev/null
echo "$FAILS check(s) failed" | tee -a "$REPORT"
exit $((FAILS > 0))
