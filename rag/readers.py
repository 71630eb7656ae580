"""File readers: one function per format, and ``READERS``, the one table that says which formats exist.

A reader turns a file's bytes into a ``Read``: the article's text (what offsets index, what the index
stores and what citations quote), the metadata the file gives (title, date, source, author), the start
offset of each page for paged formats, and the roles of spans the reader knows are not article body
(PDF running heads, feet and page numbers, a web page's reader comments): kept in the text, so a
reader can still find them, and labelled like any other line (``rag.roles``); the line rules label
the rest. Adding a format is one function and one
entry in ``READERS``; ``rag.ingest``, the UI upload and the error messages all derive from the table.

Not handled: scanned PDFs (no text layer: OCR is out of scope), encrypted PDFs, .doc (use .docx).
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

from .errors import InputError
from .roles import Line, Role, label_lines

PAGE_BREAK = "\n\f\n"  # between the pages of a paged format; str.splitlines() treats \f as a line end


def page_at(text: str, offset: int) -> int:
    """The 1-based page of ``offset`` in a paged reader's text: pages are joined by ``PAGE_BREAK``, and a
    form feed never occurs inside a page (``read_pdf`` reads no whitespace characters from the text layer)."""
    return 1 + text.count("\f", 0, offset)


@dataclass(frozen=True)
class Read:
    """What a reader found in one file; every offset indexes ``text``."""

    text: str
    title: str | None = None
    date: str | None = None  # ISO yyyy-mm-dd
    source: str | None = None
    author: str | None = None
    markdown: bool = False  # "# " lines are headings, not prose
    pages: tuple[int, ...] = ()  # start offset of page 1, 2, ... (paged formats only)
    roles: tuple[tuple[int, int, Role], ...] = ()  # (start, end, role) of text the reader knows is not body


Reader = Callable[[bytes, Path], Read]


def decode_text(data: bytes, path: Path) -> str:
    """UTF-8 text of a text file; refuse binary or non-UTF-8 bytes with a message naming the file."""
    if b"\x00" in data:  # anywhere: a NUL after the first 8 KB is still no text article
        raise InputError(f"{path}: looks binary (NUL bytes), not a text article")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not valid UTF-8 (byte {e.start}); re-save it as UTF-8") from e
    controls = sum(1 for ch in text[:8192] if ord(ch) < 32 and ch not in "\n\r\t\f")
    if controls > max(8, len(text[:8192]) // 100):
        raise InputError(f"{path}: looks binary ({controls} control characters), not a text article")
    return text


# -- plain text and Markdown ------------------------------------------------------------------------------

def read_plain(data: bytes, path: Path) -> Read:
    """The file's text as it is; title, date and author are found by ``rag.ingest.parse_article``."""
    return Read(decode_text(data, path))


def read_markdown(data: bytes, path: Path) -> Read:
    return Read(decode_text(data, path), markdown=True)


# -- HTML ---------------------------------------------------------------------------------------------------

def read_html(data: bytes, path: Path) -> Read:
    """Main text and metadata through trafilatura (its own boilerplate removal and htmldate's dates).

    Paragraphs are joined by blank lines. What trafilatura leaves out but a reader of the page can read
    (headline, standfirst, navigation, cookie banner, captions, related links, newsletter boxes) follows
    the main text, one block per line in page order, and reader comments come last: all kept and
    labelled by the line rules, never as body (``_html_role``).
    Scripts, styles, HTML comments and attributes are not readable text and are left out.
    """
    import trafilatura  # ~0.3 s import: only when an HTML file is read

    html = decode_text(data, path)
    doc: Any = trafilatura.bare_extraction(html, with_metadata=True, include_comments=True, include_tables=True,
                                      include_formatting=False, include_images=False, deduplicate=False)
    body = _paragraphs(doc.text if doc is not None else "", bullets=True)
    if doc is None or not body:
        raise InputError(f"{path}: no article text found in the HTML")
    comments = _paragraphs(doc.comments or "")
    found = " ".join(f"{body} {comments}".split())
    blocks, captions = _page_blocks(html)
    rest = "\n\n".join(dict.fromkeys(ln for ln in blocks if ln not in found))
    text, roles = body, []
    if rest:
        start = len(text) + 2
        text = f"{text}\n\n{rest}"
        roles += [(start + ln.start, start + ln.end, _html_role(ln, captions, doc.author))
                  for ln in label_lines(rest, title=doc.title) if not ln.drop]
    if comments:
        roles.append((len(text) + 2, len(text) + 2 + len(comments), Role.SITE))
        text = f"{text}\n\n{comments}"
    return Read(text, title=doc.title or None, date=doc.date or None, source=doc.sitename or None,
                author=doc.author or None, roles=tuple(roles))


