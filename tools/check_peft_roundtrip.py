#!/usr/bin/env python3
"""Checks that an adapter saved by lorabert loads in PEFT and gives lorabert's outputs.

    python3 tools/check_peft_roundtrip.py --checkpoint runs/sst-lora-r1/best \
        [--model ../shared/models/all-MiniLM-L6-v2] [--lorabert target/release/lorabert]

It runs `lorabert embed --checkpoint ...` on a few sentences (last_hidden_state with the adapter),
loads the same base model with `peft.PeftModel.from_pretrained(checkpoint)`, and prints the
largest absolute difference of the two last_hidden_state tensors (tolerance 1e-4). Needs torch,
transformers, peft and safetensors (a throwaway virtualenv; CI does not run this).
"""
import argparse
import os
import subprocess
import sys
import tempfile

import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoTokenizer, BertModel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SENTENCES = [
    "A gorgeous, witty, seductive movie.",
    "",
    "Is Zürich more expensive than München?",
    "the plot is nothing but boilerplate clichés from start to finish , and the script assumes that not only would subtlety be lost on the target audience , but that it 's also too stupid to realize that they 've already seen this exact same movie a hundred times",
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", required=True, help="lorabert checkpoint folder (best/)")
    ap.add_argument("--model", default=os.path.join(ROOT, "..", "shared", "models", "all-MiniLM-L6-v2"))
    ap.add_argument("--lorabert", default=os.path.join(ROOT, "target", "release", "lorabert"))
    ap.add_argument("--tolerance", type=float, default=1e-4)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "emb.safetensors")
        cmd = [args.lorabert, "embed", "--model", args.model, "--checkpoint", args.checkpoint, "--output", out]
        for s in SENTENCES:
            cmd += ["--sentence", s]
        subprocess.run(cmd, check=True)
        ours = load_file(out)

    tok = AutoTokenizer.from_pretrained(args.model)
    base = BertModel.from_pretrained(args.model)
    model = PeftModel.from_pretrained(base, args.checkpoint).eval()
    enc = tok(SENTENCES, padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.no_grad():
        ref = model(**enc).last_hidden_state
    assert list(ref.shape) == list(ours["last_hidden_state"].shape), (ref.shape, ours["last_hidden_state"].shape)
    assert torch.equal(enc["input_ids"].float(), ours["input_ids"]), "token ids differ"
    diff = (ref - ours["last_hidden_state"]).abs().max().item()
    cfg = model.peft_config["default"]
    print(f"PEFT {cfg.peft_type.value} r={cfg.r} use_dora={cfg.use_dora} targets={sorted(cfg.target_modules)}")
    print(f"last_hidden_state {list(ref.shape)}: max |lorabert - PEFT| = {diff:.3e} (tolerance {args.tolerance:g})")
    sys.exit(0 if diff <= args.tolerance else 1)


if __name__ == "__main__":
    main()
