#!/usr/bin/env bash
# Builds the page (if needed), serves dist/ on 127.0.0.1 with a tiny random BERT and a few rows of
# the minBERT data (and a CSV slice of GLUE SST-2 for own data, Quora duplicate pairs and STS-B
# scored pairs for embeddings, a CoNLL-2003 slice for token classification), and runs e2e.mjs and
# kinds.mjs in headless Chromium. Artefacts (screenshots, console log) go to $E2E_OUT (default
# target/e2e). Needs: trunk + wasm-bindgen 0.2.130 on PATH, chromium, node + npm, the lorabert
# native binary ($LORABERT_BIN), ../shared (tokenizer and data).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${E2E_OUT:-target/e2e}
BIN=${LORABERT_BIN:-target/release/lorabert}
mkdir -p "$OUT"
[ -f dist/index.html ] || trunk build --release --offline
# The static constructors run once (src/main.rs calls them): wasm-ld must not have wrapped every
# export in a call to them (`*.command_export`), which cost 36 % of the page's main thread. The
# check reads the name section; its presence is checked first.
WASM=$(ls dist/*_bg.wasm)
grep -aq 'lorabert::web::start' "$WASM" || { echo "E2E FAIL: $WASM has no name section to check"; exit 1; }
if grep -aq 'command_export' "$WASM"; then echo "E2E FAIL: $WASM wraps its exports in constructor calls"; exit 1; fi
SHARED=../shared
FIX=dist/fixtures
rm -rf "$FIX"; mkdir -p "$FIX/data"
"$BIN" random-model --model-config tests/e2e/tiny-config.json \
  --tokenizer "$SHARED/models/all-MiniLM-L6-v2/tokenizer.json" --out "$FIX/tiny" --seed 3
head -n 200 "$SHARED/data/minbert/ids-sst-train.csv" > "$FIX/data/ids-sst-train.csv"
head -n 60 "$SHARED/data/minbert/ids-sst-dev.csv" > "$FIX/data/ids-sst-dev.csv"
# Own data: a slice of GLUE SST-2 as CSV with string labels (RFC 4180 quoting by Python's csv).
python3 - "$SHARED/data/glue/sst2-train.tsv" "$OUT/sst2-slice.csv" <<'PY'
import csv, sys
src, dst = sys.argv[1], sys.argv[2]
with open(src, newline="") as f, open(dst, "w", newline="") as g:
    rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:161]
    w = csv.writer(g)
    w.writerow(["text", "sentiment"])
    for sentence, label in rows:
        w.writerow([sentence.strip(), "positive" if label == "1" else "negative"])
PY
# Embedding pairs: the first 120 duplicate pairs of the Quora training file as anchor/positive.
python3 - "$SHARED/data/minbert/quora-train-partial.csv" "$OUT/quora-pairs.csv" <<'PY'
import csv, sys
src, dst = sys.argv[1], sys.argv[2]
with open(src, newline="") as f, open(dst, "w", newline="") as g:
    rows = [r for r in csv.DictReader(f, delimiter="\t") if r["is_duplicate"] == "1.0"][:120]
    w = csv.writer(g)
    w.writerow(["anchor", "positive"])
    for r in rows:
        w.writerow([r["sentence1"].strip(), r["sentence2"].strip()])
PY
# Scored pairs: the first 120 STS-B training pairs, similarity 0..5 as `score`.
python3 - "$SHARED/data/minbert/sts-train.csv" "$OUT/sts-scored.csv" <<'PY'
import csv, sys
src, dst = sys.argv[1], sys.argv[2]
with open(src, newline="") as f, open(dst, "w", newline="") as g:
    rows = list(csv.DictReader(f, delimiter="\t"))[:120]
    w = csv.writer(g)
    w.writerow(["sentence1", "sentence2", "score"])
    for r in rows:
        w.writerow([r["sentence1"].strip(), r["sentence2"].strip(), r["similarity"]])
PY
# Tagged words: the first 150 sentences of CoNLL-2003's English training file (IOB1, as published).
python3 - "$SHARED/data/ner/conll2003/eng.train" "$OUT/ner-slice.conll" <<'PY'
import sys
blocks = open(sys.argv[1], encoding="utf-8").read().split("\n\n")
open(sys.argv[2], "w", encoding="utf-8").write("\n\n".join(blocks[:150]) + "\n")
PY
(cd tests/e2e && [ -d node_modules/playwright-core ] && [ -d node_modules/puppeteer-core ] || npm ci --no-audit --no-fund)
PORT=${E2E_PORT:-8765}
python3 -m http.server "$PORT" --bind 127.0.0.1 --directory dist > "$OUT/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.1; done
if [ "${E2E_CHROMIUM:-1}" = 1 ]; then
  # e2e.mjs: the page's whole flow; kinds.mjs: the task kinds beyond classification and
  # regression (sentence embeddings). E2E_SCRIPTS="kinds" runs one of them.
  for script in ${E2E_SCRIPTS:-e2e kinds}; do
    LORABERT_BIN="$BIN" TINY_MODEL="$FIX/tiny" E2E_DATA="$FIX/data" node "tests/e2e/$script.mjs" "http://127.0.0.1:$PORT/" "$OUT"
  done
fi
# Firefox ESR (WebGPU on lavapipe, with shader-f16): the page's f16 path against native f16.
if [ "${E2E_FIREFOX:-1}" = 1 ]; then
  LORABERT_BIN="$BIN" TINY_MODEL="$FIX/tiny" E2E_DATA="$FIX/data" node tests/e2e/firefox.mjs "http://127.0.0.1:$PORT/" "$OUT"
fi
