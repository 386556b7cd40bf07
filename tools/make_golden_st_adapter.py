#!/usr/bin/env python3
"""Writes tests/golden/st_adapter/expected.json: what sentence-transformers computes after
`SentenceTransformer(all-MiniLM-L6-v2).load_adapter(FOLDER)` for the checkpoint folders that
`lorabert train --task-type embedding` wrote (committed beside it: `lora` and `dora`, each a
run's `best/` folder as lorabert saved it, untouched). tests/st_adapter.rs compares
`lorabert embed --checkpoint FOLDER --normalize` with these embeddings (1e-5), so a run's
adapter gives the same embeddings in lorabert and in sentence-transformers + PEFT.

The folders were made with (tests/data/embedding/pairs.csv, the real all-MiniLM-L6-v2; a high
learning rate so the adapter moves the embeddings visibly in 6 steps):

    lorabert train --train-file tests/data/embedding/pairs.csv --validation-split 0.25 \
      --r 2 --lora-alpha 8 --max-steps 6 --batch-size 16 --lr 5e-3 --out /tmp/st-lora
    lorabert train ... --adapter dora --out /tmp/st-dora
    cp /tmp/st-lora/best/* tests/golden/st_adapter/lora/; cp /tmp/st-dora/best/* tests/golden/st_adapter/dora/

Also checked here, before writing: every tensor of each adapter_model.safetensors is the
loaded model's (no key left out or renamed away: the loaded lora_A, lora_B and
lora_magnitude_vector equal the file's), and the adapter changes the embeddings (else the
comparison would say nothing).

    /tmp/ref/bin/pip install torch transformers peft safetensors "sentence-transformers==6.3.*"
    /tmp/ref/bin/python tools/make_golden_st_adapter.py
"""
import json
import os

import numpy as np
import torch
from safetensors.torch import load_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = os.path.join(ROOT, "tests", "golden", "st_adapter")
MODEL = os.path.join(ROOT, "..", "shared", "models", "all-MiniLM-L6-v2")
SENTENCES = [
    "What is the best way to learn Rust?",
    "How do I learn Rust quickly?",
    "A man is playing a guitar.",
    "Café crème brûlée, naïve façade — 東京 and Zürich!",
    "a",
    "The Rock is destined to be the 21st Century's new Conan and that he's going to make a "
    "splash even greater than Arnold Schwarzenegger, Jean-Claud Van Damme or Steven Segal.",
]


def check_loaded(model, folder):
    """Every tensor of the folder's adapter_model.safetensors equals the loaded parameter."""
    saved = load_file(os.path.join(folder, "adapter_model.safetensors"))
    params = {n.removeprefix("base_model.model."): p
              for n, p in model[0].auto_model.named_parameters()}
    for key, value in saved.items():
        # base_model.model.<module>.lora_A.weight -> <module>.lora_A.default.weight
        short = key[len("base_model.model."):]
        if short.endswith(".lora_magnitude_vector"):
            name = short + ".default.weight"
        else:
            stem, kind, last = short.rsplit(".", 2)
            name = f"{stem}.{kind}.default.{last}"
        assert name in params, f"{key}: no parameter {name} after load_adapter"
        got = params[name].detach()
        assert torch.equal(got, value), f"{key}: loaded value differs from the file's"
    return len(saved)


def main():
    from peft import PeftModel
    from sentence_transformers import SentenceTransformer

    base = SentenceTransformer(MODEL, device="cpu")
    base_emb = base.encode(SENTENCES, convert_to_numpy=True)
    cases = {}
    for name in ["lora", "dora"]:
        folder = os.path.join(GOLDEN, name)
        model = SentenceTransformer(MODEL, device="cpu")
        model.load_adapter(folder)
        how = "SentenceTransformer.load_adapter"
        if name == "dora":
            # transformers 5.25's load_adapter (under sentence-transformers' load_adapter) maps
            # PEFT's saved key `<module>.lora_magnitude_vector` to `...lora_magnitude_vector.default`
            # and leaves the parameter `...lora_magnitude_vector.default.weight` at its
            # initial value: it reports them UNEXPECTED and MISSING. An adapter PEFT itself
            # saves fails the same way, so the file is right and the loader is not; PEFT's own
            # loader reads it. Recorded here, checked each time this script runs.
            try:
                check_loaded(model, folder)
                dropped = False
            except AssertionError:
                dropped = True
            model = SentenceTransformer(MODEL, device="cpu")
            model[0].auto_model = PeftModel.from_pretrained(model[0].auto_model, folder)
            how = "PeftModel.from_pretrained(model[0].auto_model, folder)"
        n = check_loaded(model, folder)
        emb = model.encode(SENTENCES, convert_to_numpy=True)
        change = float(np.abs(emb - base_emb).max())
        assert change > 1e-3, f"{name}: the adapter barely changes the embeddings ({change})"
        print(name, "tensors", n, "largest change from the base", change,
              "modules", [type(m).__name__ for m in model])
        cases[name] = {"embeddings": emb.tolist(), "largest_change_from_base": change,
                       "loaded_with": how}
        if name == "dora":
            cases[name]["load_adapter_drops_the_magnitudes"] = dropped
    out = {
        "sentences": SENTENCES,
        "base": base_emb.tolist(),
        "cases": cases,
        "made_with": {
            "sentence_transformers": __import__("sentence_transformers").__version__,
            "transformers": __import__("transformers").__version__,
            "peft": __import__("peft").__version__,
            "torch": torch.__version__,
        },
    }
    path = os.path.join(GOLDEN, "expected.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print("wrote", path)


if __name__ == "__main__":
    main()