def _html_role(line: Line, captions: set[str], author: str | None) -> Role:
    """The role of a line outside trafilatura's main text: what the page's markup says (a figcaption, a
    short line naming the author), else the line rules' role, but never body."""
    if line.text in captions:
        return Role.CAPTION
    if author and author in line.text and len(line.text.split()) <= 12:
        return Role.BYLINE
    return Role.SITE if line.role is Role.BODY else line.role


_BLOCK_TAGS = ("p", "div", "li", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "td", "th", "dt", "dd",
               "figcaption", "caption", "header", "footer", "nav", "aside", "section", "article", "main", "ul",
               "ol", "dl", "table", "tr", "figure", "form", "button", "label", "br")


def _page_blocks(html: str) -> tuple[list[str], set[str]]:
    """Every piece of readable text on the page, one per block element, in page order, whitespace
    collapsed; and the texts of its ``<figcaption>`` elements."""
    import lxml.etree
    import lxml.html

    try:
        tree = lxml.html.document_fromstring(html)
    except (ValueError, lxml.etree.ParserError):
        return [], set()
    for el in tree.xpath("//script | //style | //noscript | //template | //svg | //head | //select"):
        el.drop_tree()
    captions = {" ".join(el.text_content().split()) for el in tree.iter("figcaption")}
    for el in tree.iter(*_BLOCK_TAGS):
        el.text = "\n" + (el.text or "")
        el.tail = "\n" + (el.tail or "")
    return [" ".join(ln.split()) for ln in tree.text_content().splitlines() if ln.strip()], captions


def _paragraphs(text: str, bullets: bool = False) -> str:
    """One paragraph per line, joined by blank lines; ``bullets``: drop the "- " trafilatura puts before
    list items, which is not in the page a reader sees."""
    lines = (" ".join(ln.split()) for ln in text.splitlines() if ln.strip())
    return "\n\n".join(ln[2:] if bullets and ln.startswith("- ") else ln for ln in lines)


# -- DOCX ---------------------------------------------------------------------------------------------------

def read_docx(data: bytes, path: Path) -> Read:
    """Paragraphs and table rows of a Word file in document order; title, author, date from its properties.

    Page headers and footers live apart from the body in a .docx and are not read.
    """
    import docx
    from docx.table import Table

    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as e:  # noqa: BLE001 - python-docx raises many kinds for a broken file
        raise InputError(f"{path}: not a readable .docx file ({type(e).__name__})") from e
    parts: list[str] = []
    for item in document.iter_inner_content():
        rows = ([" | ".join(" ".join(c.text.split()) for c in r.cells) for r in item.rows]
                if isinstance(item, Table) else [" ".join(item.text.split())])
        parts.extend(r for r in rows if r.strip(" |"))
    props = document.core_properties
    when = props.created or props.modified
    return Read("\n\n".join(parts), title=(props.title or "").strip() or None,
                date=when.date().isoformat() if when else None, author=(props.author or "").strip() or None)


# -- PDF ----------------------------------------------------------------------------------------------------

@dataclass
class _Line:
    x0: float
    x1: float
    top: float  # distance from the top of the page
    bottom: float
    text: str
    size: float  # median character height: a headline's is larger

    @property
    def height(self) -> float:
        return self.bottom - self.top


