#!/usr/bin/env python3
"""Writes an imbalanced MRPC for the class-weights measurement (docs/controls.md): the last 667
rows of ../shared/data/glue/mrpc-train.tsv as they are (the validation file, MRPC's own
balance), and from the first 3,000 rows every paraphrase (label 1) but only every tenth
non-paraphrase (label 0, the minority class cut to a tenth, rows chosen by a seeded draw).
Standard library only; the outputs are data, not committed:

    python3 tools/make_imbalanced_mrpc.py --out /tmp/mrpc-cut [--shared ../shared]
"""
import argparse
import os
import random

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.path.join(ROOT, "..", "shared"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=13)
    a = ap.parse_args()
    src = os.path.join(a.shared, "data", "glue", "mrpc-train.tsv")
    with open(src, encoding="utf-8-sig") as f:
        lines = f.read().rstrip("\n").split("\n")
    header, rows = lines[0], lines[1:]
    train, dev = rows[:3000], rows[3000:]
    rng = random.Random(a.seed)
    zeros = [r for r in train if r.split("\t")[0] == "0"]
    keep = set(rng.sample(range(len(zeros)), len(zeros) // 10))
    kept_zeros = {zeros[i] for i in keep}
    cut = [r for r in train if r.split("\t")[0] == "1" or r in kept_zeros]
    os.makedirs(a.out, exist_ok=True)
    for name, part in [("train.tsv", cut), ("dev.tsv", dev)]:
        with open(os.path.join(a.out, name), "w", encoding="utf-8") as f:
            f.write(header + "\n" + "\n".join(part) + "\n")
    count = lambda part, y: sum(r.split("\t")[0] == y for r in part)
    print(f"train.tsv: {len(cut)} rows (0: {count(cut, '0')}, 1: {count(cut, '1')}); "
          f"dev.tsv: {len(dev)} rows (0: {count(dev, '0')}, 1: {count(dev, '1')})")


if __name__ == "__main__":
    main()
