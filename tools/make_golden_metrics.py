#!/usr/bin/env python3
"""Writes tests/golden/metrics.json: the own-data metrics computed by scikit-learn and SciPy on
fixed inputs, which tests/parity.rs compares lorabert's tasks::metrics with (1e-12).

    python3 -m venv /tmp/refm && /tmp/refm/bin/pip install numpy scipy scikit-learn
    /tmp/refm/bin/python tools/make_golden_metrics.py
"""
import json
import os

import numpy as np
import scipy
import sklearn
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef, mean_squared_error

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def classification(name, gold, pred, classes):
    case = {
        "name": name,
        "classes": classes,
        "gold": [int(x) for x in gold],
        "pred": [int(x) for x in pred],
        "accuracy": accuracy_score(gold, pred),
        # Averaged over the labels present in gold or pred (scikit-learn's default), not over
        # every training class: a class absent from both is left out.
        "f1_macro": f1_score(gold, pred, average="macro", zero_division=0),
        "mcc": matthews_corrcoef(gold, pred),
    }
    if classes == 2:
        case["f1"] = f1_score(gold, pred, zero_division=0)
    return case


def main():
    rng = np.random.default_rng(16)
    gold = rng.integers(0, 2, 50)
    pred = np.where(rng.random(50) < 0.75, gold, 1 - gold)
    cases = [classification("binary", gold, pred, 2)]
    gold = rng.integers(0, 3, 60)
    pred = np.where(rng.random(60) < 0.6, gold, rng.integers(0, 2, 60))  # class 2 rarely predicted
    cases.append(classification("three classes", gold, pred, 3))
    cases.append(classification("one class predicted", gold, np.zeros(60, dtype=int), 3))
    # Three training classes, two of them in the 40 validation rows, all predicted as one:
    # class 2 occurs in neither (issue 33: 0.2222 averaged over 3 classes, 0.3333 over 2).
    gold = np.random.default_rng(33).integers(0, 2, 40)
    cases.append(classification("a training class absent from gold and pred", gold, np.zeros(40, dtype=int), 3))
    x = np.round(rng.normal(2.5, 1.2, 40), 1)  # rounded: ties for the ranks
    y = np.round(x + rng.normal(0, 0.8, 40), 1)
    regression = {
        "name": "regression with ties",
        "pred": x.tolist(),
        "gold": y.tolist(),
        "pearson": pearsonr(x, y).statistic,
        "spearman": spearmanr(x, y).statistic,
        "mse": mean_squared_error(y, x),
    }
    out = {
        "made_by": f"scikit-learn {sklearn.__version__}, scipy {scipy.__version__}",
        "classification": cases,
        "regression": [regression],
    }
    path = os.path.join(ROOT, "tests", "golden", "metrics.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print("wrote", path)


if __name__ == "__main__":
    main()
