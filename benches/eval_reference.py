"""The closed-set evaluation of `uorch bench eval` in Hugging Face
transformers: favorite-category questions scored by the log-likelihood of
each option after the prompt, with `LlamaForCausalLM` from `from_pretrained`
and USER-LLM's encoder, projection and gated cross-attention in plain
PyTorch (benches/userllm_reference.py).

It does the work uorch does, the way an HF user who cares about speed would
write it: each batch of prompts runs once with `use_cache=True`; its
key/value cache is repeated for every option longer than one token
(`DynamicCache.batch_repeat_interleave`), and the options' tokens run from
it. uorch writes its user-side weights (init.safetensors) and the questions
(questions.safetensors: `prompts` (n, len) and `feature<j>` (n, window), the
history's ids). Invoked by `uorch bench eval --reference-python P` as

    python benches/eval_reference.py '{"dir": ..., "model": ..., "answers": [[...], ...], ...}'

and prints one JSON line: each question's option scores (mean or sum of
log-probabilities, as `scoring` says) and the seconds the timed pass took.
"""
import json
import os
import sys
import time

import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from userllm_reference import UserSide, load_named  # noqa: E402


def main():
    a = json.loads(sys.argv[1])
    torch.set_num_threads(a["threads"])
    import transformers
    from transformers import LlamaForCausalLM

    llm = LlamaForCausalLM.from_pretrained(a["model"], dtype=torch.float32, attn_implementation="sdpa").eval()
    c = llm.config
    side = UserSide(a["features"], a["encoder"], a["perceiver"], a["projection"], c.hidden_size,
                    a["xattn_layers"], c.num_attention_heads, c.rms_norm_eps).eval()
    init = load_file(os.path.join(a["dir"], "init.safetensors"))
    load_named(side, init, lambda n: n.startswith("encoder.head."))
    side.attach(llm.model.layers)

    q = {n: t.long() for n, t in load_file(os.path.join(a["dir"], "questions.safetensors")).items()}
    n_features = len(a["features"])
    answers = a["answers"]
    firsts = torch.tensor([x[0] for x in answers])
    long = [i for i, x in enumerate(answers) if len(x) > 1]
    width = max((len(answers[i]) - 1 for i in long), default=0)
    # Options but their last token (inputs) and their tokens after the first
    # (what each input predicts), padded with 0 on the right.
    ids = torch.zeros(len(long), width, dtype=torch.long)
    nxt = torch.zeros(len(long), width, dtype=torch.long)
    for r, i in enumerate(long):
        x = answers[i]
        ids[r, : len(x) - 1] = torch.tensor(x[:-1])
        nxt[r, : len(x) - 1] = torch.tensor(x[1:])
    lengths = torch.tensor([len(x) for x in answers], dtype=torch.float64)

    @torch.inference_mode()
    def scores(rows):
        b = len(rows)
        side.set_user([q[f"feature{j}"][rows] for j in range(n_features)])
        out = llm(input_ids=q["prompts"][rows], use_cache=True)
        total = out.logits[:, -1].log_softmax(-1)[:, firsts].double()  # (b, options)
        if long:
            n = len(long)
            cache = out.past_key_values
            cache.batch_repeat_interleave(n)
            user, mask = side.user
            side.user = (user.repeat_interleave(n, 0), mask.repeat_interleave(n, 0))
            lp = llm(input_ids=ids.repeat(b, 1), past_key_values=cache, use_cache=True).logits.log_softmax(-1)
            lp = lp.gather(2, nxt.repeat(b, 1).unsqueeze(-1)).squeeze(-1).view(b, n, width).double()
            for r, i in enumerate(long):
                total[:, i] += lp[:, r, : len(answers[i]) - 1].sum(-1)
        return total / lengths if a["scoring"] == "mean" else total

    n, batch = q["prompts"].shape[0], a["batch"]
    chunks = [list(range(s, min(s + batch, n))) for s in range(0, n, batch)]
    scores(chunks[0][:1])  # warm-up
    t = time.perf_counter()
    result = torch.cat([scores(rows) for rows in chunks])
    seconds = time.perf_counter() - t
    print(json.dumps({"scores": result.tolist(), "seconds": seconds, "transformers": transformers.__version__}))


main()
