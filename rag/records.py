"""Typed, immutable records passed between the stages: Article -> Chunk -> Passage -> Citation -> Answer.

Every offset is a Python ``str`` index into the article file's original UTF-8 text, so that
``article.text[start:end]`` can always be checked against what a record claims to quote.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from .roles import Role, role_phrase


def short(text: str, n: int = 60) -> str:
    """``text`` on one line, cut to ``n`` characters with an ellipsis."""
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


@dataclass(frozen=True)
class Block:
    """A kept line of an article, ``article.text[start:end]``, and the role it plays on the page."""

    start: int
    end: int
    role: Role = Role.BODY


@dataclass(frozen=True)
class Dropped:
    """A line left out of the index, and why: "no words", or "repeat" of
    the kept line starting at ``same_as``."""

    start: int
    end: int
    reason: str
    same_as: int | None = None


@dataclass(frozen=True, repr=False)
class Article:
    """One source file, as read from disk, with its kept lines labelled by role and its dropped lines."""

    name: str  # file name, the article's id in citations
    text: str  # the original file text, unchanged
    sha256: str  # of the file's bytes
    title: str
    date: str | None = None
    source: str | None = None
    author: str | None = None
    blocks: tuple[Block, ...] = ()
    path: str = ""
    dropped: tuple[Dropped, ...] = ()
    pages: tuple[int, ...] = ()  # start offset of page 1, 2, ... in ``text``, for paged formats (PDF)

    def __repr__(self) -> str:
        return f"Article(name={self.name!r}, title={short(self.title)!r}, blocks={len(self.blocks)})"

    @property
    def about(self) -> str:
        """What a reader sees of the article besides its text: title, source, author, date."""
        return " ".join(filter(None, (self.title, self.source, self.author, self.date)))

    def page_at(self, offset: int) -> int | None:
        """The 1-based page holding ``offset``, or None for a format without pages."""
        return max(1, bisect_right(self.pages, offset)) if self.pages else None

    def meta(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("text")
        d.pop("blocks")
        d.pop("dropped")
        d.pop("pages")
        return d

    def to_dict(self) -> dict[str, Any]:
        """The article as stored in an index (both stores): metadata, text, labelled blocks, dropped
        lines and page starts."""
        return {**self.meta(), "text": self.text, "blocks": [[b.start, b.end, b.role.value] for b in self.blocks],
                "dropped": [[d.start, d.end, d.reason, d.same_as] for d in self.dropped], "pages": list(self.pages)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Article:
        return cls(**{**d, "blocks": tuple(Block(b[0], b[1], Role(b[2] if len(b) > 2 else Role.BODY))
                                           for b in d.get("blocks", ())),
                      "dropped": tuple(Dropped(*x) for x in d.get("dropped", ())),
                      "pages": tuple(d.get("pages", ()))})


@dataclass(frozen=True)
class Coverage:
    """What indexing keeps of one article: characters per role, and characters dropped per reason.

    ``word_chars`` counts the lines that carry words (a letter); ``findable_chars`` those of them that
    are in the index, an exact repeat counting as findable at its first copy."""

    article: str
    word_chars: int
    findable_chars: int
    by_role: dict[str, int]
    dropped: dict[str, int]

    @property
    def share(self) -> float:
        return self.findable_chars / self.word_chars if self.word_chars else 1.0

    def summary(self) -> str:
        roles = ", ".join(f"{r} {n}" for r, n in self.by_role.items() if n)
        dropped = ", ".join(f"{r} {n}" for r, n in self.dropped.items() if n) or "nothing"
        return (f"{self.article}: {100 * self.share:.1f}% of {self.word_chars} characters with words "
                f"findable | kept {roles} | dropped {dropped}")


@dataclass(frozen=True, repr=False)
class Chunk:
    """A piece of one article sized for the prompt; ``text == article.text[start:end]``."""

    chunk_id: str
    article: str
    title: str
    start: int
    end: int
    text: str
    sentences: tuple[tuple[int, int], ...] = ()  # sentence spans, absolute offsets into the article
    role: Role = Role.BODY  # a chunk holds lines of one role only
    page: int | None = None  # 1-based page of a paged format (a chunk never crosses a page)

    def __repr__(self) -> str:
        role = "" if self.role is Role.BODY else f", {self.role.value}"
        return f"Chunk({self.chunk_id!r}, {self.start}:{self.end}{role}, {short(self.text)!r})"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["sentences"] = [list(s) for s in self.sentences]
        d["role"] = self.role.value
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Chunk:
        return cls(**{**d, "sentences": tuple(tuple(s) for s in d.get("sentences", ())),
                      "role": Role(d.get("role", Role.BODY))})


@dataclass(frozen=True, repr=False)
class Passage:
    """A retrieved chunk with its rank and fused score."""

    rank: int
    chunk: Chunk
    score: float
    dense_rank: int | None = None
    lexical_rank: int | None = None
    flagged: tuple[tuple[int, int], ...] = ()  # sentence spans addressed to AI readers (rag.injection)

    def __repr__(self) -> str:
        return f"Passage(rank={self.rank}, {self.chunk.chunk_id!r}, score={self.score:.4f})"

    @property
    def article(self) -> str:
        return self.chunk.article

    @property
    def role(self) -> Role:
        return self.chunk.role

    def to_dict(self) -> dict[str, Any]:
        c = self.chunk
        return {"rank": self.rank, "article": c.article, "title": c.title, "chunk_id": c.chunk_id,
                "start": c.start, "end": c.end, "page": c.page, "role": c.role.value,
                "score": round(self.score, 6), "text": c.text, "flagged": [list(s) for s in self.flagged]}


@dataclass(frozen=True)
class Evidence:
    """A span given to the LLM as numbered context ``[marker]``: one or a few sentences of a chunk."""

    marker: int
    chunk: Chunk
    start: int
    end: int
    text: str  # == article text[start:end]
    relevance: float = 0.0
    context: tuple[str, ...] = ()  # for a caption, credit or teaser: the lines around it, shown in the prompt


@dataclass(frozen=True)
class Citation:
    """A marker in the answer resolved to the exact span of the article that supports it."""

    marker: int
    article: str
    title: str
    chunk_id: str
    start: int
    end: int
    quote: str  # == original article text[start:end]
    support: float = 0.0  # how well the cited quote supports the sentence(s) citing it, 0..1
    role: Role = Role.BODY  # the role of the quoted lines: a caption or related headline says so
    page: int | None = None  # 1-based page of the quote, for paged formats (PDF)

    @property
    def role_note(self) -> str:
        """Where the quote sits on the page when it is not article text ("listed as a related
        headline, ..."); "" for body text."""
        return role_phrase(self.role)

    def to_dict(self) -> dict[str, Any]:
        return {"marker": self.marker, "article": self.article, "title": self.title,
                "chunk_id": self.chunk_id, "start": self.start, "end": self.end, "page": self.page,
                "quote": self.quote, "support": round(self.support, 3), "role": self.role.value}


class Note(StrEnum):
    """Why a check removed, changed or added an answer sentence: one vocabulary for the verifier
    (``rag.cite.CHECKS``), the answer path's gates, ``rag ask``, the eval report and ``rag.checkscore``.
    A ``str``: notes read back from JSON compare equal."""

    KEPT = ""  # supported as drafted
    REFUSAL = "refusal"  # the model's own "the articles do not say"
    ECHO = "echo"  # only restates the question
    UNSUPPORTED = "unsupported"  # no passage supports it
    TRIMMED = "trimmed"  # removed: a detail no passage gives; the cut version follows as TRIM
    TRIM = "trim"  # the sentence without that detail, kept
    EXTRACT = "extract"  # the top passage quoted, since the model only restated the question
    OFF_CORPUS = "off-corpus"  # refused before the model: the question names nothing the articles hold
    INSTRUCTION = "instruction"  # refused before the model: the question gives the assistant orders


@dataclass(frozen=True)
class SentenceCheck:
    """One sentence of the answer, the markers it carries and whether the cited quotes support it;
    ``note`` (a ``Note``) says what the checks did to it."""

    text: str
    markers: tuple[int, ...]
    support: float
    supported: bool
    note: str = Note.KEPT


@dataclass(frozen=True)
class Answer:
    """The verified answer, in the shape of the ``rag ask --json`` contract (see ``to_dict``)."""

    question: str
    answer: str
    answerable: bool
    citations: tuple[Citation, ...]
    passages: tuple[Passage, ...]
    timings: dict[str, float] = field(default_factory=dict)
    model: str = ""
    raw_answer: str = ""  # what the model generated, before verification
    sentences: tuple[SentenceCheck, ...] = ()
    rewritten_question: str | None = None  # the standalone question used for retrieval, for follow-ups
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    signals: dict[str, float] = field(default_factory=dict)  # what the confidence is computed from
    confidence: float | None = None  # calibrated probability that the answer (or refusal) is right
    # Parts of a compound question that the verified answer leaves unanswered ("how much did X raise?").
    unanswered: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "answer": self.answer,
            "answerable": self.answerable,
            "citations": [c.to_dict() for c in self.citations],
            "passages": [p.to_dict() for p in self.passages],
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "model": self.model,
            "raw_answer": self.raw_answer,
            "sentences": [asdict(s) for s in self.sentences],
            "rewritten_question": self.rewritten_question,
            "usage": {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens},
            "cached": self.cached,
            "confidence": None if self.confidence is None else round(self.confidence, 3),
            "signals": {k: round(v, 4) for k, v in self.signals.items()},
            "unanswered": list(self.unanswered),
        }
