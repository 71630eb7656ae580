"""Score the assistant on a gold question file: answers, refusals, citations, retrieval and latency.

Every question goes through ``Assistant.ask(...).to_dict()``, the code path and JSON of ``rag ask --json``,
so what is scored is what a user gets. A run folder holds::

    config.json     what the run was made with (gold file hash, model, k, index version, answer settings,
                    a fingerprint of the answering code)
    results.jsonl   one ask-JSON per question plus its id and scores; appended and flushed per question
    summary.json    the metrics (definitions in ``METRICS``)
    report.md       metric table, plots, the worst questions with their answers and citations
    metrics.png, latency.png

A run that was interrupted continues where it stopped when started again with the same ``--out``: ids
already in results.jsonl are skipped, provided config.json matches (otherwise it refuses and says why).
The metrics themselves are pure functions in ``rag.metrics``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import metrics as M
from .errors import GoldError, InputError
from .files import write_atomic as _write_atomic
from .records import short as _short
from .settings import Settings

if TYPE_CHECKING:
    from .answer import Assistant
    from .retrieve import Retriever

Echo = Callable[[str], Any]
Record = dict[str, Any]

RESULTS, SUMMARY, CONFIG, REPORT = "results.jsonl", "summary.json", "config.json", "report.md"

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
                      "(retrieval and prompt processing included; cached answers left out)."),
    "total_s": ("Total latency", "s", "Seconds from question to the verified answer (cached answers left "
                "out)."),
    "prompt_tokens": ("Prompt tokens", "", "Tokens of the prompt sent to the model (usage.prompt_tokens)."),
}


# -- gold file ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GoldItem:
    """One validated gold question; ``spans`` holds, per evidence quote, where it occurs in the gold docs."""

    id: str
    question: str
    answerable: bool
    answer: str
    must: tuple[tuple[str, ...], ...]
    docs: tuple[str, ...]
    evidence: tuple[str, ...]
    line: int
    spans: tuple[tuple[M.Span, ...], ...] = ()


GOLD_FIELDS = ("id", "question", "answerable", "answer", "must", "docs", "evidence")


def _str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(s, str) and s.strip() for s in value)


def _check_item(d: Any, texts: Mapping[str, str], where: str) -> list[tuple[str | None, str]]:
    """Problems of one parsed line as (field, message); empty when the item is usable."""
    if not isinstance(d, dict):
        return [(None, f"expected a JSON object, got {type(d).__name__}")]
    problems: list[tuple[str | None, str]] = []
    for key in d:
        if key not in GOLD_FIELDS:
            problems.append((key, f"unknown field; the fields are {', '.join(GOLD_FIELDS)}"))
    for key in ("id", "question", "answerable"):
        if key not in d:
            problems.append((key, "missing"))
    if problems:
        return problems
    if not isinstance(d["id"], str) or not d["id"].strip():
        problems.append(("id", "must be a non-empty string"))
    if not isinstance(d["question"], str) or not d["question"].strip():
        problems.append(("question", "must be a non-empty string"))
    if not isinstance(d["answerable"], bool):
        problems.append(("answerable", f"must be true or false, got {d['answerable']!r}"))
    if not isinstance(d.get("answer", ""), str):
        problems.append(("answer", "must be a string"))
    for key in ("docs", "evidence"):
        if not _str_list(d.get(key, [])):
            problems.append((key, "must be a list of non-empty strings"))
    must = d.get("must", [])
    if not (isinstance(must, list) and all(_str_list(g) and g for g in must)):
        problems.append(("must", 'must be a list of non-empty lists of strings, e.g. [["2019"], ["Huawei"]]'))
    if problems or d["answerable"] is not True:
        return problems
    for key in ("must", "docs", "evidence"):
        if not d.get(key):
            problems.append((key, "missing or empty; an answerable question needs it"))
    for doc in d.get("docs", []):
        if doc not in texts:
            known = ", ".join(sorted(texts)[:8]) + (" ..." if len(texts) > 8 else "")
            problems.append(("docs", f"unknown article {doc!r}: not in {where} (known: {known})"))
    docs = [x for x in d.get("docs", []) if x in texts]
    for quote in d.get("evidence", []):
        if docs and not any(quote in texts[x] for x in docs):
            hint = ""
            if any(M.normalise(quote) in M.normalise(texts[x]) for x in docs):
                hint = " (it differs only in case, quotes, dashes or whitespace; copy it exactly)"
            short = quote if len(quote) <= 80 else quote[:77] + "..."
            problems.append(("evidence", f"quote {short!r} is not verbatim in {', '.join(docs)}{hint}"))
    return problems


def load_gold(path: Path, texts: Mapping[str, str], where: str = "the index") -> list[GoldItem]:
    """Read and validate a gold file against the article texts (name -> text); raise ``GoldError`` on any
    bad line, naming the file, line and field, before anything is run."""
    try:
        raw = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GoldError(f"gold file {path} not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise GoldError(f"gold file {path} cannot be read as UTF-8 text ({e})") from e
    items: list[GoldItem] = []
    errors: list[str] = []
    first_line: dict[str, int] = {}
    for n, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except json.JSONDecodeError as e:
            errors.append(f"{path} line {n}: not valid JSON ({e.msg} at column {e.colno})")
            continue
        problems = _check_item(d, texts, where)
        if not problems and d["id"] in first_line:
            problems = [("id", f"duplicate id {d['id']!r} (first on line {first_line[d['id']]})")]
        if problems:
            errors.extend(f"{path} line {n}" + (f", field {f!r}" if f else "") + f": {msg}"
                          for f, msg in problems)
            continue
        first_line[d["id"]] = n
        docs = tuple(d.get("docs", ()))
        evidence = tuple(d.get("evidence", ()))
        items.append(GoldItem(
            id=d["id"], question=d["question"], answerable=d["answerable"], answer=d.get("answer", ""),
            must=tuple(tuple(g) for g in d.get("must", ())), docs=docs, evidence=evidence, line=n,
            spans=tuple(tuple(s) for s in M.evidence_spans(evidence, docs, texts)) if d["answerable"] else (),
        ))
    if errors:
        more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
        raise GoldError(f"gold file {path} has {len(errors)} problem(s):\n  " + "\n  ".join(errors[:20])
                        + more)
    if not items:
        raise GoldError(f"gold file {path} holds no questions (one JSON object per line)")
    return items


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# -- scoring -----------------------------------------------------------------------------------------
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


def summarise(items: Sequence[GoldItem], records: Sequence[Record], texts: Mapping[str, str], k: int,
              config: Mapping[str, Any]) -> dict[str, Any]:
    """summary.json: metric means with their counts, latency and prompt-token distributions."""
    results = score(items, records, texts, k)
    fresh = [r for r in records if not r.get("cached")]
    return {
        "config": dict(config),
        "questions": len(items),
        "answerable": sum(it.answerable for it in items),
        "unanswerable": sum(not it.answerable for it in items),
        "refused": sum(not r["answerable"] for r in records),
        "metrics": {name: None if m.score is None else round(m.score, 4) for name, m in results.items()},
        "counts": {name: m.n for name, m in results.items()},
        "first_token_s": M.distribution([r["timings"]["first_token_s"] for r in fresh]),
        "total_s": M.distribution([r["timings"]["total_s"] for r in fresh]),
        "prompt_tokens": M.distribution([r["usage"]["prompt_tokens"] for r in records]),
        "completion_tokens": M.distribution([r["usage"]["completion_tokens"] for r in records]),
        "false_refusals": refusal_causes(items, records),
        "answer_seconds": round(sum(r["timings"]["total_s"] for r in records), 2),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def refusal_causes(items: Sequence[GoldItem], records: Sequence[Record]) -> dict[str, int]:
    """Why answerable questions were refused: the model said so, or the support check pruned every
    sentence it wrote; and how many of them had no gold passage retrieved (retrieval's fault)."""
    from .cite import is_refusal

    out = {"total": 0, "by_model": 0, "by_support_check": 0, "gold_not_retrieved": 0}
    for it, r in zip(items, records, strict=True):
        if it.answerable and not r["answerable"]:
            out["total"] += 1
            raw = r.get("raw_answer", "")
            out["by_model" if not raw or is_refusal(raw) else "by_support_check"] += 1
            out["gold_not_retrieved"] += not (r.get("scores") or {}).get("retrieval_recall")
    return out


# -- run folder --------------------------------------------------------------------------------------
def default_out(root: Path = Path("eval/runs")) -> Path:
    return root / time.strftime("%Y%m%d-%H%M%S")


# The modules an answer depends on: a resumed run must not mix answers from two versions of them.
ANSWER_PATH = ("answer", "prompt", "cite", "retrieve", "chunk", "embed", "llm", "records", "store", "ingest")


def code_fingerprint() -> str:
    """sha256 over the source of the answering modules (as on disk when the run starts)."""
    h = hashlib.sha256()
    for name in ANSWER_PATH:
        h.update(name.encode() + b"\0" + (Path(__file__).parent / f"{name}.py").read_bytes())
    return h.hexdigest()[:16]


def run_config(assistant: Assistant, gold: Path, k: int) -> dict[str, Any]:
    """What must be equal for answers of two invocations to be mixed in one run (the resume key)."""
    s = assistant.settings
    return {
        "gold": str(gold), "gold_sha256": file_sha256(gold), "model": assistant.llm.name, "k": k,
        "index_version": assistant.store.version, "code": code_fingerprint(),
        "answer_settings": {"embedder": s.embedder, "backend": s.backend, "context_tokens": s.context_tokens,
                            "max_evidence": s.max_evidence, "max_tokens": s.max_tokens,
                            "temperature": s.temperature, "seed": s.seed, "n_ctx": s.n_ctx,
                            "support_threshold": s.support_threshold, "candidates": s.candidates,
                            "rrf_k": s.rrf_k, "dense_weight": s.dense_weight},
    }


def _config_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    keys = [k for k in dict.fromkeys([*old, *new]) if k != "gold"]  # the file may move; its hash may not
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]


