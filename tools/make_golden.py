#!/usr/bin/env python3
"""Regenerates the golden files under tests/golden/ with PyTorch + transformers + PEFT.

Run in a throwaway virtualenv (not needed by CI):

    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install torch transformers peft safetensors
    /tmp/ref/bin/python tools/make_golden.py [--model ../shared/models/all-MiniLM-L6-v2]

Outputs (small, committed):
- tests/golden/minilm_hidden.safetensors: input_ids / token_type_ids / attention_mask and
  BertModel's last_hidden_state for the sentences in tests/golden/sentences.json (padded batch),
  plus the same for the pairs in that file.
- tests/golden/layers.safetensors: a LoRA layer and a DoRA layer (PEFT, random non-zero B,
  dropout 0): inputs, outputs, the gradients of lora_A, lora_B, lora_magnitude_vector under
  loss = sum(out * g), and PEFT's merged weights.
- tests/golden/peft_adapter/: a DoRA adapter made by PEFT on MiniLM (random non-zero B), and
  tests/golden/peft_adapter_hidden.safetensors: PEFT's last_hidden_state with it.
"""
import argparse
import json
import os

import torch
from safetensors.torch import save_file
from transformers import AutoTokenizer, BertModel
from peft import LoraConfig, get_peft_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLD = os.path.join(ROOT, "tests", "golden")

SENTENCES = [
    "The Rock is destined to be the 21st Century's new Conan.",
    "",
    "Café crème brûlée, naïve façade — 東京 and Zürich!",
    "a",
    "It's a lovely film with lovely performances by Buy and Accorsi.",
]
PAIRS = [
    ["What is the best way to learn Rust?", "How do I learn Rust quickly?"],
    ["A man is playing a guitar.", "A woman is slicing an onion."],
]


def hidden(model, tok, texts, pairs=False):
    if pairs:
        enc = tok([p[0] for p in texts], [p[1] for p in texts], padding=True, return_tensors="pt")
    else:
        enc = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(**enc).last_hidden_state
    return enc, out


def layer_case(prefix, use_dora, seed):
    torch.manual_seed(seed)
    d_in, d_out, r = 24, 16, 4

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.dense = torch.nn.Linear(d_in, d_out)

        def forward(self, x):
            return self.dense(x)

    m = M()
    cfg = LoraConfig(r=r, lora_alpha=8, lora_dropout=0.0, target_modules=["dense"], use_dora=use_dora)
    pm = get_peft_model(m, cfg)
    layer = pm.base_model.model.dense
    with torch.no_grad():
        layer.lora_B["default"].weight.copy_(torch.randn(d_out, r) * 0.3)
        if use_dora:
            # re-initialise the magnitude from the new B, then perturb it so the test is not trivial
            layer.lora_magnitude_vector["default"].weight.mul_(1.0 + 0.1 * torch.randn(d_out))
    pm.train()
    x = torch.randn(2, 3, d_in)
    g = torch.randn(2, 3, d_out)
    out = pm(x)
    (out * g).sum().backward()
    t = {
        f"{prefix}.W": layer.base_layer.weight.detach().clone(),
        f"{prefix}.b": layer.base_layer.bias.detach().clone(),
        f"{prefix}.A": layer.lora_A["default"].weight.detach().clone(),
        f"{prefix}.B": layer.lora_B["default"].weight.detach().clone(),
        f"{prefix}.x": x,
        f"{prefix}.g": g,
        f"{prefix}.out": out.detach().clone(),
        f"{prefix}.grad_A": layer.lora_A["default"].weight.grad.clone(),
        f"{prefix}.grad_B": layer.lora_B["default"].weight.grad.clone(),
        f"{prefix}.scaling": torch.tensor([layer.scaling["default"]]),
    }
    if use_dora:
        mag = layer.lora_magnitude_vector["default"].weight
        t[f"{prefix}.m"] = mag.detach().clone()
        t[f"{prefix}.grad_m"] = mag.grad.clone()
    merged = pm.merge_and_unload()
    t[f"{prefix}.merged_W"] = merged.dense.weight.detach().clone()
    return t


