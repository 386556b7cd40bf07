#!/usr/bin/env python3
"""Small token-classification test files from the CoNLL-2003 English files in ../shared/data/ner.

Writes tests/data/token/:
  train.conll   the first 240 sentences of eng.train as published (IOB1, space-separated,
                -DOCSTART- lines kept)
  dev.conll     the first 80 sentences of eng.testa, with the file's extra blank line at the end
  train_iob2.conll  train.conll converted to IOB2 (the Hugging Face conll2003 tags) by the rule in
                ../shared/data/ner/README.md
  train_tab.conll   train.conll with TABs between the columns and no final blank line
  train.jsonl   train_iob2.conll as Hugging Face datasets writes it: {"id", "tokens", "ner_tags"}
                with the tags as integer ids into label_names.txt
  label_names.txt   conll2003's ner_tags names in id order

Run from the repository root: python3 tools/make_token_fixtures.py
"""
import json
import os

SRC = os.path.join("..", "shared", "data", "ner", "conll2003")
OUT = os.path.join("tests", "data", "token")
# Hugging Face conll2003's ner_tags feature names, in id order.
HF_NAMES = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]


def sentences(path, limit):
    """The first `limit` sentences as lists of lines, with the DOCSTART lines kept in place."""
    out, cur, blocks = [], [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.strip():
                if cur:
                    blocks.append(cur)
                    cur = []
                continue
            cur.append(line)
    if cur:
        blocks.append(cur)
    n = 0
    for b in blocks:
        out.append(b)
        if not b[0].startswith("-DOCSTART-"):
            n += 1
        if n == limit:
            break
    return out


def to_iob2(tags):
    out, prev = [], "O"
    for t in tags:
        if t.startswith("I-") and (prev == "O" or prev[2:] != t[2:]):
            out.append("B-" + t[2:])
        else:
            out.append(t)
        prev = t
    return out


def write(path, blocks, sep=" ", final_blank=True, extra_blank=False):
    with open(path, "w", encoding="utf-8") as f:
        text = "\n\n".join("\n".join(sep.join(l.split(" ")) for l in b) for b in blocks)
        f.write(text + ("\n\n" if final_blank else "") + ("\n" if extra_blank else ""))


def main():
    os.makedirs(OUT, exist_ok=True)
    train = sentences(os.path.join(SRC, "eng.train"), 240)
    dev = sentences(os.path.join(SRC, "eng.testa"), 80)
    write(os.path.join(OUT, "train.conll"), train)
    write(os.path.join(OUT, "dev.conll"), dev, extra_blank=True)
    write(os.path.join(OUT, "train_tab.conll"), train, sep="\t", final_blank=False)
    iob2 = []
    for b in train:
        if b[0].startswith("-DOCSTART-"):
            iob2.append(b)
            continue
        fields = [l.split(" ") for l in b]
        tags = to_iob2([f[-1] for f in fields])
        iob2.append([" ".join(f[:-1] + [t]) for f, t in zip(fields, tags)])
    write(os.path.join(OUT, "train_iob2.conll"), iob2)
    with open(os.path.join(OUT, "train.jsonl"), "w", encoding="utf-8") as f:
        i = 0
        for b in iob2:
            if b[0].startswith("-DOCSTART-"):
                continue
            fields = [l.split(" ") for l in b]
            row = {"id": str(i), "tokens": [x[0] for x in fields],
                   "ner_tags": [HF_NAMES.index(x[-1]) for x in fields]}
            f.write(json.dumps(row) + "\n")
            i += 1
    with open(os.path.join(OUT, "label_names.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(HF_NAMES) + "\n")


if __name__ == "__main__":
    main()
