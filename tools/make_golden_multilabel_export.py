#!/usr/bin/env python3
"""Writes tests/golden/multilabel_export/: a small multi-label lorabert checkpoint trained on
all-MiniLM-L6-v2 (tests/data/multilabel/train.jsonl, 28 GoEmotions labels, LoRA r=2, --pooling
pooler, a few steps at a high learning rate so every lora_B is non-zero) and expected.json: the
sigmoid probabilities transformers' AutoModelForSequenceClassification (problem_type
multi_label_classification) and PEFT's AutoPeftModelForSequenceClassification compute from the
folders `lorabert export --format transformers|peft` writes for it. tests/multi_label.rs asserts
that `lorabert predict` gives these probabilities (1e-4) and that a new export says the same.

    cargo build && /tmp/ref/bin/python tools/make_golden_multilabel_export.py
(a throwaway virtualenv with torch, transformers and peft; the model from ../shared).
"""
import json
import os
import shutil
import subprocess
import tempfile

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "golden", "multilabel_export")
DATA = os.path.join(ROOT, "tests", "data", "multilabel")
MODEL = os.path.join(ROOT, "..", "shared", "models", "all-MiniLM-L6-v2")
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
BIN = os.environ.get("LORABERT_BIN", os.path.join(TARGET, "debug", "lorabert"))

SENTENCES = [
    "Thank you so much, this made my day!",
    "I can't believe they did that, I'm furious.",
    "The meeting is at noon.",
]


def lorabert(*args):
    print("+ lorabert", " ".join(args), flush=True)
    subprocess.run([BIN, *args], check=True)


def probabilities(model, tok):
    model.eval()
    with torch.no_grad():
        enc = tok(SENTENCES, padding=True, return_tensors="pt")
        return torch.sigmoid(model(**enc).logits).tolist()


def main():
    from peft import AutoPeftModelForSequenceClassification
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    tmp = tempfile.mkdtemp()
    run = os.path.join(tmp, "run")
    lorabert("train", "--model", MODEL, "--out", run, "--train-file",
             os.path.join(DATA, "train.jsonl"), "--validation-file",
             os.path.join(DATA, "dev.jsonl"), "--r", "2", "--lr", "5e-3", "--epochs", "1",
             "--batch-size", "16", "--max-len", "32", "--max-steps", "8", "--threads", "2",
             "--pooling", "pooler")
    ckpt = os.path.join(OUT, "ckpt")
    shutil.copytree(os.path.join(run, "best"), ckpt)
    tf_dir = os.path.join(tmp, "tf")
    lorabert("export", "--model", MODEL, "--checkpoint", ckpt, "--format", "transformers",
             "--output", tf_dir)
    cfg = json.load(open(os.path.join(tf_dir, "config.json")))
    m = AutoModelForSequenceClassification.from_pretrained(tf_dir)
    tok = AutoTokenizer.from_pretrained(tf_dir)
    tf = probabilities(m, tok)
    peft_dir = os.path.join(tmp, "peft")
    lorabert("export", "--model", MODEL, "--checkpoint", ckpt, "--format", "peft",
             "--output", peft_dir)
    pm = AutoPeftModelForSequenceClassification.from_pretrained(
        peft_dir, num_labels=cfg["num_labels"], problem_type="multi_label_classification",
        id2label={int(k): v for k, v in cfg["id2label"].items()})
    pf = probabilities(pm, tok)
    diff = float(np.abs(np.array(tf) - np.array(pf)).max())
    print(f"transformers vs PEFT export max |diff| {diff:.2e}")
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump({"sentences": SENTENCES,
                   "config": {k: cfg[k] for k in ["architectures", "id2label", "num_labels",
                                                  "problem_type"]},
                   "transformers": tf, "peft": pf}, f, indent=1)
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
