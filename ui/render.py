"""HTML for the chat UI: answers with citation links, and the sources panel with highlighted quotes.

Everything an article or the model contributes is escaped. Chat messages are also rendered as Markdown
by the chatbot, so their text is escaped for both (HTML entities for Markdown's special characters).
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping

from rag.records import Answer, Article, Citation
from rag.report import check_note

_MARKER = re.compile(r"\[(\d+)\]")
CURSOR = "▌"
# HTML specials and the characters Markdown (or LaTeX) would interpret, as numeric character references.
_CHAT_ESCAPES = str.maketrans({c: f"&#{ord(c)};" for c in "&<>\"'\\`*_[]#|~$"})


def escape_chat(text: str) -> str:
    """Text shown literally inside a chatbot message (which renders Markdown and sanitised HTML)."""
    return text.translate(_CHAT_ESCAPES)


def anchor(turn: int, marker: int) -> str:
    """The id of a source card: unique per conversation turn and citation marker."""
    return f"src-{turn}-{marker}"


def streaming_html(raw: str) -> str:
    """The raw tokens received so far, with a cursor."""
    return escape_chat(raw) + CURSOR


def answer_html(answer: Answer, turn: int) -> str:
    """The verified answer with each ``[n]`` turned into a superscript link to its source card, and a
    line saying what the checks removed, if anything."""
    note = check_note(answer)
    note_html = f'<br><small class="rag-check">{escape_chat(note)}</small>' if note else ""
    if not answer.answerable:
        return f'<em class="rag-refusal">{escape_chat(answer.answer)}</em>{note_html}'
    known = {c.marker for c in answer.citations}
    parts, pos = [], 0
    for m in _MARKER.finditer(answer.answer):
        parts.append(escape_chat(answer.answer[pos:m.start()]))
        n = int(m.group(1))
        if n in known:
            parts.append(f'<sup class="rag-cite"><a href="#{anchor(turn, n)}" '
                         f'title="Show source {n}">&#91;{n}&#93;</a></sup>')
        else:
            parts.append(escape_chat(m.group(0)))
        pos = m.end()
    parts.append(escape_chat(answer.answer[pos:]))
    return "".join(parts) + note_html


def quote_context(article: Article | None, citation: Citation, max_side: int = 320) -> str:
    """The paragraph(s) around the cited span, escaped, with the quote in ``<mark>``."""
    if article is None or article.text[citation.start:citation.end] != citation.quote:
        return f"<mark>{html.escape(citation.quote)}</mark>"
    text, s, e = article.text, citation.start, citation.end
    blocks = [b for b in article.blocks if b.start < e and b.end > s]
    a = min(blocks[0].start, s) if blocks else max(0, s - max_side)
    b = max(blocks[-1].end, e) if blocks else min(len(text), e + max_side)
    before, after = text[a:s], text[e:b]
    if len(before) > max_side:
        before = "… " + before[-max_side:].split(" ", 1)[-1]
    if len(after) > max_side:
        after = after[:max_side].rsplit(" ", 1)[0] + " …"
    return f"{html.escape(before)}<mark>{html.escape(citation.quote)}</mark>{html.escape(after)}"


def source_card(citation: Citation, article: Article | None, turn: int) -> str:
    """One cited source: marker, title, date and file, then the quote in its paragraph."""
    title = (article.title if article else "") or citation.title or citation.article
    meta = [m for m in ((article.date, article.source) if article else ()) if m]
    meta.append(citation.article)
    if citation.page:
        meta.append(f"p. {citation.page}")
    return (f'<details class="rag-src" id="{anchor(turn, citation.marker)}" open>'
            f'<summary><span class="rag-n">[{citation.marker}]</span> '
            f'<span class="rag-title">{html.escape(title)}</span></summary>'
            f'<div class="rag-meta">{" · ".join(html.escape(m) for m in meta)} · characters '
            f'{citation.start}–{citation.end}</div>'
            f'<div class="rag-ctx">{quote_context(article, citation)}</div></details>')


def turn_html(answer: Answer, turn: int, articles: Mapping[str, Article]) -> str:
    """The sources of one answer, headed by its question (and the standalone rewrite of a follow-up)."""
    head = f'<div class="rag-q">Q{turn + 1}: {html.escape(answer.question)}</div>'
    if answer.rewritten_question:
        rewritten = html.escape(answer.rewritten_question)
        head += f'<div class="rag-rewritten">Follow-up searched as: “{rewritten}”</div>'
    if answer.answerable and answer.citations:
        body = "".join(source_card(c, articles.get(c.article), turn)
                       for c in sorted(answer.citations, key=lambda c: c.marker))
    else:
        looked = sorted({p.chunk.title or p.article for p in answer.passages})
        body = '<div class="rag-notice">No passage in the articles supports an answer.</div>'
        if looked:
            body += ('<div class="rag-meta">Searched: ' + "; ".join(html.escape(t) for t in looked)
                     + "</div>")
    return f'<section class="rag-turn" id="turn-{turn}">{head}{body}</section>'


def sources_panel(turns: list[str]) -> str:
    """All turns' source blocks, latest first (older answers' links keep working)."""
    head = '<div class="rag-head">Sources</div>'
    if not turns:
        return (f'<div class="rag-sources">{head}<div class="rag-empty">Each cited passage appears here, '
                "highlighted in its article.</div></div>")
    return f'<div class="rag-sources">{head}' + "".join(reversed(turns)) + "</div>"


CSS = """
.rag-sources { max-height: 72vh; overflow-y: auto; padding-right: 4px; }
.rag-head { font-weight: 700; font-size: 1.05em; margin-bottom: 4px; }
.rag-empty { color: var(--body-text-color-subdued); padding: 12px; }
.rag-turn { border-bottom: 1px solid var(--border-color-primary); padding: 6px 0 10px; }
.rag-q { font-weight: 600; margin: 4px 0; }
.rag-rewritten { font-size: 0.9em; color: var(--body-text-color-subdued); margin-bottom: 4px; }
.rag-src { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 6px 10px;
           margin: 6px 0; scroll-margin-top: 12px; }
.rag-src > summary { cursor: pointer; }
.rag-src.rag-active, .rag-src:target { border-color: var(--color-accent);
                                        box-shadow: 0 0 0 2px var(--color-accent-soft); }
.rag-n { font-weight: 700; color: var(--color-accent); }
.rag-title { font-weight: 600; }
.rag-meta { font-size: 0.85em; color: var(--body-text-color-subdued); margin: 2px 0 4px; }
.rag-ctx { white-space: pre-line; font-size: 0.92em; line-height: 1.45; }
.rag-ctx mark { background: #fde68a; color: #111; padding: 0 1px; border-radius: 2px; }
.rag-notice { padding: 6px 0; }
.rag-refusal { color: var(--body-text-color-subdued); }
.rag-check { color: var(--body-text-color-subdued); }
.rag-cite a { text-decoration: none; font-weight: 600; }
"""

# Citation links scroll the sources panel to their card (and open it) instead of navigating.
HEAD = """<script>
document.addEventListener('click', function (e) {
  var a = e.target && e.target.closest ? e.target.closest('a[href^="#src-"]') : null;
  if (!a) return;
  var el = document.getElementById(a.getAttribute('href').slice(1));
  if (!el) return;
  e.preventDefault(); e.stopPropagation();
  if (el.tagName === 'DETAILS') el.open = true;
  document.querySelectorAll('.rag-src.rag-active').forEach(function (x) {
    x.classList.remove('rag-active');
  });
  el.classList.add('rag-active');
  el.scrollIntoView({behavior: 'smooth', block: 'center'});
}, true);
</script>"""
