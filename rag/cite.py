"""Check a generated answer against its evidence: parse ``[n]`` markers, score support, narrow quotes.

Support of an answer sentence by a quote is explainable and offline:

    support = 0.6 * (share of the sentence's content words found in the quote)
            + 0.4 * (cosine similarity of the two, rescaled from [0.2, 0.8] to [0, 1]: the embedder's range,
                     Settings.support_cosine_low/high)

and a number or name in the sentence that the quote lacks caps support at 0.3 (names and numbers are
where small models invent, e.g. pinning one company's funding round on another). A sentence is
*supported* when its best cited quote reaches the threshold (Settings.support_threshold, 0.5).
Markers that point to no passage are dropped; a sentence whose marker is wrong or missing is repaired
to the best-supporting passage when one reaches the threshold; otherwise the sentence is removed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from .adequacy import gives_kind, is_echo
from .chunk import sentence_spans
from .prompt import REFUSAL
from .question import Question, as_question
from .readers import page_at
from .records import Citation, Evidence, Note, SentenceCheck
from .settings import Settings
from .vocab import MARKER, NAME, NUMBER, STOPWORDS, UNITS, WORD, content_words, digits, strip_markers

_DEFAULTS = Settings()  # for callers that pass no settings: the one home of the defaults
_WITH_UNIT = re.compile(r"(\d+(?:[.,]\d+)*)[\s-]*(" + UNITS + r")(?!\w)", re.IGNORECASE)
_REFUSAL = re.compile(
    r"\b(articles?|passages?|text|sources?|context)\b[^.]{0,40}\b(do(es)?|did)\s*(not|n['’]t)\s+"
    r"(say|mention|state|specify|provide|contain|include|give|answer|discuss|indicate|reveal)|"
    r"\bno (information|mention|details?)\b|\bnot (mentioned|specified|stated|provided)\b|"
    r"\b(cannot|can['’]t|unable to) (be )?(answer|determine|find)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Verified:
    answer: str
    answerable: bool
    citations: tuple[Citation, ...]
    sentences: tuple[SentenceCheck, ...]


def is_refusal(text: str) -> bool:
    return bool(_REFUSAL.search(text))


def split_sentences(answer: str) -> list[str]:
    """Answer sentences, each with the markers that follow it (". [1]" and "[1]." both work)."""
    text = re.sub(r"([.!?])\s*((?:\[\d+(?:\s*[,;]\s*\d+)*\]\s*)+)",
                  lambda m: f" {m.group(2).strip()}{m.group(1)} ", answer.strip())
    return [text[s:e].strip() for s, e in sentence_spans(text)]


def markers_of(sentence: str) -> list[int]:
    return [int(n) for m in MARKER.finditer(sentence) for n in re.split(r"\s*[,;]\s*", m.group(1))]


def support(sentence: str, quote: str, cosine: float, about: str = "", settings: Settings | None = None) -> float:
    """``about``: what else the reader sees of the cited article (title, source, author, date); names
    from it count as grounded ("according to China Daily" is fine when China Daily is the source). The
    cosine is rescaled by the embedder's range (``Settings.support_cosine_low``/``high``)."""
    s = settings or _DEFAULTS
    words = set(content_words(sentence))
    quote_words = set(content_words(f"{quote} {about}"))
    lexical = len(words & quote_words) / len(words) if words else 0.0
    lo, hi = s.support_cosine_low, s.support_cosine_high
    score = 0.6 * lexical + 0.4 * min(1.0, max(0.0, (cosine - lo) / (hi - lo)))
    return min(score, 0.3) if ungrounded(sentence, f"{quote} {about}") else score


def ungrounded(sentence: str, quote: str) -> list[str]:
    """Numbers and names of ``sentence`` that ``quote`` lacks ("7" matches "seven"; "US" matches
    "United States"; names match on their first four letters, so "Chinese" matches "China"). A number
    with a unit needs the same unit in the quote: "11.4 points" is not grounded by "11.4 per cent".

    >>> ungrounded("It rose 11.4 points.", "It rose 11.4 per cent."), ungrounded("A 1.5-year gap.", "1.5 years")
    (['11.4 points'], [])
    """
    quote_d, sentence_d = digits(quote), digits(sentence)
    q_numbers = set(NUMBER.findall(quote_d))
    missing = [n for n in NUMBER.findall(sentence_d) if n not in q_numbers]
    q_units = {(m.group(1), _unit(m.group(2))) for m in _WITH_UNIT.finditer(quote_d)}
    q_bare = {m.group(0) for m in NUMBER.finditer(quote_d)} - {n for n, _ in q_units}
    for m in _WITH_UNIT.finditer(sentence_d):
        number, unit = m.group(1), _unit(m.group(2))
        if number in q_numbers and (number, unit) not in q_units and number not in q_bare:
            missing.append(f"{number} {m.group(2)}")
    q_names = {w.lower()[:4] for w in WORD.findall(quote)}
    initials = "".join(w[0] for w in NAME.findall(quote))
    for name in NAME.findall(sentence):
        low = name.lower()
        if low in STOPWORDS or low[:4] in q_names or (name.isupper() and name in initials):
            continue
        missing.append(name)
    return missing