def read_results(path: Path, repair: bool = False) -> dict[str, Record]:
    """Records of results.jsonl by id. A torn line (the process killed mid-write) is skipped, and with
    ``repair`` the file is rewritten without it so appending can go on."""
    if not path.is_file():
        return {}
    good, bad = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict) or "id" not in rec:
                raise ValueError("no id")
            good.append((rec, line))
        except ValueError:
            bad += 1
    if bad and repair:
        _write_atomic(path, "".join(line + "\n" for _, line in good))
        _note(f"{path}: dropped {bad} unreadable line(s) (an interrupted write); they will be redone")
    return {rec["id"]: rec for rec, _ in good}


def _note(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run(assistant: Assistant, items: Sequence[GoldItem], gold: Path, out: Path, *, k: int,
        echo: Echo = print, worst: int = 10) -> dict[str, Any]:
    """Answer every item not yet in ``out``/results.jsonl, then write summary, report and plots."""
    from tqdm import tqdm

    out.mkdir(parents=True, exist_ok=True)
    config = run_config(assistant, gold, k)
    cfg_path, res_path = out / CONFIG, out / RESULTS
    if res_path.exists() and not cfg_path.is_file():
        raise InputError(f"{res_path} exists but {cfg_path} does not, so it cannot be resumed safely; pass "
                         "another --out")
    done = read_results(res_path, repair=True)
    todo = [it for it in items if it.id not in done]
    if cfg_path.is_file():
        old = json.loads(cfg_path.read_text(encoding="utf-8"))
        diff = _config_diff(old, config)
        if diff and todo:
            raise InputError(f"{out} holds a run made with another configuration ({'; '.join(diff)}); it "
                             f"cannot be resumed: pass another --out, or delete {out} to start over")
        if diff:  # finished: re-score the stored answers (e.g. after a gold fix) under their own config
            _note(f"{out} is a finished run made with another configuration ({'; '.join(diff)}); "
                  "re-scoring its stored answers, nothing is asked again")
            new_gold = config["gold_sha256"]
            config = {**old, **({"scored_with_gold_sha256": new_gold} if new_gold != old.get("gold_sha256")
                                else {})}
            k = int(old.get("k", k))
    else:
        _write_atomic(cfg_path, json.dumps(config, indent=1) + "\n")
    texts = {n: a.text for n, a in assistant.store.articles.items()}
    already = len(items) - len(todo)
    if already and todo:
        _note(f"resuming {out}: {already} of {len(items)} questions already answered, {len(todo)} to go")
    t0 = time.perf_counter()
    if todo:
        assistant.warm_up()  # model load and system-prompt cache kept out of the first question's latency
        right = sum(bool((done[it.id].get("scores") or {}).get("accuracy")) for it in items if it.id in done)
        bar = tqdm(total=len(items), initial=already, desc="eval", unit="q", file=sys.stderr,
                   dynamic_ncols=True)
        try:
            with open(res_path, "a", encoding="utf-8") as fh:
                for it in todo:
                    answer = assistant.ask(it.question, k=k).to_dict()
                    scores = {n: m.individual_scores[0] for n, m in score([it], [answer], texts, k).items()}
                    rec = {"id": it.id, **answer, "scores": scores}
                    fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
                    fh.flush()
                    os.fsync(fh.fileno())
                    done[it.id] = rec
                    right += bool(scores["accuracy"])
                    bar.update(1)
                    bar.set_postfix(acc=f"{right / (bar.n or 1):.2f}", refresh=False)
        except KeyboardInterrupt:
            bar.close()
            n = sum(it.id in done for it in items)
            _note(f"interrupted after {n} of {len(items)} questions; rerun with --out {out} to continue")
            raise
        bar.close()
    records = [done[it.id] for it in items]
    rescored = _rescore(items, records, texts, k)
    if rescored:
        done.update({r["id"]: r for r in records})
        _write_atomic(res_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in done.values()))
        _note(f"{res_path}: updated the scores of {rescored} question(s) to the current gold and metrics")
    summary = summarise(items, records, texts, k, config)
    summary["run_seconds"] = round(time.perf_counter() - t0, 2)
    _write_atomic(out / SUMMARY, json.dumps(summary, indent=1) + "\n")
    plots = write_plots(summary, records, out)
    _write_atomic(out / REPORT, report_markdown(summary, items, records, plots, worst=worst))
    echo(summary_table(summary))
    echo(f"wrote {out / RESULTS}, {out / SUMMARY}, {out / REPORT}" + "".join(f", {out / p}" for p in plots))
    return summary