def read_pdf(data: bytes, path: Path) -> Read:
    """Text of a PDF's pages in reading order, through pypdfium2 (PDFium's text layer).

    Each page's characters are grouped into lines and the lines into columns by their position, so a
    two-column page reads down the left column, then the right, whatever order the file draws them
    in. Wrapped lines of a paragraph are joined by a space (a hyphen at a line end followed by a small
    letter is dropped). Running headers and footers (the first or last line of a page that recurs on
    other pages with only digits changed) and bare page numbers are kept, labelled ``site`` (heads) and
    ``footer`` (feet).
    Title: the document's Title property unless it is a placeholder, else the largest-type line(s) of page 1.
    """
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as e:
        raise InputError(f"{path}: not a readable PDF ({e})") from e
    try:
        meta = pdf.get_metadata_dict(skip_empty=True)
        pages = [_page_lines(pdf[i]) for i in range(len(pdf))]
    finally:
        pdf.close()
    furniture = _furniture(pages)
    text_parts: list[str] = []
    starts: list[int] = []
    roles: list[tuple[int, int, Role]] = []
    pos = 0
    for p, lines in enumerate(pages):
        if p:
            text_parts.append(PAGE_BREAK)
            pos += len(PAGE_BREAK)
        starts.append(pos)
        # Running heads first and feet last, whichever column they were found in.
        marks = furniture[p]
        mid = (max((ln.bottom for ln in lines), default=0) + min((ln.top for ln in lines), default=0)) / 2
        heads = [ln for i, ln in enumerate(lines) if i in marks and ln.top < mid]
        feet = [ln for i, ln in enumerate(lines) if i in marks and ln.top >= mid]
        lines = heads + [ln for i, ln in enumerate(lines) if i not in marks] + feet
        marks = set(range(len(heads))) | set(range(len(lines) - len(feet), len(lines)))
        for i, para in enumerate(_paragraphs_of(lines, marks)):
            if i:
                text_parts.append("\n\n")
                pos += 2
            text, is_furniture = para
            if is_furniture:
                roles.append((pos, pos + len(text), Role.SITE if i < len(heads) else Role.FOOTER))
            text_parts.append(text)
            pos += len(text)
    text = "".join(text_parts)
    if not text.strip():
        raise InputError(f"{path}: the PDF has no text layer (a scan?); OCR it first")
    title = _useful_title(meta.get("Title") or "") or _headline(pages[0] if pages else [])
    return Read(text, title=title or None, date=_pdf_date(meta.get("CreationDate", "")),
                author=(meta.get("Author") or "").strip() or None, pages=tuple(starts), roles=tuple(roles))


def _page_lines(page: Any) -> list[_Line]:
    """Lines of one page: characters on one baseline, split where a gap is wider than ~2 characters
    (the gutter between two columns). Spaces are inferred from the gaps between characters, since
    the spaces PDFium generates carry no reliable box."""
    textpage = page.get_textpage()
    height = page.get_height()
    chars = []
    try:
        n = textpage.count_chars()
        whole = textpage.get_text_range(0, n)  # one call; per-character calls cost ~2x the page time
        for i in range(n):
            ch = whole[i] if len(whole) == n else textpage.get_text_range(i, 1)
            if not ch or ch.isspace():
                continue
            left, bottom, right, top = textpage.get_charbox(i, loose=True)  # font box: one height per line
            chars.append((height - top, height - bottom, left, right, ch))
    finally:
        textpage.close()
        page.close()
    rows: list[list[tuple[float, float, float, float, str]]] = []
    for c in sorted(chars, key=lambda c: ((c[0] + c[1]) / 2, c[2])):
        mid = (c[0] + c[1]) / 2
        if rows and abs(mid - (rows[-1][0][0] + rows[-1][0][1]) / 2) <= max(1.0, (c[1] - c[0]) * 0.3):
            rows[-1].append(c)
        else:
            rows.append([c])
    lines: list[_Line] = []
    for row in rows:
        row.sort(key=lambda c: c[2])
        size = median(c[1] - c[0] for c in row)
        segment: list[tuple[float, float, float, float, str]] = []
        for c in row:
            if segment and c[2] - segment[-1][3] > 1.5 * size:
                lines.append(_line(segment, size))
                segment = []
            segment.append(c)
        lines.append(_line(segment, size))
    return _reading_order(lines)


