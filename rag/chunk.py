"""Split an article's kept lines into chunks (langchain-text-splitters) and sentences, with offsets.

A chunk never crosses an article boundary, a dropped line nor a change of role: the splitter runs on each
*section* (a run of kept lines of one role with only blank lines between them), so every chunk is a
substring of the file and a caption is never glued to the paragraph after it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from .records import Article, Chunk
from .roles import Role, role_phrase
from .settings import Settings

if TYPE_CHECKING:
    from langchain_text_splitters import RecursiveCharacterTextSplitter

# Paragraphs, then lines, then sentence ends, then words: a chunk breaks at the largest unit that fits.
_SEPARATORS = [r"\n\s*\n", r"\n", r"(?<=[.!?…][\"'”’)\]])\s+|(?<=[.!?…])\s+", r"\s+", ""]
# A sentence ends at . ! ? … (plus closing quotes) followed by space and an opening capital/digit/quote.
_SENT_END = re.compile(r"(?<=[.!?…])[\"'”’)\]]*\s+(?=[\"“‘(\[]?[A-Z0-9])|\n+")
_ABBREV = re.compile(r"\b(?:Mr|Mrs|Ms|Dr|Prof|Sr|Jr|St|Co|Corp|Inc|Ltd|No|vs|etc|e\.g|i\.e|U\.S|U\.K|Jan|Feb|"
                     r"Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)\.$")


def splitter(chunk_size: int, chunk_overlap: int) -> RecursiveCharacterTextSplitter:
    # Imported here: langchain costs ~0.7 s of start-up that answering (which only needs
    # sentence_spans) never uses.
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    return RecursiveCharacterTextSplitter(
        chunk_size=chunk_size, chunk_overlap=chunk_overlap, separators=_SEPARATORS,
        is_separator_regex=True, keep_separator=True, strip_whitespace=True,
    )


def sections(article: Article) -> Iterator[tuple[int, int, Role]]:
    """Maximal runs of kept blocks of one role separated only by whitespace in the original text."""
    run: tuple[int, int, Role] | None = None
    for b in article.blocks:
        if run is not None and b.role is run[2] and article.text[run[1]:b.start].strip() == "":
            run = (run[0], b.end, run[2])
            continue
        if run is not None:
            yield run
        run = (b.start, b.end, b.role)
    if run is not None:
        yield run


def paged(article: Article, spans: Iterable[tuple[int, int, Role]]) -> Iterator[tuple[int, int, Role]]:
    """``spans`` cut at page starts (stripped of the whitespace around the cut), so no chunk crosses a page."""
    for start, end, role in spans:
        for cut in (p for p in article.pages if start < p < end):
            head = article.text[start:cut].rstrip()
            if head:
                yield start, start + len(head), role
            start = cut + len(article.text[cut:end]) - len(article.text[cut:end].lstrip())
        if start < end:
            yield start, end, role


def chunk_article(article: Article, chunk_size: int, chunk_overlap: int) -> list[Chunk]:
    """Chunks with exact offsets: ``article.text[c.start:c.end] == c.text`` for every chunk.

    Sizes come from ``Settings`` (``chunk_size``, ``chunk_overlap``), the one home of their defaults."""
    split = splitter(chunk_size, chunk_overlap)
    stem = article.name.rsplit(".", 1)[0]
    chunks: list[Chunk] = []
    for s_start, s_end, role in paged(article, sections(article)):
        section = article.text[s_start:s_end]
        prev_start, prev_end = -1, 0
        for piece in split.split_text(section):
            at = _locate(section, piece, prev_start, prev_end, chunk_overlap)
            if at < 0:
                raise AssertionError(f"chunk not found in {article.name}: {piece[:40]!r}")
            start, end = s_start + at, s_start + at + len(piece)
            prev_start, prev_end = at, at + len(piece)
            chunks.append(Chunk(
                chunk_id=f"{stem}#{len(chunks)}", article=article.name, title=article.title,
                start=start, end=end, text=piece, sentences=tuple(sentence_spans(article.text, start, end)),
                role=role,
                page=article.page_at(start),
            ))
    return chunks


def search_text(chunk: Chunk, article: Article, context: bool = Settings.role_context, context_chars: int = 200
                ) -> str:
    """What retrieval matches a chunk on (embedding and BM25); the cited span stays ``chunk.text``.

    Article text is matched as it is. A caption, credit, related headline or footer says little alone
    ("Photo: Xinhua"), so it is matched together with what a reader sees around it (:func:`in_context`).
    "Who supplied the picture for the item on telecom AI models?" then finds the credit through the
    item it illustrates.
    """
    if not context:
        return chunk.text
    return in_context(article.text, chunk.role, chunk.start, chunk.end, context_chars)


def sentence_texts(chunk: Chunk, article: Article, context: bool = Settings.role_context) -> list[str]:
    """What the dense ranking matches each sentence of a chunk on (``Settings.dense_unit = "sentence"``):
    the sentence, and for a role other than body with ``context`` its role phrase and neighbouring lines
    (:func:`in_context`), as :func:`search_text` does for the whole chunk. A chunk without sentence spans
    is one sentence."""
    spans = chunk.sentences or ((chunk.start, chunk.end),)
    if not context:
        return [article.text[s:e] for s, e in spans]
    return [in_context(article.text, chunk.role, s, e) for s, e in spans]


def in_context(text: str, role: Role, start: int, end: int, context_chars: int = 200) -> str:
    """``text[start:end]``; for a role other than body, after its role's phrase and followed by the first
    ``context_chars`` of the non-blank line just before and just after it."""
    span = text[start:end]
    if role is Role.BODY:
        return span
    return "\n".join([f"({role_phrase(role)}) {span}", *neighbours(text, start, end, context_chars)])


def neighbours(text: str, start: int, end: int, chars: int = 200) -> list[str]:
    """The first ``chars`` characters of the non-blank line just before and just after ``text[start:end]``
    (the item a caption or credit sits on), whitespace collapsed."""
    b = start  # the line before ends at the last non-space before the span, the line after starts at the first
    while b > 0 and text[b - 1].isspace():
        b -= 1
    a = end
    while a < len(text) and text[a].isspace():
        a += 1
    after_end = text.find("\n", a)
    before, after = text[text.rfind("\n", 0, b) + 1:b], text[a:after_end if after_end >= 0 else len(text)]
    return [" ".join(line[:chars].split()) for line in (before, after) if line.strip()]


def lexical_text(chunk: Chunk, article: Article | None, context: bool = Settings.role_context) -> str:
    """What BM25 indexes: title and source (questions name them: "the China Daily piece"), then
    :func:`search_text`."""
    if article is None:
        return f"{chunk.title} {chunk.text}"
    return f"{article.title} {article.source or ''} {search_text(chunk, article, context)}"


def _locate(section: str, piece: str, prev_start: int, prev_end: int, overlap: int) -> int:
    """Where the splitter took ``piece`` from, given the previous piece's span.

    A plain ``find`` after the previous start goes wrong in repetitive text (a sentence repeated
    every 41 characters): each chunk would map to an earlier copy and the end of the article would
    be covered by no chunk. The splitter overlaps pieces by at most ``overlap`` characters and skips
    only whitespace, so the piece starts in [prev_end - overlap, the next non-space after prev_end];
    the latest such copy is taken.
    """
    nonspace = len(section) - len(section[prev_end:].lstrip())
    at = section.rfind(piece, max(0, prev_end - overlap), nonspace + len(piece))
    if at < 0:  # not expected; any exact copy still keeps the offset contract
        at = section.find(piece, prev_start + 1)
    return at if at >= 0 else section.find(piece)


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> Iterator[tuple[int, int]]:
    """Absolute (start, end) spans of the sentences in ``text[start:end]``, stripped of whitespace."""
    end = len(text) if end is None else end
    seg = text[start:end]
    pos = 0
    for m in _SENT_END.finditer(seg):
        if m.group(0).strip() == "" and _ABBREV.search(seg[max(0, m.start() - 6):m.start()]):
            continue  # "Mr. Smith", "U.S. chips": not a sentence end
        yield from _strip_span(seg, pos, m.start() + len(m.group(0).rstrip()), start)
        pos = m.end()
    yield from _strip_span(seg, pos, len(seg), start)


def _strip_span(seg: str, a: int, b: int, offset: int) -> Iterator[tuple[int, int]]:
    piece = seg[a:b]
    lead = len(piece) - len(piece.lstrip())
    trail = len(piece) - len(piece.rstrip())
    if b - trail > a + lead:
        yield offset + a + lead, offset + b - trail