def _rescore(items: Sequence[GoldItem], records: list[Record], texts: Mapping[str, str], k: int) -> int:
    """Bring the stored per-question scores in line with the gold file and metrics; how many changed."""
    results = score(items, records, texts, k)
    changed = 0
    for i, rec in enumerate(records):
        scores = {n: m.individual_scores[i] for n, m in results.items()}
        if rec.get("scores") != scores:
            records[i] = {**rec, "scores": scores}
            changed += 1
    return changed


# -- rendering ---------------------------------------------------------------------------------------
def _fmt(x: float | None, unit: str = "", digits: int = 3) -> str:
    if x is None:
        return "–"
    if unit == "s":
        return f"{x:.2f} s"
    return f"{x:.0f}" if unit == "tok" else f"{x:.{digits}f}"


def summary_table(summary: Mapping[str, Any], definitions: bool = True) -> str:
    """The metric table of report.md (also printed at the end of a run)."""
    k = summary["config"].get("k")
    head = "| Metric | Value | n |" + (" Definition |" if definitions else "")
    rows = [head, "|---|---:|---:|" + ("---|" if definitions else "")]
    for name, (label, text, _) in METRICS.items():
        label = label.replace("@k", f"@{k}") if k else label
        row = f"| {label} | {_fmt(summary['metrics'].get(name))} | {summary['counts'].get(name, 0)} |"
        rows.append(row + (f" {text} |" if definitions else ""))
    for key, (label, unit, text) in DISTRIBUTIONS.items():
        d = summary.get(key) or {}
        u = unit or "tok"
        value = f"{_fmt(d.get('p50'), u)} / {_fmt(d.get('p95'), u)} (mean {_fmt(d.get('mean'), u)})"
        row = f"| {label} p50 / p95 | {value} | {summary['questions']} |"
        rows.append(row + (f" {text} |" if definitions else ""))
    return "\n".join(rows)


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
    lines = [f"### {rank}. `{item.id}`: {_KIND.get(kind, 'ok')}", "", f"**Question:** {item.question}", ""]
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
            f"“{_short(x['text'], 200)}” ({x.get('note') or 'unsupported'})" for x in removed), ""]
    top = ", ".join(f"{p['article']} {p['start']}–{p['end']}" for p in rec["passages"])
    shown = {n: v for n, v in s.items() if v is not None}
    lines += [f"**Retrieved:** {top or '(nothing)'}", "",
              "**Scores:** " + ", ".join(f"{n} {v:.2f}" for n, v in shown.items()) +
              f"; total {rec['timings'].get('total_s', 0):.1f} s", ""]
    return "\n".join(lines)