def asked_names(question: str | Question, quote: str) -> str:
    """The question's names that ``quote`` holds part of; they count as grounded.

    >>> asked_names("What did Zhou Hongyi say about Baidu?", "Zhou estimated that ...")
    'Zhou Hongyi'
    """
    found = []
    for group in as_question(question).name_groups:
        words = group.split()
        if any(len(w) > 2 and not w.isupper() and re.search(rf"\b{re.escape(w)}\b", quote) for w in words):
            found += words
    return " ".join(found)


_PHRASE_HEAD = r"(?:in|on|at|since|by|from|during|until|as of|for|with|of)"


def trim_ungrounded(sentence: str, missing: list[str]) -> str | None:
    """The sentence without the phrase or clause that holds each ungrounded name or number, when what
    is left still reads as a claim (four words or more); None when nothing could be trimmed.

    A small model often adds one detail the passage does not give ("... in February 2023"); the rest
    of the sentence can be right, and removing the whole sentence would turn a right answer into a
    refusal.

    >>> trim_ungrounded("The index rose 11.4 per cent on Monday in February 2023.", ["2023"])
    'The index rose 11.4 per cent on Monday.'
    >>> trim_ungrounded("Intel makes the B200.", ["Intel"]) is None
    True
    """
    out = sentence
    for token in missing:
        word = re.escape(token.split()[0])
        if not re.search(rf"\b{word}", out):
            continue  # gone with an earlier phrase ("in February 2023")
        parts = re.split(r",\s+", out)
        hits = [i for i in range(1, len(parts)) if re.search(rf"\b{word}", parts[i]) and len(parts[i].split()) <= 8]
        if hits:  # a short clause of its own: ", produced by CCTV," or ", in February 2023."
            i = hits[0]
            end = parts[i][-1] if parts[i][-1:] in ".!?" else ""
            if i == len(parts) - 1:
                out = ", ".join(parts[:i]) + end
            else:
                out = ", ".join(parts[:i - 1] + [parts[i - 1] + " " + parts[i + 1]] + parts[i + 2:])
            continue
        between = rf"(?:(?!{_PHRASE_HEAD}\b)[\w'’$%.-]+\s+){{0,3}}?"
        phrase = re.compile(rf",?\s+{_PHRASE_HEAD}\s+{between}[\w'’$%.-]*{word}[\w'’%-]*"
                            rf"(?:\s+\d{{4}})?(?=[\s,.;!?]|$)", re.IGNORECASE)
        m = phrase.search(out)
        if not m:
            return None
        out = out[:m.start()] + out[m.end():]
    out = re.sub(r"\s+([,.;!?])", r"\1", out).strip()
    out = re.sub(r",\s*([.!?]?)$", r"\1", out)
    if out == sentence.strip() or len(WORD.findall(out)) < 4:
        return None
    return out if out[-1:] in ".!?" else out + "."


def _unit(word: str) -> str:
    word = word.lower().replace(" ", "")
    return "perc" if word == "%" else word[:4]


Scored = tuple[int, int, float]  # (marker, evidence sentence or -1 for the whole span, support)
Kept = tuple[str, list[Scored]]  # an answer sentence and the passages that support it


