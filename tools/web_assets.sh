#!/usr/bin/env bash
# Puts the default model and the minBERT data next to the built page, so the page's defaults
# (model URL `model/`, data URL `data/`) load them from the same origin:
#   dist/model/{config.json,model.safetensors,tokenizer.json}, dist/data/*.csv
# Usage: tools/web_assets.sh [MODEL_DIR] [DATA_DIR]   (after `trunk build --release`)
# Defaults: ../shared/models/all-MiniLM-L6-v2 (else models/all-MiniLM-L6-v2) and ../shared/data/minbert.
# Nothing is committed: these are copies (hard links where possible) inside the ignored dist/.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-}
if [ -z "$MODEL" ]; then
  for d in ../shared/models/all-MiniLM-L6-v2 models/all-MiniLM-L6-v2; do
    [ -f "$d/model.safetensors" ] && MODEL=$d && break
  done
fi
DATA=${2:-../shared/data/minbert}
[ -f dist/index.html ] || { echo "dist/index.html not found: run 'trunk build --release' first" >&2; exit 1; }
[ -n "$MODEL" ] && [ -f "$MODEL/model.safetensors" ] || {
  echo "no model folder with model.safetensors: pass one, or run 'cargo run --release -- fetch-model'" >&2; exit 1; }
mkdir -p dist/model dist/data
for f in config.json model.safetensors tokenizer.json; do
  [ -f "$MODEL/$f" ] || { echo "$MODEL/$f is missing" >&2; exit 1; }
  ln -f "$MODEL/$f" "dist/model/$f" 2>/dev/null || cp "$MODEL/$f" "dist/model/$f"
done
if [ -d "$DATA" ]; then
  for f in "$DATA"/*.csv; do ln -f "$f" "dist/data/" 2>/dev/null || cp "$f" dist/data/; done
  echo "model from $MODEL and data from $DATA copied into dist/"
else
  echo "model from $MODEL copied into dist/model/; no data folder at $DATA (get the minBERT files from" \
       "https://github.com/gpoesia/minbert-default-final-project, folder data/, or pick them in the page)" >&2
fi
