"""The finetuning step of `uorch bench finetune` in Hugging Face transformers
+ PEFT: `LlamaForCausalLM` loaded with `from_pretrained`, PEFT's LoRA for the
LoRA strategy, and USER-LLM's encoder, Perceiver, projection and gated
cross-attention in plain PyTorch (benches/userllm_reference.py), trained
with torch's fused AdamW and gradient clipping, as an HF user would write it.

uorch writes what makes the two runs the same: its initial weights of the
parts it adds (init.safetensors: encoder, Perceiver, projection,
cross-attention, LoRA) and every step's batch (batches.safetensors: token ids,
the positions and ids of the answer tokens, the history's feature ids). The
LLM's weights come from the model folder. Invoked by `uorch bench finetune
--reference-python P` as

    python benches/finetune_reference.py '{"dir": ..., "model": ..., "strategy": "lora", ...}'

and prints one JSON line: the loss of every step (the warm-up's first) and
the seconds the timed steps took.
"""
import json
import os
import sys
import time

import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from userllm_reference import UserSide, load_named  # noqa: E402


def peft_lora_names(model):
    """PEFT's LoRA parameter name → uorch's
    (`base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight`
    → `lora.model.layers.0.self_attn.q_proj.lora_A`)."""
    out = {}
    for name, _ in model.named_parameters():
        if ".lora_A." in name or ".lora_B." in name:
            base = name.removeprefix("base_model.model.").removesuffix(".default.weight")
            out[name] = "lora." + base
    return out


def main():
    a = json.loads(sys.argv[1])
    torch.set_num_threads(a["threads"])
    from transformers import LlamaForCausalLM

    llm = LlamaForCausalLM.from_pretrained(a["model"], dtype=torch.float32, attn_implementation="sdpa")
    init = load_file(os.path.join(a["dir"], "init.safetensors"))
    strategy = a["strategy"]
    if strategy == "lora":
        from peft import LoraConfig, get_peft_model

        lo = a["lora"]
        llm = get_peft_model(
            llm,
            LoraConfig(r=lo["rank"], lora_alpha=lo["alpha"], lora_dropout=lo["dropout"],
                       target_modules=lo["target_modules"], bias="none"),
        )
        names = peft_lora_names(llm)
        params = dict(llm.named_parameters())
        with torch.no_grad():
            for peft_name, ours in names.items():
                params[peft_name].copy_(init[ours])
        if len(names) != sum(1 for n in init if n.startswith("lora.")):
            raise SystemExit(f"PEFT made {len(names)} LoRA tensors, uorch {sum(1 for n in init if n.startswith('lora.'))}")
        layers = llm.base_model.model.model.layers
    else:
        layers = llm.model.layers
    c = llm.config
    side = UserSide(a["features"], a["encoder"], a["perceiver"], a["projection"], c.hidden_size,
                    a["xattn_layers"], c.num_attention_heads, c.rms_norm_eps)
    # The pretraining heads are not part of finetuning; LoRA was loaded above.
    load_named(side, init, lambda n: n.startswith("encoder.head.") or n.startswith("lora."))
    side.attach(layers)

    # What trains (uorch's Part::trains): the LLM with Full, the adapters
    # with LoRA (PEFT froze the rest), the encoder except with Proj, the
    # Perceiver, projection and cross-attention always.
    for p in llm.parameters():
        p.requires_grad_(strategy == "full" or (strategy == "lora" and p.requires_grad))
    for name, p in side.named_parameters():
        p.requires_grad_(not name.startswith("encoder.head.") and not (strategy == "proj" and name.startswith("encoder.")))
    trainable = [p for p in list(llm.parameters()) + list(side.parameters()) if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=a["lr"], betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, fused=True)
    llm.train()
    side.train()

    # uorch's safetensors are f32; ids and positions are exact in it (< 2^24).
    batches = {n: t.long() for n, t in load_file(os.path.join(a["dir"], "batches.safetensors")).items()}
    n_features = len(a["features"])

    def step(i):
        tokens = batches[f"{i}.tokens"]
        # Labels as HF wants them: -100 but where an answer token is
        # predicted (HF shifts them by one itself).
        labels = torch.full_like(tokens, -100)
        labels.view(-1)[batches[f"{i}.answer_at"] + 1] = batches[f"{i}.answers"]
        side.set_user([batches[f"{i}.feature{j}"] for j in range(n_features)])
        loss = llm(input_ids=tokens, labels=labels, use_cache=False).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, a["max_norm"])
        opt.step()
        return loss.item()

    steps = a["steps"]
    losses = [step(0)]  # warm-up
    t = time.perf_counter()
    for i in range(1, steps + 1):
        losses.append(step(i))
    print(json.dumps({"losses": losses, "seconds": time.perf_counter() - t}))


main()
