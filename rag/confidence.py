"""A calibrated confidence for every answer: the probability that it (or its refusal) is right.

The model's own judgement was measured and is not used: after its answer, asked "Is your answer stated in the
passages above, and does it answer exactly what the question asks? Reply yes or no.", its probability of
"yes" (the last token's logits, read without ``logits_all``; ~25 more prompt tokens) told the 156 right
answers from the 61 wrong ones to 263 of the 271 gold questions (not the follow-ups) with AUC 0.60, from
the 28 answers to unanswerable questions with 0.51, and right from wrong verbatim extractions with 0.53;
asked "Do the passages above answer the question?", 0.55 and 0.53. So the confidence comes from signals the
pipeline already has: how well the cited quotes support the answer, how well the best evidence matches the
question, where the cited passage ranked, and what the checks removed. Two logistic models (answers,
refusals) map them to a probability; their weights are fitted on eval/gold.jsonl runs with :func:`fit` and
checked on the blind set (reliability diagram and expected calibration error in ``rag eval``'s report).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from .records import Evidence, Note, Passage

FEATURES = ("support", "relevance", "top_rank", "removed")
# Fitted by fit() on the gold run eval/runs/s5-gold-abl/full (181 questions: 151 answers of which 116 right,
# 30 refusals of which 16 right); intercept first, then one weight per feature. Refitted when gold grew by 70
# harder questions (paraphrase, furniture, unanswerable details): the weights fitted on the 83 easier ones
# (0.82 right) were overconfident on the blind set (ECE 0.27). The signals separate little beyond the base
# rates: a removed sentence is the clearest warning on an answer; a refusal's confidence is about its base
# rate. Checked on the blind set (ECE in the eval report).
WEIGHTS_ANSWER = (1.271, 0.009, 0.066, -0.049, -0.515)
WEIGHTS_REFUSAL = (-0.414, 0.0, 0.486, 0.0, -0.001)


def signals(checked: Any, evidence: Sequence[Evidence], passages: Sequence[Passage]) -> dict[str, float]:
    """The features of one answer: best citation support, best evidence relevance (cosine + weighted
    term overlap), the retrieval rank of the first cited passage (0 when none), sentences removed."""
    support = max((c.support for c in checked.citations), default=0.0)
    relevance = max((ev.relevance for ev in evidence), default=0.0)
    cited = {c.chunk_id for c in checked.citations}
    ranks = [p.rank for p in passages if p.chunk.chunk_id in cited]
    removed = sum(1 for s in checked.sentences if s.note in (Note.UNSUPPORTED, Note.ECHO, Note.TRIMMED))
    return {"support": float(support), "relevance": float(relevance),
            "top_rank": float(min(ranks, default=0)), "removed": float(removed)}


def calibrated(sig: Mapping[str, float], answerable: bool) -> float:
    w = WEIGHTS_ANSWER if answerable else WEIGHTS_REFUSAL
    z = w[0] + sum(wi * float(sig.get(f, 0.0)) for wi, f in zip(w[1:], FEATURES, strict=True))
    return 1.0 / (1.0 + math.exp(-z))


def fit(rows: Sequence[tuple[Mapping[str, float], bool]], l2: float = 0.1, steps: int = 3000,
        lr: float = 0.1) -> tuple[float, ...]:
    """Logistic-regression weights (intercept first) from (signals, was right) pairs, by gradient
    descent with a small L2 penalty; numpy is enough for five weights."""
    import numpy as np

    x = np.array([[1.0] + [float(s.get(f, 0.0)) for f in FEATURES] for s, _ in rows])
    y = np.array([1.0 if ok else 0.0 for _, ok in rows])
    w = np.zeros(x.shape[1])
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        grad = x.T @ (p - y) / len(y) + l2 * np.r_[0.0, w[1:]]
        w -= lr * grad
    return tuple(round(float(v), 3) for v in w)
