"""Read article files (any format of ``rag.readers.READERS``) and find the spans that are article text.

Cleaning never rewrites text: it only *selects* blocks (one per line or paragraph) of the original, so
every chunk and citation maps back to the file by character offsets. The rules are generic signals of
boilerplate (navigation labels, repeated captions and teasers, video durations, credit lines, licence
and copyright lines, and everything after a footer marker such as "Related news" or "Leave a Reply").

A reader (``rag.readers``) turns each file into text and metadata; for HTML, PDF and DOCX the
"original text" is the text the reader extracted (paragraphs joined by blank lines), since markup and
binary files are not readable prose; offsets index that text, which the index stores. The same line
rules then run on every format's text. Not handled: pages whose article text sits in scripts.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError
from .readers import SUFFIXES, decode_text, reader_for
from .records import Article, Block

log = logging.getLogger(__name__)

CLEANER_VERSION = 3  # bump when the cleaning rules change: indexes built by older rules get rebuilt

# A line that *is* one of these (case-insensitive, trailing punctuation ignored) is page chrome.
_CHROME = {
    "advertisement", "advertisements", "sponsored", "share", "share this", "share this article", "tweet",
    "print", "email", "comments", "home", "menu", "search", "subscribe", "sign up", "sign up now",
    "log in", "login", "learn more", "read more", "more", "see more", "load more", "post", "next",
    "previous", "back to top", "top", "skip to content", "cookie settings", "accept", "reference",
    "references", "source", "sources", "tags", "topics", "photo", "video", "listen", "watch",
    "dmca compliant image", "get more with mynews", "most read", "trending", "latest", "newsletter",
}
# A line starting with one of these ends the article: what follows is footer, comments or teasers.
_FOOTER = re.compile(
    r"^(related (news|articles|stories|posts|content|coverage)|articles you may like|you may also like|"
    r"recommended( for you)?|more (from|on|stories|news)\b|most (popular|read|viewed)|"
    r"leave a (reply|comment)|\d+ comments?|comments are closed|read next|up next|"
    r"deep dives|\d+-second catch-up|reference(s)?$|trending now|popular (now|posts))",
    re.IGNORECASE,
)
# Whole lines that are credits, licences, captions or promotions.
_JUNK = re.compile(
    r"(copyright\s*(©|\(c\)|\d{4})|©\s*\d{4}|all rights reserved|reproduction in whole or in part|"
    r"^(photo|image|illustration|video|graphic|credit|source)s?\s*:|\b(photo|illustration|image)\s*:\s*[^.]{0,60}$|"
    r"\((?:[A-Z][A-Z .'-]+/)?[A-Z][A-Z .'-]+\)\s*$|"  # (KEVIN FRAYER/GETTY IMAGES)
    r"^also read\s*:|^read (also|more)\s*:|^see also\s*:|^related\s*:|"
    r"icp|许可证|公网安备|"
    r"denial of responsibility|email address will not be published|required fields are marked|"
    r"sign up now|subscribe (now|to|for)|download (the|our) app|app download|"
    r"privacy policy|terms of (use|service)|cookie policy|contact us|about us)",
    re.IGNORECASE,
)
_DURATION = re.compile(r"^\d{1,2}:\d{2}(:\d{2})?$")  # a video clip's length, e.g. "03:48"
_DATE = re.compile(r"\b((?:19|20)\d\d-[01]\d-[0-3]\d)(?:[ T][0-2]\d:[0-5]\d(?::[0-5]\d)?)?")
_BYLINE = re.compile(r"^(?:by\s+|[—–-]\s*)(?P<name>[A-Z][\w.'-]+(?:\s+[A-Z][\w.'-]+){0,3})\s*(?:,|$)")
_SENTENCE_END = re.compile(r"[.!?…:;][\"'”’)\]]*$")


@dataclass(frozen=True)
class _Line:
    start: int
    end: int
    text: str


def read_bytes(path: Path, max_bytes: int = 5_000_000) -> tuple[bytes, str]:
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


def read_text(path: Path, max_bytes: int = 5_000_000) -> tuple[str, str]:
    """Return a text file's text and the sha256 of its bytes; refuse binary, non-UTF-8 or huge files."""
    data, digest = read_bytes(path, max_bytes)
    return decode_text(data, path), digest


def load_article(path: Path, max_bytes: int = 5_000_000, name: str | None = None) -> Article:
    """Read one file with its format's reader and select its article blocks. Raises InputError for
    unusable files. Metadata the file states (HTML meta tags, document properties) wins over what the
    line rules guess; text the reader labelled as not body (running heads, comments) is never a block."""
    data, digest = read_bytes(path, max_bytes)
    read = reader_for(Path(name) if name else path)(data, path)
    article = parse_article(read.text, name or path.name, digest, markdown=read.markdown, title_hint=read.title)
    blocks = tuple(b for b in article.blocks
                   if not any(s < b.end and b.start < e for s, e, _ in read.labels))
    if not blocks:
        raise InputError(f"{path}: no article text found (empty or only boilerplate)")
    return Article(**{**article.__dict__, "path": str(path), "blocks": blocks, "pages": read.pages,
                      "date": read.date or article.date, "source": read.source or article.source,
                      "author": read.author or article.author})


