#!/usr/bin/env python3
"""Writes tests/golden/multi_label.json: reference values for multi-label classification, which
tests/multi_label.rs compares lorabert with.

- metrics: scikit-learn's f1_score (micro, macro, per label; zero_division=0),
  precision_score and recall_score (micro), accuracy_score (subset accuracy) and hamming_loss
  of fixed random probabilities against fixed random gold label sets, thresholded per label
  (one case with 0.5 everywhere and a label no row has and none is predicted for, one with
  per-label thresholds, one where nothing is predicted).
- bce: torch.nn.BCEWithLogitsLoss (mean) on fixed random logits and 0/1 targets, without and
  with pos_weight.

    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install numpy scikit-learn torch
    /tmp/ref/bin/python tools/make_golden_multilabel.py
"""
import json
import os

import numpy as np
import sklearn
import torch
from sklearn.metrics import accuracy_score, f1_score, hamming_loss, precision_score, recall_score

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "golden", "multi_label.json")


def case(probs, gold, thresholds):
    pred = (probs >= np.array(thresholds)[None, :]).astype(int)
    return {
        "probs": probs.tolist(),
        "gold": gold.tolist(),
        "thresholds": list(thresholds),
        "sklearn": {
            "f1_micro": f1_score(gold, pred, average="micro", zero_division=0),
            "f1_macro": f1_score(gold, pred, average="macro", zero_division=0),
            "precision_micro": precision_score(gold, pred, average="micro", zero_division=0),
            "recall_micro": recall_score(gold, pred, average="micro", zero_division=0),
            "subset_accuracy": accuracy_score(gold, pred),
            "hamming_loss": hamming_loss(gold, pred),
            "f1_per_label": f1_score(gold, pred, average=None, zero_division=0).tolist(),
        },
    }


def main():
    rng = np.random.default_rng(2508)
    cases = []
    probs = rng.random((40, 6)).astype(np.float32).astype(np.float64)
    gold = (rng.random((40, 6)) < 0.3).astype(int)
    gold[:, 5] = 0
    probs[:, 5] = probs[:, 5] * 0.4  # never reaches 0.5: label 5 neither present nor predicted
    gold[3] = 0  # a row with no label
    cases.append(case(probs, gold, [0.5] * 6))
    probs = rng.random((50, 5)).astype(np.float32).astype(np.float64)
    gold = (rng.random((50, 5)) < 0.4).astype(int)
    cases.append(case(probs, gold, [0.3, 0.5, 0.7, 0.45, 0.9]))
    probs = rng.random((10, 3)).astype(np.float32).astype(np.float64) * 0.2
    gold = (rng.random((10, 3)) < 0.5).astype(int)
    cases.append(case(probs, gold, [0.5] * 3))

    g = torch.Generator().manual_seed(7)
    logits = torch.randn(8, 5, generator=g, dtype=torch.float64) * 3.0
    targets = (torch.rand(8, 5, generator=g, dtype=torch.float64) < 0.4).double()
    pos_weight = torch.tensor([1.0, 2.5, 0.5, 10.0, 1.0], dtype=torch.float64)
    bce = []
    for pw in [None, pos_weight]:
        loss = torch.nn.BCEWithLogitsLoss(pos_weight=pw)(logits, targets)
        bce.append({"logits": logits.tolist(), "targets": targets.tolist(),
                    "pos_weight": None if pw is None else pw.tolist(), "loss": loss.item()})

    with open(OUT, "w") as f:
        json.dump({"versions": {"sklearn": sklearn.__version__, "torch": torch.__version__},
                   "metrics": cases, "bce": bce}, f, indent=1)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
