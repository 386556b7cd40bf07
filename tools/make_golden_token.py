#!/usr/bin/env python3
"""Golden values for token classification's metrics: seqeval 1.2.2 (default mode, the metrics
transformers' run_ner.py reports) on gold tags from tests/data/token/dev.conll (IOB1 as published),
its IOB2 conversion and an IOBES conversion, each against predictions made by corrupting the gold
tags with a seeded generator (a tag replaced by a random tag of the set with probability 0.15,
so IOB1's I- after O, IOB2's I- after O and broken IOBES chunks all occur).

Writes tests/golden/token.json: per case, the gold and predicted sentences and seqeval's
precision, recall, f1 (micro), accuracy and per-type precision/recall/f1/support.
Run from the repository root after tools/make_token_fixtures.py:
  python3 -m venv /tmp/ref && /tmp/ref/bin/pip install seqeval numpy scikit-learn
  /tmp/ref/bin/python tools/make_golden_token.py
"""
import json
import random

from seqeval.metrics import accuracy_score, classification_report, f1_score
from seqeval.metrics import precision_score, recall_score


def read(path):
    out, cur = [], []
    for line in open(path, encoding="utf-8"):
        f = line.split()
        if not f or f[0] == "-DOCSTART-":
            if cur:
                out.append(cur)
                cur = []
            continue
        cur.append(f[-1])
    if cur:
        out.append(cur)
    return out


def iob2(tags):
    out, prev = [], "O"
    for t in tags:
        out.append("B-" + t[2:] if t.startswith("I-") and (prev == "O" or prev[2:] != t[2:]) else t)
        prev = t
    return out


def iobes(tags):
    t2 = iob2(tags)
    out = []
    for i, t in enumerate(t2):
        nxt = t2[i + 1] if i + 1 < len(t2) else "O"
        cont = nxt.startswith("I-") and nxt[2:] == t[2:]
        if t.startswith("B-"):
            out.append(t if cont else "S-" + t[2:])
        elif t.startswith("I-"):
            out.append(t if cont else "E-" + t[2:])
        else:
            out.append(t)
    return out


def corrupt(sents, rng):
    names = sorted({t for s in sents for t in s})
    return [[rng.choice(names) if rng.random() < 0.15 else t for t in s] for s in sents]


def case(name, scheme, gold, rng):
    pred = corrupt(gold, rng)
    rep = classification_report(gold, pred, output_dict=True, zero_division=0)
    per_type = {k: {m: float(v[m]) for m in ("precision", "recall", "f1-score", "support")}
                for k, v in rep.items() if k not in ("micro avg", "macro avg", "weighted avg")}
    return {
        "name": name, "scheme": scheme, "gold": gold, "pred": pred,
        "precision": float(precision_score(gold, pred, zero_division=0)),
        "recall": float(recall_score(gold, pred, zero_division=0)),
        "f1": float(f1_score(gold, pred, zero_division=0)),
        "accuracy": float(accuracy_score(gold, pred)),
        "per_type": per_type,
    }


def main():
    rng = random.Random(2026)
    dev = read("tests/data/token/dev.conll")
    cases = [
        case("iob1", "iob1", dev, rng),
        case("iob2", "iob2", [iob2(s) for s in dev], rng),
        case("iobes", "iobes", [iobes(s) for s in dev], rng),
    ]
    with open("tests/golden/token.json", "w") as f:
        json.dump({"source": "seqeval 1.2.2 default mode; tools/make_golden_token.py",
                   "cases": cases}, f)


if __name__ == "__main__":
    main()