def gelu_case():
    """nn.GELU() (exact erf form) and its gradient for an upstream gradient g, on 4096 inputs
    spanning [-12, 12] (both tails, where tanh-based backwards fail) plus exact zeros."""
    torch.manual_seed(7)
    x = torch.cat([torch.linspace(-12.0, 12.0, 2048), torch.randn(2046) * 3.0, torch.zeros(2)])
    x = x.reshape(4, 1024).requires_grad_(True)
    g = torch.randn(4, 1024)
    y = torch.nn.GELU()(x)
    (dx,) = torch.autograd.grad(y, x, g)
    save_file(
        {"x": x.detach().contiguous(), "g": g, "y": y.detach().contiguous(), "dx": dx.contiguous()},
        os.path.join(GOLD, "gelu.safetensors"),
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(ROOT, "..", "shared", "models", "all-MiniLM-L6-v2"))
    ap.add_argument("--only", choices=["gelu"], help="write just one golden file")
    args = ap.parse_args()
    os.makedirs(GOLD, exist_ok=True)
    torch.set_grad_enabled(True)
    gelu_case()
    if args.only:
        return

    tok = AutoTokenizer.from_pretrained(args.model)
    model = BertModel.from_pretrained(args.model).eval()
    with open(os.path.join(GOLD, "sentences.json"), "w") as f:
        json.dump({"sentences": SENTENCES, "pairs": PAIRS}, f, ensure_ascii=False, indent=1)
    enc, out = hidden(model, tok, SENTENCES)
    penc, pout = hidden(model, tok, PAIRS, pairs=True)
    save_file(
        {
            "input_ids": enc["input_ids"].to(torch.int64),
            "token_type_ids": enc["token_type_ids"].to(torch.int64),
            "attention_mask": enc["attention_mask"].to(torch.int64),
            "last_hidden_state": out.contiguous(),
            "pair_input_ids": penc["input_ids"].to(torch.int64),
            "pair_token_type_ids": penc["token_type_ids"].to(torch.int64),
            "pair_attention_mask": penc["attention_mask"].to(torch.int64),
            "pair_last_hidden_state": pout.contiguous(),
        },
        os.path.join(GOLD, "minilm_hidden.safetensors"),
    )

    t = {}
    t.update(layer_case("lora", False, 1))
    t.update(layer_case("dora", True, 2))
    save_file({k: v.contiguous().float() for k, v in t.items()}, os.path.join(GOLD, "layers.safetensors"))

    # A PEFT-made DoRA adapter on MiniLM with non-zero B.
    torch.manual_seed(3)
    base = BertModel.from_pretrained(args.model).eval()
    cfg = LoraConfig(r=2, lora_alpha=4, target_modules=["query", "value", "output.dense"], use_dora=True)
    pm = get_peft_model(base, cfg)
    with torch.no_grad():
        for name, p in pm.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn_like(p) * 0.05)
            if "lora_magnitude_vector" in name:
                p.mul_(1.0 + 0.05 * torch.randn_like(p))
    pm.eval()
    pm.save_pretrained(os.path.join(GOLD, "peft_adapter"))
    os.remove(os.path.join(GOLD, "peft_adapter", "README.md"))  # PEFT's model-card boilerplate
    enc = tok(SENTENCES[:1] + SENTENCES[2:3], padding=True, return_tensors="pt")
    with torch.no_grad():
        out = pm(**enc).last_hidden_state
    save_file(
        {
            "input_ids": enc["input_ids"].to(torch.int64),
            "token_type_ids": enc["token_type_ids"].to(torch.int64),
            "attention_mask": enc["attention_mask"].to(torch.int64),
            "last_hidden_state": out.contiguous(),
        },
        os.path.join(GOLD, "peft_adapter_hidden.safetensors"),
    )
    print("golden files written to", GOLD)


if __name__ == "__main__":
    main()