@dataclass
class Draft:
    """The model's draft under verification: its sentences, the evidence and their embeddings (one call for
    all, cached across calls), and what the checks kept so far."""

    plain: list[str]
    markers: list[list[int]]
    evidence: dict[int, Evidence]
    top: Evidence  # the most relevant passage
    question: Question | None
    embedder: Any
    texts: Mapping[str, str]
    settings: Settings
    about: Mapping[str, str]

    def __post_init__(self) -> None:
        q = self.question
        self.asked = {m: asked_names(q, ev.text) if q else "" for m, ev in self.evidence.items()}
        self.ev_sents = {m: [(a, b) for a, b in sentence_spans(self.texts[ev.chunk.article], ev.start, ev.end)]
                         or [(ev.start, ev.end)] for m, ev in self.evidence.items()}
        self.ev_texts = {m: [self.texts[self.evidence[m].chunk.article][a:b] for a, b in spans]
                         for m, spans in self.ev_sents.items()}
        flat = [t for m in sorted(self.ev_texts) for t in self.ev_texts[m]]
        vecs = self.embedder.embed_cached(self.plain + flat)
        self.ans_vecs, self.ev_vecs = vecs[:len(self.plain)], vecs[len(self.plain):]
        self.pos: dict[int, list[int]] = {}
        i = 0
        for m in sorted(self.ev_texts):
            self.pos[m] = list(range(i, i + len(self.ev_texts[m])))
            i += len(self.ev_texts[m])
        self.scored: dict[int, dict[int, tuple[float, int]]] = {}  # sentence -> marker -> (support, j)
        self.kept: list[Kept] = []
        self.checks: list[SentenceCheck] = []

    def meta_of(self, marker: int) -> str:
        chunk = self.evidence[marker].chunk
        return f"{self.about.get(chunk.article, chunk.title)} {self.asked[marker]}"

    def best_in(self, marker: int, s_idx: int, text: str | None = None, vec: Any = None) -> tuple[float, int]:
        """Best support of sentence s_idx (or of ``text`` with embedding ``vec``) by one sentence of
        evidence ``marker``, and which one (-1: the whole evidence span)."""
        text = self.plain[s_idx] if text is None else text
        vec = self.ans_vecs[s_idx] if vec is None else vec
        meta = self.meta_of(marker)
        scored = [(support(text, self.ev_texts[marker][j], float(vec @ self.ev_vecs[p]), meta, self.settings), j)
                  for j, p in enumerate(self.pos[marker])]
        whole = self.joint([marker], s_idx, text, vec)
        best = max(scored)
        return (whole, -1) if whole > best[0] + 0.1 else best

    def joint(self, markers: list[int], s_idx: int, text: str | None = None, vec: Any = None) -> float:
        """Support of sentence s_idx (or of ``text`` with embedding ``vec``) by the evidence spans of
        ``markers`` taken together, each whole."""
        text = self.plain[s_idx] if text is None else text
        vec = self.ans_vecs[s_idx] if vec is None else vec
        quote = " ".join(t for m in markers for t in self.ev_texts[m])
        cosine = max(float(vec @ self.ev_vecs[p]) for m in markers for p in self.pos[m])
        meta = " ".join(self.meta_of(m) for m in markers)
        return support(text, quote, cosine, meta, self.settings)

    def cited(self, s_idx: int) -> list[int]:
        return [m for m in dict.fromkeys(self.markers[s_idx]) if m in self.evidence]

    def drop(self, s_idx: int, note: Note) -> bool:
        self.checks.append(SentenceCheck(self.plain[s_idx], (), 0.0, False, note))
        return True


# -- the sentence checks, in order: each decides a sentence (True) or passes it on (False) ------------------

def _refusal(d: Draft, i: int) -> bool:
    """A partial "the articles do not say X" next to supported facts adds nothing checkable."""
    return is_refusal(d.plain[i]) and d.drop(i, Note.REFUSAL)


def _echo(d: Draft, i: int) -> bool:
    """Removed when it adds no content word to the question's (``adequacy.is_echo``)."""
    return d.question is not None and is_echo(d.plain[i], d.question) and d.drop(i, Note.ECHO)


def _support(d: Draft, i: int) -> bool:
    """Kept when a cited passage supports it; a wrong or missing marker is repaired to the best passage."""
    scored = d.scored[i] = {m: d.best_in(m, i) for m in d.cited(i)}
    good = [(m, j, sc) for m, (sc, j) in scored.items() if sc >= d.settings.support_threshold]
    if not good and len(scored) > 1:  # "X did A [1] and B [3]": the cited passages together support it
        sc = d.joint(list(scored), i)
        if sc >= d.settings.support_threshold:
            good = [(m, -1, sc) for m in scored]
    if not good:
        every = {m: d.best_in(m, i) for m in d.evidence}
        m_best = max(every, key=lambda m: every[m][0])
        if every[m_best][0] >= d.settings.support_threshold:
            good = [(m_best, every[m_best][1], every[m_best][0])]
    if not good:
        return False
    d.checks.append(SentenceCheck(d.plain[i], tuple(m for m, _, _ in good), round(max(sc for _, _, sc in good), 3),
                                  True, Note.KEPT))
    d.kept.append((d.plain[i], good))
    return True


