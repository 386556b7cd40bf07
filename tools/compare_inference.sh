#!/usr/bin/env bash
# Sentence-embedding inference beside sentence-transformers (PyTorch) and ONNX Runtime (issue 32,
# item 2): `lorabert bench --inference` and tools/inference_bench.py alternately, round by round,
# on the same sentences, batch sizes and thread count; prints the median sentences/s per tool and
# the ratios.
#
#   tools/compare_inference.sh --onnx DIR [--python /path/to/venv/bin/python] [--threads 2]
#       [--rounds 3] [--batch-sizes 32,128] [--data ../shared/data/minbert] [--out DIR]
#
# DIR holds model.onnx, made once by `inference_bench.py export` (optimum; see tools/README.md).
# The sentences: the SST dev sentences and the first 5,000 distinct Quora dev questions
# (`inference_bench.py sentences`).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=python3; THREADS=2; OUT=bench-inference; ROUNDS=3; BATCHES="32,128"; DATA=../shared/data/minbert
MODEL=../shared/models/all-MiniLM-L6-v2; ONNX=
while [ $# -gt 0 ]; do
  case "$1" in
    --python) PY=$2; shift 2;;
    --threads) THREADS=$2; shift 2;;
    --out) OUT=$2; shift 2;;
    --rounds) ROUNDS=$2; shift 2;;
    --batch-sizes) BATCHES=$2; shift 2;;
    --data) DATA=$2; shift 2;;
    --model) MODEL=$2; shift 2;;
    --onnx) ONNX=$2; shift 2;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
if [ -z "$ONNX" ] || [ ! -f "$ONNX/model.onnx" ]; then
  echo "--onnx DIR: a folder with model.onnx (make it with tools/inference_bench.py export)" >&2
  exit 2
fi
BIN=${LORABERT_BIN:-target/release/lorabert}
[ -x "$BIN" ] || cargo build --release
mkdir -p "$OUT"
"$PY" tools/inference_bench.py sentences --data "$DATA" --out "$OUT"
: > "$OUT/lorabert.jsonl"; : > "$OUT/st.jsonl"; : > "$OUT/onnx.jsonl"
for round in $(seq "$ROUNDS"); do
  for input in sst-dev quora-dev; do
    for bs in ${BATCHES//,/ }; do
      "$BIN" bench --inference --input "$OUT/$input.txt" --model "$MODEL" --batch-size "$bs" \
        --threads "$THREADS" --steps 1 --output "$OUT/.l.jsonl" > /dev/null
      cat "$OUT/.l.jsonl" >> "$OUT/lorabert.jsonl"
      "$PY" tools/inference_bench.py time --engine st --model "$MODEL" --input "$OUT/$input.txt" \
        --batch-size "$bs" --threads "$THREADS" >> "$OUT/st.jsonl"
      "$PY" tools/inference_bench.py time --engine onnx --onnx "$ONNX" --input "$OUT/$input.txt" \
        --batch-size "$bs" --threads "$THREADS" >> "$OUT/onnx.jsonl"
    done
  done
done
rm -f "$OUT/.l.jsonl"
"$PY" - "$OUT" <<'PYEOF'
import json, sys, statistics
out = sys.argv[1]
def load(f):
    d = {}
    for line in open(f"{out}/{f}"):
        r = json.loads(line); d.setdefault((r["input"], r["batch_size"]), []).append(r["sentences_per_second"])
    return d
l, s, o = load("lorabert.jsonl"), load("st.jsonl"), load("onnx.jsonl")
med = statistics.median
print("| sentences | batch | lorabert sent/s | sentence-transformers | ONNX Runtime | lorabert / ST | lorabert / ORT |")
print("|---|---|---|---|---|---|---|")
for k in l:
    print(f"| {k[0]} | {k[1]} | {med(l[k]):.1f} | {med(s[k]):.1f} | {med(o[k]):.1f} | {med(l[k]) / med(s[k]):.2f} | {med(l[k]) / med(o[k]):.2f} |")
PYEOF
