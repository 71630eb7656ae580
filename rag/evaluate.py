"""Score the assistant on a gold question file: answers, refusals, citations, retrieval and latency.

Every question goes through ``Assistant.ask(...).to_dict()``, the code path and JSON of ``rag ask --json``;
a gold line with a ``history`` (OpenAI-style messages) is asked with those earlier turns, as the chat asks
a follow-up, so a question that leans on them is rewritten before retrieval. What is scored is what a user gets. A
run folder holds::

    config.json     what the run was made with (gold file hash, model, k, index version, every setting
                    that can change an answer, a fingerprint of every module on the answer path)
    results.jsonl   one ask-JSON per question plus its id, kind, tags, history and scores; appended and
                    flushed per question
    summary.json    the metrics (definitions in ``METRICS``) with 95% bootstrap intervals, overall, per
                    kind and per tag; the checks as classifiers; calibration when answers carry a confidence
    report.md       headline table, per kind, the worst questions, plots, checks, calibration, latency
    metrics.png, kinds.png, reliability.png, latency.png

A run that was interrupted continues where it stopped when started again with the same ``--out``: ids
already in results.jsonl are skipped, provided config.json matches (otherwise it refuses and says why).
The metrics are pure functions in ``rag.metrics``, the intervals and tests in ``rag.stats``, the checks'
scoring in ``rag.checkscore``, the ablation in ``rag.ablation``.
"""

from __future__ import annotations

import ast
import dataclasses
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
from . import stats
from .errors import GoldError, InputError
from .files import write_atomic as _write_atomic
from .records import Note
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
    kind: str = ""  # free label (e.g. "paraphrase", "false-premise"); every metric is broken down by it
    tags: tuple[str, ...] = ()
    history: tuple[tuple[str, str], ...] = ()  # earlier turns of a conversation: (role, content)

    @property
    def messages(self) -> list[dict[str, str]]:
        """The history as OpenAI-style messages, the form ``Assistant.ask`` takes with the earlier answers."""
        return [{"role": role, "content": text} for role, text in self.history]


GOLD_FIELDS = ("id", "question", "answerable", "answer", "must", "docs", "evidence", "kind", "tags", "history")
ROLES = ("user", "assistant")
NO_KIND = "(no kind)"


