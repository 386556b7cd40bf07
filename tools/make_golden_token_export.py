#!/usr/bin/env python3
"""Writes tests/golden/token_export/: a lorabert token-classification checkpoint (MiniLM, LoRA
r=2 on all linear layers, 150 steps on CoNLL-2003's eng.train, so that it finds entities), and
expected.json: what transformers and PEFT compute from the folders `lorabert export` writes
for it:

  - pipeline("token-classification", aggregation_strategy="first") on SENTENCES over the
    `--format transformers` export (AutoModelForTokenClassification): each entity's
    entity_group, score, start and end;
  - the first word piece's tag probabilities of every word of WORDS (is_split_into_words=True)
    from the transformers export and from the `--format peft` export
    (AutoPeftModelForTokenClassification), which agree within 1e-5.

tests/token.rs runs `lorabert predict` on the checkpoint and asserts (1e-4) that its entities
and word probabilities equal these, and re-exports it to check the folders' layout.

    cargo build --release
    /tmp/ref/bin/pip install numpy torch transformers peft safetensors
    CARGO_TARGET_DIR=... /tmp/ref/bin/python tools/make_golden_token_export.py
"""
import json
import os
import shutil
import subprocess
import tempfile

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "golden", "token_export")
MODEL = os.path.join(ROOT, "..", "shared", "models", "all-MiniLM-L6-v2")
NER = os.path.join(ROOT, "..", "shared", "data", "ner", "conll2003")
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
BIN = os.environ.get("LORABERT_BIN", os.path.join(TARGET, "release", "lorabert"))

SENTENCES = [
    "Angela Merkel visited Paris on Tuesday.",
    "Shares of Microsoft rose 3 percent in New York.",
    "EU rejects German call to boycott British lamb.",
    "Nothing to see here.",
]
WORDS = [
    ["Peter", "Blackburn", "met", "officials", "of", "the", "European", "Commission", "."],
    ["Germany", "'s", "representative", "to", "the", "European", "Union", "'s", "veterinary",
     "committee", "Werner", "Zwingmann", "said", "on", "Wednesday", "."],
]


def run(*args):
    subprocess.run([BIN, *args], check=True)


def first_piece_probs(model, tok, words):
    enc = tok(words, is_split_into_words=True, return_tensors="pt")
    with torch.no_grad():
        probs = torch.softmax(model(**enc).logits[0], -1)
    out, prev = [], None
    for i, w in enumerate(enc.word_ids(0)):
        if w is not None and w != prev:
            out.append(probs[i].tolist())
        prev = w
    return out


def main():
    from peft import AutoPeftModelForTokenClassification
    from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline

    tmp = tempfile.mkdtemp()
    run("train", "--model", MODEL, "--train-file", os.path.join(NER, "eng.train"), "--format",
        "conll", "--validation-file", os.path.join(ROOT, "tests", "data", "token", "dev.conll"),
        "--r", "2", "--lora-alpha", "8", "--lr", "2e-3", "--max-steps", "150", "--epochs", "1",
        "--seed", "3", "--out", os.path.join(tmp, "run"))
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    shutil.copytree(os.path.join(tmp, "run", "best"), os.path.join(OUT, "ckpt"))
    ckpt = os.path.join(OUT, "ckpt")
    tf, pf = os.path.join(tmp, "tf"), os.path.join(tmp, "peft")
    run("export", "--model", MODEL, "--checkpoint", ckpt, "--format", "transformers",
        "--output", tf)
    run("export", "--model", MODEL, "--checkpoint", ckpt, "--format", "peft", "--output", pf)
    tok = AutoTokenizer.from_pretrained(tf)
    model = AutoModelForTokenClassification.from_pretrained(tf).eval()
    ner = pipeline("token-classification", model=model, tokenizer=tok,
                   aggregation_strategy="first")
    entities = [[{"entity_group": e["entity_group"], "score": float(e["score"]),
                  "start": int(e["start"]), "end": int(e["end"])} for e in ner(s)]
                for s in SENTENCES]
    # The base config has no tags: PEFT is told them (the export prints this call).
    peft = AutoPeftModelForTokenClassification.from_pretrained(
        pf, num_labels=model.config.num_labels, id2label=model.config.id2label).eval()
    probs, peft_probs = [], []
    for w in WORDS:
        probs.append(first_piece_probs(model, tok, w))
        peft_probs.append(first_piece_probs(peft, tok, w))
    diff = max(abs(a - b) for s, t in zip(probs, peft_probs) for x, y in zip(s, t)
               for a, b in zip(x, y))
    assert diff < 1e-5, f"transformers and PEFT exports differ by {diff}"
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump({"sentences": SENTENCES, "entities": entities, "words": WORDS,
                   "probs": probs, "id2label": model.config.id2label,
                   "peft_vs_transformers_max_abs_diff": diff}, f, indent=1)
    shutil.rmtree(tmp)
    print(json.dumps(entities, indent=1))


if __name__ == "__main__":
    main()
