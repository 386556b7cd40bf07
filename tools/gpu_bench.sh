#!/usr/bin/env bash
# GPU benchmark (issue #7) for a machine with an NVIDIA GPU: `lorabert bench` on wgpu (Vulkan)
# and PyTorch + PEFT (eager; f16 = autocast + GradScaler) on CUDA, same cells, then ratios.
#
#   tools/gpu_bench.sh [--python /venv/bin/python] [--out DIR] [--batch 64] [--seq 128] [--steps 10]
#
# Then `bench --inference` (MiniLM embeddings of the SST dev sentences, batch 128) in f32 and
# f16, printed as JSON lines (DIR/inference/).
# Cells: MiniLM (default model) and the bert-base shape (random weights from
# ../shared/models/bert-base-uncased-config.json, or models/bert-base-uncased-config.json),
# LoRA and DoRA at r = 1 and 8 on all linear layers, f32 and f16 storage, batch 64 x 128 tokens.
# Needs: the release binary (LORABERT_BIN, default target/release/lorabert, built elsewhere is fine),
# the Vulkan loader (Debian: libvulkan1) and the NVIDIA driver's Vulkan ICD. PEFT cells run only when
# --python has torch with CUDA, transformers and peft. Writes DIR/*.jsonl and prints a Markdown table.
# Expect a few minutes in all on a datacenter GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=python3; OUT=gpu-bench; B=64; S=128; STEPS=10; WARMUP=3
while [ $# -gt 0 ]; do
  case "$1" in
    --python) PY=$2; shift 2;;
    --out) OUT=$2; shift 2;;
    --batch) B=$2; shift 2;;
    --seq) S=$2; shift 2;;
    --steps) STEPS=$2; shift 2;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
BIN=${LORABERT_BIN:-target/release/lorabert}
[ -x "$BIN" ] || { echo "$BIN not found: build with 'cargo build --release' (or set LORABERT_BIN)" >&2; exit 1; }
BASE_CFG=""
for f in ../shared/models/bert-base-uncased-config.json models/bert-base-uncased-config.json; do
  [ -f "$f" ] && BASE_CFG=$f && break
done
CONFIGS=lora-r1,lora-r8,dora-r1,dora-r8
mkdir -p "$OUT"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
HAVE_TORCH=0
"$PY" -c 'import torch, transformers, peft; assert torch.cuda.is_available()' 2>/dev/null && HAVE_TORCH=1
[ $HAVE_TORCH = 1 ] || echo "note: $PY has no CUDA torch + transformers + peft: PEFT cells skipped" >&2
for model in minilm bert-base; do
  args=()
  if [ $model = bert-base ]; then
    [ -n "$BASE_CFG" ] || { echo "note: no bert-base config found, bert-base skipped" >&2; continue; }
    args=(--model-config "$BASE_CFG")
  fi
  for prec in f32 f16; do
    echo "== $model $prec" >&2
    "$BIN" bench --backend wgpu --precision $prec --configs $CONFIGS --batch-size "$B" --seq-len "$S" \
      --warmup $WARMUP --steps "$STEPS" --output "$OUT/lorabert_${model}_$prec.jsonl" "${args[@]}" \
      || echo "lorabert $model $prec failed" >&2
    if [ $HAVE_TORCH = 1 ]; then
      "$PY" tools/peft_bench.py --device cuda --precision $prec --configs $CONFIGS --batch-size "$B" \
        --seq-len "$S" --warmup $WARMUP --steps "$STEPS" --output "$OUT/peft_${model}_$prec.jsonl" "${args[@]}" \
        || echo "peft $model $prec failed" >&2
    fi
  done
done
# Inference (issue 32, item 5): MiniLM sentence embeddings in f32 and f16, sentences/s.
SENTS=""
for f in ../shared/data/minbert/ids-sst-dev.csv data/minbert/ids-sst-dev.csv; do
  [ -f "$f" ] && SENTS=$f && break
done
if [ -n "$SENTS" ]; then
  mkdir -p "$OUT/inference"
  tail -n +2 "$SENTS" | cut -f3 > "$OUT/inference/sst-dev.txt"
  for prec in f32 f16; do
    echo "== inference $prec" >&2
    "$BIN" bench --inference --backend wgpu --precision $prec --input "$OUT/inference/sst-dev.txt" \
      --batch-size 128 --steps 3 --output "$OUT/inference/lorabert_$prec.jsonl" \
      || echo "lorabert inference $prec failed" >&2
  done
  cat "$OUT"/inference/lorabert_*.jsonl >&2 || true
else
  echo "note: no ids-sst-dev.csv found, inference skipped" >&2
fi
"$PY" - "$OUT" <<'PYEOF'
import glob, json, os, sys
out = sys.argv[1]
rows = {}
for f in glob.glob(f"{out}/*.jsonl"):
    tool, model, prec = os.path.basename(f)[: -len(".jsonl")].split("_")
    for line in open(f):
        r = json.loads(line)
        rows[(tool, model, prec, r["config"])] = r
def mib(r):
    b = r.get("device_memory_bytes")
    return f"{b / 2**20:.0f}" if b else "-"
def peft_mib(p):
    a = p.get("device_memory_allocated_bytes")
    return f"{mib(p)} / {a / 2**20:.0f}" if a else mib(p)
print("| model | precision | config | lorabert ex/s | PEFT ex/s | ratio | lorabert device MiB (reserved) | PEFT device MiB (reserved / allocated) |")
print("|---|---|---|---|---|---|---|---|")
for (tool, model, prec, cfg), l in sorted(rows.items()):
    if tool != "lorabert":
        continue
    p = rows.get(("peft", model, prec, cfg))
    ratio = f"{l['examples_per_second'] / p['examples_per_second']:.2f}" if p else "-"
    pe = f"{p['examples_per_second']:.1f}" if p else "-"
    print(f"| {model} | {prec} ({l['precision']} ran) | {cfg} | {l['examples_per_second']:.1f} | {pe} | {ratio} | {mib(l)} | {peft_mib(p) if p else '-'} |")
for (tool, model, prec, cfg), l in sorted(rows.items()):
    if tool == "lorabert" and prec == "f16" and ("lorabert", model, "f32", cfg) in rows:
        f = rows[("lorabert", model, "f32", cfg)]
        mem = (l["device_memory_bytes"] or 0) / max(f["device_memory_bytes"] or 1, 1)
        print(f"{model} {cfg}: f16/f32 device memory {mem:.2f}x, step time {l['median_step_seconds'] / f['median_step_seconds']:.2f}x")
for (tool, model, prec, cfg), d in sorted(rows.items()):
    if cfg.startswith("dora-r") and (tool, model, prec, "lora-r" + cfg[6:]) in rows:
        lo = rows[(tool, model, prec, "lora-r" + cfg[6:])]
        print(f"{tool} {model} {prec} r={cfg[6:]}: DoRA/LoRA step time {d['median_step_seconds'] / lo['median_step_seconds']:.2f}")
PYEOF