def parse_article(text: str, name: str, sha256: str = "", *, markdown: bool = False,
                  title_hint: str | None = None) -> Article:
    """Split ``text`` into lines, classify each as article text or chrome, and extract the metadata."""
    lines = list(_lines(text))
    counts = Counter(_norm(ln.text) for ln in lines)
    title, title_norms = _title(lines, counts, markdown, title_hint)
    date = source = author = None
    blocks: list[Block] = []
    after_duration = False
    for ln in lines:
        t = ln.text
        n = _norm(t)
        if _FOOTER.match(n) and len(t.split()) <= 8:
            break  # footer: comments, related teasers, licences
        if markdown and t.startswith("#"):
            continue
        m = _DATE.search(t)
        if m and len(t.split()) <= 15 and not _SENTENCE_END.search(t):
            date = date or m.group(1)
            source = source or _source(t[m.end():])
            author = author or _editor(t)
            blocks.append(Block(ln.start, ln.end))  # a dateline is article text a reader may cite
            continue
        b = _BYLINE.match(t)
        if b and len(t.split()) <= 8:
            author = author or b.group("name")
            blocks.append(Block(ln.start, ln.end))
            continue
        if _DURATION.match(t):
            after_duration = True
            continue
        if after_duration and not _SENTENCE_END.search(t):
            continue  # the teaser title of a video clip
        after_duration = False
        if n in title_norms or any(n.endswith(tn) for tn in title_norms if len(tn) > 20):
            continue
        if n in _CHROME or counts[n] > 1 or _JUNK.search(t):
            continue  # chrome, repeated captions/promos, credit and licence lines
        if not _is_prose(t):
            continue  # a label, heading or teaser link, not a sentence
        blocks.append(Block(ln.start, ln.end))
    if not title:
        title = _first_sentence(text, blocks) or name
    return Article(name=name, text=text, sha256=sha256, title=title, date=date, source=source,
                   author=author, blocks=tuple(blocks))


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


def _lines(text: str) -> Iterator[_Line]:
    pos = 0
    for raw in text.splitlines(keepends=True):
        body = raw.rstrip("\r\n")
        stripped = body.strip()
        if stripped:
            lead = len(body) - len(body.lstrip())
            yield _Line(pos + lead, pos + lead + len(stripped), stripped)
        pos += len(raw)


def _norm(t: str) -> str:
    t = re.sub(r"^[\s\-•*·▪►>#]+", "", t)
    return " ".join(t.lower().rstrip(" .!:|").split())


def _is_prose(t: str) -> bool:
    words = len(t.split())
    if t.count(" | ") >= 2:
        return False  # a navigation bar
    if _SENTENCE_END.search(t) and words >= 5:
        return True
    return words >= 20  # a long line without final punctuation is still text (lost full stop)


def _title(lines: list[_Line], counts: Counter[str], markdown: bool,
           hint: str | None) -> tuple[str | None, set[str]]:
    if hint:
        return hint, {_norm(hint)}
    if markdown:
        for ln in lines[:20]:
            if re.match(r"^#\s+\S", ln.text):
                t = ln.text.lstrip("# ").strip()
                return t, {_norm(t)}
    cands = []
    for i, ln in enumerate(lines[:15]):
        ends = re.search(r"[.!…][\"'”’)\]]*$", ln.text)
        if ((ends and len(ln.text.split()) >= 5) or len(ln.text.split()) > 40) \
                and not _JUNK.search(ln.text) and counts[_norm(ln.text)] == 1:
            break  # the body has begun: a title comes before it
        t, n = ln.text, _norm(ln.text)
        words = len(t.split())
        if (3 <= words <= 30 and not re.search(r"[.!;,:]$", t) and n not in _CHROME
                and not _JUNK.search(t) and not _DATE.search(t) and not _FOOTER.match(n)
                and not _DURATION.match(t) and t[:1].isupper() and i < 10):
            cands.append(t)
    norms = [_norm(c) for c in cands]
    # A breadcrumb ends with the real title ("Home Artificial Intelligence <title>"): keep the shorter.
    cands = [c for c, n in zip(cands, norms, strict=True)
             if not any(o != n and n.endswith(o) and len(o) > 20 for o in norms)]
    if not cands:
        return None, set()
    best = max(cands, key=lambda c: (counts[_norm(c)] > 1, len(c.split()) >= 6, len(c)))
    if len(best.split()) < 6 and counts[_norm(best)] < 2:
        return None, set()
    return best, {_norm(best)}


def _first_sentence(text: str, blocks: list[Block]) -> str | None:
    if not blocks:
        return None
    first = text[blocks[0].start:blocks[0].end].lstrip("-•* ")
    m = re.match(r"(.+?[.!?])(\s|$)", first)
    s = m.group(1) if m else first
    return s if len(s) <= 120 else s[:117].rsplit(" ", 1)[0] + "…"


def _source(rest: str) -> str | None:
    m = re.match(r"\s*([A-Z][\w&.]*(?:\s+[A-Z][\w&.]*){0,3}?)\s+(?:Editor|By|Author|Reporter)\b", rest)
    return m.group(1) if m else None


def _editor(t: str) -> str | None:
    m = re.search(r"\b(?:Editor|By|Author|Reporter)\s*:?\s*([A-Z][a-z]+(?:\s+[A-Z][a-z]+){0,2})", t)
    return m.group(1) if m else None
