"""The gold file: one ``GoldItem`` per line, checked against the index's article texts before a run."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import metrics as M
from ..errors import GoldError


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