def report_markdown(summary: Mapping[str, Any], items: Sequence[GoldItem], records: Sequence[Record],
                    plots: Sequence[str] = (), worst: int = 10) -> str:
    cfg = summary["config"]
    parts = [
        f"# Evaluation: {cfg.get('model')}, k={cfg.get('k')}", "",
        f"Gold file `{cfg.get('gold')}` (sha256 {str(cfg.get('gold_sha256'))[:12]}): {summary['questions']} "
        f"questions, {summary['answerable']} answerable, {summary['unanswerable']} unanswerable. "
        f"Index version `{cfg.get('index_version')}`. Refusals: {summary['refused']}. "
        f"Answering took {summary['answer_seconds']:.0f} s in all; finished {summary['finished']}.", "",
        "## Metrics", "", summary_table(summary), "",
    ]
    fr = summary.get("false_refusals") or {}
    if fr.get("total"):
        parts += [f"Of the {fr['total']} refused answerable questions, the model itself refused "
                  f"{fr['by_model']} and the support check pruned every sentence of "
                  f"{fr['by_support_check']}; "
                  f"for {fr['gold_not_retrieved']} of them no retrieved passage held the gold evidence.", ""]
    parts += [f"![{p}]({p})" for p in plots] + [""]
    ranked = sorted(((_severity(it, r), it, r) for it, r in zip(items, records, strict=True)),
                    key=lambda x: x[0])
    bad = [(sev, it, r) for sev, it, r in ranked if sev[0] < 5]
    parts += [f"## Worst questions ({min(worst, len(bad))} of {len(bad)} with a problem)", ""]
    parts += [_question_md(i, it, r, sev[0]) for i, (sev, it, r) in enumerate(bad[:worst], 1)]
    parts += [f"## Every question with a problem ({len(bad)})", "",
              "| id | problem | recall | answer | raw model output |", "|---|---|---:|---|---|"]
    for sev, it, r in bad:
        rec = (r.get("scores") or {}).get("retrieval_recall")
        raw = r.get("raw_answer", "") if r.get("raw_answer", "") != r["answer"] else "(same)"
        parts.append(f"| `{it.id}` | {_KIND[sev[0]]} | {_fmt(rec, digits=2)} | {_cell(r['answer'])} | "
                     f"{_cell(raw)} |")
    return "\n".join(parts) + "\n"


