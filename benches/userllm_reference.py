"""USER-LLM's own parts written in plain PyTorch, for the benchmark
references: the user encoder, the Perceiver resampler, the projection and
the gated cross-attention block, attached to a Hugging Face Llama.

Modules and parameters carry uorch's names (`encoder.blocks.0.qkv.weight`,
`perceiver.layers.1.kv.bias`, `projection.0.weight`, `xattn.3.alpha`), so a
state dict that uorch wrote loads by name; the Hugging Face model keeps its
own names.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class EncoderBlock(nn.Module):
    """Pre-norm causal self-attention (SDPA) and GELU feed-forward, residual."""

    def __init__(self, d, heads, ffn_mult, dropout):
        super().__init__()
        self.n_heads, self.dropout = heads, dropout
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.ff1, self.ff2 = nn.Linear(d, ffn_mult * d), nn.Linear(ffn_mult * d, d)

    def forward(self, h, mask):
        b, t, d = h.shape
        q, k, v = self.qkv(self.norm1(h)).view(b, t, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        p = self.dropout if self.training else 0.0
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        h = h + F.dropout(self.out(a.transpose(1, 2).reshape(b, t, d)), p, self.training)
        return h + F.dropout(self.ff2(F.gelu(self.ff1(self.norm2(h)))), p, self.training)


class Encoder(nn.Module):
    """Per-feature embeddings (id 0 = padding) concatenated and projected,
    learned positions, causal pre-norm Transformer, final LayerNorm; one
    next-interaction head per feature for pretraining.

    `features`: [(name, vocab)] in uorch's order (item, category, rating)."""

    def __init__(self, features, d, layers, heads, ffn_mult, max_len, dropout):
        super().__init__()
        self.dropout = dropout
        self.embed = nn.ModuleDict({f: nn.Embedding(v + 1, d, padding_idx=0) for f, v in features})
        self.project = nn.Linear(d * len(features), d)
        self.positions = nn.Embedding(max_len, d)
        self.blocks = nn.ModuleList(EncoderBlock(d, heads, ffn_mult, dropout) for _ in range(layers))
        self.final_norm = nn.LayerNorm(d)
        self.head = nn.ModuleDict({f: nn.Linear(d, v) for f, v in features})

    def forward(self, ids):
        """`ids`: one (batch, seq) tensor per feature → (batch, seq, d)."""
        b, t = ids[0].shape
        feats = torch.cat([e(x) for e, x in zip(self.embed.values(), ids)], -1)
        h = self.project(feats) + self.positions(torch.arange(t, device=ids[0].device))
        h = F.dropout(h, self.dropout, self.training)
        causal = torch.ones(t, t, dtype=torch.bool, device=h.device).tril()
        mask = (causal.unsqueeze(0) & (ids[0] != 0).unsqueeze(1)).unsqueeze(1)
        # A fully padded query row would have no key: it sees itself.
        mask = mask | torch.eye(t, dtype=torch.bool, device=h.device)
        for blk in self.blocks:
            h = blk(h, mask)
        return self.final_norm(h)


class PerceiverLayer(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.norm_latents, self.norm_inputs, self.norm_ff = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.q, self.kv, self.o = nn.Linear(d, d), nn.Linear(d, 2 * d), nn.Linear(d, d)
        self.ff1, self.ff2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)


class Perceiver(nn.Module):
    """K learned latents cross-attend to the history (and, with
    `with_latents`, to themselves too), each layer attention then
    feed-forward, pre-norm and residual; a final LayerNorm."""

    def __init__(self, d, latents, layers, heads, with_latents):
        super().__init__()
        self.latents = nn.Parameter(torch.randn(latents, d) * 0.02)
        self.layers = nn.ModuleList(PerceiverLayer(d) for _ in range(layers))
        self.final_norm = nn.LayerNorm(d)
        self.n_heads, self.with_latents = heads, with_latents

    def forward(self, x, mask):
        b, n, d = x.shape
        k, hd = self.latents.shape[0], d // self.n_heads
        lat = self.latents.unsqueeze(0).expand(b, k, d)
        if self.with_latents:
            mask = torch.cat([mask, torch.ones(b, k, dtype=torch.bool, device=mask.device)], 1)
        m = mask.view(b, 1, 1, -1)
        for l in self.layers:
            lat_in = l.norm_latents(lat)
            q = l.q(lat_in).view(b, k, self.n_heads, hd).transpose(1, 2)
            src = l.norm_inputs(x)
            if self.with_latents:
                src = torch.cat([src, lat_in], 1)
            kv = l.kv(src).view(b, src.shape[1], 2, self.n_heads, hd).permute(2, 0, 3, 1, 4)
            a = F.scaled_dot_product_attention(q, kv[0], kv[1], attn_mask=m)
            lat = lat + l.o(a.transpose(1, 2).reshape(b, k, d))
            lat = lat + l.ff2(F.gelu(l.ff1(l.norm_ff(lat))))
        return self.final_norm(lat)


