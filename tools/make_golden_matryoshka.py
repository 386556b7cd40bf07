#!/usr/bin/env python3
"""Writes tests/golden/matryoshka.json: reference values for Matryoshka embeddings, which
tests/matryoshka.rs compares lorabert with, made by sentence-transformers:

- losses: MatryoshkaLoss around MultipleNegativesRankingLoss (pairs; with a hard negative and
  weights, dimensions given out of order), CoSENTLoss (dimensions without the full one) and
  CosineSimilarityLoss, on fixed random embeddings (a stand-in model that returns them, so the
  loss's own ForwardDecorator cuts them as in training).
- encode: all-MiniLM-L6-v2 (../shared/models) `encode(..., truncate_dim=64,
  normalize_embeddings=True)` of three sentences, as `lorabert embed --truncate-dim 64
  --normalize` writes them.

    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install numpy torch sentence-transformers
    /tmp/ref/bin/python tools/make_golden_matryoshka.py
"""
import json
import os

import numpy as np
import sentence_transformers
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer import losses

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "golden", "matryoshka.json")
rng = np.random.default_rng(2929)
H = 8


class Fixed(torch.nn.Module):
    """Stands in for the SentenceTransformer: text role `i` (the feature `role`) gets the
    fixed embeddings `table[i]`."""

    similarity_fn_name = "cosine"

    def __init__(self, table):
        super().__init__()
        self.table = [torch.tensor(t) for t in table]

    def forward(self, features):
        return {"sentence_embedding": self.table[features["role"]].clone()}

    def _get_untruncated_embedding_dimension(self):
        return H

    def get_embedding_dimension(self):
        return H


def emb(n, h):
    return rng.normal(size=(n, h)).astype(np.float32)


def loss_cases():
    b = 6
    anchors, positives, negatives = emb(b, H), emb(b, H), emb(b, H)
    positives = anchors + 0.7 * positives
    scores = rng.uniform(0, 1, size=b).astype(np.float32)
    cases = []
    for name, base, roles, labels, dims, weights in [
        ("mnrl", losses.MultipleNegativesRankingLoss, 2, None, [8, 4, 2], None),
        ("mnrl_negative_weighted", losses.MultipleNegativesRankingLoss, 3, None, [2, 8, 4], [0.25, 1.0, 0.5]),
        ("cosent", losses.CoSENTLoss, 2, scores, [6, 3], None),
        ("cosine", losses.CosineSimilarityLoss, 2, scores, [8, 4], None),
    ]:
        embs = [anchors, positives, negatives][:roles]
        model = Fixed(embs)
        loss = losses.MatryoshkaLoss(model, base(model), dims, matryoshka_weights=weights)
        lab = torch.tensor(labels) if labels is not None else torch.arange(b)
        value = loss([{"role": i} for i in range(roles)], lab)
        cases.append(
            {
                "name": name,
                "dims": dims,
                "weights": weights,
                "embeddings": [e.tolist() for e in embs],
                "scores": None if labels is None else labels.tolist(),
                "loss": float(value),
            }
        )
    return cases


SENTENCES = [
    "A man is playing a guitar.",
    "How do I learn to code?",
    "The weather is lovely today.",
]


def encode_case():
    model = SentenceTransformer(os.path.join(ROOT, "..", "shared", "models", "all-MiniLM-L6-v2"), device="cpu")
    e = model.encode(SENTENCES, truncate_dim=64, normalize_embeddings=True)
    return {"sentences": SENTENCES, "truncate_dim": 64, "embeddings": e.tolist()}


def main():
    out = {
        "made_by": f"tools/make_golden_matryoshka.py, sentence-transformers {sentence_transformers.__version__}, torch {torch.__version__}",
        "losses": loss_cases(),
        "encode": encode_case(),
    }
    with open(OUT, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(OUT, json.dumps({c["name"]: c["loss"] for c in out["losses"]}))


if __name__ == "__main__":
    main()
