"""Small fakes for fast unit tests: a bag-of-words embedder, an LLM whose replies are queued, and a
four-sentence article with its chunk and evidence for prompt and citation tests."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import numpy as np

from rag.chunk import sentence_spans
from rag.embed import Embedder
from rag.records import Chunk, Evidence
from rag.vocab import tokenize

ACME = ("Acme sold 3.2 million cars in 2023. Its chief executive is Ann Lee. "
        "Exports doubled after a plant opened in Hungary. The weather was mild.")
ACME_SPANS = list(sentence_spans(ACME))  # four sentences


def acme_chunk() -> Chunk:
    """The whole ACME text as one chunk of ``acme.txt``."""
    return Chunk("acme#0", "acme.txt", "Acme report", 0, len(ACME), ACME, tuple(ACME_SPANS))


def acme_evidence() -> list[Evidence]:
    """[1] = the first two sentences, [2] = the third."""
    c, s = acme_chunk(), ACME_SPANS
    return [Evidence(1, c, s[0][0], s[1][1], ACME[s[0][0]:s[1][1]]), Evidence(2, c, *s[2], ACME[s[2][0]:s[2][1]])]


class HashEmbedder(Embedder):
    """Each word hashed into one of ``dim`` buckets: texts sharing words get similar vectors."""

    name = "fake-hash"

    def __init__(self, dim: int = 64) -> None:
        super().__init__()
        self.dim = dim
        self.calls = 0

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in tokenize(t) or ["∅"]:
                out[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % self.dim] += 1.0
        return out


class FakeLLM:
    """Replies with queued texts (or a default), streamed word by word; records the messages."""

    name = "fake-llm"

    def __init__(self, default: str = "The articles do not say.") -> None:
        self.queue: list[str] = []
        self.default = default
        self.calls: list[list[dict[str, str]]] = []

    def enqueue(self, *replies: str) -> FakeLLM:
        self.queue.extend(replies)
        return self

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def stream_chat(self, messages: list[dict[str, str]], max_tokens: int, stop: list[str] | None = None
                    ) -> Iterator[str]:
        self.calls.append(messages)
        reply = self.queue.pop(0) if self.queue else self.default
        for i, word in enumerate(reply.split(" ")):
            yield word if i == 0 else " " + word
