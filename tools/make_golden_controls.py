#!/usr/bin/env python3
"""Writes tests/golden/controls.json: reference values for the training controls, which
tests/controls.rs compares lorabert with.

- class_weights: scikit-learn's compute_class_weight("balanced") of the labels of the own-data
  fixtures tests/data/own/sst2.csv (strings) and sst5.jsonl (integers 0..4), by label name.
- weighted_cross_entropy: torch.nn.functional.cross_entropy(logits, labels, weight=w)
  (reduction "mean": sum of w[y] * nll / sum of w[y]) on fixed random logits.

    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install numpy scikit-learn torch
    /tmp/ref/bin/python tools/make_golden_controls.py
"""
import csv
import json
import os

import numpy as np
import sklearn
import torch
from sklearn.utils.class_weight import compute_class_weight

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OWN = os.path.join(ROOT, "tests", "data", "own")


def balanced(labels):
    classes = np.array(sorted(set(labels)))
    w = compute_class_weight("balanced", classes=classes, y=np.array(labels))
    return {str(c): float(x) for c, x in zip(classes, w)}


def main():
    with open(os.path.join(OWN, "sst2.csv"), encoding="utf-8", newline="") as f:
        sst2 = [r["label"] for r in csv.DictReader(f)]
    with open(os.path.join(OWN, "sst5.jsonl"), encoding="utf-8") as f:
        sst5 = [json.loads(line)["label"] for line in f if line.strip()]

    g = torch.Generator().manual_seed(31)
    logits = torch.randn(12, 5, generator=g, dtype=torch.float64) * 2.0
    labels = torch.tensor([0, 1, 1, 2, 4, 4, 4, 3, 0, 2, 4, 1])
    weight = torch.tensor([0.5, 2.0, 1.0, 3.5, 0.25], dtype=torch.float64)
    loss = torch.nn.functional.cross_entropy(logits, labels, weight=weight)
    plain = torch.nn.functional.cross_entropy(logits, labels)

    out = {
        "versions": {"scikit-learn": sklearn.__version__, "torch": torch.__version__},
        "class_weights": {"sst2.csv": balanced(sst2), "sst5.jsonl": balanced(sst5)},
        "weighted_cross_entropy": {
            "logits": logits.tolist(),
            "labels": labels.tolist(),
            "weight": weight.tolist(),
            "loss": loss.item(),
            "unweighted_loss": plain.item(),
        },
    }
    path = os.path.join(ROOT, "tests", "golden", "controls.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print("wrote", path)


if __name__ == "__main__":
    main()
