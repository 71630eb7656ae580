"""HTML for the chat UI: answers with citation links, and the sources panel with highlighted quotes.

Everything an article or the model contributes is escaped. Chat messages are also rendered as Markdown
by the chatbot, so their text is escaped for both (HTML entities for Markdown's special characters).
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping

from rag.injection import NOTE as FLAG_NOTE
from rag.injection import article_flags
from rag.records import Answer, Article, Citation, Passage
from rag.report import check_note, confidence_note, unanswered_note
from rag.vocab import terms

_MARKER = re.compile(r"\s*\[(\d+)\]")
_WORD = re.compile(r"[^\W_]+(?:[-'’.][^\W_]+)*")
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


def progress(stages: list[str], elapsed: float) -> str:
    """The stages an answer went through, the current one in bold, with the seconds since asking."""
    if not stages:
        return f"Waiting for the assistant… · {elapsed:.0f} s"
    done = [escape_chat(t) for t in stages[:-1]]
    return " → ".join([*done, f"**{escape_chat(stages[-1])}…**"]) + f" · {elapsed:.0f} s"


def answer_html(answer: Answer, turn: int) -> str:
    """The verified answer with each ``[n]`` turned into a superscript link to its source card (kept on
    the line of the word before it), the parts of the question left unanswered, and a line saying what
    the checks removed, if anything. A refusal links to the closest passages in the sources panel."""
    note = check_note(answer)
    note_html = f'<br><small class="rag-check">{escape_chat(note)}</small>' if note else ""
    sure = confidence_note(answer)
    note_html += f'<br><small class="rag-confidence">{escape_chat(sure)}</small>' if sure else ""
    if not answer.answerable:
        near = (f'<br><a class="rag-near-link" href="#turn-{turn}">See the closest passages</a>'
                if answer.passages else "")
        return f'<span class="rag-refusal">{escape_chat(answer.answer)}</span>{note_html}{near}'
    known = {c.marker for c in answer.citations}
    parts, pos = [], 0
    for m in _MARKER.finditer(answer.answer):
        parts.append(escape_chat(answer.answer[pos:m.start()]))
        n = int(m.group(1))
        if n in known:  # a no-break space: the marker never wraps onto a line of its own
            parts.append(f'&#160;<sup class="rag-cite"><a href="#{anchor(turn, n)}" '
                         f'title="Show source {n}">&#91;{n}&#93;</a></sup>')
        else:
            parts.append(escape_chat(m.group(0)))
        pos = m.end()
    parts.append(escape_chat(answer.answer[pos:]))
    open_parts = unanswered_note(answer)
    if open_parts:
        parts.append(f'<br><span class="rag-unanswered">{escape_chat(open_parts)}</span>')
    return "".join(parts) + note_html


def highlight(text: str, question: str) -> str:
    """``text`` escaped, with the words that share a search term with the question in ``<mark>``."""
    wanted = set(terms(question))
    out, pos = [], 0
    for m in _WORD.finditer(text):
        if wanted & set(terms(m.group(0))):
            out.append(html.escape(text[pos:m.start()]))
            out.append(f'<mark class="rag-term">{html.escape(m.group(0))}</mark>')
            pos = m.end()
    out.append(html.escape(text[pos:]))
    return "".join(out)


def near_card(passage: Passage, article: Article | None, question: str) -> str:
    """A retrieved passage shown for a refusal: title, date, source and file, its text with the
    question's terms highlighted."""
    c = passage.chunk
    title = (article.title if article else "") or c.title or c.article
    meta = [m for m in ((article.date, article.source) if article else ()) if m] + [c.article]
    return (f'<div class="rag-src rag-near"><div class="rag-near-title">{html.escape(title)}</div>'
            f'<div class="rag-meta">{" · ".join(html.escape(m) for m in meta)} · characters '
            f'{c.start}–{c.end}</div><div class="rag-ctx">{highlight(c.text, question)}</div></div>')


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
    meta.extend(filter(None, [citation.role_note]))  # "listed as a related headline, ...": not article text
    return (f'<details class="rag-src" id="{anchor(turn, citation.marker)}" open>'
            f'<summary><span class="rag-n">[{citation.marker}]</span> '
            f'<span class="rag-title">{html.escape(title)}</span></summary>'
            f'<div class="rag-meta">{" · ".join(html.escape(m) for m in meta)} · characters '
            f'{citation.start}–{citation.end}</div>'
            f'{flag_html(article)}'
            f'<div class="rag-ctx">{quote_context(article, citation)}</div></details>')


