#!/usr/bin/env python3
"""Writes tests/golden/embedding.json: reference values for sentence-embedding training and
evaluation, which tests/embedding.rs compares lorabert with, all made by sentence-transformers
on fixed random embeddings (no model):

- losses: MultipleNegativesRankingLoss (anchor/positive, and with one hard-negative column),
  MultipleNegativesSymmetricRankingLoss, CoSENTLoss and CosineSimilarityLoss through their
  `compute_loss_from_embeddings` (scale 20, and 7 for one case).
- retrieval: InformationRetrievalEvaluator (cosine; MRR@10, NDCG@10, MAP@100, Recall@1/5/10,
  Accuracy@1/10) with the query embeddings looked up instead of encoded and the corpus
  embeddings passed in.
- similarity: EmbeddingSimilarityEvaluator (pearson_cosine, spearman_cosine) with the
  embeddings looked up.
- search: util.semantic_search with all-MiniLM-L6-v2 (../shared/models) over the positives of
  tests/data/embedding/pairs.csv, top 5 of three queries.

    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install numpy scipy torch sentence-transformers
    /tmp/ref/bin/python tools/make_golden_embedding.py
"""
import json
import os
import types

import numpy as np
import sentence_transformers
import torch
from sentence_transformers import losses
from sentence_transformers.sentence_transformer.evaluation import (
    EmbeddingSimilarityEvaluator,
    InformationRetrievalEvaluator,
)
from sentence_transformers.util import cos_sim

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "golden", "embedding.json")
rng = np.random.default_rng(29)


class NoModel(torch.nn.Module):
    """Stands in for the SentenceTransformer the losses hold; only their embeddings matter."""

    similarity_fn_name = "cosine"


def emb(n, h):
    return rng.normal(size=(n, h)).astype(np.float32)


def loss_cases():
    b, h = 6, 8
    anchors, positives, negatives = emb(b, h), emb(b, h), emb(b, h)
    # Positives near their anchors so that the loss is not at chance.
    positives = anchors + 0.7 * positives
    scores = rng.uniform(0, 1, size=b).astype(np.float32)
    scores[2] = scores[4]  # a tie: no CoSENT term between them
    t = lambda a: torch.tensor(a)
    cases = []
    for name, loss, embs, labels in [
        ("mnrl", losses.MultipleNegativesRankingLoss(NoModel()), [anchors, positives], None),
        ("mnrl_scale7", losses.MultipleNegativesRankingLoss(NoModel(), scale=7.0), [anchors, positives], None),
        ("mnrl_negative", losses.MultipleNegativesRankingLoss(NoModel()), [anchors, positives, negatives], None),
        ("mnrl_symmetric", losses.MultipleNegativesSymmetricRankingLoss(NoModel()), [anchors, positives], None),
        ("cosent", losses.CoSENTLoss(NoModel()), [anchors, positives], scores),
        ("cosine", losses.CosineSimilarityLoss(NoModel()), [anchors, positives], scores),
    ]:
        lab = t(labels) if labels is not None else torch.arange(b)
        value = loss.compute_loss_from_embeddings([t(e) for e in embs], lab)
        cases.append(
            {
                "name": name,
                "scale": float(getattr(loss, "scale", 20.0)),
                "embeddings": [e.tolist() for e in embs],
                "scores": None if labels is None else labels.tolist(),
                "loss": float(value),
            }
        )
    return cases


class Lookup:
    """The evaluators' `embed_inputs`, answering from a table instead of a model."""

    def __init__(self, table):
        self.table = table

    def __call__(self, model, sentences, **kwargs):
        return torch.tensor(np.stack([self.table[s] for s in sentences]))


