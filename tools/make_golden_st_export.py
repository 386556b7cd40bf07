#!/usr/bin/env python3
"""Rewrites the sentence-transformers case of tests/golden/export/expected.json (`ckpt-mean-st`):
what sentence-transformers computes from the folder `lorabert export --format
sentence-transformers` writes for the committed checkpoint tests/golden/export/ckpt-mean (LoRA
r=2 on all-MiniLM-L6-v2, mean pooling). The export carries the base's modules (Transformer,
Pooling, Normalize) and its max_seq_length (256), so `SentenceTransformer(export).encode` gives
unit-norm vectors as the base model's do. tests/cli.rs compares `lorabert embed` (normalised)
and the export run by lorabert with these values (1e-4), and the norms with 1 (1e-5).

    cargo build --release && /tmp/ref/bin/python tools/make_golden_st_export.py
(the virtualenv of tools/make_golden_export.py: torch 2.15, sentence-transformers 6.2.0).
"""
import json
import os
import subprocess
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = os.path.join(ROOT, "tests", "golden", "export")
MODEL = os.path.join(ROOT, "..", "shared", "models", "all-MiniLM-L6-v2")
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
BIN = os.environ.get("LORABERT_BIN", os.path.join(TARGET, "release", "lorabert"))


def main():
    from sentence_transformers import SentenceTransformer

    path = os.path.join(GOLDEN, "expected.json")
    expected = json.load(open(path))
    out = os.path.join(tempfile.mkdtemp(), "mean-st")
    subprocess.run([BIN, "export", "--model", MODEL, "--checkpoint",
                    os.path.join(GOLDEN, "ckpt-mean"), "--format", "sentence-transformers",
                    "--output", out], check=True)
    st = SentenceTransformer(out, device="cpu")
    emb = st.encode(expected["sentences"], convert_to_numpy=True)
    base = SentenceTransformer(MODEL, device="cpu").encode(expected["sentences"], convert_to_numpy=True)
    modules = [type(m).__name__ for m in st]
    print("modules", modules, "max_seq_length", st.max_seq_length)
    print("norms", np.linalg.norm(emb, axis=1), "base norms", np.linalg.norm(base, axis=1))
    expected["cases"]["ckpt-mean-st"] = {
        "checkpoint": "ckpt-mean",
        "sentence_transformers": emb.tolist(),
        "norms": np.linalg.norm(emb, axis=1).tolist(),
        "modules": modules,
        "max_seq_length": st.max_seq_length,
    }
    with open(path, "w") as f:
        json.dump(expected, f, indent=1)
    print("wrote", path)


if __name__ == "__main__":
    main()
