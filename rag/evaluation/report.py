"""report.md: the headline table, per kind, the checks, calibration, latency and the worst questions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .. import metrics as M
from .. import stats
from ..records import Note
from ..records import short as _short
from .gold import GoldItem
from .scoring import DISTRIBUTIONS, METRICS, Record


def fmt(x: float | None, unit: str = "", digits: int = 3) -> str:
    if x is None:
        return "–"
    if unit == "s":
        return f"{x:.2f} s"
    return f"{x:.0f}" if unit == "tok" else f"{x:.{digits}f}"


def fmt_ci(ci: Sequence[float] | None, digits: int = 3) -> str:
    return "–" if not ci else f"{ci[0]:.{digits}f} – {ci[1]:.{digits}f}"


def metric_label(name: str, k: Any) -> str:
    label = METRICS[name][0]
    return label.replace("@k", f"@{k}") if k else label


def summary_table(summary: Mapping[str, Any], definitions: bool = False) -> str:
    """The headline table of report.md (also printed at the end of a run): each rate with its 95%
    bootstrap interval and the number of questions it is over."""
    k = summary["config"].get("k")
    cis = summary.get("ci") or {}
    head = "| Metric | Value | 95% interval | n |" + (" Definition |" if definitions else "")
    rows = [head, "|---|---:|---:|---:|" + ("---|" if definitions else "")]
    for name, (_, text, higher) in METRICS.items():
        label = metric_label(name, k) + ("" if higher else " (lower is better)")
        row = (f"| {label} | {fmt(summary['metrics'].get(name))} | {fmt_ci(cis.get(name))} | "
               f"{summary['counts'].get(name, 0)} |")
        rows.append(row + (f" {text} |" if definitions else ""))
    return "\n".join(rows)


def latency_table(summary: Mapping[str, Any]) -> str:
    rows = ["| Measure | p50 | p95 | mean | Definition |", "|---|---:|---:|---:|---|"]
    for key, (label, unit, text) in DISTRIBUTIONS.items():
        d = summary.get(key) or {}
        u = unit or "tok"
        rows.append(f"| {label} | {fmt(d.get('p50'), u)} | {fmt(d.get('p95'), u)} | {fmt(d.get('mean'), u)} "
                    f"| {text} |")
    return "\n".join(rows)


# The per-kind tables: answers first, then citations and retrieval (one table of ten would not fit a page).
KIND_TABLES = (("accuracy", "answer_accuracy", "refusal_accuracy", "false_refusal_rate"),
               ("citation_precision", "citation_coverage", "verbatim_rate", "support_rate", "retrieval_recall",
                "retrieval_mrr"))


def kind_tables(groups: Mapping[str, Mapping[str, Any]], k: Any, title: str = "Kind") -> str:
    """Per kind (or tag): every metric, as mean (95% interval), with the questions of that kind."""
    if not groups:
        return "_No questions._"
    out = []
    for names in KIND_TABLES:
        first = names[0] == "accuracy"
        head = f"| {title} | " + ("questions | answerable | unanswerable | " if first else "") + \
            " | ".join(metric_label(n, k) for n in names) + " |"
        rows = [head, "|---|" + ("---:|" * 3 if first else "") + "---:|" * len(names)]
        for label, g in groups.items():
            cells = [f"{fmt(g['metrics'].get(n), digits=2)} ({fmt_ci(g['ci'].get(n), 2)})"
                     if g["metrics"].get(n) is not None else "–" for n in names]
            counts = f"{g['questions']} | {g['answerable']} | {g['unanswerable']} | " if first else ""
            rows.append(f"| {label} | {counts}" + " | ".join(cells) + " |")
        out.append("\n".join(rows))
    return "\n\n".join(out)


def checks_table(checks: Mapping[str, Mapping[str, Any]]) -> str:
    from ..checkscore import DESCRIPTIONS

    rows = ["| Check | What it does | Counted over | Decisions | Right | Wrong | Wrong let through | Precision "
            "| Recall |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, c in checks.items():
        missed = "–" if c["missed"] is None else str(c["missed"])
        rows.append(f"| {name} | {DESCRIPTIONS.get(name, 'removes an answer sentence')} | {c['unit']} | "
                    f"{c['decisions']} | {c['right']} | {c['wrong']} | {missed} | {fmt(c['precision'], digits=2)} "
                    f"| {fmt(c['recall'], digits=2)} |")
    return "\n".join(rows)


CHECKS_DEFINITION = (
    "A removed answer sentence was *right to remove* unless the question is answerable and the sentence holds a "
    "phrase of one of its `must` groups. A refusal was right unless the question is answerable and the model's "
    "draft held every `must` group. A dropped passage sentence (injection filter) was right unless it overlaps "
    "the question's gold evidence; gold files do not label injected text, so its recall is not defined. "
    "Recall = right decisions / (right decisions + wrong sentences or answers the reader was still shown). "
    "Definitions in `rag/checkscore.py`.")


def _severity(item: GoldItem, rec: Record) -> tuple[int, float]:
    """Sort key, worst first: invented answers, wrong answers, false refusals, then weak citations."""
    s = rec.get("scores") or {}
    refused = not rec["answerable"]
    if not item.answerable:
        kind = 5 if refused else 0
    elif not s.get("answer_accuracy"):
        kind = 2 if refused else 1
    elif not s.get("citation_coverage"):
        kind = 3
    elif (s.get("citation_precision") or 0) < 1 or (s.get("support_rate") or 0) < 1:
        kind = 4
    else:
        kind = 5
    quality = sum(v for v in s.values() if isinstance(v, (int, float)) and v is not None)
    return kind, quality


_KIND = {0: "answered an unanswerable question", 1: "wrong answer", 2: "refused an answerable question",
         3: "right answer, no citation of the gold evidence", 4: "right answer, weak citations or support"}


def _question_md(rank: int, item: GoldItem, rec: Record, kind: int) -> str:
    s = rec.get("scores") or {}
    lines = [f"### {rank}. `{item.id}`: {_KIND.get(kind, 'ok')}" + (f" ({item.kind})" if item.kind else ""), ""]
    for role, text in item.history:
        lines += [f"**Earlier {role} turn:** {_short(text, 300)}  "]
    lines += [f"**Question:** {item.question}", ""]
    if rec.get("rewritten_question"):
        lines += [f"**Searched as (follow-up rewrite):** {rec['rewritten_question']}", ""]
    gold = item.answer or ("(unanswerable)" if not item.answerable else "")
    must = " AND ".join("(" + " | ".join(g) + ")" for g in item.must)
    lines += [f"**Gold:** {gold}" + (f"  \n**Must contain:** {must}" if must else ""), ""]
    lines += [f"**Answer:** {rec['answer']}", "", "**Raw model output:**", "", "```text",
              rec.get("raw_answer", "").strip() or "(empty)", "```", ""]
    if rec["citations"]:
        lines.append("**Citations:**")
        lines.append("")
        for c in rec["citations"]:
            hit = M.hits_evidence((c["article"], c["start"], c["end"]), item.spans)
            lines.append(f"- [{c['marker']}] {c['article']} {c['start']}–{c['end']} (support {c['support']}, "
                         f"{'gold evidence' if hit else 'not gold evidence'}): "
                         f"“{_short(c['quote'], 300)}”")
        lines.append("")
    removed = [x for x in rec.get("sentences", []) if not x["supported"]]
    if removed:
        lines += ["**Sentences the checks removed:** " + " / ".join(
            f"“{_short(x['text'], 200)}” ({x.get('note') or Note.UNSUPPORTED})" for x in removed), ""]
    top = ", ".join(f"{p['article']} {p['start']}–{p['end']}" for p in rec["passages"])
    shown = {n: v for n, v in s.items() if v is not None}
    lines += [f"**Retrieved:** {top or '(nothing)'}", "",
              "**Scores:** " + ", ".join(f"{n} {v:.2f}" for n, v in shown.items()) +
              f"; total {rec['timings'].get('total_s', 0):.1f} s", ""]
    return "\n".join(lines)


def report_markdown(summary: Mapping[str, Any], items: Sequence[GoldItem], records: Sequence[Record],
                    plots: Sequence[str] = (), worst: int = 10) -> str:
    """The report people read: headline rates with intervals, per kind, the worst questions; then the
    plots, the checks as classifiers, calibration, latency, definitions and every question with a problem."""
    cfg = summary["config"]
    k = cfg.get("k")
    boot = summary.get("bootstrap") or {}
    conv = summary.get("conversations", 0)
    parts = [
        f"# Evaluation: {cfg.get('model')}, k={k}", "",
        f"Gold file `{cfg.get('gold')}` (sha256 {str(cfg.get('gold_sha256'))[:12]}): {summary['questions']} "
        f"questions, {summary['answerable']} answerable, {summary['unanswerable']} unanswerable"
        + (f", {conv} of them the last turn of a conversation" if conv else "") + ". "
        f"Index version `{cfg.get('index_version')}`. Refusals: {summary['refused']}. "
        f"Answering took {summary['answer_seconds']:.0f} s in all; finished {summary['finished']}.", "",
        "## Headline rates", "",
        f"Intervals: {int(boot.get('level', stats.LEVEL) * 100)}% percentile bootstrap over the questions each "
        f"rate is over ({boot.get('resamples', stats.RESAMPLES)} resamples, seed {boot.get('seed', stats.SEED)}); "
        "where every question scored 0 or every one scored 1 the bootstrap has no spread, and the Wilson score "
        "interval is given instead (5 right of 5: 0.57 – 1.00). Whether two runs differ beyond noise: "
        "`rag eval --compare`.", "",
        summary_table(summary), "",
    ]
    fr = summary.get("false_refusals") or {}
    if fr.get("total"):
        parts += [f"Of the {fr['total']} refused answerable questions, the model itself refused "
                  f"{fr['by_model']} and the support check pruned every sentence of "
                  f"{fr['by_support_check']}; "
                  f"for {fr['gold_not_retrieved']} of them no retrieved passage held the gold evidence.", ""]
    parts += ["## Per kind", "", "Each cell: mean (95% interval).", "",
              kind_tables(summary.get("by_kind") or {}, k), ""]
    if summary.get("rewrites"):
        parts += ["### Conversations", "", "The last turn of each conversation, by kind: a follow-up must be "
                  "rewritten into a standalone question before retrieval, a self-contained one never.", "",
                  "| Kind | last turns | rewritten |", "|---|---:|---:|",
                  *(f"| {kind} | {row['turns']} | {row['rewritten']} |" for kind, row in
                    sorted(summary["rewrites"].items())), ""]
    if summary.get("by_tag"):
        parts += ["### Per tag", "", kind_tables(summary["by_tag"], k, "Tag"), ""]
    ranked = sorted(((_severity(it, r), it, r) for it, r in zip(items, records, strict=True)),
                    key=lambda x: x[0])
    bad = [(sev, it, r) for sev, it, r in ranked if sev[0] < 5]
    parts += [f"## Worst questions ({min(worst, len(bad))} of {len(bad)} with a problem)", ""]
    parts += [_question_md(i, it, r, sev[0]) for i, (sev, it, r) in enumerate(bad[:worst], 1)]
    parts += ["## Plots", "", *(f"![{p}]({p})" for p in plots), ""]
    if summary.get("checks"):
        parts += ["## The checks as classifiers", "", CHECKS_DEFINITION, "", checks_table(summary["checks"]), ""]
    parts += ["## Calibration", ""]
    cal = summary.get("calibration")
    if cal:
        parts += [f"Expected calibration error **{fmt(cal['ece'])}** over {cal['n']} answers with a confidence "
                  f"({cal['without_confidence']} without): the answers' share, per confidence bin, times the gap "
                  "between the bin's mean confidence and its accuracy (answered right or rightly refused); "
                  "see reliability.png.", ""]
        if cal.get("auc_answers") is not None:
            parts += [f"Among the answers (not refusals), a right one has the higher confidence than a wrong one "
                      f"with probability **{fmt(cal['auc_answers'])}** (AUC; 0.5 is a coin toss).", ""]
    else:
        parts += ["_The answers carry no confidence, so there is no reliability diagram._", ""]
    parts += ["## Latency and tokens", "", latency_table(summary), "",
              "## Definitions", "", "| Metric | Definition |", "|---|---|",
              *(f"| {metric_label(n, k)} | {text} |" for n, (_, text, _) in METRICS.items()), ""]
    parts += [f"## Every question with a problem ({len(bad)})", "",
              "| id | kind | problem | recall | answer | raw model output |", "|---|---|---|---:|---|---|"]
    for sev, it, r in bad:
        rec = (r.get("scores") or {}).get("retrieval_recall")
        raw = r.get("raw_answer", "") if r.get("raw_answer", "") != r["answer"] else "(same)"
        parts.append(f"| `{it.id}` | {it.kind or '–'} | {_KIND[sev[0]]} | {fmt(rec, digits=2)} | "
                     f"{_cell(r['answer'])} | {_cell(raw)} |")
    return "\n".join(parts) + "\n"


def _cell(text: str, n: int = 160) -> str:
    return _short(text, n).replace("|", "\\|")
