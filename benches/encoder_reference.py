"""The uorch user encoder's pretraining step in plain PyTorch, the reference
`uorch bench pretrain` compares against: the encoder of
benches/userllm_reference.py (per-feature embeddings concatenated and
projected, learned positions, pre-norm causal Transformer with SDPA, one
next-interaction head per feature), AdamW, gradient clipping.

    python benches/encoder_reference.py '{"features": [["item", 1349], ["category", 20], ["rating", 5]],
        "dim": 64, "layers": 2, "heads": 4, "ffn_mult": 4, "window": 50, "dropout": 0.1, "batch": 64,
        "steps": 60, "warmup": 10, "device": "cpu", "threads": 2}'

prints the training throughput in sequences per second (steps after warm-up).
"""
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from userllm_reference import Encoder  # noqa: E402


def main():
    a = json.loads(sys.argv[1])
    torch.set_num_threads(a.get("threads", torch.get_num_threads()))
    dev = a["device"]
    torch.manual_seed(0)
    features = [(f, v) for f, v in a["features"]]
    model = Encoder(features, a["dim"], a["layers"], a["heads"], a["ffn_mult"], a["window"], a["dropout"]).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    ids = [torch.randint(1, v + 1, (a["batch"], a["window"] + 1), device=dev) for _, v in features]
    inputs = [x[:, :-1] for x in ids]
    targets = [x[:, 1:] - 1 for x in ids]

    def step():
        h = model(inputs)
        loss = sum(F.cross_entropy(head(h).reshape(-1, v), t.reshape(-1), reduction="sum")
                   for head, (_, v), t in zip(model.head.values(), features, targets)) / targets[0].numel()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    for _ in range(a["warmup"]):
        step()
    if dev.startswith("cuda"):
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(a["steps"]):
        step()
    if dev.startswith("cuda"):
        torch.cuda.synchronize()
    print(a["steps"] * a["batch"] / (time.perf_counter() - t))


main()
