"""Render answers as Markdown (for reports and the UI's download) or JSON.

References read like references: title, source and date of the article, then the file and the span
(and the passage's role and page where the citation carries them). Everything that comes from an
article, the model or the user is escaped, so a Markdown viewer shows ``<img onerror=…>`` as text.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from collections.abc import Mapping, Sequence

from .records import Answer, Article, Citation, Note, short
from .vocab import MARKER

# HTML specials as entities; Markdown's inline specials backslash-escaped (both render as the character).
_HTML = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
_MD_SPECIAL = re.compile(r"([\\`*_\[\]#|~$])")


def md_text(text: str) -> str:
    """Untrusted text shown literally in Markdown: no HTML, no emphasis, links or headings."""
    return _MD_SPECIAL.sub(r"\\\1", text.translate(_HTML))


def md_answer(text: str) -> str:
    """An answer's text: escaped like ``md_text`` but its ``[n]`` markers kept as they are."""
    out, pos = [], 0
    for m in MARKER.finditer(text):
        out.append(md_text(text[pos:m.start()]))
        out.append(m.group(0))
        pos = m.end()
    out.append(md_text(text[pos:]))
    return "".join(out)


def quote_line(text: str, limit: int = 400) -> str:
    return short(text, limit)


def check_note(answer: Answer) -> str:
    """What the checks did to the model's draft, in one line ("" when they kept it whole)."""
    dropped = [s for s in answer.sentences if s.note in (Note.UNSUPPORTED, Note.ECHO)]
    if any(s.note == Note.EXTRACT for s in answer.sentences):
        return "The model only restated the question, so this is the most relevant passage, quoted as it stands."
    if dropped and answer.answerable:
        n = len(dropped)
        return f"{n} sentence{'s' if n > 1 else ''} of the draft left out: not supported by the cited passages."
    if dropped:
        return "The model drafted an answer, but the passages do not support it."
    return ""


# Words for an answer's calibrated confidence, highest band first: (lowest probability, words).
CONFIDENCE_WORDS = ((0.85, "likely right"), (0.65, "probably right; check the quotes"),
                    (0.45, "uncertain; check the quotes"), (0.0, "doubtful; check the quotes before using it"))


def confidence_note(answer: Answer) -> str:
    """The answer's calibrated confidence in words a reader acts on ("" when it has none). No signal tells a
    right refusal from a wrong one (rag.confidence), so a refusal says the articles may still hold it."""
    c = answer.confidence
    if c is None:
        return ""
    if not answer.answerable:
        return f"Confidence {c:.0%}: the articles may still hold the answer; see the closest passages."
    words = next(w for low, w in CONFIDENCE_WORDS if c >= low)
    return f"Confidence {c:.0%}: {words}."


def unanswered_note(answer: Answer) -> str:
    """A plain statement of the parts of a compound question the articles do not answer ("" if none)."""
    if not answer.unanswered:
        return ""
    parts = "; ".join(f"“{p.rstrip('?').strip()}”" for p in answer.unanswered)
    return f"The articles do not answer this part of the question: {parts}."


def reference(citation: Citation, article: Article | None = None) -> str:
    """One citation as a reference, plain text: title, source, date, then file, span, role, page."""
    title = (article.title if article else "") or citation.title or citation.article
    where = [m for m in ((article.source, article.date) if article else ()) if m]
    locator = [citation.article, f"characters {citation.start}–{citation.end}"]
    if citation.page:
        locator.append(f"p. {citation.page}")
    if citation.role_note:
        locator.append(citation.role_note)
    parts = [p.strip() for p in (title, ", ".join(where), ", ".join(locator)) if p.strip()]
    return " ".join(p if p[-1] in ".?!…" else p + "." for p in parts)


def searched(answer: Answer, articles: Mapping[str, Article] | None = None) -> list[str]:
    """The articles a refused question was searched in, best first: "title (source, date)"."""
    out: list[str] = []
    for p in answer.passages:
        a = (articles or {}).get(p.article)
        title = (a.title if a else "") or p.chunk.title or p.article
        meta = ", ".join(m for m in ((a.source, a.date) if a else ()) if m)
        line = f"{title} ({meta})" if meta else title
        if line not in out:
            out.append(line)
    return out


def answer_markdown(answer: Answer, heading: str | None = None, offset: int = 0,
                    articles: Mapping[str, Article] | None = None) -> tuple[str, list[str]]:
    """The answer with its markers shifted by ``offset``, and its reference lines (for a shared list)."""
    text = answer.answer
    for c in sorted(answer.citations, key=lambda c: -c.marker):
        text = text.replace(f"[{c.marker}]", f"[{c.marker + offset}]")
    refs = [f"{c.marker + offset}. {md_text(reference(c, (articles or {}).get(c.article)))} "
            f"“{md_text(quote_line(c.quote))}”" for c in sorted(answer.citations, key=lambda c: c.marker)]
    lines = []
    if heading:
        lines.append(f"## {md_text(heading)}\n")
    if answer.rewritten_question:
        lines.append(f"_Searched as: {md_text(answer.rewritten_question)}_\n")
    if not answer.answerable:
        lines.append(f"> {md_answer(text)}\n")
        looked = searched(answer, articles)
        if looked:
            n = len(answer.passages)
            lines.append(f"Searched {n} passage{'s' * (n != 1)} of: " + "; ".join(md_text(t) for t in looked) + ".\n")
    else:
        lines.append(f"{md_answer(text)}\n")
    if answer.unanswered:
        lines.append(f"> {md_text(unanswered_note(answer))}\n")
    if answer.confidence is not None:
        lines.append(f"_{md_text(confidence_note(answer))}_\n")
    if any(c.note == Note.EXTRACT for c in answer.sentences):
        lines.append(f"_{check_note(answer)}_\n")  # a reader pasting this should know it is a bare quote
    return "\n".join(lines), refs


def single_markdown(answer: Answer, articles: Mapping[str, Article] | None = None) -> str:
    """One answer with its own reference list: what ``rag ask --markdown`` and the UI download give."""
    body, refs = answer_markdown(answer, heading=answer.question, articles=articles)
    out = body
    if refs:
        out += "\n### References\n\n" + "\n".join(refs) + "\n"
    return out


def report_markdown(answers: Sequence[Answer], title: str = "Cited answers",
                    articles: Mapping[str, Article] | None = None, date: str | None = None) -> str:
    """Many answers, numbered references shared across the document, under a header that gives the
    date, the number of questions and the model."""
    models = sorted({a.model for a in answers if a.model})
    n = len(answers)
    answered = sum(a.answerable for a in answers)
    date = date or _dt.date.today().isoformat()
    parts = [f"# {md_text(title)}\n",
             f"_{date} · {n} question{'s' * (n != 1)} ({answered} answered) · model "
             f"{md_text(', '.join(models) or 'none')}_\n"]
    refs: list[str] = []
    for a in answers:
        body, r = answer_markdown(a, heading=a.question, offset=len(refs), articles=articles)
        parts.append(body)
        refs.extend(r)
    parts.append("## References\n")
    parts.append("\n".join(refs) if refs else "_No citations._")
    parts.append("\n\n---\n_Generated offline by rag; every quote is an exact span of the named article "
                 "file (characters are offsets into its text)._\n")
    return "\n".join(parts)


def report_json(answers: Sequence[Answer]) -> str:
    return json.dumps([a.to_dict() for a in answers], ensure_ascii=False, indent=2)

