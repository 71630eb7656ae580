"""Label every line of an article's text with the role it plays on the page, instead of deleting chrome.

A reader can read a photo credit, a related headline or a newsletter's blurb, and may ask about it; so
every line that carries words is kept and labelled, and roles only steer ranking and wording (a quote
from a related-links list is cited as such, never as a reported fact). Dropped are only lines that
carry nothing: a line without a letter or digit, and exact repeats (kept once; the repeat points to its
first copy). The issue that asked for this also named a bare "Advertisement" and a clip length like
"03:48" as droppable, but blind questions written from the files quote both, so both are kept: the
label as site furniture, the clip length with the clip's title.

``label_lines(text)`` is a pure function of the text: any reader (.txt, .md, text extracted from HTML,
PDF or DOCX) can call it. The rules are generic page signals (patterns of credits, licences, comment
prompts, related-link headings; a title-like line's position and what follows it), and each one earns
its place in the precision/recall table of ``tests/test_roles.py`` over the hand-labelled seeds
(``tests/roles_truth.jsonl``).

Not handled: roles inside a line (a dateline glued to an app promo is one byline line); tables and
lists are roled line by line like prose.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum


class Role(StrEnum):
    """What a line is on the page. Only ``BODY`` is the article's own reporting."""

    BODY = "body"  # the article's prose
    HEADLINE = "headline"  # title, dek or summary bullets, section headings
    BYLINE = "byline"  # dateline, byline, author sign-off
    CAPTION = "caption"  # photo or video caption, image credit
    RELATED = "related"  # links and teasers to other articles, video-clip titles, "Also read: ..."
    SITE = "site"  # the site's or newsletter's own furniture: navigation, tags, sign-up and comment prompts
    FOOTER = "footer"  # page footer and legal: copyright, licences, disclaimers, contact links


# Roles whose passages yield to article text that matches as well (retrieve.Retriever.search). Measured
# with `rag eval --retrieval` on eval/gold.jsonl (84 questions; fused recall@1 / recall@5 / MRR):
# these five 0.857 / 0.987 / 0.941; none 0.838 / 0.961 / 0.918. Not the byline: a dateline or author
# line is the article's own word and the only place that says when it was published or who wrote it
# (ranked down too: 0.857 / 0.961 / 0.931). The headline is: short and full of the words questions use
# to name an article, it outranked the paragraph that answers (left out: 0.844 / 0.968 / 0.930).
RANKED_DOWN = frozenset({Role.HEADLINE, Role.CAPTION, Role.RELATED, Role.SITE, Role.FOOTER})

# Words by which a question asks about a kind of line ("Who is credited for the photo ...?", "Which related
# headline ...?"): its passages then compete with article text unweighted (retrieve.Retriever.search). Only
# words rare in questions about the reporting itself: not "newsletter", "page", "article" or "video".
CUES = {
    Role.HEADLINE: frozenset("headline headlines heading headings subheading title titled section sections "
                             "bullet bullets summary".split()),
    Role.CAPTION: frozenset("photo photos photograph picture pictures image images caption captions credit "
                            "credited credits illustration illustrations illustrated pictured".split()),
    Role.RELATED: frozenset("related recommended link links linked teaser teasers".split()),
    Role.SITE: frozenset("breadcrumb menu subscribe subscription sign-up advertised download app".split()),
    Role.FOOTER: frozenset("footer copyright licence license legal disclaimer prohibited reproduction".split()),
}


def asked_roles(words: Iterable[str]) -> frozenset[Role]:
    """The roles whose cue words a question holds (lower-cased words).

    >>> sorted(asked_roles("who is credited for the photo".split()))
    [<Role.CAPTION: 'caption'>]
    """
    have = set(words)
    return frozenset(role for role, cues in CUES.items() if have & cues)


# How a citation from each role is described to the reader (empty for body text).
_PHRASES = {
    Role.BODY: "",
    Role.HEADLINE: "from a headline or summary line",
    Role.BYLINE: "from the dateline or byline",
    Role.CAPTION: "from a photo caption or credit",
    Role.RELATED: "listed as a related headline, not reported in this article",
    Role.SITE: "from the site's page furniture, not the article",
    Role.FOOTER: "from the page footer or legal notice",
}

# Why a line is left out of the index.
NO_WORDS, REPEAT = "no words", "repeat"


def role_phrase(role: str | Role) -> str:
    """A short phrase saying where a quote comes from ("listed as a related headline, ..."); "" for body.

    >>> role_phrase("related")
    'listed as a related headline, not reported in this article'
    """
    try:
        return _PHRASES[Role(role)]
    except ValueError:
        return ""