def _cell(text: str, n: int = 160) -> str:
    return _short(text, n).replace("|", "\\|")


def write_plots(summary: Mapping[str, Any], records: Sequence[Record], out: Path) -> list[str]:
    """metrics.png (bars of the rate metrics) and latency.png (histograms); returns the file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in METRICS if summary["metrics"].get(n) is not None]
    k = summary["config"].get("k")
    labels = [METRICS[n][0].replace("@k", f"@{k}") + ("" if METRICS[n][2] else " (lower is better)")
              for n in names]
    values = [summary["metrics"][n] for n in names]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(names) + 1.2))
    colors = ["#4c72b0" if METRICS[n][2] else "#c44e52" for n in names]
    ax.barh(labels[::-1], values[::-1], color=colors[::-1])
    for y, v in enumerate(values[::-1]):
        ax.text(v + 0.01, y, f"{v:.2f}", va="center", fontsize=9)
    ax.set_xlim(0, 1.1)
    ax.set_xticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.set_title(f"{summary['config'].get('model')}, k={k}, {summary['questions']} questions")
    fig.tight_layout()
    fig.savefig(out / "metrics.png", dpi=110)
    plt.close(fig)

    fresh = [r for r in records if not r.get("cached")]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for key, label in (("first_token_s", "first token"), ("total_s", "total")):
        vals = [r["timings"][key] for r in fresh]
        if vals:
            p50, p95 = M.percentile(vals, 50), M.percentile(vals, 95)
            ax.hist(vals, bins=20, alpha=0.6, label=f"{label} (p50 {p50:.2f} s, p95 {p95:.2f} s)")
    ax.set_xlabel("seconds")
    ax.set_ylabel("questions")
    ax.set_title("Latency per question")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=110)
    plt.close(fig)
    return ["metrics.png", "latency.png"]


# -- retrieval only ----------------------------------------------------------------------------------
MODES = {"dense": "dense", "lexical": "BM25", "hybrid": "fused (RRF)"}


def retrieval_eval(retriever: Retriever, items: Sequence[GoldItem], ks: Sequence[int] = (1, 5),
                   depth: int = 10) -> dict[str, Any]:
    """recall@k for each k and MRR@depth for dense, BM25 and fused retrieval, over answerable items;
    per question, the rank of each gold quote's first hit (to see why a question misses)."""
    items = [it for it in items if it.answerable]
    depth = max(depth, *ks)
    evidence = [it.spans for it in items]
    modes: dict[str, dict[str, float | None]] = {}
    ranks: dict[str, list[list[int | None]]] = {}
    for mode in MODES:
        ranked = [[(p.article, p.chunk.start, p.chunk.end)
                   for p in retriever.search(it.question, depth, mode)] for it in items]
        modes[mode] = {f"recall@{k}": M.recall_at_k(ranked, evidence, k).score for k in ks}
        modes[mode][f"mrr@{depth}"] = M.mrr(ranked, evidence).score
        ranks[mode] = [[next((r for r, p in enumerate(passages, 1) if any(M.overlaps(p, e) for e in q)), None)
                        for q in quotes] for passages, quotes in zip(ranked, evidence, strict=True)]
    # Evidence that no chunk overlaps was dropped at ingestion (taken for page chrome): no retriever can
    # find it, so it is reported apart from ranking misses, with the recall that is reachable at all.
    chunks = [(c.article, c.start, c.end) for c in retriever.store.chunks]
    ceiling = M.recall_at_k([chunks] * len(items), evidence, len(chunks))
    per_question = [{"id": it.id, "question": it.question, "evidence": list(it.evidence),
                     "indexed": [any(M.overlaps(c, e) for c in chunks for e in q) for q in it.spans],
                     "ranks": {mode: ranks[mode][i] for mode in MODES}} for i, it in enumerate(items)]
    return {"questions": len(items), "ks": list(ks), "depth": depth, "modes": modes,
            "recall_ceiling": ceiling.score, "per_question": per_question}


