#!/usr/bin/env python3
"""Writes tests/golden/peft_interop/: adapters saved by PEFT with the adapter_config.json fields
that lorabert applies, on one tiny random BERT, and the last_hidden_state PEFT computes with
each, which tests/parity.rs compares lorabert's with (1e-5).

    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install torch transformers peft safetensors
    /tmp/ref/bin/python tools/make_golden_peft_interop.py

Made with torch 2.15, transformers 5.24, peft 0.21.2. Every adapter has non-zero lora_B (and
trained biases where the case has them), so each field changes the output.
"""
import json
import os
import shutil

import torch
from safetensors.torch import save_file
from transformers import BertConfig, BertForSequenceClassification, BertModel
from peft import LoraConfig, get_peft_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "golden", "peft_interop")

CFG = dict(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
           intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.0,
           attention_probs_dropout_prob=0.0)

CASES = {
    # The minimal case: lora_A/B zero, lora_B.bias ones; then a random one.
    "lora_bias_minimal": dict(r=1, lora_alpha=1, target_modules=["value"], lora_bias=True),
    "lora_bias": dict(r=2, lora_alpha=4, target_modules=["query", "value"], lora_bias=True),
    "layers_to_transform": dict(r=2, lora_alpha=4, target_modules=["query", "value", "dense"],
                                layers_to_transform=[1], layers_pattern="layer"),
    "exclude_list": dict(r=2, lora_alpha=4, target_modules=["query", "value", "output.dense"],
                         exclude_modules=["encoder.layer.0.output.dense"]),
    "exclude_regex": dict(r=2, lora_alpha=4, target_modules=["query", "key", "value"],
                          exclude_modules=r".*layer\.1\.attention\.self\.key"),
    "bias_lora_only": dict(r=2, lora_alpha=4, target_modules=["query", "value"], bias="lora_only"),
    "bias_all": dict(r=2, lora_alpha=4, target_modules=["query", "value"], bias="all"),
    "patterns": dict(r=2, lora_alpha=4, target_modules=["query", "value", "intermediate.dense"],
                     rank_pattern={"value": 4, r"layer\.1\.attention\.self\.query": 1},
                     alpha_pattern={"intermediate.dense": 16}),
    "regex_targets": dict(r=2, lora_alpha=4, target_modules=r".*\.layer\.[01]\.(attention\.self\.(query|value)|output\.dense)"),
    "dora_layers": dict(r=2, lora_alpha=4, target_modules=["query", "value"], use_dora=True,
                        layers_to_transform=[0]),
}


def perturb(model, case):
    """Non-zero lora_B (and biases for the bias cases)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if case == "lora_bias_minimal":
                if "lora_A" in name or ("lora_B" in name and name.endswith("weight")):
                    p.zero_()
                if "lora_B" in name and name.endswith("bias"):
                    p.fill_(1.0)
                continue
            if "lora_B" in name:
                p.copy_(torch.randn_like(p) * 0.1)
            if "lora_magnitude_vector" in name:
                p.mul_(1.0 + 0.05 * torch.randn_like(p))
            # Perturb the biases the case saves: the adapted layers' (lora_only) or all (all).
            saved = (case == "bias_all" and name.endswith("bias") and "lora_" not in name) or (
                case == "bias_lora_only" and name.endswith("base_layer.bias"))
            if saved:
                p.add_(torch.randn_like(p) * 0.1)


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    torch.manual_seed(17)
    base = BertModel(BertConfig(**CFG)).eval()
    base.save_pretrained(os.path.join(OUT, "base"))
    ids = torch.tensor([[2, 17, 45, 99, 3, 0], [2, 8, 64, 3, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 0]])
    types = torch.zeros_like(ids)
    expected = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    for i, (case, kw) in enumerate(CASES.items()):
        torch.manual_seed(100 + i)
        m = BertModel.from_pretrained(os.path.join(OUT, "base")).eval()
        pm = get_peft_model(m, LoraConfig(**kw))
        perturb(pm, case)
        pm.eval()
        pm.save_pretrained(os.path.join(OUT, case))
        with torch.no_grad():
            expected[f"{case}.last_hidden_state"] = pm(input_ids=ids, attention_mask=mask,
                                                       token_type_ids=types).last_hidden_state
    # Made on BertForSequenceClassification (modules named `bert.encoder...`) without saved
    # heads: a regex with the `bert.` prefix must match as PEFT matched it.
    torch.manual_seed(300)
    sc = BertForSequenceClassification.from_pretrained(os.path.join(OUT, "base"), num_labels=2).eval()
    pm = get_peft_model(sc, LoraConfig(r=2, lora_alpha=4,
                                       target_modules=r"bert\.encoder\.layer\.\d+\.attention\.self\.(query|value)"))
    perturb(pm, "seq_cls_prefix")
    pm.eval()
    pm.save_pretrained(os.path.join(OUT, "seq_cls_prefix"))
    with torch.no_grad():
        expected["seq_cls_prefix.last_hidden_state"] = pm.base_model.model.bert(
            input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
    # Made on a BertModel without a pooler: `dense` also selects `pooler.dense` in a model with
    # one, which the file has no tensors for (PEFT leaves it without an adapter).
    torch.manual_seed(301)
    nopool = BertModel(BertConfig(**CFG), add_pooling_layer=False)
    nopool.load_state_dict(base.state_dict(), strict=False)
    pm = get_peft_model(nopool.eval(), LoraConfig(r=2, lora_alpha=4, target_modules=["dense"]))
    perturb(pm, "no_pooler")
    pm.eval()
    pm.save_pretrained(os.path.join(OUT, "no_pooler"))
    with torch.no_grad():
        expected["no_pooler.last_hidden_state"] = pm(input_ids=ids, attention_mask=mask,
                                                     token_type_ids=types).last_hidden_state
    for d in os.listdir(OUT):
        readme = os.path.join(OUT, d, "README.md")
        if os.path.exists(readme):
            os.remove(readme)  # PEFT's model-card boilerplate
    save_file({k: v.contiguous() for k, v in expected.items()}, os.path.join(OUT, "expected.safetensors"))
    print("wrote", OUT, sorted(os.listdir(OUT)))


if __name__ == "__main__":
    main()
