#!/usr/bin/env python3
"""Quora duplicate questions with sentence-transformers + PEFT, the reference for `lorabert
train --task-type embedding` on the same data and budget (docs/embeddings.md has both sides).

Same model (all-MiniLM-L6-v2: mean pooling; its Normalize module does not change cosines), LoRA
r and lora_alpha on every linear layer of the encoder (query, key, value and the three `dense`
layers of each block; not the pooler, as lorabert's all-linear), MultipleNegativesRankingLoss
(scale 20, cosine) on the training file's pairs labelled 1, the NO_DUPLICATES batch sampler,
AdamW (lr, weight decay 0), linear warm-up over 10 % of the steps then linear decay,
gradient-norm clip 1.0, batch size, max length 128, seed as given; 2 CPU threads. The files are
read as `lorabert --format tsv` reads them (TAB-separated, quoting off).

Evaluation as lorabert's (docs/embeddings.md): queries are the first sentences of the dev pairs
labelled 1, the corpus every distinct dev text, relevant each query's duplicates, the query's own
text left out of its ranking; cosine; NDCG@10, MRR@10, MAP@100, Recall@1/5/10, Accuracy@1/10,
before training and after. Prints and writes (--out) the metrics, training seconds and
examples/s (pairs per second of `trainer.train()`).

    /tmp/ref/bin/pip install numpy torch transformers peft sentence-transformers datasets
    (sentence-transformers 6.3, transformers 5.25, PEFT 0.21.2, torch 2.15 when written)
    /tmp/ref/bin/python tools/compare_st_embedding.py --out /tmp/st-quora.json
    /tmp/ref/bin/python tools/compare_st_embedding.py --max-steps 20 --no-eval   # speed only
"""
import argparse
import json
import os
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "..", "shared", "data", "minbert")
MODEL = os.path.join(ROOT, "..", "shared", "models", "all-MiniLM-L6-v2")


def read(name):
    """(sentence1, sentence2, label) of a minBERT Quora file, TAB-separated, quoting off; rows
    without a label skipped."""
    rows = []
    with open(os.path.join(DATA, name), encoding="utf-8") as f:
        lines = f.read().split("\n")
    for line in lines[1:]:
        if not line:
            continue
        fields = [x.strip() for x in line.split("\t")]
        if not fields[4]:
            continue
        rows.append((fields[2], fields[3], float(fields[4])))
    return rows


def retrieval(model, rows):
    """lorabert's retrieval metrics of `model` on labelled pairs `rows`."""
    texts, index = [], {}
    for a, b, _ in rows:
        for t in (a, b):
            if t not in index:
                index[t] = len(texts)
                texts.append(t)
    relevant = {}
    for a, b, y in rows:
        if y == 1.0 and a != b:
            relevant.setdefault(index[a], set()).add(index[b])
    emb = model.encode(texts, batch_size=128, convert_to_numpy=True, normalize_embeddings=True)
    queries = sorted(relevant)
    sums = np.zeros(8)
    for start in range(0, len(queries), 256):
        qs = queries[start : start + 256]
        scores = emb[qs] @ emb.T
        scores[np.arange(len(qs)), qs] = -np.inf  # a query's own text is out of its ranking
        top = np.argsort(-scores, axis=1, kind="stable")[:, :100]
        for qi, q in enumerate(qs):
            rel = relevant[q]
            hit = np.array([d in rel for d in top[qi]])
            found = lambda k: hit[:k].sum()
            gains = 1.0 / np.log2(np.arange(2, 12))
            ndcg = (hit[:10] * gains).sum() / gains[: min(len(rel), 10)].sum()
            first = np.flatnonzero(hit[:10])
            mrr = 1.0 / (first[0] + 1) if len(first) else 0.0
            ranks = np.flatnonzero(hit)
            map100 = sum((i + 1) / (r + 1) for i, r in enumerate(ranks)) / min(len(rel), 100)
            m = len(rel)
            sums += [ndcg, mrr, map100, found(1) / m, found(5) / m, found(10) / m,
                     found(1) > 0, found(10) > 0]
    names = ["ndcg@10", "mrr@10", "map@100", "recall@1", "recall@5", "recall@10",
             "accuracy@1", "accuracy@10"]
    return dict(zip(names, (sums / len(queries)).tolist()))


def main():
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import losses
    from sentence_transformers.sentence_transformer.trainer import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.training_args import (
        BatchSamplers, SentenceTransformerTrainingArguments)

    ap = argparse.ArgumentParser()
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--r", type=int, default=8)
    ap.add_argument("--lora-alpha", type=float, default=16)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--max-steps", type=int, default=-1)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--no-eval", action="store_true")
    ap.add_argument("--out")
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(args.seed)

    train = [(a, b) for a, b, y in read("quora-train-partial.csv") if y == 1.0]
    dev = read("quora-dev.csv")
    model = SentenceTransformer(MODEL, device="cpu")
    model.max_seq_length = 128
    out = {"pairs": len(train)}
    if not args.no_eval:
        out["before_training"] = retrieval(model, dev)
        print("epoch 0:", out["before_training"], flush=True)
    # PEFT on the encoder inside the Transformer module (transformers' add_adapter, which
    # SentenceTransformer.add_adapter calls, asks for a PEFT newer than PyPI has).
    config = LoraConfig(r=args.r, lora_alpha=args.lora_alpha, lora_dropout=0.0,
                        target_modules=r".*encoder.*\.(query|key|value|dense)")
    model[0].model = get_peft_model(model[0].model, config)
    model[0].model.print_trainable_parameters()
    ds = Dataset.from_dict({"anchor": [a for a, _ in train], "positive": [b for _, b in train]})
    targs = SentenceTransformerTrainingArguments(
        output_dir="/tmp/st-quora-run", num_train_epochs=args.epochs, max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size, learning_rate=args.lr, weight_decay=0.0,
        warmup_steps=0.1, lr_scheduler_type="linear", max_grad_norm=1.0, seed=args.seed,
        batch_sampler=BatchSamplers.NO_DUPLICATES, save_strategy="no", report_to=[],
        logging_steps=20, dataloader_drop_last=False, use_cpu=True,
    )
    trainer = SentenceTransformerTrainer(model=model, args=targs, train_dataset=ds,
                                         loss=losses.MultipleNegativesRankingLoss(model))
    t0 = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - t0
    steps = result.global_step
    out.update({"steps": steps, "train_seconds": seconds,
                "examples_per_second": min(steps * args.batch_size, len(train) * args.epochs) / seconds,
                "sentence_transformers": __import__("sentence_transformers").__version__,
                "torch": torch.__version__})
    if not args.no_eval:
        out["after"] = retrieval(model, dev)
        print("after:", out["after"], flush=True)
    print(json.dumps({k: v for k, v in out.items() if k not in ("before_training", "after")}))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