def flag_html(article: Article | None) -> str:
    """A note on a source card whose article holds text addressed to AI assistants (never used as evidence)."""
    if article is None or not article_flags(article):
        return ""
    return f'<div class="rag-flag" title="Sentences addressed to AI assistants are never given to the model.">' \
           f"&#9888; {html.escape(FLAG_NOTE)}</div>"


NEAR_LABEL = "Closest passages (not judged to answer the question)"


def turn_html(answer: Answer, turn: int, articles: Mapping[str, Article], n_near: int = 3) -> str:
    """The sources of one answer, headed by its question (and the standalone rewrite of a follow-up).
    A refusal shows the closest passages instead, with the question's words highlighted."""
    head = f'<summary class="rag-q">Q{turn + 1}: {html.escape(answer.question)}</summary>'
    if answer.rewritten_question:
        rewritten = html.escape(answer.rewritten_question)
        head += f'<div class="rag-rewritten">Follow-up searched as: “{rewritten}”</div>'
    query = answer.rewritten_question or answer.question
    if answer.answerable and answer.citations:
        body = "".join(source_card(c, articles.get(c.article), turn)
                       for c in sorted(answer.citations, key=lambda c: c.marker))
    elif answer.passages:
        near = list(answer.passages)[:n_near]
        body = (f'<div class="rag-notice">No passage was judged to answer the question; '
                f'{len(answer.passages)} were searched.</div><div class="rag-near-head">{NEAR_LABEL}</div>'
                + "".join(near_card(p, articles.get(p.article), query) for p in near))
    else:
        body = '<div class="rag-notice">No passage in the articles matches the question.</div>'
    back = '<a class="rag-back" href="#rag-chat">Back to the answer</a>'
    return f'<details class="rag-turn" id="turn-{turn}">{head}{body}{back}</details>'


def sources_panel(turns: list[str]) -> str:
    """The latest turn's sources, open; earlier turns below it, each folded under its question (their
    citation links still open them)."""
    head = '<h2 class="rag-head">Sources</h2>'
    if not turns:
        return (f'<div class="rag-sources">{head}<div class="rag-empty">Each cited passage appears here, '
                "highlighted in its article.</div></div>")
    latest, *older = reversed(turns)
    body = latest.replace('<details class="rag-turn"', '<details open class="rag-turn"', 1)
    if older:
        body += '<div class="rag-earlier">Earlier questions</div>' + "".join(older)
    return f'<div class="rag-sources">{head}{body}</div>'


