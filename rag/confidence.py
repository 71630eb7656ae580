"""A calibrated confidence for every answer: the probability that it (or its refusal) is right.

The model's own judgement, asked as a question, was measured and is not used: after its answer, asked "Is your
answer stated in the passages above, and does it answer exactly what the question asks? Reply yes or no.", its
probability of "yes" (the last token's logits, read without ``logits_all``; ~25 more prompt tokens) told the
156 right answers from the 61 wrong ones to 263 of the 271 gold questions (not the follow-ups) with AUC 0.60,
from the 28 answers to unanswerable questions with 0.51, and right from wrong verbatim extractions with 0.53;
asked "Do the passages above answer the question?", 0.55 and 0.53. What does tell right from wrong is how sure
the model was while writing: the log-probability of its least likely answer token, and of the refusal it could
have written instead (:func:`token_signals`, one batched decode over the cached prompt). With them come the
signals the pipeline already has: how well the cited quotes support the answer, how well the best evidence
matches the question, where the cited passage ranked, and what the checks removed. Logistic models map them to
a probability; their weights are fitted on eval/gold.jsonl runs with :func:`fit` and checked on the blind set
(reliability diagram, calibration error and AUC in ``rag eval``'s report).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from .prompt import REFUSAL
from .records import Evidence, Note, Passage

FEATURES = ("support", "relevance", "top_rank", "removed")
TOKEN_FEATURES = ("refusal_lp", "answer_min_lp")  # from the local model's token log-probabilities
# Fitted by fit() on the 271-question gold run of session 9 (226 answers of which 161 right, 45 refusals of
# which 26 right); intercept first, then one weight per feature. With the token features, answers that
# were right are told from wrong ones with AUC 0.75 (5-fold cross-validated), against 0.66 without them; the
# model's least likely answer token is the strongest signal. No signal tells a right refusal from a wrong one
# (cross-validated AUC 0.45), so a refusal's confidence is the base rate. L2 0.01 had the best
# cross-validated AUC of 0.1, 0.01 and 0.001.
WEIGHTS_ANSWER = (0.878, 0.065, 0.522, -0.333, -1.146)  # a generator that cannot score (chat endpoint)
WEIGHTS_ANSWER_TOKENS = (0.59, -0.143, 0.397, -0.169, -0.945, -0.302, 1.209)
WEIGHTS_REFUSAL = (0.314, 0.0, 0.0, 0.0, 0.0)


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


def token_signals(llm: Any, messages: list[dict[str, str]], raw: str) -> dict[str, float]:
    """How sure the model was of what it wrote, from its token log-probabilities over the same prompt:
    ``refusal_lp``, the log-probability of the refusal instead (floored at -30), and ``answer_min_lp``,
    that of its least likely answer token (floored at -20). Empty for a generator that cannot score a
    reply (a chat endpoint), whose answers are calibrated without them."""
    if not hasattr(llm, "logprobs") or not raw:
        return {}
    refusal, answer = llm.logprobs(messages, REFUSAL), llm.logprobs(messages, raw)
    if not refusal or not answer:
        return {}
    return {"refusal_lp": max(sum(refusal), -30.0), "answer_min_lp": max(min(answer), -20.0)}


def calibrated(sig: Mapping[str, float], answerable: bool) -> float:
    """The probability that an answer (or refusal) with these signals is right; an answer scored by the
    model's token log-probabilities uses the weights fitted with them."""
    w: tuple[float, ...]
    names: tuple[str, ...]
    if not answerable:
        w, names = WEIGHTS_REFUSAL, FEATURES
    elif all(f in sig for f in TOKEN_FEATURES):
        w, names = WEIGHTS_ANSWER_TOKENS, FEATURES + TOKEN_FEATURES
    else:
        w, names = WEIGHTS_ANSWER, FEATURES
    z = w[0] + sum(wi * float(sig.get(f, 0.0)) for wi, f in zip(w[1:], names, strict=True))
    return 1.0 / (1.0 + math.exp(-z))


def fit(rows: Sequence[tuple[Mapping[str, float], bool]], features: Sequence[str] = FEATURES, l2: float = 0.01,
        steps: int = 3000, lr: float = 0.1) -> tuple[float, ...]:
    """Logistic-regression weights (intercept first) from (signals, was right) pairs, by gradient
    descent with a small L2 penalty; numpy is enough for seven weights."""
    import numpy as np

    x = np.array([[1.0] + [float(s.get(f, 0.0)) for f in features] for s, _ in rows])
    y = np.array([1.0 if ok else 0.0 for _, ok in rows])
    w = np.zeros(x.shape[1])
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        grad = x.T @ (p - y) / len(y) + l2 * np.r_[0.0, w[1:]]
        w -= lr * grad
    return tuple(round(float(v), 3) for v in w)