@dataclass(frozen=True)
class Line:
    """One non-blank line: ``source[start:end] == text`` (stripped), its 1-based ``number``, its role,
    and ``drop``, why it is left out of the index ("" when kept). A repeat's ``same_as`` is the number of
    the line it repeats, which is kept."""

    start: int
    end: int
    number: int
    text: str
    role: Role = Role.BODY
    drop: str = ""
    same_as: int | None = None


# -- patterns ---------------------------------------------------------------------------------------
_SENTENCE_END = re.compile(r"[.!?…:;][\"'”’)\]]*$")
_DURATION = re.compile(r"^\d{1,2}:\d{2}(:\d{2})?$")  # a video clip's length, e.g. "03:48"
DATE = re.compile(r"\b((?:19|20)\d\d-[01]\d-[0-3]\d)(?:[ T][0-2]\d:[0-5]\d(?::[0-5]\d)?)?")
BYLINE = re.compile(r"^(?:by\s+|[—–-]\s*)(?P<name>[A-Z][\w.'-]+(?:\s+[A-Z][\w.'-]+){0,3})\s*(?:,|$)")
_BULLET = re.compile(r"^[•·▪►*-]\s+")
_FOOTER = re.compile(
    r"copyright\s*(©|\(c\)|\d{4})|©\s*\d{4}|all rights reserved|reproduction in whole or in part|"
    r"\bicp\b|icp[证备]|许可证|公网安备|denial of responsibility|\bdmca\b|privacy policy|terms of (use|service)|"
    r"cookie policy|contact us|about us|back to top|^references?$|^sources?$",
    re.IGNORECASE,
)
_SITE = re.compile(
    r"leave a (reply|comment)|email address will not be published|required fields are marked|"
    r"comments are closed|^\d+ comments?$|\bis an? (weekly|daily|monthly|fortnightly)\b.*\bnewsletter\b|"
    r"sign up now|subscribe (now|to|for)|download (the|our) app|get more with|"
    r"^most (popular|read|viewed)\b|^trending( now)?$|^popular (now|posts)$|top (news|stories)$",
    re.IGNORECASE,
)
_SITE_WORDS = {
    "advertisement", "advertisements", "sponsored", "share", "share this", "share this article", "tweet",
    "print", "email", "comments", "home",
    "menu", "search", "subscribe", "sign up", "log in", "login", "learn more", "read more", "more",
    "see more", "load more", "post", "next", "previous", "skip to content", "cookie settings", "accept",
    "tags", "topics", "listen", "watch", "latest", "newsletter",
}
_RELATED = re.compile(
    r"^(related (news|articles|stories|posts|content|coverage)|articles you may like|you may also like|"
    r"recommended( for you)?|more (from|on|stories|news)\b|read next|up next|also read\s*:|"
    r"read (also|more)\s*:|see also\s*:|related\s*:)",
    re.IGNORECASE,
)
_CAPTION = re.compile(
    r"(?i:^(photo|image|illustration|video|graphic|credit)s?\s*:|\b(photo|illustration|image)\s*:\s*[^.]{0,60}$)|"
    r"\((?:[A-Z][A-Z .'-]+/)?[A-Z][A-Z .'-]+\)\s*$",  # (KEVIN FRAYER/GETTY IMAGES)
)


# -- the classifier ---------------------------------------------------------------------------------
# The rules, in the order they are tried. Each can be switched off (``label_lines(..., off=...)``) to
# measure what it adds: scripts/roles_table.py prints the table with each rule removed.
RULES = (
    "no-words", "duration",  # a line without words is dropped; a clip length is related
    "footer", "dateline", "byline", "related-pattern", "site-pattern", "caption-pattern",  # the words
    "title", "breadcrumb", "dek-bullets", "section-heading", "teaser", "tag",  # the position
    "repeat",
)


def label_lines(text: str, *, title: str | None = None, markdown: bool = False,
                off: frozenset[str] = frozenset()) -> list[Line]:
    """Every non-blank line of ``text`` with its role and, for the few that carry nothing, why it is
    dropped. ``title``: the headline if the caller knows it (an HTML ``<h1>``); otherwise it is found.
    ``off``: names of ``RULES`` to switch off, only to measure them.

    >>> [(ln.number, ln.role.value, ln.drop) for ln in label_lines("Advertisement\\nRain returns\\n\\n"
    ...  "Farmers welcomed the first rain in six months on Sunday.\\nPhoto: Reuters\\nPhoto: Reuters")]
    [(1, 'site', ''), (2, 'headline', ''), (4, 'body', ''), (5, 'caption', ''), (6, 'caption', 'repeat')]
    """
    unknown = set(off) - set(RULES)
    if unknown:
        raise ValueError(f"unknown rule(s) {sorted(unknown)}; known: {', '.join(RULES)}")
    return _Labeller(list(split_lines(text)), title, markdown, off).run()