def _line(chars: list[tuple[float, float, float, float, str]], size: float) -> _Line:
    text = chars[0][4]
    for prev, c in zip(chars, chars[1:], strict=False):
        text += (" " if c[2] - prev[3] > 0.12 * size else "") + c[4]
    return _Line(chars[0][2], chars[-1][3], min(c[0] for c in chars), max(c[1] for c in chars), text, size)


def _reading_order(lines: list[_Line]) -> list[_Line]:
    """Full-width lines (headlines, running heads) cut the page into bands; inside a band, columns are
    read left to right, each top to bottom. Columns are found from the left edges of the lines."""
    if not lines:
        return []
    left = min(ln.x0 for ln in lines)
    right = max(ln.x1 for ln in lines)
    width = right - left or 1.0
    out: list[_Line] = []
    band: list[_Line] = []

    def flush() -> None:
        starts = sorted({round(ln.x0) for ln in band})
        edges = [s for i, s in enumerate(starts) if i == 0 or s - starts[i - 1] > 0.2 * width]
        for lo, hi in zip(edges, [*edges[1:], float("inf")], strict=True):
            out.extend(sorted((ln for ln in band if lo - 0.1 * width <= ln.x0 < hi - 0.1 * width),
                              key=lambda ln: ln.top))
        band.clear()

    for ln in sorted(lines, key=lambda ln: (ln.top, ln.x0)):
        if ln.x1 - ln.x0 > 0.6 * width:
            flush()
            out.append(ln)
        else:
            band.append(ln)
    flush()
    return out


def _norm_furniture(text: str) -> str:
    return re.sub(r"\d+", "#", " ".join(text.lower().split()))


_PAGE_NUMBER = re.compile(r"^(page\s*)?\d{1,4}(\s*(of|/)\s*\d{1,4})?$", re.IGNORECASE)


def _furniture(pages: list[list[_Line]]) -> list[set[int]]:
    """Per page, the positions of lines that are running heads/feet or page numbers: on the top two
    or bottom two rows of the page, a bare page number or a line that recurs (digits aside) on the
    top or bottom rows of another page."""
    edge = []
    for p in pages:
        tops = sorted({round(ln.top) for ln in p})
        bottoms = sorted({round(ln.bottom) for ln in p})
        edge.append([i for i, ln in enumerate(p)
                     if round(ln.top) in tops[:2] or round(ln.bottom) in bottoms[-2:]])
    counts: dict[str, int] = {}
    for p, idx in zip(pages, edge, strict=True):
        for key in {_norm_furniture(p[i].text) for i in idx}:
            counts[key] = counts.get(key, 0) + 1
    return [{i for i in idx if _PAGE_NUMBER.match(p[i].text.strip())
             or (len(pages) > 1 and counts[_norm_furniture(p[i].text)] > 1)}
            for p, idx in zip(pages, edge, strict=True)]


def _paragraphs_of(lines: list[_Line], furniture: set[int]) -> list[tuple[str, bool]]:
    """Join wrapped lines into paragraphs: a new paragraph starts after a vertical gap larger than
    about half a line, at a change of column or type size, and at every furniture line."""
    paras: list[tuple[str, bool]] = []
    current: list[str] = []
    prev: _Line | None = None

    def close() -> None:
        if current:
            paras.append((_join(current), False))
            current.clear()

    for i, ln in enumerate(lines):
        if i in furniture:
            close()
            paras.append((ln.text, True))
            prev = None
            continue
        if prev is not None:
            if ln.top < prev.top - 1:  # the next column: a sentence cut at the column foot continues
                if current and re.search(r"[.!?:\"”’]$", current[-1]):
                    close()
            elif (ln.top - prev.bottom > 0.6 * ln.height or ln.x0 > prev.x0 + 1.5 * ln.size
                  or abs(ln.size - prev.size) > 0.2 * prev.size):
                close()  # a gap, an indented first line or another type size: a new paragraph
        current.append(ln.text)
        prev = ln
    close()
    return paras


