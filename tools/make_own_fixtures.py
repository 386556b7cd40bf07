#!/usr/bin/env python3
"""Writes the own-data test fixtures under tests/data/own/ from slices of the real files in
../shared/data (GLUE's SST-2 and MRPC, minBERT's SST and STS). Standard library only; the
fixtures are generated, never edited by hand:

    python3 tools/make_own_fixtures.py [--shared ../shared]

- sst2.csv / sst2.jsonl / sst2.tsv: the first 240 rows of sst2-train.tsv, labels as strings
  ("negative" / "positive"), the same rows in CSV (RFC 4180 quoting), JSON Lines and TSV;
  sst2-dev.csv: rows 241..320 (a validation file).
- mrpc.tsv: the first 160 lines of mrpc-train.tsv as they are (byte-order mark, unbalanced
  quotes, the columns Quality / #1 String / #2 String).
- sst5.jsonl: 200 rows of minBERT's ids-sst-train.csv as {"id", "text", "label"} (integer
  classes 0..4).
- sts.csv: 200 rows of minBERT's sts-train.csv as sentence1,sentence2,label (similarity 0..5,
  a regression target).
"""
import argparse
import csv
import io
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "own")


def read_tsv_unquoted(path):
    with open(path, encoding="utf-8-sig") as f:
        lines = f.read().split("\n")
    header = lines[0].split("\t")
    return header, [l.split("\t") for l in lines[1:] if l.strip()]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.path.join(ROOT, "..", "shared"))
    a = ap.parse_args()
    glue = os.path.join(a.shared, "data", "glue")
    minbert = os.path.join(a.shared, "data", "minbert")
    os.makedirs(OUT, exist_ok=True)

    _, rows = read_tsv_unquoted(os.path.join(glue, "sst2-train.tsv"))
    names = {"0": "negative", "1": "positive"}
    train = [(s.strip(), names[l]) for s, l in rows[:240]]
    dev = [(s.strip(), names[l]) for s, l in rows[240:320]]
    for name, part in [("sst2.csv", train), ("sst2-dev.csv", dev)]:
        with open(os.path.join(OUT, name), "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["sentence", "label"])
            w.writerows(part)
    with open(os.path.join(OUT, "sst2.jsonl"), "w", encoding="utf-8") as f:
        for s, l in train:
            f.write(json.dumps({"sentence": s, "label": l}, ensure_ascii=False) + "\n")
    with open(os.path.join(OUT, "sst2.tsv"), "w", encoding="utf-8") as f:
        f.write("sentence\tlabel\n")
        for s, l in train:
            f.write(f"{s}\t{l}\n")

    with open(os.path.join(glue, "mrpc-train.tsv"), "rb") as f:
        lines = f.read().split(b"\n")
    with open(os.path.join(OUT, "mrpc.tsv"), "wb") as f:
        f.write(b"\n".join(lines[:160]) + b"\n")

    with open(os.path.join(minbert, "ids-sst-train.csv"), encoding="utf-8") as f:
        r = list(csv.DictReader(f, delimiter="\t"))
    with open(os.path.join(OUT, "sst5.jsonl"), "w", encoding="utf-8") as f:
        for row in r[:200]:
            f.write(json.dumps({"id": row["id"], "text": row["sentence"].strip(),
                                "label": int(float(row["sentiment"]))}, ensure_ascii=False) + "\n")

    with open(os.path.join(minbert, "sts-train.csv"), encoding="utf-8") as f:
        r = list(csv.DictReader(f, delimiter="\t"))
    with open(os.path.join(OUT, "sts.csv"), "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "sentence1", "sentence2", "label"])
        for row in r[:200]:
            w.writerow([row["id"], row["sentence1"].strip(), row["sentence2"].strip(), row["similarity"]])
    print("wrote", OUT, sorted(os.listdir(OUT)))


if __name__ == "__main__":
    main()
