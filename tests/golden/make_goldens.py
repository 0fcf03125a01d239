"""Produce the golden values the Rust tests compare against, with the real
reference implementations: the `gguf` Python package (llama.cpp's own reader)
for dequantization, and Hugging Face transformers + PyTorch for the SmolLM2
tokenizer, logits and greedy continuations.

Needs `import torch` (the full ~4 GB install), so it is run by hand, once, not
in CI:

    python3 -m venv .uorch/golden
    .uorch/golden/bin/pip install .uorch/cache/wheels/torch-2.11.0-*.whl transformers accelerate gguf numpy
    .uorch/golden/bin/python tests/golden/make_goldens.py

Outputs (committed): tests/golden/quants.gguf, quants_expected.safetensors,
smollm2.json, smollm2_logits.safetensors.
"""
import json
import os
import sys

import gguf
import numpy as np
from safetensors.numpy import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
GGUF_MODEL = os.path.join(ROOT, "assets", "smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")

Q = gguf.GGMLQuantizationType


def quant_goldens():
    rng = np.random.default_rng(1234)
    rows, cols = 2, 512
    writer = gguf.GGUFWriter(os.path.join(HERE, "quants.gguf"), "llama")
    expected = {}
    for qtype in [Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q4_K, Q.Q6_K]:
        data = (rng.standard_normal((rows, cols)) * 0.7).astype(np.float32)
        if qtype in (Q.Q4_K, Q.Q6_K):
            # No quantizer for K-quants in gguf-py: random blocks with sane f16 scales.
            block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
            n_blocks = rows * cols // block_size
            raw = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
            scale = lambda: np.frombuffer(np.float16(rng.uniform(0.001, 0.05)).tobytes(), dtype=np.uint8)
            for b in range(n_blocks):
                if qtype == Q.Q4_K:
                    raw[b, 0:2] = scale()
                    raw[b, 2:4] = scale()
                else:
                    raw[b, 208:210] = scale()
            raw = raw.reshape(rows, -1)
        else:
            raw = gguf.quants.quantize(data, qtype)
        if qtype == Q.F32:
            writer.add_tensor(f"t.{qtype.name}", data)
        elif qtype == Q.F16:
            writer.add_tensor(f"t.{qtype.name}", raw.astype(np.float16))
        else:
            # Raw bytes: the writer derives the element shape from the byte shape.
            writer.add_tensor(f"t.{qtype.name}", np.ascontiguousarray(raw).view(np.uint8).reshape(rows, -1), raw_dtype=qtype)
        expected[f"t.{qtype.name}"] = gguf.quants.dequantize(raw, qtype).astype(np.float32).reshape(rows, cols)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    save_file(expected, os.path.join(HERE, "quants_expected.safetensors"))


TOKENIZE = [
    "Hello, world!",
    "Café — naïve façade, 東京 and 🚀 emoji",
    "  two  spaces\n\n\ttab\r\nend ",
    "def f(x):\n    return x**2  # square\n",
    "12345 and 3.14159 and 1,000,000 and 2026-11-28",
    "<|im_start|>user\nhi there<|im_end|>\n",
    "Toy Story (1995) [Animation, Children's, Comedy] rated 4/5; GoldenEye (1995) [Action] rated 3/5",
]
PROMPTS = [
    "The capital of France is",
    "A user's movie history, oldest first: Toy Story (1995) [Animation, Comedy] rated 4/5; Heat (1995) [Action, Crime] rated 5/5.\nWhich movie will the user choose next?",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
]
NEW_TOKENS = 16


def model_goldens():
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = os.path.split(GGUF_MODEL)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    model.eval()
    out = {
        "produced_by": f"transformers {transformers.__version__}, torch {torch.__version__}, gguf-py",
        "model": os.path.basename(GGUF_MODEL),
        "tokenize": [{"text": t, "ids": tok(t, add_special_tokens=False)["input_ids"]} for t in TOKENIZE],
        "decode": [{"ids": ids, "text": tok.decode(ids)} for ids in [[1, 2, 3], tok("Café 東京 🚀", add_special_tokens=False)["input_ids"]]],
        "prompts": [],
    }
    logits = {}
    with torch.no_grad():
        for i, p in enumerate(PROMPTS):
            ids = tok(p, add_special_tokens=False, return_tensors="pt")["input_ids"]
            last = model(ids).logits[0, -1].float().numpy()
            logits[f"prompt{i}"] = last.astype(np.float32)
            gen = model.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False, num_beams=1, pad_token_id=tok.pad_token_id)
            new = gen[0, ids.shape[1]:].tolist()
            out["prompts"].append({"text": p, "ids": ids[0].tolist(), "greedy_ids": new, "greedy_text": tok.decode(new)})
    # What `uorch generate --prompt "The capital of France is" --max-new-tokens 8` must print.
    first = out["prompts"][0]["greedy_ids"][:8]
    out["cli_capital_8"] = tok.decode(first)
    save_file(logits, os.path.join(HERE, "smollm2_logits.safetensors"))
    with open(os.path.join(HERE, "smollm2.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    quant_goldens()
    if "--quants-only" not in sys.argv:
        model_goldens()
