#!/usr/bin/env python3
"""CoNLL-2003 named entities with transformers + PEFT, the reference for `lorabert train` on
token files with the same data and budget (docs/token-classification.md has both sides' figures).

Same model (all-MiniLM-L6-v2 as BertForTokenClassification: last hidden state -> dropout 0.1 ->
classifier on every word piece), the tags of the training file sorted (run_ner.py's
get_label_list), each word's tag on its first word piece and -100 on the others (run_ner.py's
alignment, is_split_into_words=True; sentences cut at --max-len pieces as run_ner.py cuts them,
where lorabert windows them), LoRA r and lora_alpha on every linear layer of the encoder (query,
key, value and the three `dense` layers of each block, as lorabert's all-linear), the classifier
trained in full (modules_to_save, as PEFT's TOKEN_CLS does), AdamW (lr, betas 0.9/0.999, eps 1e-8,
weight decay 0), linear warm-up over 10 % of the steps then linear decay, gradient-norm clip 1.0,
batch size, epochs (or --steps), seed as given, batches drawn at random each epoch; 2 CPU threads.
Prints and writes (--out) seqeval's entity F1, precision, recall (micro) and token accuracy on
the dev file per epoch, and training seconds and examples/s.

    /tmp/ref/bin/pip install numpy seqeval torch transformers peft
    /tmp/ref/bin/python tools/compare_peft_token.py --epochs 2 --lr 5e-4 --out /tmp/ner-peft.json
"""
import argparse
import json
import os
import time

import torch
from seqeval.metrics import accuracy_score, f1_score, precision_score, recall_score

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "..", "shared", "data", "ner", "conll2003")
MODEL = os.path.join(ROOT, "..", "shared", "models", "all-MiniLM-L6-v2")


def read(path):
    """Sentences of (words, tags): whitespace columns, the tag last, -DOCSTART- skipped."""
    out, words, tags = [], [], []
    for line in open(path, encoding="utf-8"):
        f = line.split()
        if not f or f[0] == "-DOCSTART-":
            if words:
                out.append((words, tags))
                words, tags = [], []
            continue
        words.append(f[0])
        tags.append(f[-1])
    if words:
        out.append((words, tags))
    return out


def encode(tok, sents, label2id, max_len):
    enc = tok([w for w, _ in sents], is_split_into_words=True, truncation=True,
              max_length=max_len)
    labels = []
    for i, (_, tags) in enumerate(sents):
        prev, row = None, []
        for w in enc.word_ids(i):
            row.append(-100 if w is None or w == prev else label2id[tags[w]])
            prev = w
        labels.append(row)
    return enc["input_ids"], labels


def batch(ids, labels, idx, pad):
    n = max(len(ids[i]) for i in idx)
    x = torch.full((len(idx), n), pad, dtype=torch.long)
    y = torch.full((len(idx), n), -100, dtype=torch.long)
    m = torch.zeros((len(idx), n), dtype=torch.long)
    for r, i in enumerate(idx):
        x[r, :len(ids[i])] = torch.tensor(ids[i])
        y[r, :len(labels[i])] = torch.tensor(labels[i])
        m[r, :len(ids[i])] = 1
    return x, m, y


def evaluate(model, ids, labels, id2label, pad):
    model.eval()
    gold, pred = [], []
    with torch.no_grad():
        for s in range(0, len(ids), 128):
            idx = list(range(s, min(s + 128, len(ids))))
            x, m, y = batch(ids, labels, idx, pad)
            p = model(input_ids=x, attention_mask=m).logits.argmax(-1)
            for r in range(len(idx)):
                keep = y[r] != -100
                gold.append([id2label[int(t)] for t in y[r][keep]])
                pred.append([id2label[int(t)] for t in p[r][keep]])
    model.train()
    return {"f1": f1_score(gold, pred), "precision": precision_score(gold, pred),
            "recall": recall_score(gold, pred), "accuracy": accuracy_score(gold, pred)}


def main():
    from peft import LoraConfig, get_peft_model
    from transformers import (AutoModelForTokenClassification, AutoTokenizer,
                              get_linear_schedule_with_warmup)

    ap = argparse.ArgumentParser()
    ap.add_argument("--train", default=os.path.join(DATA, "eng.train"))
    ap.add_argument("--dev", default=os.path.join(DATA, "eng.testa"))
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--steps", type=int, help="stop after this many steps (timing runs)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--r", type=int, default=8)
    ap.add_argument("--lora-alpha", type=float, default=16)
    ap.add_argument("--max-len", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--full", action="store_true", help="full fine-tuning (no adapter)")
    ap.add_argument("--no-eval", action="store_true")
    ap.add_argument("--out")
    a = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(a.seed)
    train, dev = read(a.train), read(a.dev)
    names = sorted({t for _, tags in train for t in tags})
    label2id = {n: i for i, n in enumerate(names)}
    tok = AutoTokenizer.from_pretrained(MODEL)
    tr_ids, tr_y = encode(tok, train, label2id, a.max_len)
    dv_ids, dv_y = encode(tok, dev, label2id, a.max_len)
    model = AutoModelForTokenClassification.from_pretrained(
        MODEL, num_labels=len(names), id2label=dict(enumerate(names)), label2id=label2id)
    if not a.full:
        cfg = LoraConfig(task_type="TOKEN_CLS", r=a.r, lora_alpha=a.lora_alpha, lora_dropout=0.0,
                         target_modules=r".*encoder\.layer\.\d+\..*(query|key|value|dense)$")
        model = get_peft_model(model, cfg)
        model.print_trainable_parameters()
    per_epoch = (len(tr_ids) + a.batch_size - 1) // a.batch_size
    total = a.steps or per_epoch * a.epochs
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=a.lr,
                            betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    sched = get_linear_schedule_with_warmup(opt, round(0.1 * total), total)
    g = torch.Generator().manual_seed(a.seed)
    model.train()
    epochs, seen, train_seconds, step = [], 0, 0.0, 0
    while step < total:
        order = torch.randperm(len(tr_ids), generator=g).tolist()
        t0 = time.time()
        for s in range(0, len(order), a.batch_size):
            if step == total:
                break
            x, m, y = batch(tr_ids, tr_y, order[s:s + a.batch_size], tok.pad_token_id)
            loss = model(input_ids=x, attention_mask=m, labels=y).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
            seen += x.shape[0]
            step += 1
            if step % 50 == 0:
                el = train_seconds + time.time() - t0
                print(f"step {step}/{total} loss {loss.item():.4f} {seen / el:.1f} ex/s",
                      flush=True)
        train_seconds += time.time() - t0
        if not a.no_eval:
            m = evaluate(model, dv_ids, dv_y, names, tok.pad_token_id)
            m["epoch"] = len(epochs) + 1
            print(json.dumps(m), flush=True)
            epochs.append(m)
    res = {"epochs": epochs, "train_seconds": train_seconds, "steps": step,
           "examples_per_second": seen / train_seconds, "args": vars(a)}
    print(json.dumps(res, indent=1))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
