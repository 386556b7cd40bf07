#!/usr/bin/env bash
# Runs `lorabert bench` and tools/peft_bench.py alternately, configuration by configuration, in one
# go on the same machine and thread count, and prints the lorabert/PEFT ratio per configuration.
#
#   tools/compare_bench.sh [--python /path/to/venv/bin/python] [--threads N] [--out DIR] [-- bench args]
#   tools/compare_bench.sh --gemm [--rounds N] ...   the step's matrix products instead (GFLOP/s:
#                                                    Burn's matmul, lorabert's route, PyTorch)
#
# Extra arguments after `--` go to both (e.g. --model-config ../shared/models/bert-base-uncased-config.json).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=python3; THREADS=$(nproc); OUT=bench-results; CONFIGS="full,lora-r1,lora-r8,dora-r1,dora-r8"; ROUNDS=1
while [ $# -gt 0 ]; do
  case "$1" in
    --python) PY=$2; shift 2;;
    --threads) THREADS=$2; shift 2;;
    --out) OUT=$2; shift 2;;
    --configs) CONFIGS=$2; shift 2;;
    --rounds) ROUNDS=$2; shift 2;;
    --gemm) GEMM=1; shift;;
    --) shift; break;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
BIN=${LORABERT_BIN:-target/release/lorabert}
[ -x "$BIN" ] || cargo build --release
mkdir -p "$OUT"
if [ -n "${GEMM:-}" ]; then
  : > "$OUT/lorabert-gemm.jsonl"; : > "$OUT/torch-gemm.jsonl"
  for round in $(seq "$ROUNDS"); do
    "$BIN" bench --gemm --threads "$THREADS" --output "$OUT/.lg.jsonl" "$@"
    cat "$OUT/.lg.jsonl" >> "$OUT/lorabert-gemm.jsonl"
    "$PY" tools/peft_bench.py --gemm "$OUT/.lg.jsonl" --threads "$THREADS" --output "$OUT/.pg.jsonl"
    cat "$OUT/.pg.jsonl" >> "$OUT/torch-gemm.jsonl"
  done
  rm -f "$OUT/.lg.jsonl" "$OUT/.pg.jsonl"
  "$PY" - "$OUT" <<'PYEOF'
import json, sys, statistics
out = sys.argv[1]
g = {}
for f in ["lorabert-gemm.jsonl", "torch-gemm.jsonl"]:
    for line in open(f"{out}/{f}"):
        r = json.loads(line); g.setdefault((r["product"], r["route"]), []).append(r)
products = list(dict.fromkeys(p for p, _ in g))
med = lambda p, route: statistics.median(r["gflops"] for r in g[(p, route)])
print("| product | shape | burn GFLOP/s | lorabert GFLOP/s | PyTorch GFLOP/s | lorabert / PyTorch |")
print("|---|---|---|---|---|---|")
for p in products:
    r = g[(p, "lorabert")][0]
    shape = f"{r['batch']}×[{r['m']},{r['k']}]·[{r['k']},{r['n']}]"
    print(f"| {p} | {shape} | {med(p, 'burn'):.1f} | {med(p, 'lorabert'):.1f} | {med(p, 'torch'):.1f} | {med(p, 'lorabert') / med(p, 'torch'):.2f} |")
# The frozen-weight products of a step: per layer four attention projections and the two MLP
# ones, forward (x·W) and backward (g·Wᵀ).
mix = {p: (4 if "attention" in p else 1) for p in products if p.startswith(("x·W", "g·Wᵀ"))}
for route in ["burn", "lorabert", "torch"]:
    fl = sum(w * 2 * g[(p, route)][0]["m"] * g[(p, route)][0]["k"] * g[(p, route)][0]["n"] for p, w in mix.items())
    sec = sum(w * statistics.median(r["median_seconds"] for r in g[(p, route)]) for p, w in mix.items())
    print(f"frozen-weight products of a step ({route}): {fl / sec / 1e9:.1f} GFLOP/s")
PYEOF
  exit 0
fi
: > "$OUT/lorabert.jsonl"; : > "$OUT/peft.jsonl"
for round in $(seq "$ROUNDS"); do
  for c in ${CONFIGS//,/ }; do
    "$BIN" bench --configs "$c" --threads "$THREADS" --output "$OUT/.l.jsonl" "$@"
    cat "$OUT/.l.jsonl" >> "$OUT/lorabert.jsonl"
    "$PY" tools/peft_bench.py --configs "$c" --threads "$THREADS" --output "$OUT/.p.jsonl" "$@"
    cat "$OUT/.p.jsonl" >> "$OUT/peft.jsonl"
  done
done
rm -f "$OUT/.l.jsonl" "$OUT/.p.jsonl"
"$PY" - "$OUT" <<'PYEOF'
import json, sys, statistics
out = sys.argv[1]
def load(f):
    d = {}
    for line in open(f"{out}/{f}"):
        r = json.loads(line); d.setdefault(r["config"], []).append(r)
    return d
l, p = load("lorabert.jsonl"), load("peft.jsonl")
print(f"| config | lorabert ex/s | PEFT ex/s | ratio | lorabert peak MiB | PEFT peak MiB | trainable (lorabert / PEFT) |")
print("|---|---|---|---|---|---|---|")
for c in l:
    le = statistics.median(r["examples_per_second"] for r in l[c]); pe = statistics.median(r["examples_per_second"] for r in p[c])
    lm = max(r["peak_memory_bytes"] for r in l[c]) / 2**20; pm = max(r["peak_memory_bytes"] for r in p[c]) / 2**20
    print(f"| {c} | {le:.1f} | {pe:.1f} | {le/pe:.2f} | {lm:.0f} | {pm:.0f} | {l[c][0]['trainable_params']} / {p[c][0]['trainable_params']} |")
def step(d, c): return statistics.median(r["median_step_seconds"] for r in d[c])
for r in sorted({c.split("-r")[1] for c in l if c.startswith("dora-r")}):
    if f"lora-r{r}" in l:
        print(f"DoRA/LoRA step time at r={r}: lorabert {step(l, f'dora-r{r}')/step(l, f'lora-r{r}'):.2f}, PEFT {step(p, f'dora-r{r}')/step(p, f'lora-r{r}'):.2f}")
PYEOF