CSS = """
/* WCAG AA: Gradio's subdued text (#9ca3af on #f9fafb, 2.4:1) made darker (#4b5563: 7:1). */
:root, body, .gradio-container { --body-text-color-subdued: #4b5563; --block-info-text-color: #4b5563;
                                 --input-placeholder-color: #6b7280; }
.dark, .dark body, .dark .gradio-container { --body-text-color-subdued: #d1d5db;
                                             --block-info-text-color: #d1d5db; --input-placeholder-color: #9ca3af; }
.rag-sources { max-height: 72vh; overflow-y: auto; padding-right: 4px; }
.rag-head { font-weight: 700; font-size: 1.05em; margin: 0 0 4px; }
.rag-empty { color: var(--body-text-color-subdued); padding: 12px; }
.rag-turn { border-bottom: 1px solid var(--border-color-primary); padding: 6px 0 10px; }
.rag-turn > summary { cursor: pointer; }
.rag-earlier { font-weight: 600; margin: 12px 0 2px; color: var(--body-text-color-subdued); }
.rag-q { font-weight: 600; margin: 4px 0; }
.rag-rewritten { font-size: 0.9em; color: var(--body-text-color-subdued); margin-bottom: 4px; }
.rag-src { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 6px 10px;
           margin: 6px 0; scroll-margin-top: 12px; }
.rag-src > summary { cursor: pointer; }
.rag-src.rag-active, .rag-src:target { border-color: var(--color-accent);
                                        box-shadow: 0 0 0 2px var(--color-accent-soft); }
.rag-n { font-weight: 700; }
.rag-title, .rag-near-title { font-weight: 600; }
.rag-meta { font-size: 0.85em; color: var(--body-text-color-subdued); margin: 2px 0 4px; }
.rag-ctx { white-space: pre-line; font-size: 0.92em; line-height: 1.45; }
.rag-ctx mark { background: #fde68a; color: #111; padding: 0 1px; border-radius: 2px; }
.rag-notice { padding: 6px 0; }
.rag-flag { font-size: 0.85em; color: #b45309; margin: 2px 0 4px; }
.rag-near-head { font-weight: 600; margin: 6px 0 2px; }
.rag-near { border-style: dashed; }
.rag-refusal { font-weight: 600; }
.rag-unanswered { display: inline-block; margin-top: 4px; padding-left: 8px; border-left: 3px solid #b45309; }
.rag-check { font-style: italic; }
.rag-cite { white-space: nowrap; }
.rag-cite a { text-decoration: none; font-weight: 600; }
.rag-back { display: none; margin-top: 6px; font-size: 0.9em; }
#rag-status { min-height: 1.6em; }
#rag-count h1 { font-size: 1.5em; margin: 0 0 2px; }
#rag-examples button { white-space: normal; text-align: left; }
@media (max-width: 720px) {  /* one column: the sources sit far below the answer */
  .rag-sources { max-height: none; }
  .rag-back { display: inline-block; }
}
"""

# Links inside the chat and the sources panel scroll their target into view (opening folded turns and
# cards) instead of navigating: [n] to its card, "See the closest passages" to a turn, "Back to the
# answer" to the conversation.
HEAD = r"""<script>
document.addEventListener('click', function (e) {
  var a = e.target && e.target.closest ? e.target.closest('a[href^="#src-"], a[href^="#turn-"], a[href="#rag-chat"]')
                                       : null;
  if (!a) return;
  var el = document.getElementById(a.getAttribute('href').slice(1));
  if (!el) return;
  e.preventDefault(); e.stopPropagation();
  for (var d = el; d; d = d.parentElement) { if (d.tagName === 'DETAILS') d.open = true; }
  if (el.classList.contains('rag-src')) {
    document.querySelectorAll('.rag-src.rag-active').forEach(function (x) { x.classList.remove('rag-active'); });
    el.classList.add('rag-active');
  }
  el.scrollIntoView({behavior: 'smooth', block: el.id === 'rag-chat' ? 'start' : 'center'});
}, true);
// Gradio labels each message with its raw content ("user's message: &#60;b&#62;..."): label it with the
// text the reader sees instead.
new MutationObserver(function () {
  document.querySelectorAll('#rag-chat [aria-label$="s message: "], #rag-chat [aria-label*="s message: "]')
    .forEach(function (el) {
      var label = el.getAttribute('aria-label'), i = label.indexOf("'s message: ");
      if (i < 0) return;
      var want = label.slice(0, i + 12) + el.innerText.replace(/\s+/g, ' ').trim();
      if (label !== want) el.setAttribute('aria-label', want);
    });
}).observe(document.documentElement, {subtree: true, childList: true, characterData: true,
                                       attributes: true, attributeFilter: ['aria-label']});
</script>"""
