"""Check a generated answer against its evidence: parse ``[n]`` markers, score support, narrow quotes.

Support of an answer sentence by a quote is explainable and offline:

    support = 0.6 * (share of the sentence's content words found in the quote)
            + 0.4 * (cosine similarity of the two, rescaled from [0.2, 0.8] to [0, 1])

and a number or name in the sentence that the quote lacks caps support at 0.3 (names and numbers are
where small models invent, e.g. pinning one company's funding round on another). A sentence is
*supported* when its best cited quote reaches the threshold (0.5).
Markers that point to no passage are dropped; a sentence whose marker is wrong or missing is repaired
to the best-supporting passage when one reaches the threshold; otherwise the sentence is removed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .adequacy import expected_kind, gives_kind, is_echo
from .chunk import sentence_spans
from .prompt import REFUSAL
from .readers import page_at
from .records import Citation, Evidence, SentenceCheck
from .retrieve import STOPWORDS, tokenize

MARKER = re.compile(r"\s*\[(\d+(?:\s*[,;]\s*\d+)*)\]")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_UNITS = ("points?|per ?cent|percent|%|nanometres?|nanometers?|nm|million|billion|trillion|years?|months?|"
          "weeks?|days?|hours?|minutes?|seconds?|episodes?|companies|products|positions")
_WITH_UNIT = re.compile(r"(\d+(?:[.,]\d+)*)[\s-]*(" + _UNITS + r")(?!\w)", re.IGNORECASE)
_NAME_GROUP = re.compile(r"\b[A-Z][\w'’-]*(?:\s+[A-Z][\w'’-]*)*")
_NAME = re.compile(r"\b[A-Z][\w'’]*")
_WORD = re.compile(r"\w[\w'’]*")
_NUMBER_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven "
    "twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty".split())}
_NUMBER_WORD = re.compile(r"\b(" + "|".join(_NUMBER_WORDS) + r")\b", re.IGNORECASE)
_REFUSAL = re.compile(
    r"\b(articles?|passages?|text|sources?|context)\b[^.]{0,40}\b(do(es)?|did)\s*(not|n['’]t)\s+"
    r"(say|mention|state|specify|provide|contain|include|give|answer|discuss|indicate|reveal)|"
    r"\bno (information|mention|details?)\b|\bnot (mentioned|specified|stated|provided|available)\b|"
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


def strip_markers(sentence: str) -> str:
    return " ".join(MARKER.sub("", sentence).split())


def support(sentence: str, quote: str, cosine: float, about: str = "") -> float:
    """``about``: what else the reader sees of the cited article (title, source, author, date); names
    from it count as grounded ("according to China Daily" is fine when China Daily is the source)."""
    words = set(_content(sentence))
    quote_words = set(_content(f"{quote} {about}"))
    lexical = len(words & quote_words) / len(words) if words else 0.0
    score = 0.6 * lexical + 0.4 * min(1.0, max(0.0, (cosine - 0.2) / 0.6))
    return min(score, 0.3) if ungrounded(sentence, f"{quote} {about}") else score


def ungrounded(sentence: str, quote: str) -> list[str]:
    """Numbers and names of ``sentence`` that ``quote`` lacks ("7" matches "seven"; "US" matches
    "United States"; names match on their first four letters, so "Chinese" matches "China"). A number
    with a unit needs the same unit in the quote: "11.4 points" is not grounded by "11.4 per cent".

    >>> ungrounded("It rose 11.4 points.", "It rose 11.4 per cent."), ungrounded("A 1.5-year gap.", "1.5 years")
    (['11.4 points'], [])
    """
    quote_d, sentence_d = _digits(quote), _digits(sentence)
    q_numbers = set(_NUMBER.findall(quote_d))
    missing = [n for n in _NUMBER.findall(sentence_d) if n not in q_numbers]
    q_units = {(m.group(1), _unit(m.group(2))) for m in _WITH_UNIT.finditer(quote_d)}
    q_bare = {m.group(0) for m in _NUMBER.finditer(quote_d)} - {n for n, _ in q_units}
    for m in _WITH_UNIT.finditer(sentence_d):
        number, unit = m.group(1), _unit(m.group(2))
        if number in q_numbers and (number, unit) not in q_units and number not in q_bare:
            missing.append(f"{number} {m.group(2)}")
    q_names = {w.lower()[:4] for w in _WORD.findall(quote)}
    initials = "".join(w[0] for w in _NAME.findall(quote))
    for name in _NAME.findall(sentence):
        low = name.lower()
        if low in STOPWORDS or low[:4] in q_names or (name.isupper() and name in initials):
            continue
        missing.append(name)
    return missing


def asked_names(question: str, quote: str) -> str:
    """The question's names that ``quote`` holds part of; they count as grounded.

    >>> asked_names("What did Zhou Hongyi say about Baidu?", "Zhou estimated that ...")
    'Zhou Hongyi'
    """
    found = []
    for group in _NAME_GROUP.findall(question):
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
    if out == sentence.strip() or len(_WORD.findall(out)) < 4:
        return None
    return out if out[-1:] in ".!?" else out + "."


def _unit(word: str) -> str:
    word = word.lower().replace(" ", "")
    return "perc" if word == "%" else word[:4]


def _digits(text: str) -> str:
    return _NUMBER_WORD.sub(lambda m: str(_NUMBER_WORDS[m.group(0).lower()]), text)


def _content(text: str) -> list[str]:
    """Content words, crudely stemmed to 5 characters so "sanctions"/"sanctioned" match."""
    return [t[:5] if not t[0].isdigit() else t for t in tokenize(text)]


def verify(raw: str, evidence: list[Evidence], embedder: Any, texts_by_article: Mapping[str, str],
           threshold: float = 0.5, about: Mapping[str, str] | None = None, question: str = "",
           trim: bool = True, adequacy: bool = True) -> Verified:
    """Keep supported sentences, fix or drop their markers, and resolve citations to exact spans.

    With the ``question``, a sentence that only restates it is dropped (if nothing else is left, the
    most relevant passage is quoted as the answer), and an answer without what the question asks for
    (a date, a number, a unit) becomes a refusal (see ``adequacy``; off with ``adequacy=False``). With
    ``trim``, a sentence that fails only for a name or number no cited passage gives loses the phrase that
    holds it and is kept if the rest is supported (note "trim"; the original is listed as "trimmed").
    """
    by_marker = {ev.marker: ev for ev in evidence}
    sentences = [s for s in split_sentences(raw) if strip_markers(s)]
    if not sentences or not evidence or all(is_refusal(strip_markers(s)) for s in sentences):
        refused = tuple(SentenceCheck(strip_markers(s), (), 0.0, False, "refusal") for s in sentences)
        return Verified(REFUSAL, False, (), refused)
    plain = [strip_markers(s) for s in sentences]
    asked = {ev.marker: asked_names(question, ev.text) for ev in evidence}
    # One embedding call for the answer sentences and every evidence sentence (cached across calls).
    ev_sents = {ev.marker: [(a, b) for a, b in sentence_spans(texts_by_article[ev.chunk.article], ev.start, ev.end)]
                or [(ev.start, ev.end)] for ev in evidence}
    ev_texts = {m: [texts_by_article[by_marker[m].chunk.article][a:b] for a, b in spans]
                for m, spans in ev_sents.items()}
    flat = [t for m in sorted(ev_texts) for t in ev_texts[m]]
    vecs = embedder.embed_cached(plain + flat)
    ans_vecs, ev_vecs = vecs[:len(plain)], vecs[len(plain):]
    pos = {}
    i = 0
    for m in sorted(ev_texts):
        pos[m] = list(range(i, i + len(ev_texts[m])))
        i += len(ev_texts[m])

    def meta_of(marker: int) -> str:
        chunk = by_marker[marker].chunk
        return f"{(about or {}).get(chunk.article, chunk.title)} {asked[marker]}"

    def best_in(marker: int, s_idx: int, text: str | None = None, vec: Any = None) -> tuple[float, int]:
        """Best support of sentence s_idx (or of ``text`` with embedding ``vec``) by one sentence of
        evidence ``marker``, and which one (-1: the whole evidence span)."""
        text = plain[s_idx] if text is None else text
        vec = ans_vecs[s_idx] if vec is None else vec
        meta = meta_of(marker)
        scored = [(support(text, ev_texts[marker][j], float(vec @ ev_vecs[p]), meta), j)
                  for j, p in enumerate(pos[marker])]
        joined = " ".join(ev_texts[marker])
        whole = support(text, joined, max(float(vec @ ev_vecs[p]) for p in pos[marker]), meta)
        best = max(scored)
        return (whole, -1) if whole > best[0] + 0.1 else best

    def trimmed(s_idx: int, markers: list[int]) -> tuple[str, list[tuple[int, int, float]]] | None:
        """The sentence without the detail no cited passage gives, if the rest is supported."""
        for m in markers:
            missing = ungrounded(plain[s_idx], f"{by_marker[m].text} {meta_of(m)}")
            short = trim_ungrounded(plain[s_idx], missing) if missing else None
            if not short or (question and is_echo(short, question)):
                continue
            vec = embedder.embed_cached([short])[0]
            sc, j = best_in(m, s_idx, short, vec)
            if sc >= threshold:
                return short, [(m, j, sc)]
        return None

    kept: list[tuple[str, list[tuple[int, int, float]]]] = []  # (sentence, [(marker, sentence or -1, support)])
    checks: list[SentenceCheck] = []
    for s_idx, sent in enumerate(sentences):
        if is_refusal(plain[s_idx]):
            checks.append(SentenceCheck(plain[s_idx], (), 0.0, False, "refusal"))
            continue  # a partial "the articles do not say X" next to supported facts adds nothing checkable
        if adequacy and question and is_echo(plain[s_idx], question):
            checks.append(SentenceCheck(plain[s_idx], (), 0.0, False, "echo"))
            continue
        cited = [m for m in dict.fromkeys(markers_of(sent)) if m in by_marker]
        scored = {m: best_in(m, s_idx) for m in cited}
        good = [(m, j, sc) for m, (sc, j) in scored.items() if sc >= threshold]
        if not good:  # repair: the best passage overall, if it supports the sentence
            all_scores = {m: best_in(m, s_idx) for m in by_marker}
            m_best = max(all_scores, key=lambda m: all_scores[m][0])
            if all_scores[m_best][0] >= threshold:
                good = [(m_best, all_scores[m_best][1], all_scores[m_best][0])]
        if not good and trim:
            cut = trimmed(s_idx, cited or sorted(by_marker))
            if cut is not None:
                checks.append(SentenceCheck(plain[s_idx], (), 0.0, False, "trimmed"))
                checks.append(SentenceCheck(cut[0], (cut[1][0][0],), round(cut[1][0][2], 3), True, "trim"))
                kept.append(cut)
                continue
        best = max((sc for _, _, sc in good), default=max((v[0] for v in scored.values()), default=0.0))
        checks.append(SentenceCheck(plain[s_idx], tuple(m for m, _, _ in good), round(best, 3), bool(good),
                                    "" if good else "unsupported"))
        if good:
            kept.append((plain[s_idx], good))
    if not kept and any(c.note == "echo" for c in checks):
        # The model only restated the question, though the evidence was chosen for it: quote the most
        # relevant passage verbatim rather than refuse (on held-out questions this turned 3 of 22 false
        # refusals into right answers).
        top = evidence[0]
        quote = " ".join(top.text.split())
        checks.append(SentenceCheck(quote, (top.marker,), 1.0, True, "extract"))
        kept.append((quote, [(top.marker, -1, 1.0)]))
    if not kept or (adequacy and question
                    and not gives_kind(" ".join(s for s, _ in kept), expected_kind(question), question)):
        return Verified(REFUSAL, False, (), tuple(checks))
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