class GatedCrossAttention(nn.Module):
    """Queries from RMSNorm(h), keys and values from the user embeddings;
    returns the gated update tanh(alpha) · o(attention), which the decoder
    layer adds to h between self-attention and its MLP."""

    def __init__(self, hidden, heads, eps):
        super().__init__()
        from transformers.models.llama.modeling_llama import LlamaRMSNorm

        self.norm = LlamaRMSNorm(hidden, eps=eps)
        self.q_proj, self.k_proj, self.v_proj, self.o_proj = (nn.Linear(hidden, hidden, bias=False) for _ in range(4))
        self.alpha = nn.Parameter(torch.zeros(1))
        self.n_heads = heads

    def forward(self, h, user, mask):
        b, t, d = h.shape
        k_len, hd = user.shape[1], d // self.n_heads
        split = lambda x, n: x.view(b, n, self.n_heads, hd).transpose(1, 2)
        q = split(self.q_proj(self.norm(h)), t)
        k, v = split(self.k_proj(user), k_len), split(self.v_proj(user), k_len)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.view(b, 1, 1, k_len))
        return self.o_proj(a.transpose(1, 2).reshape(b, t, d)) * torch.tanh(self.alpha)


class UserSide(nn.Module):
    """Encoder → optional Perceiver → projection, and the cross-attention
    blocks by decoder layer. `user` holds the current batch's projected user
    embeddings and mask, which the blocks read during the LLM's forward."""

    def __init__(self, features, enc, perceiver, projection, hidden, xattn_layers, heads, eps):
        super().__init__()
        d = enc["dim"]
        self.encoder = Encoder(features, d, enc["layers"], enc["heads"], enc["ffn_mult"], enc["max_len"], enc["dropout"])
        self.perceiver = None
        if perceiver:
            with_latents = perceiver.get("keys", "inputs") == "inputs_and_latents"
            self.perceiver = Perceiver(d, perceiver["latents"], perceiver["layers"], perceiver["heads"], with_latents)
        if projection == "mlp":
            self.projection = nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        else:
            self.projection = nn.Sequential(nn.Linear(d, hidden))
        self.xattn = nn.ModuleDict({str(l): GatedCrossAttention(hidden, heads, eps) for l in xattn_layers})
        self.user = None

    def set_user(self, ids):
        """Encode a batch's histories (one id tensor per feature) for the blocks."""
        h = self.encoder(ids)
        mask = ids[0] != 0
        if self.perceiver is not None:
            h = self.perceiver(h, mask)
            mask = torch.ones(h.shape[:2], dtype=torch.bool, device=h.device)
        self.user = (self.projection(h), mask)

    def attach(self, decoder_layers):
        """Put each block into its Hugging Face decoder layer, between
        self-attention and the MLP: h ← h + block(h). Hooks rather than a
        rewritten layer, so the layer's own forward (and PEFT's adapters in
        it) run unchanged: the layer's input x is kept, and the attention's
        output a becomes a + block(x + a), which the layer adds to x."""
        for idx, block in self.xattn.items():
            layer, seen = decoder_layers[int(idx)], {}

            def keep_input(_mod, args, kwargs, seen=seen):
                seen["x"] = args[0] if args else kwargs["hidden_states"]

            def add_block(_mod, _args, out, seen=seen, block=block):
                a = out[0]
                user, mask = self.user
                return (a + block(seen["x"] + a, user, mask),) + tuple(out[1:])

            layer.register_forward_pre_hook(keep_input, with_kwargs=True)
            layer.self_attn.register_forward_hook(add_block)


def load_named(module, tensors, skip=None):
    """Copy `tensors` (uorch names) into `module`'s parameters of the same
    names; every parameter must be there, and every tensor used, but the
    names `skip` says to leave alone."""
    keep = lambda n: skip is None or not skip(n)
    own = {n: p for n, p in module.named_parameters() if keep(n)}
    wanted = {n: t for n, t in tensors.items() if keep(n)}
    missing = sorted(set(own) - set(wanted))
    extra = sorted(set(wanted) - set(own))
    if missing or extra:
        raise SystemExit(f"weights do not match the model: missing {missing[:5]}, unused {extra[:5]}")
    with torch.no_grad():
        for n, p in own.items():
            if tuple(p.shape) != tuple(wanted[n].shape):
                raise SystemExit(f"{n}: shape {tuple(wanted[n].shape)} in the file, {tuple(p.shape)} in the model")
            p.copy_(wanted[n])