def _history_problems(history: Any) -> list[str]:
    """What is wrong with a ``history`` value: a list of {"role": "user"|"assistant", "content": str}."""
    example = ' e.g. [{"role": "user", "content": "Who leads Huawei?"}, {"role": "assistant", "content": "..."}]'
    if not isinstance(history, list):
        return [f"must be a list of messages,{example}"]
    problems = []
    for n, m in enumerate(history, 1):
        if not isinstance(m, dict):
            problems.append(f"message {n} must be an object with role and content, got {type(m).__name__}")
            continue
        extra = sorted(set(m) - {"role", "content"})
        if extra:
            problems.append(f"message {n} has unknown key(s) {', '.join(map(repr, extra))}; the keys are role, "
                            "content")
        if m.get("role") not in ROLES:
            problems.append(f"message {n} has role {m.get('role')!r}; the roles are user, assistant")
        if not isinstance(m.get("content"), str) or not m["content"].strip():
            problems.append(f"message {n} needs a non-empty string content")
    if not problems and history and not any(m["role"] == "user" for m in history):
        problems.append("holds no user message; the history is the earlier questions and answers")
    return problems


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
    if "kind" in d and (not isinstance(d["kind"], str) or not d["kind"].strip()):
        problems.append(("kind", f"must be a non-empty string, e.g. \"paraphrase\", got {d['kind']!r}"))
    if not _str_list(d.get("tags", [])):
        problems.append(("tags", 'must be a list of non-empty strings, e.g. ["numbers", "two-articles"]'))
    problems += [("history", p) for p in _history_problems(d.get("history", []))]
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
            kind=d.get("kind", "").strip(), tags=tuple(d.get("tags", ())),
            history=tuple((m["role"], m["content"]) for m in d.get("history", ())),
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
    """summary.json: metric means with their 95% bootstrap intervals and counts, overall and per kind (and
    per tag); the checks as classifiers; calibration when answers carry a confidence; latency and
    prompt-token distributions."""
    from .checkscore import score_checks

    results = score(items, records, texts, k)
    fresh = [r for r in records if not r.get("cached")]
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
    right when answered correctly or rightly refused); ``None`` when no answer carries a confidence."""
    conf = [confidence_of(r) for r in records]
    cal = stats.calibration(conf, correct)
    if cal is None:
        return None
    return {"ece": _round(cal.ece), "n": cal.n, "without_confidence": sum(c is None for c in conf),
            "bins": [{"low": lo, "high": hi, "count": n, "confidence": _round(c), "accuracy": _round(a)}
                     for lo, hi, n, c, a in cal.bins]}


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


PACKAGE = Path(__file__).parent


def answer_path(root: Path = PACKAGE, start: str = "answer") -> list[str]:
    """The modules of the package an answer runs through: ``start`` and every module it imports from the
    package, directly or not (``from .x import``, ``from . import x``, imports inside functions too), read
    from the source, so a module added to the path later is covered without editing a list."""
    seen: list[str] = []
    todo = [start]
    while todo:
        name = todo.pop()
        if name in seen or not (root / f"{name}.py").is_file():
            continue
        seen.append(name)
        tree = ast.parse((root / f"{name}.py").read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                todo += [node.module.split(".")[0]] if node.module else [a.name for a in node.names]
    return sorted(seen)


def code_fingerprint(root: Path = PACKAGE) -> str:
    """sha256 over the source of every answer-path module (as on disk when the run starts)."""
    h = hashlib.sha256()
    for name in answer_path(root):
        h.update(name.encode() + b"\0" + (root / f"{name}.py").read_bytes() + b"\0")
    return h.hexdigest()[:16]


# Settings that do not change an answer: where things are, and the API key (never written to a run).
NOT_ANSWER_SETTINGS = frozenset({"index_dir", "corpus", "cache_dir", "api_key", "answer_cache_size"})


def answer_settings(settings: Settings) -> dict[str, Any]:
    """Every setting that can change an answer, as JSON values."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(settings):
        if f.name not in NOT_ANSWER_SETTINGS:
            v = getattr(settings, f.name)
            out[f.name] = v if isinstance(v, (bool, int, float, str)) or v is None else str(v)
    return out


def run_config(assistant: Assistant, gold: Path, k: int) -> dict[str, Any]:
    """What must be equal for answers of two invocations to be mixed in one run (the resume key)."""
    return {
        "gold": str(gold), "gold_sha256": file_sha256(gold), "model": assistant.llm.name, "k": k,
        "index_version": assistant.store.version, "code": code_fingerprint(),
        "answer_settings": answer_settings(assistant.settings),
    }


