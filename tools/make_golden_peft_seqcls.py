#!/usr/bin/env python3
"""Writes tests/golden/peft_seqcls/: a sequence-classification LoRA adapter made by PEFT on
all-MiniLM-L6-v2 (AutoModelForSequenceClassification, 3 labels; its classifier saved through
modules_to_save, as PEFT's SEQ_CLS task does), and expected.json: the class probabilities
transformers + PEFT give for a few sentences and a cross-encoded pair, which tests/cli.rs
compares `lorabert predict --checkpoint tests/golden/peft_seqcls --sentence ...` with (1e-5).

    /tmp/ref/bin/python tools/make_golden_peft_seqcls.py [--model ../shared/models/all-MiniLM-L6-v2]
"""
import argparse
import json
import os
import shutil

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from peft import LoraConfig, TaskType, get_peft_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "golden", "peft_seqcls")
SENTENCES = ["A gorgeous, witty, seductive movie.", "The plot is nothing but boilerplate.", "Zürich, 東京"]
PAIR = ["A man is playing a guitar.", "Someone plays the guitar."]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(ROOT, "..", "shared", "models", "all-MiniLM-L6-v2"))
    a = ap.parse_args()
    shutil.rmtree(OUT, ignore_errors=True)
    torch.manual_seed(42)
    tok = AutoTokenizer.from_pretrained(a.model)
    base = AutoModelForSequenceClassification.from_pretrained(a.model, num_labels=3).eval()
    pm = get_peft_model(base, LoraConfig(task_type=TaskType.SEQ_CLS, r=4, lora_alpha=8,
                                         target_modules=["query", "value"]))
    with torch.no_grad():
        for name, p in pm.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn_like(p) * 0.05)
            if "classifier" in name:
                p.copy_(torch.randn_like(p) * 0.3)
    pm.eval()
    pm.save_pretrained(OUT)
    readme = os.path.join(OUT, "README.md")
    if os.path.exists(readme):
        os.remove(readme)
    expected = {"sentences": SENTENCES, "pair": PAIR}
    with torch.no_grad():
        enc = tok(SENTENCES, padding=True, return_tensors="pt")
        expected["probabilities"] = torch.softmax(pm(**enc).logits, -1).tolist()
        enc = tok([PAIR[0]], [PAIR[1]], return_tensors="pt")
        expected["pair_probabilities"] = torch.softmax(pm(**enc).logits, -1).tolist()[0]
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, ensure_ascii=False, indent=1)
    print("wrote", OUT, sorted(os.listdir(OUT)))


if __name__ == "__main__":
    main()