class _Labeller:
    def __init__(self, lines: list[Line], title: str | None, markdown: bool, off: frozenset[str]) -> None:
        self.lines, self.markdown, self.off = lines, markdown, off
        self.title_at = find_title(lines, markdown, title, self.pattern_role)[1] if "title" not in off else None
        self.first_body = next((i for i, ln in enumerate(lines) if _is_prose(ln.text) and not self.pattern_role(ln.text)
                                and not _BULLET.match(ln.text) and i != self.title_at), len(lines))

    def on(self, rule: str) -> bool:
        return rule not in self.off

    def run(self) -> list[Line]:
        out: list[Line] = []
        first: dict[str, Line] = {}
        for i, ln in enumerate(self.lines):
            t = ln.text
            role, drop = self.pattern_role(t), ""
            if self.on("no-words") and not any(ch.isalnum() for ch in t):
                role, drop = Role.SITE, NO_WORDS
            elif self.on("duration") and _DURATION.match(t):
                role = Role.RELATED  # a clip's length, kept with the clip's title: questions ask it
            elif role is None:
                role = self.position_role(i)
            kept = first.get(t)
            if drop:
                out.append(replace(ln, role=role, drop=drop))
            elif kept is not None and self.on("repeat"):  # findable at its first copy, which keeps its role
                out.append(replace(ln, role=kept.role, drop=REPEAT, same_as=kept.number))
            else:
                first[t] = replace(ln, role=role)
                out.append(first[t])
        return out

    def pattern_role(self, t: str) -> Role | None:
        """A role the line's own words give away, whatever its position."""
        norm = _norm(t)
        if self.on("footer") and _FOOTER.search(t):
            return Role.FOOTER
        if self.on("dateline") and DATE.search(t) and len(t.split()) <= 15 and not _SENTENCE_END.search(t):
            return Role.BYLINE  # 2024-03-11 08:48:49 China Daily Editor : Mo Honge
        if self.on("byline") and BYLINE.match(t) and len(t.split()) <= 8:
            return Role.BYLINE  # By Jane Roe; —Ashley Wang, BTW reporter
        if self.on("related-pattern") and _RELATED.match(norm):
            return Role.RELATED
        if self.on("site-pattern") and (_SITE.search(t) or norm in _SITE_WORDS or t.count(" | ") >= 2):
            return Role.SITE
        if self.on("caption-pattern") and _CAPTION.search(t):
            return Role.CAPTION
        return None

    def position_role(self, i: int) -> Role:
        """The role of a line its words do not give away, from where it stands and what follows it."""
        lines, t, on = self.lines, self.lines[i].text, self.on
        title_at, first_body = self.title_at, self.first_body
        if i == title_at or (self.markdown and t.startswith("#")):
            return Role.HEADLINE
        title_norm = _norm(lines[title_at].text) if title_at is not None else ""
        if on("breadcrumb") and title_norm and _norm(t) != title_norm and _norm(t).endswith(title_norm):
            return Role.SITE  # a breadcrumb ending with the title: "Home Science <title>"
        if on("dek-bullets") and i < first_body and _BULLET.match(t):
            return Role.HEADLINE  # summary bullets above the body
        after_clip = i > 0 and bool(_DURATION.match(lines[i - 1].text))
        if on("teaser") and _title_like(t) and ((len(t.split()) >= 6 and i > first_body) or after_clip):
            return Role.RELATED  # a headline standing alone between paragraphs (a teaser link), a clip's title
        if on("section-heading") and _title_like(t) and len(t.split()) <= 5 and self.body_follows(i):
            return Role.HEADLINE  # a section heading: "What happened", "Deep dives"
        if on("tag") and _title_like(t) and not self.body_follows(i):
            return Role.SITE  # a tag or label: "AI", "US-China tech war"
        return Role.BODY  # prose, and whatever no rule claims

    def body_follows(self, i: int) -> bool:
        """Whether the next line that is not a short heading, caption or clip length is article prose."""
        for ln in self.lines[i + 1:]:
            t = ln.text
            role = self.pattern_role(t)
            if role is Role.CAPTION or _DURATION.match(t) or (role is None and _title_like(t)
                                                               and len(t.split()) <= 5):
                continue
            return role is None and _is_prose(t)
        return False


