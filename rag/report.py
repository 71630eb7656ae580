"""Render answers as Markdown (for reports and the UI's download) or JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence

from .records import Answer, short


def quote_line(text: str, limit: int = 400) -> str:
    return short(text, limit)


def check_note(answer: Answer) -> str:
    """What the checks did to the model's draft, in one line ("" when they kept it whole)."""
    dropped = [s for s in answer.sentences if s.note in ("unsupported", "echo")]
    if any(s.note == "extract" for s in answer.sentences):
        return "The model only restated the question, so this is the most relevant passage, quoted as it stands."
    if dropped and answer.answerable:
        n = len(dropped)
        return f"{n} sentence{'s' if n > 1 else ''} of the draft left out: not supported by the cited passages."
    if dropped:
        return "The model drafted an answer, but the passages do not support it."
    return ""


def answer_markdown(answer: Answer, heading: str | None = None, offset: int = 0) -> tuple[str, list[str]]:
    """The answer with its markers shifted by ``offset``, and its reference lines (for a shared list)."""
    text = answer.answer
    for c in sorted(answer.citations, key=lambda c: -c.marker):
        text = text.replace(f"[{c.marker}]", f"[{c.marker + offset}]")
    refs = [f"{c.marker + offset}. *{c.title}* ({c.article}, {f'p. {c.page}, ' if c.page else ''}"
            f"characters {c.start}–{c.end}): "
            f"“{quote_line(c.quote)}”" for c in sorted(answer.citations, key=lambda c: c.marker)]
    lines = []
    if heading:
        lines.append(f"## {heading}\n")
    if not answer.answerable:
        lines.append(f"> {text}\n")
    else:
        lines.append(f"{text}\n")
    if any(c.note == "extract" for c in answer.sentences):
        lines.append(f"_{check_note(answer)}_\n")  # a reader pasting this should know it is a bare quote
    return "\n".join(lines), refs


def single_markdown(answer: Answer) -> str:
    """One answer with its own reference list: what ``rag ask --markdown`` and the UI download give."""
    body, refs = answer_markdown(answer, heading=answer.question)
    out = body
    if refs:
        out += "\n### References\n\n" + "\n".join(refs) + "\n"
    return out


def report_markdown(answers: Sequence[Answer], title: str = "Cited answers") -> str:
    """Many answers, numbered references shared across the document."""
    parts = [f"# {title}\n"]
    refs: list[str] = []
    for a in answers:
        body, r = answer_markdown(a, heading=a.question, offset=len(refs))
        parts.append(body)
        refs.extend(r)
    parts.append("## References\n")
    parts.append("\n".join(refs) if refs else "_No citations._")
    models = sorted({a.model for a in answers if a.model})
    parts.append(f"\n\n---\n_Generated offline by rag with {', '.join(models) or 'no model'}; every quote is an "
                 "exact span of the named article file._\n")
    return "\n".join(parts)


def report_json(answers: Sequence[Answer]) -> str:
    return json.dumps([a.to_dict() for a in answers], ensure_ascii=False, indent=2)
