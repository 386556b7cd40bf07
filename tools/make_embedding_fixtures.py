#!/usr/bin/env python3
"""Writes tests/data/embedding/: small sentence-embedding fixtures cut from the minBERT files
(../shared/data/minbert/, see its README), for tests/embedding.rs.

- pairs.csv: `anchor,positive` from the first 160 duplicate pairs (is_duplicate 1) of
  quora-train-partial.csv, the form of sentence-transformers' pair datasets;
- triplets.jsonl: the same pairs with a `negative`: the positive of the pair 7 rows on;
- labelled.csv: the first 200 rows of quora-dev.csv as `sentence1`, `sentence2`,
  `is_duplicate` (0/1, as the file writes them), for retrieval evaluation;
- scored.csv: the first 160 rows of sts-train.csv as `sentence1,sentence2,score` (0..5).

    python3 tools/make_embedding_fixtures.py
"""
import csv
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "..", "shared", "data", "minbert")
OUT = os.path.join(ROOT, "tests", "data", "embedding")


def read(name):
    """The minBERT files: TAB-separated despite their extension, a leading index column."""
    with open(os.path.join(SRC, name), newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def main():
    os.makedirs(OUT, exist_ok=True)
    dup = [r for r in read("quora-train-partial.csv") if r["is_duplicate"].strip() in ("1", "1.0")]
    pairs = [(r["sentence1"].strip(), r["sentence2"].strip()) for r in dup[:160]]
    with open(os.path.join(OUT, "pairs.csv"), "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["anchor", "positive"])
        w.writerows(pairs)
    with open(os.path.join(OUT, "triplets.jsonl"), "w", encoding="utf-8") as f:
        for i, (a, p) in enumerate(pairs):
            neg = pairs[(i + 7) % len(pairs)][1]
            f.write(json.dumps({"anchor": a, "positive": p, "negative": neg}) + "\n")
    with open(os.path.join(OUT, "labelled.csv"), "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["sentence1", "sentence2", "is_duplicate"])
        for r in read("quora-dev.csv")[:200]:
            w.writerow([r["sentence1"].strip(), r["sentence2"].strip(), r["is_duplicate"].strip()])
    with open(os.path.join(OUT, "scored.csv"), "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["sentence1", "sentence2", "score"])
        for r in read("sts-train.csv")[:160]:
            w.writerow([r["sentence1"].strip(), r["sentence2"].strip(), r["similarity"].strip()])
    print("wrote", OUT)


if __name__ == "__main__":
    main()
