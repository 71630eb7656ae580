"""The metrics of a run (definitions in ``METRICS``), overall, per kind and per tag, with intervals."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .. import metrics as M
from .. import stats
from .gold import NO_KIND, GoldItem

Record = dict[str, Any]


# name -> (label, one-sentence definition, higher is better)
METRICS: dict[str, tuple[str, str, bool]] = {
    "accuracy": ("Overall accuracy", "Share of all questions handled right: answerable ones answered "
                 "correctly (below), unanswerable ones refused.", True),
    "answer_accuracy": ("Answer accuracy", "Share of answerable questions whose answer is not a refusal "
                        "and contains every `must` group (any alternative, whole words, case-insensitive).",
                        True),
    "refusal_accuracy": ("Refusal accuracy", "Share of unanswerable questions the assistant refused.", True),
    "false_refusal_rate": ("False-refusal rate", "Share of answerable questions the assistant refused "
                           "(lower is better).", False),
    "citation_precision": ("Citation precision", "Mean, over answers to answerable questions that cite, of "
                           "the share of citations whose span overlaps a gold evidence quote.", True),
    "citation_coverage": ("Citation coverage", "Share of non-refused answers to answerable questions with at "
                          "least one citation overlapping a gold evidence quote.", True),
    "verbatim_rate": ("Verbatim rate", "Mean, over answers that cite, of the share of citations whose quote "
                      "is exactly the article text at its [start, end).", True),
    "support_rate": ("Support rate", "Mean, over non-refused answers, of the share of generated sentences "
                     "the offline support check passed (ALCE-style citation recall; pruned sentences "
                     "count as unsupported).", True),
    "retrieval_recall": ("Retrieval recall@k", "Mean, over answerable questions, of the share of gold "
                         "evidence quotes overlapped by one of the k retrieved passages.", True),
    "retrieval_mrr": ("Retrieval MRR", "Mean over answerable questions of 1/rank of the first retrieved "
                      "passage overlapping a gold quote (0 if none of the k does).", True),
}
DISTRIBUTIONS: dict[str, tuple[str, str, str]] = {
    "first_token_s": ("First-token latency", "s", "Seconds from question to the first generated token "
                      "(retrieval and prompt processing included; cached or replayed answers left out)."),
    "total_s": ("Total latency", "s", "Seconds from question to the verified answer (cached or replayed answers "
                "left out)."),
    "prompt_tokens": ("Prompt tokens", "", "Tokens of the prompt sent to the model (usage.prompt_tokens)."),
}


def score(items: Sequence[GoldItem], answers: Sequence[Mapping[str, Any]], texts: Mapping[str, str],
          k: int) -> dict[str, M.MetricResult]:
    """Every metric of ``METRICS`` over parallel gold items and ask-JSON answers."""
    refused = [not a["answerable"] for a in answers]
    answerable = [it.answerable for it in items]
    evidence = [it.spans for it in items]
    cited = [[(c["article"], c["start"], c["end"]) for c in a["citations"]] for a in answers]
    ranked = [[(p["article"], p["start"], p["end"]) for p in a["passages"]] for a in answers]
    out = {
        "answer_accuracy": M.answer_accuracy([a["answer"] for a in answers], refused, answerable,
                                             [it.must for it in items]),
        "refusal_accuracy": M.refusal_accuracy(refused, answerable),
        "false_refusal_rate": M.false_refusal_rate(refused, answerable),
        "citation_precision": M.citation_precision(cited, evidence),
        "citation_coverage": M.citation_coverage(cited, evidence, refused),
        "verbatim_rate": M.verbatim_rate([[(c["article"], c["start"], c["end"], c["quote"])
                                           for c in a["citations"]] for a in answers], texts),
        "support_rate": M.support_rate([[bool(s["supported"]) for s in a["sentences"]] for a in answers],
                                       refused),
        "retrieval_recall": M.recall_at_k(ranked, evidence, k),
        "retrieval_mrr": M.mrr(ranked, evidence),
    }
    right = [a if ok else r for a, r, ok in zip(out["answer_accuracy"].individual_scores,
                                                out["refusal_accuracy"].individual_scores, answerable,
                                                strict=True)]
    out["accuracy"] = M.MetricResult("accuracy", sum(x or 0.0 for x in right) / len(right) if right else None,
                                     right)
    return {name: out[name] for name in METRICS}


def timed(records: Sequence[Record]) -> list[Record]:
    """The answers whose timings measure the pipeline: not from the answer cache (``cached``), and not
    generated from an ablation's memory of earlier prompts (``replayed``)."""
    return [r for r in records if not r.get("cached") and not r.get("replayed")]


