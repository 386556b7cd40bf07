#!/usr/bin/env python3
"""Writes tests/golden/peft_tokcls/: a PEFT token-classification adapter made by PEFT on
all-MiniLM-L6-v2 (BertForTokenClassification with 5 labels, LoRA r=2 on query and value with
non-zero lora_B (init_lora_weights=False), the classifier drawn at random and saved through
modules_to_save, as PEFT's TOKEN_CLS does), and expected.json: the first word piece's label
probabilities of every word of WORDS (is_split_into_words=True) computed by transformers + PEFT.
tests/token.rs loads the folder in lorabert (`predict --checkpoint tests/golden/peft_tokcls`) and
asserts (1e-5) that its tags and probabilities equal these.

    /tmp/ref/bin/pip install numpy torch transformers peft safetensors
    /tmp/ref/bin/python tools/make_golden_peft_tokcls.py
"""
import json
import os
import shutil

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "golden", "peft_tokcls")
MODEL = os.path.join(ROOT, "..", "shared", "models", "all-MiniLM-L6-v2")
WORDS = [
    ["Peter", "Blackburn", "met", "officials", "of", "the", "European", "Commission", "."],
    ["Angela", "Merkel", "visited", "Paris", "on", "Tuesday", "."],
]


def main():
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(MODEL)
    model = AutoModelForTokenClassification.from_pretrained(MODEL, num_labels=5)
    cfg = LoraConfig(task_type="TOKEN_CLS", r=2, lora_alpha=4, target_modules=["query", "value"],
                     init_lora_weights=False)
    peft = get_peft_model(model, cfg).eval()
    shutil.rmtree(OUT, ignore_errors=True)
    peft.save_pretrained(os.path.join(OUT, "adapter"))
    probs = []
    for w in WORDS:
        enc = tok(w, is_split_into_words=True, return_tensors="pt")
        with torch.no_grad():
            p = torch.softmax(peft(**enc).logits[0], -1)
        row, prev = [], None
        for i, wid in enumerate(enc.word_ids(0)):
            if wid is not None and wid != prev:
                row.append(p[i].tolist())
            prev = wid
        probs.append(row)
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump({"words": WORDS, "probs": probs,
                   "id2label": {str(i): f"LABEL_{i}" for i in range(5)}}, f, indent=1)


if __name__ == "__main__":
    main()