def _title_like(t: str) -> bool:
    return not _SENTENCE_END.search(t) and len(t.split()) < 20


def _is_prose(t: str) -> bool:
    words = len(t.split())
    if t.count(" | ") >= 2:
        return False  # a navigation bar
    if _SENTENCE_END.search(t) and words >= 5:
        return True
    return words >= 20  # a long line without final punctuation is still text (lost full stop)


# -- lines and the title ----------------------------------------------------------------------------
def split_lines(text: str) -> Iterator[Line]:
    """The non-blank lines of ``text`` (split like ``str.splitlines``), stripped, with exact offsets."""
    pos = 0
    for number, raw in enumerate(text.splitlines(keepends=True), 1):
        body = raw.rstrip("\r\n")
        stripped = body.strip()
        if stripped:
            lead = len(body) - len(body.lstrip())
            yield Line(pos + lead, pos + lead + len(stripped), number, stripped)
        pos += len(raw)


def find_title(lines: Sequence[Line], markdown: bool = False, hint: str | None = None,
               pattern_role: Callable[[str], Role | None] | None = None) -> tuple[str | None, int | None]:
    """The article's headline and the index of its line in ``lines`` (None when no line holds it)."""
    pattern_role = pattern_role or _Labeller([], None, False, frozenset()).pattern_role
    if hint:
        norm = _norm(hint)
        return hint, next((i for i, ln in enumerate(lines) if _norm(ln.text) == norm), None)
    counts: dict[str, int] = {}
    for ln in lines:
        counts[_norm(ln.text)] = counts.get(_norm(ln.text), 0) + 1
    if markdown:
        for i, ln in enumerate(lines[:20]):
            if re.match(r"^#\s+\S", ln.text):
                return ln.text.lstrip("# ").strip(), i
    cands: list[int] = []
    for i, ln in enumerate(lines[:15]):
        t, n = ln.text, _norm(ln.text)
        ends = re.search(r"[.!…][\"'”’)\]]*$", t)
        if ((ends and len(t.split()) >= 5) or len(t.split()) > 40) and not pattern_role(t) and counts[n] == 1:
            break  # the body has begun: a title comes before it
        words = len(t.split())
        if (3 <= words <= 30 and not re.search(r"[.!;,:]$", t) and pattern_role(t) is None
                and n not in _SITE_WORDS and not _DURATION.match(t) and t[:1].isupper() and i < 10):
            cands.append(i)
    norms = {i: _norm(lines[i].text) for i in cands}
    # A breadcrumb ends with the real title ("Home Artificial Intelligence <title>"): keep the shorter.
    cands = [i for i in cands if not any(o != norms[i] and norms[i].endswith(o) and len(o) > 20
                                         for o in norms.values())]
    if not cands:
        return None, None
    best = max(cands, key=lambda i: (counts[norms[i]] > 1, len(lines[i].text.split()) >= 6, len(lines[i].text)))
    if len(lines[best].text.split()) < 6 and counts[norms[best]] < 2:
        return None, None
    return lines[best].text, best


def _norm(t: str) -> str:
    t = re.sub(r"^[\s\-•*·▪►>#]+", "", t)
    return " ".join(t.lower().rstrip(" .!:|").split())


# -- measuring --------------------------------------------------------------------------------------
def table_label(line: Line) -> str:
    """The label a line is scored by: its role, or "drop" when it carries nothing (a repeat keeps its
    role: it is a caption or a headline all the same)."""
    return "drop" if line.drop and line.drop != REPEAT else line.role.value


def scores(pairs: Sequence[tuple[str, str]]) -> dict[str, tuple[float, float, int]]:
    """Per label, (precision, recall, support) of (truth, predicted) pairs; a label never predicted
    has precision 0.

    >>> scores([("body", "body"), ("body", "caption"), ("caption", "caption")])["caption"]
    (0.5, 1.0, 1)
    """
    out = {}
    for label in sorted({t for t, _ in pairs} | {p for _, p in pairs}):
        tp = sum(t == p == label for t, p in pairs)
        predicted = sum(p == label for _, p in pairs)
        support = sum(t == label for t, _ in pairs)
        out[label] = (tp / predicted if predicted else 0.0, tp / support if support else 0.0, support)
    return out