def retrieval_case():
    nq, nc, h = 24, 70, 16
    q, c = emb(nq, h), emb(nc, h)
    relevant = {}
    for i in range(nq):
        docs = rng.choice(nc, size=int(rng.integers(1, 4)), replace=False)
        # Some relevant documents near their query, so that the metrics are not near 0.
        for d in docs[: int(rng.integers(0, 2)) + 1]:
            c[d] = q[i] + rng.normal(scale=1.2, size=h).astype(np.float32)
        relevant[f"q{i}"] = {f"d{d}" for d in docs}
    queries = {f"q{i}": f"q{i}" for i in range(nq)}
    corpus = {f"d{j}": f"d{j}" for j in range(nc)}
    ev = InformationRetrievalEvaluator(
        queries,
        corpus,
        relevant,
        mrr_at_k=[10],
        ndcg_at_k=[10],
        accuracy_at_k=[1, 10],
        precision_recall_at_k=[1, 5, 10],
        map_at_k=[100],
        score_functions={"cosine": cos_sim},
        show_progress_bar=False,
    )
    ev.embed_inputs = Lookup({f"q{i}": q[i] for i in range(nq)})
    # The corpus ids in the evaluator's order, and their embeddings in that order.
    order = [int(cid[1:]) for cid in ev.corpus_ids]
    scores = ev.compute_all_metrics(None, corpus_embeddings=torch.tensor(c[order]))["cosine"]
    metrics = {
        "ndcg@10": scores["ndcg@k"][10],
        "mrr@10": scores["mrr@k"][10],
        "map@100": scores["map@k"][100],
        "recall@1": scores["recall@k"][1],
        "recall@5": scores["recall@k"][5],
        "recall@10": scores["recall@k"][10],
        "accuracy@1": scores["accuracy@k"][1],
        "accuracy@10": scores["accuracy@k"][10],
    }
    return {
        "queries": q.tolist(),
        "corpus": c.tolist(),
        "relevant": [sorted(int(d[1:]) for d in relevant[f"q{i}"]) for i in range(nq)],
        "metrics": {k: float(v) for k, v in metrics.items()},
    }


def similarity_case():
    n, h = 30, 12
    a, b = emb(n, h), emb(n, h)
    b = a + 1.5 * b
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    gold = np.clip(cos + rng.normal(scale=0.3, size=n), -1, 1).round(2)
    s1 = [f"a{i}" for i in range(n)]
    s2 = [f"b{i}" for i in range(n)]
    ev = EmbeddingSimilarityEvaluator(s1, s2, gold.tolist(), similarity_fn_names=["cosine"])
    table = {**{f"a{i}": a[i] for i in range(n)}, **{f"b{i}": b[i] for i in range(n)}}
    ev.embed_inputs = Lookup(table)
    card = types.SimpleNamespace(set_evaluation_metrics=lambda *a, **k: None)
    m = ev(types.SimpleNamespace(model_card_data=card))
    return {
        "a": a.tolist(),
        "b": b.tolist(),
        "scores": gold.tolist(),
        "pearson": float(m["pearson_cosine"]),
        "spearman": float(m["spearman_cosine"]),
    }


SEARCH_QUERIES = ["How do I learn to code?", "What is the best way to lose weight?",
                  "Which phone should I buy?"]


def search_case():
    """util.semantic_search with all-MiniLM-L6-v2 over the positives of
    tests/data/embedding/pairs.csv (one per line, as `lorabert search --corpus` reads a text
    file), top 5 per query."""
    import csv

    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import semantic_search

    with open(os.path.join(ROOT, "tests", "data", "embedding", "pairs.csv"), newline="", encoding="utf-8") as f:
        corpus = [r["positive"].strip() for r in csv.DictReader(f)]
    model = SentenceTransformer(os.path.join(ROOT, "..", "shared", "models", "all-MiniLM-L6-v2"), device="cpu")
    model.max_seq_length = 128
    c = model.encode(corpus, convert_to_tensor=True)
    q = model.encode(SEARCH_QUERIES, convert_to_tensor=True)
    hits = semantic_search(q, c, top_k=5)
    return {
        "corpus_lines": len(corpus),
        "queries": SEARCH_QUERIES,
        "hits": [[{"corpus_id": h["corpus_id"], "score": float(h["score"])} for h in hs] for hs in hits],
    }


def main():
    out = {
        "made_by": f"tools/make_golden_embedding.py, sentence-transformers {sentence_transformers.__version__}, torch {torch.__version__}",
        "losses": loss_cases(),
        "retrieval": retrieval_case(),
        "similarity": similarity_case(),
        "search": search_case(),
    }
    with open(OUT, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(OUT, json.dumps({c["name"]: c["loss"] for c in out["losses"]}), out["retrieval"]["metrics"], out["similarity"]["pearson"])


if __name__ == "__main__":
    main()
