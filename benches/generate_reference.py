"""The generation of `uorch bench generate` in Hugging Face transformers:
`AutoModelForCausalLM.from_pretrained` on the same model folder (f32 or
bf16, as uorch's side; SDPA),
`model.generate` greedy, one prompt at a time, on the token ids uorch hands
over. End-of-sequence is switched off, so every prompt gets exactly
`new_tokens` tokens, as uorch's side does. Invoked by `uorch bench generate
--reference-python P` as

    python benches/generate_reference.py '{"model": ..., "prompts": [[ids]], "new_tokens": 64, "threads": 2, "dtype": "float32"}'

and prints one JSON line: every prompt's new tokens, the seconds all prompts
took (after one short warm-up generation), and the transformers version.
"""
import json
import sys
import time

import torch
import transformers
from transformers import AutoModelForCausalLM


def main():
    args = json.loads(sys.argv[1])
    torch.set_num_threads(args["threads"])
    model = AutoModelForCausalLM.from_pretrained(args["model"], dtype=getattr(torch, args["dtype"]), attn_implementation="sdpa")
    model.eval()
    # No stopping at end-of-sequence: the same number of steps as uorch.
    model.generation_config.eos_token_id = None
    pad = model.config.pad_token_id if model.config.pad_token_id is not None else 0

    def greedy(ids, n):
        x = torch.tensor([ids])
        out = model.generate(
            x, attention_mask=torch.ones_like(x), max_new_tokens=n, do_sample=False, pad_token_id=pad
        )
        return out[0, len(ids):].tolist()

    prompts, n = args["prompts"], args["new_tokens"]
    greedy(prompts[0], 4)  # warm-up, as uorch's side
    t = time.perf_counter()
    tokens = [greedy(p, n) for p in prompts]
    seconds = time.perf_counter() - t
    print(json.dumps({"tokens": tokens, "seconds": seconds, "transformers": transformers.__version__}))


if __name__ == "__main__":
    main()