def _trim(d: Draft, i: int) -> bool:
    """The sentence without the detail no cited passage gives, kept if the rest is supported."""
    for m in d.cited(i) or sorted(d.evidence):
        missing = ungrounded(d.plain[i], f"{d.evidence[m].text} {d.meta_of(m)}")
        short = trim_ungrounded(d.plain[i], missing) if missing else None
        if not short or (d.question is not None and is_echo(short, d.question)):
            continue
        vec = d.embedder.embed_cached([short])[0]
        sc, j = d.best_in(m, i, short, vec)
        if sc >= d.settings.support_threshold:
            d.checks.append(SentenceCheck(d.plain[i], (), 0.0, False, Note.TRIMMED))
            d.checks.append(SentenceCheck(short, (m,), round(sc, 3), True, Note.TRIM))
            d.kept.append((short, [(m, j, sc)]))
            return True
    return False


def _unsupported(d: Draft, i: int) -> bool:
    """What no earlier check kept is removed."""
    best = max((v[0] for v in d.scored.get(i, {}).values()), default=0.0)
    d.checks.append(SentenceCheck(d.plain[i], (), round(best, 3), False, Note.UNSUPPORTED))
    return True


# -- the answer checks, in order, on what the sentence checks kept: the first that refuses decides ---------

def _extract(d: Draft, _: int) -> bool:
    """When the model only restated the question, the most relevant passage is quoted verbatim rather than
    refused: the evidence was chosen for the question (on held-out questions this turned 3 of 22 false
    refusals into right answers)."""
    if not d.kept and any(c.note == Note.ECHO for c in d.checks):
        quote = " ".join(d.top.text.split())
        d.checks.append(SentenceCheck(quote, (d.top.marker,), 1.0, True, Note.EXTRACT))
        d.kept.append((quote, [(d.top.marker, -1, 1.0)]))
    return False


def _all_removed(d: Draft, _: int) -> bool:
    """Refused: the sentence checks removed every drafted sentence."""
    return not d.kept


def _kind(d: Draft, _: int) -> bool:
    """Refused: the answer lacks the kind of thing the question asks for (a date, a number, a unit). Only for a
    one-part question: an answer to one part of "In which month ..., and was it ...?" is kept, and the part it
    leaves open is named (``answer.unanswered_parts``)."""
    q = d.question
    return q is not None and not q.compound and not gives_kind(" ".join(s for s, _ in d.kept), q.kind, q)


@dataclass(frozen=True)
class Check:
    """One declared check: ``name`` (as ``rag.checkscore`` reports it), the ``note`` it leaves on what it
    removes or changes (None: it refuses the whole answer), the ``Settings`` field that turns it off (None:
    always on; ``rag eval --ablate`` has a variant for each) and what it does (``run``'s docstring)."""

    name: str
    note: Note | None
    switch: str | None
    run: Callable[[Draft, int], bool]

    @property
    def doc(self) -> str:
        return " ".join((self.run.__doc__ or "").split())


# Every answer sentence goes down this sequence until a check decides it; the last removes what none kept.
# ("supported" keeps every sentence with support_threshold 0: the ablation of the support check.)
CHECKS = (
    Check("refusal", Note.REFUSAL, None, _refusal),
    Check("echo", Note.ECHO, "adequacy_checks", _echo),
    Check("supported", Note.KEPT, None, _support),
    Check("trim", Note.TRIMMED, "trim_unsupported", _trim),
    Check("support", Note.UNSUPPORTED, None, _unsupported),
)
# Then the answer as a whole, until one refuses it.
ANSWER_CHECKS = (
    Check("extract", Note.EXTRACT, "extract_on_echo", _extract),
    Check("all removed", None, None, _all_removed),
    Check("kind", None, "adequacy_checks", _kind),
)