def _config_diff(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    keys = [k for k in dict.fromkeys([*old, *new]) if k != "gold"]  # the file may move; its hash may not
    out = []
    for k in keys:
        a, b = old.get(k), new.get(k)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += _config_diff(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {a!r} -> {b!r}")
    return out


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
                    answer = ask(assistant, it, k)
                    scores = {n: m.individual_scores[0] for n, m in score([it], [answer], texts, k).items()}
                    rec = {"id": it.id, **answer, **_labels(it), "scores": scores}
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
    if len(summary["by_kind"]) > 1:
        echo("\nPer kind: mean (95% interval)\n\n" + kind_tables(summary["by_kind"], k))
    echo(f"wrote {out / RESULTS}, {out / SUMMARY}, {out / REPORT}" + "".join(f", {out / p}" for p in plots))
    return summary


def ask(assistant: Assistant, item: GoldItem, k: int) -> Record:
    """One gold item through the answer path, as ``rag ask --json`` gives it: a conversation's last turn is
    asked with the earlier turns (questions and answers, OpenAI-style messages) as history, so a follow-up
    is rewritten (the record's ``rewritten_question``) as in the chat, where the assistant knows its own
    earlier answers."""
    return assistant.ask(item.question, k=k, history=item.messages or None).to_dict()


def _labels(item: GoldItem) -> Record:
    """The gold metadata copied into a result line, so results.jsonl reads on its own."""
    out: Record = {"kind": item.kind or NO_KIND}
    if item.tags:
        out["tags"] = list(item.tags)
    if item.history:
        out["history"] = [{"role": r, "content": c} for r, c in item.history]
    return out


def _rescore(items: Sequence[GoldItem], records: list[Record], texts: Mapping[str, str], k: int) -> int:
    """Bring the stored per-question scores in line with the gold file and metrics; how many changed."""
    results = score(items, records, texts, k)
    changed = 0
    for i, rec in enumerate(records):
        scores = {n: m.individual_scores[i] for n, m in results.items()}
        labels = _labels(items[i])
        if rec.get("scores") != scores or any(rec.get(key) != v for key, v in labels.items()):
            records[i] = {**rec, **labels, "scores": scores}
            changed += 1
    return changed


# -- rendering ---------------------------------------------------------------------------------------
def _fmt(x: float | None, unit: str = "", digits: int = 3) -> str:
    if x is None:
        return "–"
    if unit == "s":
        return f"{x:.2f} s"
    return f"{x:.0f}" if unit == "tok" else f"{x:.{digits}f}"


def _ci(ci: Sequence[float] | None, digits: int = 3) -> str:
    return "–" if not ci else f"{ci[0]:.{digits}f} – {ci[1]:.{digits}f}"


def _label(name: str, k: Any) -> str:
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
        label = _label(name, k) + ("" if higher else " (lower is better)")
        row = (f"| {label} | {_fmt(summary['metrics'].get(name))} | {_ci(cis.get(name))} | "
               f"{summary['counts'].get(name, 0)} |")
        rows.append(row + (f" {text} |" if definitions else ""))
    return "\n".join(rows)


def latency_table(summary: Mapping[str, Any]) -> str:
    rows = ["| Measure | p50 | p95 | mean | Definition |", "|---|---:|---:|---:|---|"]
    for key, (label, unit, text) in DISTRIBUTIONS.items():
        d = summary.get(key) or {}
        u = unit or "tok"
        rows.append(f"| {label} | {_fmt(d.get('p50'), u)} | {_fmt(d.get('p95'), u)} | {_fmt(d.get('mean'), u)} "
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
            " | ".join(_label(n, k) for n in names) + " |"
        rows = [head, "|---|" + ("---:|" * 3 if first else "") + "---:|" * len(names)]
        for label, g in groups.items():
            cells = [f"{_fmt(g['metrics'].get(n), digits=2)} ({_ci(g['ci'].get(n), 2)})"
                     if g["metrics"].get(n) is not None else "–" for n in names]
            counts = f"{g['questions']} | {g['answerable']} | {g['unanswerable']} | " if first else ""
            rows.append(f"| {label} | {counts}" + " | ".join(cells) + " |")
        out.append("\n".join(rows))
    return "\n\n".join(out)


def checks_table(checks: Mapping[str, Mapping[str, Any]]) -> str:
    from .checkscore import DESCRIPTIONS

    rows = ["| Check | What it does | Counted over | Decisions | Right | Wrong | Wrong let through | Precision "
            "| Recall |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, c in checks.items():
        missed = "–" if c["missed"] is None else str(c["missed"])
        rows.append(f"| {name} | {DESCRIPTIONS.get(name, 'removes an answer sentence')} | {c['unit']} | "
                    f"{c['decisions']} | {c['right']} | {c['wrong']} | {missed} | {_fmt(c['precision'], digits=2)} "
                    f"| {_fmt(c['recall'], digits=2)} |")
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
        parts += [f"Expected calibration error **{_fmt(cal['ece'])}** over {cal['n']} answers with a confidence "
                  f"({cal['without_confidence']} without): the answers' share, per confidence bin, times the gap "
                  "between the bin's mean confidence and its accuracy (answered right or rightly refused); "
                  "see reliability.png.", ""]
    else:
        parts += ["_The answers carry no confidence, so there is no reliability diagram._", ""]
    parts += ["## Latency and tokens", "", latency_table(summary), "",
              "## Definitions", "", "| Metric | Definition |", "|---|---|",
              *(f"| {_label(n, k)} | {text} |" for n, (_, text, _) in METRICS.items()), ""]
    parts += [f"## Every question with a problem ({len(bad)})", "",
              "| id | kind | problem | recall | answer | raw model output |", "|---|---|---|---:|---|---|"]
    for sev, it, r in bad:
        rec = (r.get("scores") or {}).get("retrieval_recall")
        raw = r.get("raw_answer", "") if r.get("raw_answer", "") != r["answer"] else "(same)"
        parts.append(f"| `{it.id}` | {it.kind or '–'} | {_KIND[sev[0]]} | {_fmt(rec, digits=2)} | "
                     f"{_cell(r['answer'])} | {_cell(raw)} |")
    return "\n".join(parts) + "\n"


def _cell(text: str, n: int = 160) -> str:
    return _short(text, n).replace("|", "\\|")


def write_plots(summary: Mapping[str, Any], records: Sequence[Record], out: Path) -> list[str]:
    """metrics.png (rates with their intervals), kinds.png (accuracy per kind, when there are several),
    reliability.png (when answers carry a confidence) and latency.png; returns the file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = summary["config"].get("k")
    names = [n for n in METRICS if summary["metrics"].get(n) is not None]
    rows = [(_label(n, k) + ("" if METRICS[n][2] else " (lower is better)"), summary["metrics"][n],
             (summary.get("ci") or {}).get(n), summary["counts"].get(n, 0), METRICS[n][2]) for n in names]
    files = [_interval_plot(plt, rows, out / "metrics.png",
                            f"{summary['config'].get('model')}, k={k}: {summary['questions']} questions", "rate")]
    kinds = summary.get("by_kind") or {}
    if len(kinds) > 1:
        rows = [(f"{kind} ({g['questions']})", g["metrics"]["accuracy"], g["ci"]["accuracy"], g["questions"], True)
                for kind, g in kinds.items() if g["metrics"].get("accuracy") is not None]
        files.append(_interval_plot(plt, rows, out / "kinds.png", "Overall accuracy per kind (questions)",
                                    "overall accuracy (answered right or rightly refused)"))
    if summary.get("calibration"):
        files.append(reliability_plot(plt, summary["calibration"], out / "reliability.png"))

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
    if fresh:
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=110)
    plt.close(fig)
    return [*files, "latency.png"]


def _interval_plot(plt: Any, rows: Sequence[tuple[str, float, Sequence[float] | None, int, bool]], path: Path,
                   title: str, xlabel: str) -> str:
    """Horizontal bars with their 95% interval as whiskers; the figures are written in a column to the
    right of the axes, so no text overlaps a bar or a whisker."""
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(rows) + 1.4))
    ys = list(range(len(rows)))[::-1]
    for y, (_, v, ci, n, higher) in zip(ys, rows, strict=True):
        ax.barh(y, v, color="#4c72b0" if higher else "#c44e52", height=0.6)
        ax.plot([v], [y], "o", color="black", ms=4)  # a zero still shows
        if ci:
            ax.errorbar(v, y, xerr=[[v - ci[0]], [ci[1] - v]], fmt="none", ecolor="black", capsize=3, lw=1)
        text = f"{v:.2f}" + (f"  [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "") + f"  n={n}"
        ax.text(1.04, y, text, va="center", fontsize=9, transform=ax.get_yaxis_transform(), clip_on=False)
    ax.set_yticks(ys, [r[0] for r in rows])
    ax.set_xlim(-0.01, 1.01)
    ax.set_xticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.set_xlabel(f"{xlabel} (whiskers: 95% interval)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path.name


def reliability_plot(plt: Any, cal: Mapping[str, Any], path: Path) -> str:
    """Accuracy against mean confidence per bin (the diagonal is perfect calibration), and how many
    answers fall in each bin."""
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(6, 6.4), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    bins = [b for b in cal["bins"] if b["count"]]
    width = cal["bins"][0]["high"] - cal["bins"][0]["low"]
    ax.plot([0, 1], [0, 1], ls="--", color="grey", label="perfect calibration")
    ax.bar([b["low"] + width / 2 for b in bins], [b["accuracy"] for b in bins], width=width * 0.9,
           color="#4c72b0", alpha=0.8, label="accuracy of the answers in the bin")
    ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o", color="black",
            label="(mean confidence, accuracy)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(f"Reliability: ECE {cal['ece']:.3f} over {cal['n']} answers")
    ax.legend(loc="upper left", fontsize=8)
    hist.bar([b["low"] + width / 2 for b in cal["bins"]], [b["count"] for b in cal["bins"]], width=width * 0.9,
             color="#888888")
    hist.set_xlabel("confidence the answer carries")
    hist.set_ylabel("answers")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


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
                        "candidates": s.candidates, "rrf_k": s.rrf_k, "dense_weight": s.dense_weight,
                        "role_weight": s.role_weight}
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
    both = [i for i in rn if i in ro]
    lines += [f"Old and new: each run's own means. Paired: over the {len(both)} questions both runs answered, the "
              f"{int(stats.LEVEL * 100)}% paired-bootstrap interval of new - old ({stats.RESAMPLES} resamples) "
              "and, for right/wrong scores, the exact McNemar p-value (right in old only : right in new only). "
              "A difference is beyond noise when p < 0.05 (right/wrong scores) or the interval excludes 0.", "",
              "| Metric | Old | New | Δ | Direction | Paired Δ interval | McNemar p (old only : new only) | Verdict |",
              "|---|---:|---:|---:|---|---:|---:|---|"]
    ks = {so.get("config", {}).get("k"), sn.get("config", {}).get("k")}
    same_k = f"@{next(iter(ks))}" if len(ks) == 1 else "@k"
    for name, (label, _, higher) in METRICS.items():
        label = label.replace("@k", same_k)
        a, b = so["metrics"].get(name), sn["metrics"].get(name)
        pair = paired_metric(ro, rn, both, name)
        lines.append(f"| {label} | {_fmt(a)} | {_fmt(b)} | " + _delta(a, b, higher) + " | "
                     + _paired_cells(pair, higher) + " |")
    for key, (label, unit, _) in DISTRIBUTIONS.items():
        for stat in ("p50", "p95"):
            a, b = (so.get(key) or {}).get(stat), (sn.get(key) or {}).get(stat)
            lines.append(f"| {label} {stat} | {_fmt(a, unit or 'tok')} | {_fmt(b, unit or 'tok')} | "
                         + _delta(a, b, False, 2) + " | – | – | – |")
    kinds = sorted({ro[i].get("kind") or NO_KIND for i in both}, key=lambda g: (g == NO_KIND, g))
    if len(kinds) > 1:
        lines += ["", "Overall accuracy per kind:", "",
                  "| Kind | questions | Old | New | Paired Δ interval | McNemar p (old only : new only) | Verdict |",
                  "|---|---:|---:|---:|---:|---:|---|"]
        for kind in kinds:
            ids = [i for i in both if (rn[i].get("kind") or NO_KIND) == kind]
            pair = paired_metric(ro, rn, ids, "accuracy")
            lines.append(f"| {kind} | {len(ids)} | {_fmt(pair.old)} | {_fmt(pair.new)} | "
                         + _paired_cells(pair, True) + " |")
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


def paired_metric(old: Mapping[str, Record], new: Mapping[str, Record], ids: Sequence[str], name: str
                  ) -> stats.Paired:
    """One metric of two runs compared question by question (the stored per-question scores)."""
    return stats.paired([(old[i].get("scores") or {}).get(name) for i in ids],
                        [(new[i].get("scores") or {}).get(name) for i in ids])


def _paired_cells(pair: stats.Paired, higher_is_better: bool) -> str:
    if pair.n == 0 or pair.diff is None:
        return "– | – | –"
    p = "–" if pair.p_mcnemar is None else f"{pair.p_mcnemar:.3f} ({pair.old_only} : {pair.new_only})"
    if pair.beyond_noise:
        verdict = "**better, beyond noise**" if (pair.diff > 0) == higher_is_better else "**worse, beyond noise**"
    else:
        verdict = "within noise"
    return f"{_ci(pair.ci)} | {p} | {verdict}"


def _delta(a: float | None, b: float | None, higher_is_better: bool, digits: int = 3) -> str:
    if a is None or b is None:
        return "– |"
    d = b - a
    mark = "" if abs(d) < 10 ** -digits else ("better" if (d > 0) == higher_is_better else "worse")
    return f"{d:+.{digits}f} | {mark}"


# -- command -----------------------------------------------------------------------------------------
def cli(settings: Settings, *, gold: Path, out: Path | None, limit: int | None, k: int | None,
        retrieval: bool, compare: tuple[Path, Path] | None, echo: Echo = print,
        assistant: Assistant | None = None, ablate: bool = False, variants: Sequence[str] = ()) -> None:
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
    elif ablate or variants:
        from .ablation import run_ablation

        run_ablation(assistant, items, gold, out, k=k or assistant.settings.k, echo=echo, only=variants)
    else:
        run(assistant, items, gold, out, k=k or assistant.settings.k, echo=echo)
