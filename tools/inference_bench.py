#!/usr/bin/env python3
"""Inference reference for `lorabert bench --inference` (issue 32, item 2).

Two jobs:

  inference_bench.py sentences --data ../shared/data/minbert --out DIR
      writes the benchmark's sentence files, one sentence per line, the same bytes both tools
      read: DIR/sst-dev.txt (the SST dev sentences, file order) and DIR/quora-dev.txt (the
      distinct questions of quora-dev.csv, sentence1 then sentence2 per row, first seen order,
      the first --quora-limit of them).

  inference_bench.py export --model ../shared/models/all-MiniLM-L6-v2 --out DIR
      exports the model to DIR/model.onnx with optimum's ONNX exporter (task
      feature-extraction, transformers library). optimum-onnx 0.1.0 pins transformers < 4.58,
      so run this one job from a separate virtual environment (tools/README.md).

  inference_bench.py time --engine st|onnx --input FILE --batch-size 32 --threads 2
      embeds FILE's sentences and prints one JSON line of sentences/s, the model load and a
      warm-up batch excluded: `st` is sentence-transformers' `encode` (PyTorch, 2 threads);
      `onnx` runs --onnx DIR's model.onnx in ONNX Runtime (default session options, 2 intra-op
      threads) through the same steps as `encode`: sentences sorted by length, batches
      tokenised with dynamic padding, mean pooling over the attention mask. --out-npy saves the
      embeddings (input order) to compare with lorabert's.

tools/compare_inference.sh alternates this script with `lorabert bench --inference`.
Needs: sentence-transformers, torch, onnxruntime, optimum[onnxruntime] (tools/README.md).
"""

import argparse
import csv
import json
import os
import sys
import time


def write_sentences(args):
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.data, "ids-sst-dev.csv"), newline="", encoding="utf-8") as f:
        sst = [row["sentence"].strip() for row in csv.DictReader(f, delimiter="\t")]
    seen, quora = set(), []
    with open(os.path.join(args.data, "quora-dev.csv"), newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            for q in (row["sentence1"], row["sentence2"]):
                q = " ".join(q.split())
                if q and q not in seen:
                    seen.add(q)
                    quora.append(q)
    quora = quora[: args.quora_limit]
    for name, lines in (("sst-dev.txt", sst), ("quora-dev.txt", quora)):
        lines = [" ".join(s.split()) for s in lines if s.strip()]
        with open(os.path.join(args.out, name), "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        print(f"wrote {os.path.join(args.out, name)} ({len(lines)} sentences)", file=sys.stderr)


def export(args):
    from optimum.exporters.onnx import main_export

    main_export(args.model, output=args.out, task="feature-extraction", library_name="transformers")
    print(f"wrote {os.path.join(args.out, 'model.onnx')}", file=sys.stderr)


class OnnxEncoder:
    """sentence-transformers' `encode` steps around an ONNX Runtime session: mean pooling."""

    def __init__(self, folder, threads, max_len):
        import onnxruntime
        from transformers import AutoTokenizer

        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = threads
        self.session = onnxruntime.InferenceSession(
            os.path.join(folder, "model.onnx"), opts, providers=["CPUExecutionProvider"]
        )
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.max_len = max_len

    def encode(self, sentences, batch_size, convert_to_numpy=True):
        import numpy

        # As SentenceTransformer.encode: longest first (by characters), back in input order.
        order = numpy.argsort([-len(s) for s in sentences], kind="stable")
        out = [None] * len(sentences)
        for start in range(0, len(sentences), batch_size):
            idx = order[start : start + batch_size]
            enc = self.tokenizer(
                [sentences[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=self.max_len,
                return_tensors="np",
            )
            feed = {k: v.astype("int64") for k, v in enc.items() if k in self.inputs}
            hidden = self.session.run(["last_hidden_state"], feed)[0]
            mask = enc["attention_mask"][..., None].astype(hidden.dtype)
            pooled = (hidden * mask).sum(1) / numpy.clip(mask.sum(1), 1e-9, None)
            for k, i in enumerate(idx):
                out[i] = pooled[k]
        return numpy.stack(out)


def time_engine(args):
    import torch

    torch.set_num_threads(args.threads)
    with open(args.input, encoding="utf-8") as f:
        sentences = [line.rstrip("\n") for line in f if line.strip()]
    if args.engine == "st":
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(args.model, device="cpu")
        model.max_seq_length = args.max_len
    else:
        if not args.onnx:
            sys.exit("--engine onnx needs --onnx DIR (made by the export job)")
        model = OnnxEncoder(args.onnx, args.threads, args.max_len)
    model.encode(sentences[: args.batch_size], batch_size=args.batch_size)  # warm-up
    t = time.perf_counter()
    emb = model.encode(sentences, batch_size=args.batch_size, convert_to_numpy=True)
    seconds = time.perf_counter() - t
    if args.out_npy:
        import numpy

        numpy.save(args.out_npy, emb.astype("float32"))
    rec = {
        "tool": "sentence-transformers" if args.engine == "st" else "onnxruntime",
        "input": os.path.basename(args.input),
        "sentences": len(sentences),
        "batch_size": args.batch_size,
        "threads": args.threads,
        "seconds": seconds,
        "sentences_per_second": len(sentences) / seconds,
    }
    print(json.dumps(rec))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sentences")
    s.add_argument("--data", default="../shared/data/minbert")
    s.add_argument("--out", required=True)
    s.add_argument("--quora-limit", type=int, default=5000)
    t = sub.add_parser("time")
    t.add_argument("--engine", choices=["st", "onnx"], required=True)
    t.add_argument("--input", required=True)
    t.add_argument("--model", default="../shared/models/all-MiniLM-L6-v2")
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--max-len", type=int, default=256)
    t.add_argument("--onnx", help="folder of the export job (model.onnx, tokenizer)")
    t.add_argument("--out-npy")
    e = sub.add_parser("export")
    e.add_argument("--model", default="../shared/models/all-MiniLM-L6-v2")
    e.add_argument("--out", required=True)
    args = p.parse_args()
    if args.cmd == "sentences":
        write_sentences(args)
    elif args.cmd == "export":
        export(args)
    else:
        time_engine(args)


if __name__ == "__main__":
    main()
