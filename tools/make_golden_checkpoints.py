#!/usr/bin/env python3
"""Writes tests/golden/checkpoints/: one tiny random BERT saved by transformers in the layouts
people download (sharded safetensors with model.safetensors.index.json, and pytorch_model.bin
only), and expected.safetensors: its last_hidden_state for fixed inputs, which tests/cli.rs
compares lorabert's with after loading each layout (1e-5).

    /tmp/ref/bin/python tools/make_golden_checkpoints.py
"""
import os
import shutil

import torch
from safetensors.torch import save_file
from transformers import BertConfig, BertModel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "golden", "checkpoints")


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    torch.manual_seed(6)
    cfg = BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    m = BertModel(cfg).eval()
    m.save_pretrained(os.path.join(OUT, "sharded"), max_shard_size="40KB")
    # transformers 5 writes safetensors only: the pickle layout of older checkpoints by hand.
    os.makedirs(os.path.join(OUT, "pytorch_bin"))
    cfg.save_pretrained(os.path.join(OUT, "pytorch_bin"))
    torch.save(m.state_dict(), os.path.join(OUT, "pytorch_bin", "pytorch_model.bin"))
    ids = torch.tensor([[2, 17, 45, 99, 3, 0], [2, 8, 64, 3, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 0]])
    types = torch.zeros_like(ids)
    with torch.no_grad():
        h = m(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
    save_file({"input_ids": ids, "attention_mask": mask, "token_type_ids": types,
               "last_hidden_state": h.contiguous()}, os.path.join(OUT, "expected.safetensors"))
    for d in ["sharded", "pytorch_bin"]:
        print(d, sorted(os.listdir(os.path.join(OUT, d))))


if __name__ == "__main__":
    main()
