"""The uorch user encoder and its pretraining step written in plain PyTorch,
as the reference `uorch bench pretrain` compares against (same shapes: per
feature embeddings concatenated and projected, learned positions, pre-norm
causal Transformer with SDPA, one next-interaction head per feature, AdamW).

    python benches/encoder_reference.py '{"vocab": [1349, 20, 5], "dim": 64, "layers": 2, "heads": 4,
        "ffn_mult": 4, "window": 50, "dropout": 0.1, "batch": 64, "steps": 60, "warmup": 10, "device": "cpu", "threads": 2}'

prints the training throughput in sequences per second (steps after warm-up).
"""
import json
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, d, heads, ffn, dropout):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.ff1, self.ff2 = nn.Linear(d, ffn * d), nn.Linear(ffn * d, d)

    def forward(self, h, mask):
        b, t, d = h.shape
        q, k, v = self.qkv(self.norm1(h)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        p = self.dropout if self.training else 0.0
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        h = h + F.dropout(self.out(a.transpose(1, 2).reshape(b, t, d)), p, self.training)
        return h + F.dropout(self.ff2(F.gelu(self.ff1(self.norm2(h)))), p, self.training)


class Encoder(nn.Module):
    def __init__(self, vocab, d, layers, heads, ffn, window, dropout):
        super().__init__()
        self.dropout = dropout
        self.embed = nn.ModuleList(nn.Embedding(v + 1, d, padding_idx=0) for v in vocab)
        self.project = nn.Linear(d * len(vocab), d)
        self.positions = nn.Embedding(window, d)
        self.blocks = nn.ModuleList(Block(d, heads, ffn, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(d)
        self.heads = nn.ModuleList(nn.Linear(d, v) for v in vocab)

    def forward(self, ids):
        b, t = ids[0].shape
        h = self.project(torch.cat([e(x) for e, x in zip(self.embed, ids)], -1)) + self.positions(torch.arange(t, device=ids[0].device))
        h = F.dropout(h, self.dropout, self.training)
        causal = torch.ones(t, t, dtype=torch.bool, device=h.device).tril()
        mask = (causal.unsqueeze(0) & (ids[0] != 0).unsqueeze(1)).unsqueeze(1) | torch.eye(t, dtype=torch.bool, device=h.device)
        for blk in self.blocks:
            h = blk(h, mask)
        return self.norm(h)


def main():
    a = json.loads(sys.argv[1])
    torch.set_num_threads(a.get("threads", torch.get_num_threads()))
    dev = a["device"]
    torch.manual_seed(0)
    model = Encoder(a["vocab"], a["dim"], a["layers"], a["heads"], a["ffn_mult"], a["window"], a["dropout"]).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    ids = [torch.randint(1, v + 1, (a["batch"], a["window"] + 1), device=dev) for v in a["vocab"]]
    inputs = [x[:, :-1] for x in ids]
    targets = [x[:, 1:] - 1 for x in ids]

    def step():
        h = model(inputs)
        loss = sum(F.cross_entropy(head(h).reshape(-1, v), t.reshape(-1), reduction="sum")
                   for head, v, t in zip(model.heads, a["vocab"], targets)) / targets[0].numel()
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