def summarise(items: Sequence[GoldItem], records: Sequence[Record], texts: Mapping[str, str], k: int,
              config: Mapping[str, Any]) -> dict[str, Any]:
    """summary.json: metric means with their 95% bootstrap intervals and counts, overall and per kind (and
    per tag); the checks as classifiers; calibration when answers carry a confidence; latency and
    prompt-token distributions."""
    from ..checkscore import score_checks

    results = score(items, records, texts, k)
    fresh = timed(records)
    injection_on = bool((config.get("answer_settings") or {}).get("injection_filter", True))
    return {
        "config": dict(config),
        "questions": len(items),
        "answerable": sum(it.answerable for it in items),
        "unanswerable": sum(not it.answerable for it in items),
        "conversations": sum(bool(it.history) for it in items),
        "refused": sum(not r["answerable"] for r in records),
        **rates(results),
        "bootstrap": {"resamples": stats.RESAMPLES, "seed": stats.SEED, "level": stats.LEVEL},
        "by_kind": breakdown(items, results, lambda it: [it.kind or NO_KIND]),
        "by_tag": breakdown(items, results, lambda it: list(it.tags)),
        "checks": score_checks(items, records, texts, injection_on),
        "calibration": calibration_summary(records, results["accuracy"].individual_scores),
        "first_token_s": M.distribution([r["timings"]["first_token_s"] for r in fresh]),
        "total_s": M.distribution([r["timings"]["total_s"] for r in fresh]),
        "prompt_tokens": M.distribution([r["usage"]["prompt_tokens"] for r in records]),
        "completion_tokens": M.distribution([r["usage"]["completion_tokens"] for r in records]),
        "false_refusals": refusal_causes(items, records),
        "rewrites": rewrites(items, records),
        "answer_seconds": round(sum(r["timings"]["total_s"] for r in records), 2),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def rates(results: Mapping[str, M.MetricResult]) -> dict[str, Any]:
    """``metrics`` (means), ``ci`` (95% interval of each mean, [low, high]: percentile bootstrap, or Wilson
    when every score is 0 or every score is 1, see ``stats.interval``) and ``counts`` (how many questions
    each mean is over)."""
    cis = {name: stats.interval(m.individual_scores) for name, m in results.items()}
    return {"metrics": {name: _round(m.score) for name, m in results.items()},
            "ci": {name: None if ci is None else [_round(ci[0]), _round(ci[1])] for name, ci in cis.items()},
            "counts": {name: m.n for name, m in results.items()}}


def breakdown(items: Sequence[GoldItem], results: Mapping[str, M.MetricResult],
              labels: Callable[[GoldItem], Sequence[str]]) -> dict[str, dict[str, Any]]:
    """Every metric, with its interval, over the questions of each label (a kind, or each of the tags)."""
    groups: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        for label in labels(it):
            groups.setdefault(label, []).append(i)
    out = {}
    for label in sorted(groups, key=lambda g: (g == NO_KIND, g)):
        idx = groups[label]
        sub = {}
        for name, m in results.items():
            vals = [m.individual_scores[i] for i in idx]
            applied = [v for v in vals if v is not None]
            sub[name] = M.MetricResult(name, sum(applied) / len(applied) if applied else None, vals)
        out[label] = {"questions": len(idx), "answerable": sum(items[i].answerable for i in idx),
                      "unanswerable": sum(not items[i].answerable for i in idx), **rates(sub)}
    return out


def confidence_of(record: Mapping[str, Any]) -> float | None:
    """The answer's ``confidence`` when it carries a number in [0, 1]; anything else counts as absent."""
    c = record.get("confidence")
    if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0.0 <= c <= 1.0:
        return None
    return float(c)


def calibration_summary(records: Sequence[Record], correct: Sequence[float | None]) -> dict[str, Any] | None:
    """ECE and the reliability bins of the answers' confidence against overall accuracy (a question is
    right when answered correctly or rightly refused), and how well it tells right answers from wrong ones
    (``auc_answers``, over the questions not refused); ``None`` when no answer carries a confidence."""
    conf = [confidence_of(r) for r in records]
    cal = stats.calibration(conf, correct)
    if cal is None:
        return None
    answered = [(c, y == 1.0) for c, y, r in zip(conf, correct, records, strict=True)
                if c is not None and y is not None and r.get("answerable")]
    return {"ece": _round(cal.ece), "n": cal.n, "without_confidence": sum(c is None for c in conf),
            "auc_answers": _round(stats.auc([c for c, _ in answered], [ok for _, ok in answered])),
            "bins": [{"low": lo, "high": hi, "count": n, "confidence": _round(c), "accuracy": _round(a)}
                     for lo, hi, n, c, a in cal.bins]}


def rewrites(items: Sequence[GoldItem], records: Sequence[Record]) -> dict[str, dict[str, int]]:
    """Per kind, the last turns of conversations and how many were rewritten before retrieval: a
    follow-up ("and the year?") must be, a self-contained new question never."""
    out: dict[str, dict[str, int]] = {}
    for it, r in zip(items, records, strict=True):
        if it.history:
            row = out.setdefault(it.kind or NO_KIND, {"turns": 0, "rewritten": 0})
            row["turns"] += 1
            row["rewritten"] += bool(r.get("rewritten_question"))
    return out


def refusal_causes(items: Sequence[GoldItem], records: Sequence[Record]) -> dict[str, int]:
    """Why answerable questions were refused: the model said so, or the support check pruned every
    sentence it wrote; and how many of them had no gold passage retrieved (retrieval's fault)."""
    from ..cite import is_refusal

    out = {"total": 0, "by_model": 0, "by_support_check": 0, "gold_not_retrieved": 0}
    for it, r in zip(items, records, strict=True):
        if it.answerable and not r["answerable"]:
            out["total"] += 1
            raw = r.get("raw_answer", "")
            out["by_model" if not raw or is_refusal(raw) else "by_support_check"] += 1
            out["gold_not_retrieved"] += not (r.get("scores") or {}).get("retrieval_recall")
    return out