def retrieval_markdown(result: Mapping[str, Any]) -> str:
    """The side-by-side table, then every question the fused ranking misses within the largest k."""
    cols = [*(f"recall@{k}" for k in result["ks"]), f"mrr@{result['depth']}"]
    lines = [f"Retrieval over {result['questions']} answerable questions "
             "(a passage hits when it overlaps a gold evidence quote)", "",
             "| Retriever | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for mode, label in MODES.items():
        lines.append(f"| {label} | " + " | ".join(_fmt(result["modes"][mode][c]) for c in cols) + " |")
    lost = [(q["id"], quote) for q in result["per_question"]
            for quote, ok in zip(q["evidence"], q["indexed"], strict=True) if not ok]
    lines += ["", f"Recall ceiling {_fmt(result['recall_ceiling'])}: {len(lost)} gold quote(s) lie in no "
              "indexed chunk (ingestion dropped that text as page chrome), so no retriever can find them."]
    kmax = max(result["ks"])
    misses = [q for q in result["per_question"]
              if any(r is None or r > kmax for r in q["ranks"]["hybrid"])]
    lines += ["", f"## Questions whose gold evidence fused retrieval misses in the top {kmax} "
              f"({len(misses)})", ""]
    if not misses:
        lines.append("_None._")
    for q in misses:
        lines.append(f"- `{q['id']}` {q['question']}")
        for j, quote in enumerate(q["evidence"]):
            r = {m: q["ranks"][m][j] for m in MODES}
            where = ", ".join(f"{MODES[m]} {r[m] if r[m] else '>' + str(result['depth'])}" for m in MODES)
            if not q["indexed"][j]:
                where = "none: not in any indexed chunk"
            lines.append(f"  - “{_short(quote, 100)}”: rank {where}")
    return "\n".join(lines) + "\n"


def run_retrieval(assistant: Assistant, items: Sequence[GoldItem], gold: Path, out: Path, *,
                  ks: Sequence[int] = (1, 5), echo: Echo = print) -> dict[str, Any]:
    """Retrieval-only evaluation (no LLM): writes retrieval.md and retrieval.json to ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result = retrieval_eval(assistant.retriever, items, ks)
    s = assistant.settings
    result["config"] = {"gold": str(gold), "gold_sha256": file_sha256(gold),
                        "index_version": assistant.store.version, "embedder": s.embedder,
                        "candidates": s.candidates, "rrf_k": s.rrf_k, "dense_weight": s.dense_weight}
    result["seconds"] = round(time.perf_counter() - t0, 2)
    text = retrieval_markdown(result)
    _write_atomic(out / "retrieval.json", json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    _write_atomic(out / "retrieval.md", "# Retrieval evaluation\n\n" + text)
    echo(text.rstrip())
    echo(f"wrote {out / 'retrieval.md'}, {out / 'retrieval.json'}")
    return result


# -- comparing runs ----------------------------------------------------------------------------------
def _load_run(path: Path) -> tuple[dict[str, Any], dict[str, Record]]:
    try:
        summary = json.loads((path / SUMMARY).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path} has no {SUMMARY}: not a finished run (rerun rag eval --out {path} to "
                         "finish it)") from None
    except (OSError, ValueError) as e:
        raise InputError(f"{path / SUMMARY} is unreadable ({e})") from e
    return summary, read_results(path / RESULTS)


def compare_runs(old: Path, new: Path) -> str:
    """Markdown: config differences, per-metric old/new/difference, questions that flipped."""
    so, ro = _load_run(old)
    sn, rn = _load_run(new)
    lines = [f"# Comparison: `{old}` → `{new}`", ""]
    diff = _config_diff(so.get("config", {}), sn.get("config", {}))
    if diff:
        lines += ["Configuration changes:", "", *(f"- {d}" for d in diff), ""]
        if any(d.startswith("gold_sha256") for d in diff):
            lines += ["**The gold files differ: metrics are over different questions.**", ""]
    lines += ["| Metric | Old | New | Δ | |", "|---|---:|---:|---:|---|"]
    ks = {so.get("config", {}).get("k"), sn.get("config", {}).get("k")}
    same_k = f"@{next(iter(ks))}" if len(ks) == 1 else "@k"
    for name, (label, _, higher) in METRICS.items():
        label = label.replace("@k", same_k)
        a, b = so["metrics"].get(name), sn["metrics"].get(name)
        lines.append(f"| {label} | {_fmt(a)} | {_fmt(b)} | " + _delta(a, b, higher) + " |")
    for key, (label, unit, _) in DISTRIBUTIONS.items():
        for stat in ("p50", "p95"):
            a, b = (so.get(key) or {}).get(stat), (sn.get(key) or {}).get(stat)
            lines.append(f"| {label} {stat} | {_fmt(a, unit or 'tok')} | {_fmt(b, unit or 'tok')} | "
                         + _delta(a, b, False, 2) + " |")
    both = [i for i in rn if i in ro]
    flips: dict[str, list[str]] = {"right → wrong": [], "wrong → right": []}
    for i in both:
        a = bool((ro[i].get("scores") or {}).get("accuracy"))
        b = bool((rn[i].get("scores") or {}).get("accuracy"))
        if a != b:
            flips["wrong → right" if b else "right → wrong"].append(
                f"- `{i}` {rn[i]['question']}\n  - old: {_short(ro[i]['answer'], 200)}\n"
                f"  - new: {_short(rn[i]['answer'], 200)}")
    lines += ["", f"{len(both)} questions in both runs."]
    only = sorted(set(ro) ^ set(rn))
    if only:
        lines.append(f"{len(only)} only in one run: " + ", ".join(f"`{i}`" for i in only[:30]))
    for title, rows in flips.items():
        lines += ["", f"## {title} ({len(rows)})", "", *(rows or ["_None._"])]
    return "\n".join(lines) + "\n"


def _delta(a: float | None, b: float | None, higher_is_better: bool, digits: int = 3) -> str:
    if a is None or b is None:
        return "– |"
    d = b - a
    mark = "" if abs(d) < 10 ** -digits else ("better" if (d > 0) == higher_is_better else "worse")
    return f"{d:+.{digits}f} | {mark}"


# -- command -----------------------------------------------------------------------------------------
def cli(settings: Settings, *, gold: Path, out: Path | None, limit: int | None, k: int | None,
        retrieval: bool, compare: tuple[Path, Path] | None, echo: Echo = print,
        assistant: Assistant | None = None) -> None:
    """``rag eval``: the gold file is validated against the index before anything runs."""
    if compare:
        old, new = compare
        text = compare_runs(Path(old), Path(new))
        _write_atomic(Path(new) / "compare.md", text)
        echo(text.rstrip())
        echo(f"wrote {Path(new) / 'compare.md'}")
        return
    if limit is not None and limit < 1:
        raise InputError(f"--limit must be at least 1, got {limit}")
    if k is not None and k < 1:
        raise InputError(f"--k must be at least 1, got {k}")
    if assistant is None:
        from .answer import Assistant

        assistant = Assistant(settings)
    texts = {name: a.text for name, a in assistant.store.articles.items()}
    items = load_gold(gold, texts, where=f"the index at {assistant.settings.index_dir}")
    items = items[:limit] if limit else items
    out = out or default_out()
    if retrieval:
        ks = sorted({1, 5, *([k] if k else [])})
        run_retrieval(assistant, items, gold, out, ks=ks, echo=echo)
    else:
        run(assistant, items, gold, out, k=k or assistant.settings.k, echo=echo)
