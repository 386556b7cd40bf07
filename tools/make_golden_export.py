#!/usr/bin/env python3
"""Writes tests/golden/export/: three small lorabert checkpoints trained on all-MiniLM-L6-v2, and
expected.json: what transformers, PEFT and sentence-transformers compute from the folders
`lorabert export` writes for them. tests/cli.rs exports the same checkpoints again and asserts
(1e-4) that lorabert's predictions equal these, and that the new export, run by lorabert's own
forward, gives them too.

Checkpoints (a few steps each at a high learning rate, so every lora_B is non-zero):
  ckpt-multi  SST + paraphrase + STS, LoRA r=2, --pooling pooler --pair-encoding cross
  ckpt-own    own CSV with three string labels, DoRA r=2, --pooling pooler
  ckpt-mean   the same CSV, LoRA r=2, mean pooling (sentence-transformers)

    cargo build && /tmp/ref/bin/python tools/make_golden_export.py
The sentence-transformers case (ckpt-mean-st) is rewritten, with the norms and module list, by
tools/make_golden_st_export.py since the export carries the base's Normalize module.
(a throwaway virtualenv with torch 2.15, transformers 5.24, peft 0.21.2,
sentence-transformers 6.2.0; the minBERT data and the model from ../shared).
"""
import csv as csv_module
import json
import os
import shutil
import subprocess
import tempfile

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "golden", "export")
MODEL = os.path.join(ROOT, "..", "shared", "models", "all-MiniLM-L6-v2")
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
BIN = os.environ.get("LORABERT_BIN", os.path.join(TARGET, "debug", "lorabert"))

SENTENCES = [
    "A gripping, funny and moving film.",
    "Dull, lifeless and far too long.",
    "It was fine, I suppose.",
]
PAIRS = [
    ["How do I learn Rust quickly?", "What is the fastest way to learn Rust?"],
    ["A man is playing a guitar.", "A woman is slicing an onion."],
]
OWN_ROWS = [
    ("great acting and a clever plot", "pos"), ("a wonderful, warm story", "pos"),
    ("I loved every minute of it", "pos"), ("beautifully shot and well told", "pos"),
    ("boring and far too long", "neg"), ("the worst film this year", "neg"),
    ("a tedious, empty mess", "neg"), ("I want those two hours back", "neg"),
    ("it is a film about a family", "neu"), ("the movie opens in March", "neu"),
    ("it runs about two hours", "neu"), ("the cast includes two actors", "neu"),
]


def lorabert(*args):
    print("+ lorabert", " ".join(args), flush=True)
    subprocess.run([BIN, *args], check=True)


def train(name, extra, tmp):
    run = os.path.join(tmp, name)
    lorabert("train", "--model", MODEL, "--out", run, "--r", "2", "--lr", "5e-3", "--epochs", "1",
             "--batch-size", "8", "--max-len", "32", "--max-steps", "6", "--max-eval", "16",
             "--threads", "2", *extra)
    dst = os.path.join(OUT, name)
    shutil.copytree(os.path.join(run, "best"), dst)
    return dst


def export(ckpt, fmt, out, task=None):
    args = ["export", "--model", MODEL, "--checkpoint", ckpt, "--format", fmt, "--output", out]
    if task:
        args += ["--task", task]
    lorabert(*args)
    return out


def seq_cls_outputs(model, tok, texts, pairs):
    model.eval()
    with torch.no_grad():
        if pairs:
            enc = tok([p[0] for p in texts], [p[1] for p in texts], padding=True, return_tensors="pt")
        else:
            enc = tok(texts, padding=True, return_tensors="pt")
        logits = model(**enc).logits
    if model.config.problem_type == "regression":
        return logits[:, 0].tolist()
    return torch.softmax(logits, -1).tolist()


def main():
    from peft import AutoPeftModelForSequenceClassification
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    tmp = tempfile.mkdtemp()
    csv = os.path.join(tmp, "own.csv")
    with open(csv, "w", newline="") as f:
        w = csv_module.writer(f)
        w.writerow(["text", "label"])
        w.writerows(OWN_ROWS)
    multi = train("ckpt-multi", ["--task", "multi", "--max-train", "48", "--pooling", "pooler",
                                 "--pair-encoding", "cross"], tmp)
    own = train("ckpt-own", ["--train-file", csv, "--validation-split", "0.25", "--adapter", "dora",
                             "--pooling", "pooler"], tmp)
    mean = train("ckpt-mean", ["--train-file", csv, "--validation-split", "0.25"], tmp)

    cases = {}
    for ckpt, task in [(multi, "sst"), (multi, "para"), (multi, "sts"), (own, None)]:
        pairs = task in ("para", "sts")
        texts = PAIRS if pairs else SENTENCES
        name = f"{os.path.basename(ckpt)}-{task or 'own'}"
        d = export(ckpt, "transformers", os.path.join(tmp, name + "-tf"), task)
        cfg = json.load(open(os.path.join(d, "config.json")))
        m = AutoModelForSequenceClassification.from_pretrained(d)
        tok = AutoTokenizer.from_pretrained(d)
        tf = seq_cls_outputs(m, tok, texts, pairs)
        d = export(ckpt, "peft", os.path.join(tmp, name + "-peft"), task)
        kw = {"num_labels": cfg["num_labels"],
              "id2label": {int(k): v for k, v in cfg["id2label"].items()}}
        if cfg["problem_type"] == "regression":
            kw["problem_type"] = "regression"
        pm = AutoPeftModelForSequenceClassification.from_pretrained(d, **kw)
        pf = seq_cls_outputs(pm, tok, texts, pairs)
        diff = float(np.abs(np.array(tf) - np.array(pf)).max())
        print(f"{name}: transformers vs PEFT export max |diff| {diff:.2e}")
        cases[name] = {
            "checkpoint": os.path.basename(ckpt), "task": task, "pairs": pairs,
            "config": {k: cfg[k] for k in ["architectures", "id2label", "label2id", "num_labels",
                                           "problem_type"]},
            "transformers": tf, "peft": pf,
        }
    d = export(mean, "sentence-transformers", os.path.join(tmp, "mean-st"))
    st = SentenceTransformer(d, device="cpu")
    emb = st.encode(SENTENCES, convert_to_numpy=True, normalize_embeddings=False)
    cases["ckpt-mean-st"] = {"checkpoint": "ckpt-mean", "sentence_transformers": emb.tolist()}
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump({"sentences": SENTENCES, "pairs": PAIRS, "cases": cases}, f, indent=1)
    shutil.rmtree(tmp)
    for n in sorted(os.listdir(OUT)):
        p = os.path.join(OUT, n)
        size = sum(os.path.getsize(os.path.join(p, x)) for x in os.listdir(p)) if os.path.isdir(p) else os.path.getsize(p)
        print(n, size)


if __name__ == "__main__":
    main()
