#!/usr/bin/env python3
"""Writes tests/data/multilabel/: small multi-label fixtures cut from GoEmotions
(../shared/data/goemotions/, see its README), for tests/multi_label.rs.

- train.tsv, dev.tsv: the first 320 training and 120 development rows, byte for byte (no header,
  TAB-separated, quoting off, label ids like `3,10`, the comment id last);
- emotions.txt: the 28 label names (no final newline, as upstream);
- train.jsonl, dev.jsonl: the same rows as {"id", "text", "labels": [names]} (the form Hugging
  Face datasets write after mapping ids to names);
- cols.csv: the training rows as `text` plus one 0/1 column for each of four labels
  (`anger`, `joy`, `sadness`, `neutral`), the form of Jigsaw-style toxicity files.

    python3 tools/make_multilabel_fixtures.py
"""
import csv
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "..", "shared", "data", "goemotions")
OUT = os.path.join(ROOT, "tests", "data", "multilabel")
COLS = ["anger", "joy", "sadness", "neutral"]


def head(name, n):
    with open(os.path.join(SRC, name), "rb") as f:
        lines = f.read().split(b"\n")
    return [l for l in lines if l][:n]


def main():
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(SRC, "emotions.txt"), "rb") as f:
        emotions = f.read()
    names = emotions.decode("utf-8").split("\n")
    with open(os.path.join(OUT, "emotions.txt"), "wb") as f:
        f.write(emotions)
    for split, n in [("train", 320), ("dev", 120)]:
        lines = head(f"{split}.tsv", n)
        with open(os.path.join(OUT, f"{split}.tsv"), "wb") as f:
            f.write(b"\n".join(lines) + b"\n")
        rows = []
        for line in lines:
            text, ids, cid = line.decode("utf-8").split("\t")
            rows.append({"id": cid, "text": text,
                         "labels": [names[int(i)] for i in ids.split(",")]})
        with open(os.path.join(OUT, f"{split}.jsonl"), "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        if split == "train":
            with open(os.path.join(OUT, "cols.csv"), "w", encoding="utf-8", newline="") as f:
                w = csv.writer(f)
                w.writerow(["text", *COLS])
                for r in rows:
                    w.writerow([r["text"], *[int(c in r["labels"]) for c in COLS]])


if __name__ == "__main__":
    main()
