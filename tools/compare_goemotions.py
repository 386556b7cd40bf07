#!/usr/bin/env python3
"""GoEmotions multi-label classification with transformers + PEFT, the reference for
`lorabert train` on the same data and budget (docs/multi_label.md has both sides' figures).

Same model (all-MiniLM-L6-v2 as BertForSequenceClassification, problem_type
"multi_label_classification": pooler output -> dropout -> classifier, BCEWithLogitsLoss), LoRA
r and lora_alpha on every linear layer of the encoder (query, key, value and the three `dense`
layers of each block; not the pooler, as lorabert's all-linear), the classifier trained in full
(modules_to_save), AdamW (lr, betas 0.9/0.999, eps 1e-8, weight decay 0), linear warm-up over
10 % of the steps then linear decay, gradient-norm clip 1.0, batch size, steps, max length,
threshold 0.5 and seed as given; 2 CPU threads; with --pos-weight-balanced, BCEWithLogitsLoss's
pos_weight = negatives / positives of each label in the training rows. Prints and writes (--out) micro and macro F1,
subset accuracy and Hamming loss on the dev set (scikit-learn), seconds and examples/s.

    /tmp/ref/bin/pip install numpy scikit-learn torch transformers peft
    /tmp/ref/bin/python tools/compare_goemotions.py --steps 800 --out /tmp/ge-peft.json
    /tmp/ref/bin/python tools/compare_goemotions.py --steps 300 --pos-weight-balanced
"""
import argparse
import json
import os
import time

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score, hamming_loss

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "..", "shared", "data", "goemotions")
MODEL = os.path.join(ROOT, "..", "shared", "models", "all-MiniLM-L6-v2")


def read(name, k):
    texts, y = [], []
    with open(os.path.join(DATA, name), encoding="utf-8") as f:
        for line in f.read().split("\n"):
            if not line:
                continue
            text, ids, _ = line.split("\t")  # quoting off: the text is taken as written
            row = np.zeros(k, dtype=np.float32)
            row[[int(i) for i in ids.split(",")]] = 1.0
            texts.append(text)
            y.append(row)
    return texts, np.stack(y)


def main():
    from peft import LoraConfig, get_peft_model
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer,
                              get_linear_schedule_with_warmup)

    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1357)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--r", type=int, default=8)
    ap.add_argument("--lora-alpha", type=float, default=16)
    ap.add_argument("--max-len", type=int, default=64)
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--pos-weight-balanced", action="store_true",
                    help="BCEWithLogitsLoss(pos_weight=(n - p) / p per label), as lorabert's "
                         "--pos-weight balanced")
    ap.add_argument("--linear-init", action="store_true",
                    help="the classifier as nn.Linear initialises it (uniform +-1/sqrt(in), as "
                         "lorabert's heads) instead of transformers' normal(0, 0.02), bias 0")
    ap.add_argument("--out")
    a = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(a.seed)
    with open(os.path.join(DATA, "emotions.txt"), encoding="utf-8") as f:
        names = f.read().split("\n")
    k = len(names)
    train_x, train_y = read("train.tsv", k)
    dev_x, dev_y = read("dev.tsv", k)
    tok = AutoTokenizer.from_pretrained(MODEL)
    model = AutoModelForSequenceClassification.from_pretrained(
        MODEL, num_labels=k, problem_type="multi_label_classification",
        id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})
    if a.linear_init:
        model.classifier.reset_parameters()
    cfg = LoraConfig(task_type="SEQ_CLS", r=a.r, lora_alpha=a.lora_alpha, lora_dropout=0.0,
                     target_modules=r".*encoder\.layer\.\d+\..*(query|key|value|dense)$")
    model = get_peft_model(model, cfg)
    model.print_trainable_parameters()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=a.lr,
                            betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    sched = get_linear_schedule_with_warmup(opt, round(0.1 * a.steps), a.steps)
    pos = train_y.sum(0)
    pos_weight = torch.from_numpy((len(train_y) - pos) / pos) if a.pos_weight_balanced else None
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    g = torch.Generator().manual_seed(a.seed)
    order = []
    model.train()
    t0 = time.time()
    seen = 0
    for step in range(a.steps):
        if len(order) < a.batch_size:
            order += torch.randperm(len(train_x), generator=g).tolist()
        idx, order = order[:a.batch_size], order[a.batch_size:]
        enc = tok([train_x[i] for i in idx], truncation=True, max_length=a.max_len,
                  padding=True, return_tensors="pt")
        out = model(**enc)
        out.loss = loss_fn(out.logits, torch.from_numpy(train_y[idx]))
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        seen += len(idx)
        if (step + 1) % 50 == 0:
            print(f"step {step + 1}/{a.steps} loss {out.loss.item():.4f} "
                  f"{seen / (time.time() - t0):.1f} ex/s", flush=True)
    train_seconds = time.time() - t0
    model.eval()
    probs = []
    with torch.no_grad():
        for i in range(0, len(dev_x), 128):
            enc = tok(dev_x[i:i + 128], truncation=True, max_length=a.max_len, padding=True,
                      return_tensors="pt")
            probs.append(torch.sigmoid(model(**enc).logits).numpy())
    probs = np.concatenate(probs)
    pred = (probs >= a.threshold).astype(int)
    gold = dev_y.astype(int)
    res = {
        "f1_micro": f1_score(gold, pred, average="micro", zero_division=0),
        "f1_macro": f1_score(gold, pred, average="macro", zero_division=0),
        "subset_accuracy": accuracy_score(gold, pred),
        "hamming_loss": hamming_loss(gold, pred),
        "train_seconds": train_seconds,
        "examples_per_second": seen / train_seconds,
        "args": vars(a),
    }
    print(json.dumps(res, indent=1))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