def combine(first: Verified, more: Verified) -> Verified:
    """``first`` followed by ``more`` (an answer to a part ``first`` left open), ``more``'s markers renumbered
    after ``first``'s; a quote both cite keeps its first number."""
    number = {(c.article, c.start, c.end): c.marker for c in first.citations}
    renumber: dict[int, int] = {}
    citations = list(first.citations)
    for c in more.citations:
        key = (c.article, c.start, c.end)
        if key not in number:
            number[key] = len(citations) + 1
            citations.append(replace(c, marker=number[key]))
        renumber[c.marker] = number[key]
    text = re.sub(r"\[(\d+)\]", lambda m: f"[{renumber.get(int(m.group(1)), m.group(1))}]", more.answer)
    return Verified(f"{first.answer} {text}", True, tuple(citations), first.sentences + more.sentences)


def verify(raw: str, evidence: list[Evidence], embedder: Any, texts_by_article: Mapping[str, str],
           settings: Settings | None = None, about: Mapping[str, str] | None = None,
           question: str | Question = "") -> Verified:
    """Keep supported sentences, fix or drop their markers, and resolve citations to exact spans.

    Each sentence goes down ``CHECKS``, then the answer down ``ANSWER_CHECKS``. With the ``question``, a
    sentence that only restates it is dropped (if nothing else is left, the most relevant passage is quoted
    as the answer), and an answer without what the question asks for (a date, a number, a unit) becomes a
    refusal (see ``adequacy``; off with ``settings.adequacy_checks``). With ``settings.trim_unsupported``, a
    sentence that fails only for a name or number no cited passage gives loses the phrase that holds it and is
    kept if the rest is supported (note "trim"; the original is listed as "trimmed"). A sentence is supported
    at ``settings.support_threshold``.
    """
    by_marker = {ev.marker: ev for ev in evidence}
    sentences = [s for s in split_sentences(raw) if strip_markers(s)]
    if not sentences or not evidence or all(is_refusal(strip_markers(s)) for s in sentences):
        refused = tuple(SentenceCheck(strip_markers(s), (), 0.0, False, Note.REFUSAL) for s in sentences)
        return Verified(REFUSAL, False, (), refused)
    q = as_question(question) if question else None
    s = settings or _DEFAULTS  # support_threshold, the switches and the embedder's cosine range
    switches = {"adequacy_checks": s.adequacy_checks and q is not None, "trim_unsupported": bool(s.trim_unsupported),
                "extract_on_echo": s.extract_on_echo}
    sentence_checks, answer_checks = ([c for c in seq if c.switch is None or switches[c.switch]]
                                      for seq in (CHECKS, ANSWER_CHECKS))
    d = Draft([strip_markers(s) for s in sentences], [markers_of(s) for s in sentences], by_marker, evidence[0], q,
              embedder, texts_by_article, s, about or {})
    for i in range(len(sentences)):
        next(c for c in sentence_checks if c.run(d, i))
    if any(c.run(d, -1) for c in answer_checks):
        return Verified(REFUSAL, False, (), tuple(d.checks))
    kept, checks, ev_sents = d.kept, d.checks, d.ev_sents
    # Renumber markers by first appearance; a citation is the narrowed span within its evidence.
    spans: dict[int, tuple[int, int]] = {}
    supports: dict[int, float] = {}
    order: list[int] = []
    for _, good in kept:
        for m, j, sc in good:
            a, b = (ev_sents[m][j] if j >= 0 else (by_marker[m].start, by_marker[m].end))
            if m in spans:
                a, b = min(a, spans[m][0]), max(b, spans[m][1])
            else:
                order.append(m)
            spans[m] = (a, b)
            supports[m] = max(supports.get(m, 0.0), sc)
    new_num = {m: n for n, m in enumerate(order, 1)}
    text = " ".join(f"{s} " + "".join(f"[{new_num[m]}]" for m, _, _ in good) for s, good in kept)
    text = re.sub(r"([.!?])\s*((?:\[\d+\])+)", r" \2\1", text)  # "... 2019. [1]" -> "... 2019 [1]."
    text = re.sub(r"\s+\[", " [", text).strip()
    citations = []
    for m in order:
        ev = by_marker[m]
        a, b = spans[m]
        source = texts_by_article[ev.chunk.article]
        citations.append(Citation(marker=new_num[m], article=ev.chunk.article, title=ev.chunk.title,
                                  chunk_id=ev.chunk.chunk_id, start=a, end=b, quote=source[a:b],
                                  support=supports[m], role=ev.chunk.role,
                                  # the quote's own page: evidence may run on past its chunk's page
                                  page=None if ev.chunk.page is None else page_at(source, a)))
    return Verified(text, True, tuple(citations), tuple(checks))
