"""A run folder: ask every gold question, append its scored record, resume an interrupted run when its
configuration (gold hash, model, settings, the answer path's code fingerprint) is unchanged."""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import InputError
from ..files import write_atomic as _write_atomic
from ..settings import Settings
from .gold import NO_KIND, GoldItem, file_sha256
from .plots import write_plots
from .report import kind_tables, report_markdown, summary_table
from .scoring import Record, score, summarise

if TYPE_CHECKING:
    from ..records import Answer


Echo = Callable[[str], Any]


class Answerer(Protocol):
    """What a run asks questions of: ``rag.answer.Assistant``, or a baseline (``rag.baseline``)."""

    settings: Settings

    @property
    def store(self) -> Any: ...

    @property
    def llm(self) -> Any: ...

    def warm_up(self) -> None: ...

    def ask(self, question: str, *, k: int | None = None, history: Any = None) -> Answer: ...

RESULTS, SUMMARY, CONFIG, REPORT = "results.jsonl", "summary.json", "config.json", "report.md"


def default_out(root: Path = Path("eval/runs")) -> Path:
    return root / time.strftime("%Y%m%d-%H%M%S")


PACKAGE = Path(__file__).parent.parent  # rag/: the answer path lives there


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


def run_config(assistant: Answerer, gold: Path, k: int) -> dict[str, Any]:
    """What must be equal for answers of two invocations to be mixed in one run (the resume key)."""
    pipeline = getattr(assistant, "pipeline", None)  # a baseline's name (rag.baseline); ours has none
    return {
        "gold": str(gold), "gold_sha256": file_sha256(gold), "model": assistant.llm.name, "k": k,
        "index_version": assistant.store.version, "code": code_fingerprint(),
        "answer_settings": answer_settings(assistant.settings), **({"pipeline": pipeline} if pipeline else {}),
    }


def config_diff(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    keys = [k for k in dict.fromkeys([*old, *new]) if k != "gold"]  # the file may move; its hash may not
    out = []
    for k in keys:
        a, b = old.get(k), new.get(k)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += config_diff(a, b, f"{prefix}{k}.")
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


def run(assistant: Answerer, items: Sequence[GoldItem], gold: Path, out: Path, *, k: int,
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
        diff = config_diff(old, config)
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
                    replays = getattr(assistant.llm, "replays", 0)  # an ablation's memory (ablation.Remembered)
                    answer = ask(assistant, it, k)
                    if getattr(assistant.llm, "replays", 0) > replays:
                        answer["replayed"] = True  # timed without the model: left out of the latencies
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


def ask(assistant: Answerer, item: GoldItem, k: int) -> Record:
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
