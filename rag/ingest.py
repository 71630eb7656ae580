"""Read article files (any format of ``rag.readers.READERS``) and label every line by its role on the page.

Ingestion never rewrites text nor deletes what a reader can read: every line that carries words is kept
as a block with a role (body, headline, byline, caption, related, site, footer; see ``roles``), and only
lines that carry nothing are dropped (a bare "Advertisement", a clip length, exact repeats, which point
to their first copy). Every chunk and citation maps back to the file by character offsets.

A reader (``rag.readers``) turns each file into text and metadata; for HTML, PDF, DOCX and e-mail the
"original text" is the text the reader extracted (paragraphs joined by blank lines), since markup and
binary files are not readable prose; offsets index that text, which the index stores. The same line
labelling then runs on every format's text. Not handled: pages whose article text sits in scripts.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from .errors import InputError
from .readers import SUFFIXES, decode_text, reader_for
from .records import Article, Block, Coverage, Dropped
from .roles import BYLINE, DATE, REPEAT, Role, find_title, label_lines, split_lines
from .settings import Settings

log = logging.getLogger(__name__)

CLEANER_VERSION = 4  # bump when the cleaning rules change (4: readers, HTML through trafilatura): rebuilds old indexes


def read_bytes(path: Path, max_bytes: int = Settings.max_file_bytes) -> tuple[bytes, str]:
    """Return the file's bytes and their sha256; refuse unreadable or huge files."""
    try:
        size = path.stat().st_size
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror})") from e
    if size > max_bytes:
        raise InputError(f"{path}: {size} bytes is larger than the {max_bytes}-byte limit (max_file_bytes)")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror})") from e
    return data, hashlib.sha256(data).hexdigest()


def read_text(path: Path, max_bytes: int = Settings.max_file_bytes) -> tuple[str, str]:
    """Return a text file's text and the sha256 of its bytes; refuse binary, non-UTF-8 or huge files."""
    data, digest = read_bytes(path, max_bytes)
    return decode_text(data, path), digest


def load_article(path: Path, max_bytes: int = Settings.max_file_bytes, name: str | None = None) -> Article:
    """Read one file with its format's reader and label its lines by role. Raises InputError for
    unusable files. Metadata the file states (HTML meta tags, document properties) wins over what the
    line rules guess; a role the reader knows (a PDF's running head, a web page's reader comments)
    wins over the role the line rules give."""
    data, digest = read_bytes(path, max_bytes)
    read = reader_for(Path(name) if name else path)(data, path)
    article = parse_article(read.text, name or path.name, digest, markdown=read.markdown, title_hint=read.title)
    blocks = tuple(next((Block(b.start, b.end, role) for s, e, role in read.roles if s < b.end and b.start < e), b)
                   for b in article.blocks)
    if not any(b.role in (Role.BODY, Role.HEADLINE) for b in blocks):
        raise InputError(f"{path}: no article text found (empty, or only page furniture such as "
                         "advertisements and comment prompts)")
    return Article(**{**article.__dict__, "path": str(path), "blocks": blocks, "pages": read.pages,
                      "date": read.date or article.date, "source": read.source or article.source,
                      "author": read.author or article.author})


def parse_article(text: str, name: str, sha256: str = "", *, markdown: bool = False,
                  title_hint: str | None = None) -> Article:
    """Label each line of ``text`` with its role (``roles.label_lines``) and extract the metadata."""
    lines = label_lines(text, title=title_hint, markdown=markdown)
    title, _ = find_title(list(split_lines(text)), markdown, title_hint)
    date = source = author = None
    blocks: list[Block] = []
    dropped: list[Dropped] = []
    starts = {ln.number: ln.start for ln in lines}
    for ln in lines:
        if ln.drop:
            same_as = starts[ln.same_as] if ln.same_as is not None else None
            dropped.append(Dropped(ln.start, ln.end, ln.drop, same_as))
            continue
        blocks.append(Block(ln.start, ln.end, ln.role))
        if ln.role is Role.BYLINE:
            m = DATE.search(ln.text)
            if m:
                date = date or m.group(1)
                source = source or _source(ln.text[m.end():])
                author = author or _editor(ln.text)
            b = BYLINE.match(ln.text)
            if b:
                author = author or b.group("name")
    if not title:
        first = next((b for b in blocks if b.role in (Role.HEADLINE, Role.BODY)), None)
        title = (_first_sentence(text[first.start:first.end]) if first else None) or name
    return Article(name=name, text=text, sha256=sha256, title=title, date=date, source=source,
                   author=author, blocks=tuple(blocks), dropped=tuple(dropped))


def coverage(article: Article) -> Coverage:
    """Characters per role and dropped per reason; how much of the text that carries words is findable."""
    text = article.text
    by_role = {r.value: 0 for r in Role}
    dropped: dict[str, int] = {}
    word_chars = findable = 0
    for b in article.blocks:
        by_role[b.role.value] += b.end - b.start
        if _has_words(text[b.start:b.end]):
            word_chars += b.end - b.start
            findable += b.end - b.start
    for d in article.dropped:
        dropped[d.reason] = dropped.get(d.reason, 0) + d.end - d.start
        if _has_words(text[d.start:d.end]):
            word_chars += d.end - d.start
            findable += (d.end - d.start) if d.reason == REPEAT else 0
    return Coverage(article.name, word_chars, findable, by_role, dropped)


def _has_words(t: str) -> bool:
    return any(ch.isalpha() for ch in t)


def iter_paths(paths: Iterable[Path]) -> Iterator[Path]:
    """Expand folders (recursively, sorted) into article files; raise for a path that does not exist."""
    for p in paths:
        if p.is_dir():
            yield from sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in SUFFIXES
                              and not any(part.startswith(".") for part in q.relative_to(p).parts))
        elif p.is_file():
            yield p
        else:
            raise InputError(f"{p}: no such file or folder")


def _first_sentence(line: str) -> str | None:
    first = line.lstrip("-•* ")
    m = re.match(r"(.+?[.!?])(\s|$)", first)
    s = m.group(1) if m else first
    return s if len(s) <= 120 else s[:117].rsplit(" ", 1)[0] + "…"


def _source(rest: str) -> str | None:
    m = re.match(r"\s*([A-Z][\w&.]*(?:\s+[A-Z][\w&.]*){0,3}?)\s+(?:Editor|By|Author|Reporter)\b", rest)
    return m.group(1) if m else None


def _editor(t: str) -> str | None:
    m = re.search(r"\b(?:Editor|By|Author|Reporter)\s*:?\s*([A-Z][a-z]+(?:\s+[A-Z][a-z]+){0,2})", t)
    return m.group(1) if m else None
