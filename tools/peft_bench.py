#!/usr/bin/env python3
"""The training-step benchmark of `lorabert bench`, measured with PyTorch + transformers + PEFT.

Same model, shapes and step as lorabert: BertModel (MiniLM weights, or random weights from a
config.json), mean pooling, dropout 0.1, a 5-way linear head, cross-entropy, backward,
clip_grad_norm_(1.0), AdamW (eps 1e-8, weight decay 0) on the trainable parameters, and the loss
read back each step. LoRA/DoRA on query, key, value, attention.output.dense, intermediate.dense,
output.dense (lorabert's all-linear), lora_alpha 8. Each configuration runs in its own process so
peak memory (ru_maxrss) is its own. Prints and writes JSON lines like `lorabert bench`.

    python3 tools/peft_bench.py [--model DIR | --model-config FILE] [--batch-size 32] [--seq-len 64]
        [--threads 2] [--configs full,lora-r1,lora-r8,dora-r1,dora-r8] [--output peft_bench.jsonl]
        [--device cpu|cuda] [--precision f32|f16]
    python3 tools/peft_bench.py --gemm lorabert-gemm.jsonl [--threads 2] [--output torch-gemm.jsonl]

With `--gemm FILE` (the JSON lines of `lorabert bench --gemm`) it times the same matrix products
in PyTorch instead: the same shapes, operands transposed as views where lorabert's are, median
seconds per call, GFLOP/s.

On CUDA, `--precision f16` is PyTorch's automatic mixed precision (autocast to fp16 with a
GradScaler), the usual way PEFT users train in half precision. On CUDA the device memory is
torch.cuda.max_memory_reserved (`device_memory_bytes`: what the caching allocator held at most,
the counterpart of lorabert's pool reservation) and torch.cuda.max_memory_allocated
(`device_memory_allocated_bytes`), besides the process's resident memory.

Needs torch, transformers, peft (a throwaway virtualenv; CI does not use this).
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGETS = ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"]


def measure(args, name):
    import torch
    from transformers import BertConfig, BertModel

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    amp = args.precision == "f16"
    if amp and args.device != "cuda":
        sys.exit("--precision f16 (autocast) is measured on --device cuda only")
    if args.model_config:
        cfg = BertConfig.from_json_file(args.model_config)
        bert = BertModel(cfg, add_pooling_layer=False)
        model_name = f"{args.model_config} (random weights)"
    else:
        bert = BertModel.from_pretrained(args.model, add_pooling_layer=False)
        cfg = bert.config
        model_name = args.model
    if name != "full":
        from peft import LoraConfig, get_peft_model

        kind, r = name.split("-r")
        bert = get_peft_model(
            bert, LoraConfig(r=int(r), lora_alpha=8, lora_dropout=0.0, target_modules=TARGETS, use_dora=kind == "dora")
        )
    head = torch.nn.Linear(cfg.hidden_size, 5)
    drop = torch.nn.Dropout(0.1)
    bert.to(dev)
    head.to(dev)
    bert.train()
    params = [p for p in list(bert.parameters()) + list(head.parameters()) if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, eps=1e-8, weight_decay=0.0)
    b, s = args.batch_size, args.seq_len
    ids = (1000 + (torch.arange(b * s) * 7919) % 20000).reshape(b, s).to(dev)
    mask = torch.ones(b, s, dtype=torch.long, device=dev)
    labels = (torch.arange(b) % 5).to(dev)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=args.device, dtype=torch.float16, enabled=amp):
            h = bert(input_ids=ids, attention_mask=mask).last_hidden_state
            m = mask.unsqueeze(-1).float()
            pooled = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
            loss = torch.nn.functional.cross_entropy(head(drop(pooled)), labels)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        scaler.step(opt)
        scaler.update()
        return loss.item()  # a read-back: the device has finished the step

    times = []
    for i in range(args.warmup + args.steps):
        t = time.perf_counter()
        step()
        if i >= args.warmup:
            times.append(time.perf_counter() - t)
    med = statistics.median_high(times)
    return {
        "tool": "peft",
        "config": name,
        "model": model_name,
        "backend": f"torch-{args.device}",
        "precision": args.precision,
        "batch_size": b,
        "seq_len": s,
        "threads": torch.get_num_threads(),
        "median_step_seconds": med,
        "examples_per_second": b / med,
        "peak_memory_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        # Reserved by the caching allocator, as lorabert's device figure (its pools' reservation);
        # the allocated peak beside it.
        "device_memory_bytes": torch.cuda.max_memory_reserved() if args.device == "cuda" else None,
        "device_memory_allocated_bytes": torch.cuda.max_memory_allocated() if args.device == "cuda" else None,
        "trainable_params": sum(p.numel() for p in params),
        "step_seconds": times,
    }


def gemm(args):
    import torch

    torch.set_num_threads(args.threads)
    seen, out = set(), []
    for line in open(args.gemm):
        r = json.loads(line)
        key = (r["product"], r["batch"], r["m"], r["k"], r["n"], r["lhs_transposed"], r["rhs_transposed"])
        if key in seen:
            continue
        seen.add(key)
        b, m, k, n = r["batch"], r["m"], r["k"], r["n"]

        def operand(t, rows, cols):
            if b == 1:
                return torch.randn(cols, rows).t() if t else torch.randn(rows, cols)
            return torch.randn(b, cols, rows).transpose(1, 2) if t else torch.randn(b, rows, cols)

        lhs, rhs = operand(r["lhs_transposed"], m, k), operand(r["rhs_transposed"], k, n)
        flops = 2.0 * b * m * k * n
        reps = max(5, min(2000, int(0.5 * 1e11 / flops)))
        for _ in range(2):
            torch.matmul(lhs, rhs)
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            torch.matmul(lhs, rhs)
            times.append(time.perf_counter() - t)
        med = statistics.median_high(times)
        rec = dict(r, tool="pytorch", route="torch", isa=torch.backends.cpu.get_cpu_capability(),
                   threads=torch.get_num_threads(), median_seconds=med, gflops=flops / med / 1e9)
        print(f"{r['product']:<44} {b:>4}x[{m:>4},{k:>4}]·[{k:>4},{n:>4}] torch    {rec['gflops']:7.1f} GFLOP/s",
              file=sys.stderr)
        out.append(json.dumps(rec, ensure_ascii=False))
    with open(args.output + ".tmp", "w") as f:
        f.write("\n".join(out) + "\n")
    os.replace(args.output + ".tmp", args.output)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(ROOT, "..", "shared", "models", "all-MiniLM-L6-v2"))
    ap.add_argument("--model-config")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--configs", default="full,lora-r1,lora-r8,dora-r1,dora-r8")
    ap.add_argument("--output", default="peft_bench.jsonl")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--precision", default="f32", choices=["f32", "f16"])
    ap.add_argument("--only")
    ap.add_argument("--gemm", help="time the products of this `lorabert bench --gemm` output instead")
    args = ap.parse_args()
    if args.gemm:
        gemm(args)
        return
    if args.only:
        print(json.dumps(measure(args, args.only)))
        return
    lines = []
    for name in args.configs.split(","):
        cmd = [sys.executable, os.path.abspath(__file__), "--only", name]
        for k in ["model", "model_config", "batch_size", "seq_len", "warmup", "steps", "threads", "device", "precision"]:
            v = getattr(args, k)
            if v is not None:
                cmd += ["--" + k.replace("_", "-"), str(v)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        rec = json.loads(out)
        print(f"{name:<10} {rec['median_step_seconds']:8.3f} s/step {rec['examples_per_second']:7.1f} ex/s  "
              f"peak {rec['peak_memory_bytes'] / 2**20:6.0f} MiB  trainable {rec['trainable_params']}", file=sys.stderr)
        lines.append(out)
        with open(args.output + ".tmp", "w") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(args.output + ".tmp", args.output)


if __name__ == "__main__":
    main()
