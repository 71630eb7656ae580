"""The embedder table: query/passage prefixes, a new backend as one table entry, and the OpenAI-compatible
``/v1/embeddings`` backend against a real server on loopback that serves the real MiniLM vectors."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from rag import embed
from rag.embed import EMBEDDERS, OpenAIEmbedder, get_embedder
from rag.errors import IndexMismatchError, ModelError
from rag.settings import Settings
from rag.store import IndexStore, build_index

from .conftest import SEEDS
from .fakes import HashEmbedder


class PrefixedHash(HashEmbedder):
    def __init__(self, query_prefix: str = "", passage_prefix: str = "") -> None:
        super().__init__()
        self.prefixes = {"query": query_prefix, "passage": passage_prefix}
        self.seen: list[str] = []

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        self.seen.extend(texts)
        return super()._embed_batch(texts)


def test_query_and_passage_get_their_own_prefix_and_cache() -> None:
    e = PrefixedHash("query: ", "passage: ")
    q = e.embed_cached(["harbour strike"], "query")
    p = e.embed_cached(["harbour strike"])
    assert e.seen == ["query: harbour strike", "passage: harbour strike"]
    assert not np.allclose(q, p)
    e.embed_cached(["harbour strike"], "query")
    assert len(e.seen) == 2  # cached per kind
    plain = PrefixedHash()
    assert np.allclose(plain.embed(["a b"], "query"), plain.embed(["a b"]))  # no prefixes: the same vector
    plain.seen.clear()
    plain.embed_cached(["harbour strike"], "query")
    plain.embed_cached(["harbour strike", "ferry"])
    assert plain.seen == ["harbour strike", "ferry"]  # and one cached vector: a question is embedded once


@pytest.mark.real
def test_the_bundled_minilm_runs_in_numpy_through_the_table() -> None:
    """The default backend keeps main's choice: a plain-BERT folder (the bundled MiniLM) gets the numpy
    BertEmbedder, with the settings' prefixes."""
    from rag.embed import BertEmbedder, local_embedder

    e = local_embedder("all-MiniLM-L6-v2", "query: ", "passage: ")
    assert isinstance(e, BertEmbedder) and e.prefixes == {"query": "query: ", "passage": "passage: "}


def test_a_new_backend_is_one_table_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(EMBEDDERS, "hash", lambda s: PrefixedHash(s.query_prefix, s.passage_prefix))
    monkeypatch.setattr(embed, "_LOADED", {})
    e = get_embedder(Settings(embed_backend="hash", embedder="words", query_prefix="q: "))
    assert isinstance(e, PrefixedHash) and e.prefixes["query"] == "q: "
    assert get_embedder(Settings(embed_backend="hash", embedder="words", query_prefix="q: ")) is e
    with pytest.raises(ModelError, match="unknown embed_backend 'nope'; use one of sentence-transformers, openai"):
        get_embedder(Settings(embed_backend="nope"))


def test_index_remembers_the_passage_prefix(settings: Settings, fake_embedder: HashEmbedder) -> None:
    build_index([SEEDS], settings, fake_embedder)
    IndexStore.load(settings.index_dir, settings)
    with pytest.raises(IndexMismatchError, match="passage prefix 'passage: '"):
        IndexStore.load(settings.index_dir, settings.replace(passage_prefix="passage: "))


@pytest.fixture
def embeddings_server(real_embedder) -> Iterator[str]:
    """A minimal OpenAI-compatible /v1/embeddings server on loopback, computing real MiniLM vectors."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server API
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            if self.path != "/v1/embeddings" or body.get("model") != "minilm":
                self.send_error(404)
                return
            vecs = real_embedder.embed(body["input"])
            data = [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vecs)]
            out = json.dumps({"object": "list", "data": data[::-1], "model": "minilm"}).encode()  # any order
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.real
def test_openai_compatible_server_gives_the_same_vectors(embeddings_server: str, real_embedder,
                                                         tmp_path: Path) -> None:
    remote = get_embedder(Settings(embed_backend="openai", embed_base_url=embeddings_server, embedder="minilm"))
    assert isinstance(remote, OpenAIEmbedder) and remote.dim == real_embedder.dim == 384
    texts = ["The Port of Valmora reopened on Wednesday.", "Which chip powers the Mate 60?"]
    assert np.allclose(remote.embed(texts), real_embedder.embed(texts), atol=1e-5)
    # the whole pipeline runs on it: an index built through the server finds the right article
    s = Settings(index_dir=tmp_path / "index", embed_backend="openai", embed_base_url=embeddings_server,
                 embedder="minilm")
    build_index([SEEDS], s)
    from rag.retrieve import Retriever

    hits = Retriever(IndexStore.load(s.index_dir, s), remote, s).search("Kirin 9000S chip Mate 60", 3)
    assert hits[0].article == "000_24afeec690d630ed.txt"
    with pytest.raises(ModelError, match="embedding server .* failed"):
        OpenAIEmbedder("other-model", embeddings_server)