def _join(lines: list[str]) -> str:
    out = lines[0]
    for ln in lines[1:]:
        broken = re.search(r"[A-Za-z]-$", out) and ln[:1].islower()  # "govern-" + "ment"
        out = out[:-1] + ln if broken else f"{out} {ln}"
    return out


def _useful_title(title: str) -> str | None:
    """The Title property, unless it is a tool's placeholder ("untitled", "Microsoft Word - x.docx")."""
    title = " ".join(title.split())
    if re.fullmatch(r"(?i)untitled|.*\.(docx?|pdf|indd|qxd|rtf|odt)|microsoft word - .*|", title):
        return None
    return title


def _headline(lines: list[_Line]) -> str | None:
    if not lines:
        return None
    biggest = max(ln.size for ln in lines)
    if biggest < 1.3 * median(ln.size for ln in lines):
        return None
    return " ".join(ln.text for ln in lines if ln.size == biggest)[:200]


def _pdf_date(raw: str) -> str | None:
    m = re.match(r"(?:D:)?(\d{4})(\d{2})(\d{2})", raw or "")
    return f"{m.group(1)}-{m.group(2)}-{m.group(3)}" if m else None


# -- e-mail -----------------------------------------------------------------------------------------------

def read_eml(data: bytes, path: Path) -> Read:
    """A saved e-mail (a newsletter, a clipping service's message): subject as title, sender as source,
    its date; the plain-text part, else the HTML part through ``read_html``."""
    from email import policy
    from email.message import EmailMessage
    from email.parser import BytesParser
    from email.utils import parsedate_to_datetime

    msg = BytesParser(policy=policy.default).parsebytes(data)
    if not isinstance(msg, EmailMessage) or not msg["from"]:
        raise InputError(f"{path}: not an e-mail message (no From header)")
    part = msg.get_body(preferencelist=("plain", "html"))
    if part is None:
        raise InputError(f"{path}: the e-mail has no text or HTML body")
    body = part.get_content().encode("utf-8")
    read = read_html(body, path) if part.get_content_subtype() == "html" else read_plain(body, path)
    try:
        date = parsedate_to_datetime(str(msg["date"])).date().isoformat() if msg["date"] else read.date
    except (TypeError, ValueError):
        date = read.date
    senders = getattr(msg["from"], "addresses", ())
    return Read(read.text, title=str(msg["subject"] or "") or read.title, date=date,
                source=(senders[0].display_name if senders else "") or str(msg["from"]), author=read.author,
                roles=read.roles)


# -- the table ----------------------------------------------------------------------------------------------

READERS: dict[str, Reader] = {
    ".txt": read_plain,
    ".md": read_markdown,
    ".markdown": read_markdown,
    ".html": read_html,
    ".htm": read_html,
    ".pdf": read_pdf,
    ".docx": read_docx,
    ".eml": read_eml,
}
SUFFIXES = tuple(READERS)


def reader_for(path: Path) -> Reader:
    """The reader for ``path``'s suffix; an unknown suffix is an ``InputError`` naming the known ones."""
    suffix = path.suffix.lower()
    if suffix not in READERS:
        raise InputError(f"{path}: unsupported file type {suffix or '(none)'!r}; use {formats()}")
    return READERS[suffix]


def formats() -> str:
    """The known suffixes for messages: ".txt, .md, ... or .docx"."""
    return ", ".join(SUFFIXES[:-1]) + f" or {SUFFIXES[-1]}"
