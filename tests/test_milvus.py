"""The Milvus store on the real Milvus Lite engine (no mock of the client): search, incremental indexing, a
killed indexer, and the same passages and citations as the folder store."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rag.answer import Assistant
from rag.chunk import search_text
from rag.errors import IndexMismatchError, IndexMissingError
from rag.retrieve import Retriever
from rag.settings import Settings
from rag.store import build_index
from rag.stores import open_store
from rag.vocab import terms

from .conftest import ROOT, SEEDS
from .fakes import FakeLLM, HashEmbedder

pytestmark = pytest.mark.skipif(importlib.util.find_spec("milvus_lite") is None,
                                reason="needs pymilvus and milvus-lite (pip install 'rag-news[milvus]')")

QUERIES = ("Which chip powers Huawei's Mate 60?", "Sora Index rise after the Lunar New Year",
           "ByteDance Ascend chips to train large models", "Zhou Hongyi GPT-4 gap")
NEW_ARTICLE = ("Lantern festival draws record crowds\n\n2024-02-24 City Desk\n\n"
               "The lantern festival in Harbin drew 1.2 million visitors this year, the organisers said. "
               "Ice sculptors from nine countries took part in the competition.\n")


@pytest.fixture
def milvus(settings: Settings, tmp_path: Path):
    """The fake-embedder settings, with the index in a Milvus Lite file."""
    from rag.stores.milvus import disconnect

    uri = str(tmp_path / "lite" / "x.db")
    yield settings.replace(store=f"milvus:{uri}")
    disconnect(uri)


def _uri(s: Settings) -> str:
    return s.store.removeprefix("milvus:")


def test_seeds_search_like_the_folder_store(settings: Settings, milvus: Settings, fake_embedder: HashEmbedder,
                                            seeds_copy: Path) -> None:
    from rag.stores.milvus import MilvusStore

    build_index([seeds_copy], settings, fake_embedder)
    report = build_index([seeds_copy], milvus, fake_embedder)
    assert report.total_articles == 5 and not report.rebuilt_reason
    folder, store = open_store(settings), open_store(milvus)
    assert isinstance(store, MilvusStore)
    assert len(store) == len(folder) == report.total_chunks
    assert store.article_hashes() == folder.article_hashes()
    assert sorted(c.to_dict().items().__repr__() for c in store.chunks) == \
        sorted(c.to_dict().items().__repr__() for c in folder.chunks)
    for q in QUERIES:
        vec = fake_embedder.embed_cached([q])[0]
        dense, f_dense = store.dense(vec, 10), folder.dense(vec, 10)
        # the same ranking; chunks with exactly equal scores (the fake embedder ties) may come in either order
        assert [(round(s, 4), i) for i, s in sorted(dense, key=lambda x: (-round(x[1], 4), x[0]))] == \
            [(round(s, 4), i) for i, s in sorted(f_dense, key=lambda x: (-round(x[1], 4), x[0]))]
        assert [s for _, s in dense] == pytest.approx([s for _, s in f_dense], abs=1e-4)
        lexical = store.lexical(terms(q), 10)
        f_lexical = folder.lexical(terms(q), 10)
        # the same ranking; chunks the folder store scores exactly equal may come in either order
        f_score = dict(f_lexical)
        assert lexical and len(lexical) == len(f_lexical)
        for (i, _), (j, s) in zip(lexical, f_lexical, strict=True):
            assert i == j or f_score.get(i) == pytest.approx(s, abs=1e-6), (q, i, j)
        for c in store.fetch([i for i, _ in lexical]):  # offsets index the stored original text
            assert store.texts[c.article][c.start:c.end] == c.text
        for t in terms(q):
            assert store.idf(t) == pytest.approx(folder.idf(t))
    assert store.idf("zzzunseen") == 0.0


def test_incremental_add_change_remove(milvus: Settings, fake_embedder: HashEmbedder, seeds_copy: Path) -> None:
    first = build_index([seeds_copy], milvus, fake_embedder)
    before = open_store(milvus)
    files = sorted(seeds_copy.iterdir())
    changed, removed = files[0], files[1]
    changed.write_text(changed.read_text(encoding="utf-8") + "\nA late paragraph about the Kirin 9000S "
                       "and its yield at SMIC.\n", encoding="utf-8")
    removed.unlink()
    (seeds_copy / "lanterns.txt").write_text(NEW_ARTICLE, encoding="utf-8")
    report = build_index([seeds_copy], milvus, fake_embedder)
    assert report.added == ["lanterns.txt"] and report.updated == [changed.name]
    assert report.removed == [removed.name] and len(report.unchanged) == 3
    after = open_store(milvus)
    assert after.version != before.version
    assert removed.name not in after.articles and all(c.article != removed.name for c in after.chunks)
    assert "Harbin" in after.articles["lanterns.txt"].text
    assert report.embedded_chunks == sum(c.article in ("lanterns.txt", changed.name) for c in after.chunks)
    assert report.total_chunks == len(after) == len(after.chunks) < first.total_chunks + 20
    # An unchanged article's chunks kept their vectors: each finds itself first.
    kept = [c for c in after.chunks if c.article == files[2].name]
    for c in kept[:3]:
        hits = after.dense(fake_embedder.embed([search_text(c, after.articles[c.article])])[0], 3)
        assert hits[0][0] == c.chunk_id or hits[0][1] == pytest.approx(hits[1][1])
    # Nothing changed: nothing is written, the version stays.
    again = build_index([seeds_copy], milvus, fake_embedder)
    assert not again.changed and again.embedded_chunks == 0
    assert open_store(milvus).version == after.version
    # --add keeps what is not under the given paths.
    extra = seeds_copy.parent / "extra"
    extra.mkdir()
    (extra / "note.md").write_text("# Port strike ends\n\nDock workers in Rotterdam ended a strike on Monday.\n",
                                   encoding="utf-8")
    added = build_index([extra], milvus, fake_embedder, keep_existing=True)
    assert added.added == ["note.md"] and added.total_articles == 6 and added.embedded_chunks >= 1
    assert set(open_store(milvus).articles) == set(after.articles) | {"note.md"}


def test_manifest_refuses_other_chunking_or_embedder(milvus: Settings, fake_embedder: HashEmbedder) -> None:
    with pytest.raises(IndexMissingError, match="rag index seeds/ --store milvus:"):
        open_store(milvus)
    build_index([SEEDS], milvus, fake_embedder)
    with pytest.raises(IndexMismatchError, match=r"chunking.*--store milvus:"):
        open_store(milvus.replace(chunk_size=300))
    with pytest.raises(IndexMismatchError, match="embedder"):
        open_store(milvus.replace(embedder="other-model"))
    rebuilt = build_index([SEEDS], milvus.replace(chunk_size=300), fake_embedder)
    assert rebuilt.rebuilt_reason and "chunking" in rebuilt.rebuilt_reason
    assert len(open_store(milvus.replace(chunk_size=300))) == rebuilt.total_chunks


KILLED_INDEXER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from rag.settings import Settings
    from rag.store import build_index
    from rag.stores import milvus
    from tests.fakes import HashEmbedder

    where = sys.argv[2]
    if where == "insert":  # stop after some rows of the new version are in
        put = milvus.CollectionWriter._put
        count = [0]
        def slow_put(self, collection, row):
            put(self, collection, row)
            count[0] += 1
            if count[0] == 30:
                self._flush_rows()
                print("KILL ME", flush=True)
                time.sleep(600)
        milvus.CollectionWriter._put = slow_put
    else:  # stop when the new version is complete, before the alias moves
        live = milvus._live
        calls = [0]
        def slow_live(client, name):
            calls[0] += 1
            if calls[0] > 2:
                print("KILL ME", flush=True)
                time.sleep(600)
            return live(client, name)
        milvus._live = slow_live
    s = Settings(index_dir=Path(sys.argv[3]), embedder="fake-hash", store=sys.argv[1])
    build_index([Path(sys.argv[4])], s, HashEmbedder())
    print("FINISHED", flush=True)
""")


@pytest.mark.parametrize("where", ["insert", "swap"])
def test_killed_indexer_leaves_the_previous_index_answering(milvus: Settings, fake_embedder: HashEmbedder,
                                                            seeds_copy: Path, where: str) -> None:
    from rag.stores.milvus import _versions, connect, disconnect, target

    build_index([seeds_copy], milvus, fake_embedder)
    before = open_store(milvus)
    version, hashes = before.version, before.article_hashes()
    query = fake_embedder.embed_cached([QUERIES[0]])[0]
    answer = before.dense(query, 5)
    disconnect(_uri(milvus))  # Milvus Lite serves one process at a time
    (seeds_copy / "lanterns.txt").write_text(NEW_ARTICLE, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", KILLED_INDEXER, milvus.store, where, str(milvus.index_dir),
                             str(seeds_copy)], stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "KILL ME", line
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        proc.kill()
    store = open_store(milvus)
    assert store.version == version and store.article_hashes() == hashes
    assert store.dense(query, 5) == answer and store.lexical(terms(QUERIES[0]), 3)
    client = connect(target(milvus)[0])
    assert len(_versions(client, target(milvus)[1])) == 2  # the live one and the one the killed writer left
    report = build_index([seeds_copy], milvus, fake_embedder)  # the next writer finishes the job
    assert report.added == ["lanterns.txt"]
    assert set(_versions(client, target(milvus)[1])) == {version, open_store(milvus).version}


def test_default_store_never_imports_pymilvus(settings: Settings, fake_embedder: HashEmbedder) -> None:
    build_index([SEEDS], settings, fake_embedder)
    script = ("import sys; from pathlib import Path; from rag.answer import Assistant; "
              "from rag.settings import Settings; from tests.fakes import HashEmbedder; "
              f"a = Assistant(Settings(index_dir=Path({str(settings.index_dir)!r}), embedder='fake-hash'), "
              "embedder=HashEmbedder()); print(len(a.retriever.search('Kirin 9000S chip'))); "
              "print('pymilvus' in sys.modules, 'milvus_lite' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout.split("\n")
    assert out[:2] == [str(Settings.k), "False False"]


KIRIN = "The Mate 60 is powered by the Kirin 9000S chip [1]."


@pytest.mark.real
def test_same_passages_and_citations_as_the_folder_store(real_embedder, tmp_path: Path) -> None:
    """Real embedder and engine, a queued LLM reply: the whole path after generation is the store's."""
    from rag.stores.milvus import disconnect

    folder = Settings(index_dir=tmp_path / "index")
    milvus = folder.replace(store=f"milvus:{tmp_path / 'news.db'}")
    build_index([SEEDS], folder, real_embedder)
    build_index([SEEDS], milvus, real_embedder)
    try:
        got = {}
        for label, s in (("folder", folder), ("milvus", milvus)):
            a = Assistant(s, embedder=real_embedder, llm=FakeLLM().enqueue(KIRIN))
            answer = a.ask("Which chip powers Huawei's Mate 60 series phone?").to_dict()
            got[label] = (answer, [[p.to_dict() for p in a.retriever.search_parts(q)] for q in QUERIES])
        (f_answer, f_passages), (m_answer, m_passages) = got["folder"], got["milvus"]
        assert f_passages == m_passages
        assert f_answer["citations"] and f_answer["citations"] == m_answer["citations"]
        for key in ("answer", "answerable", "passages", "sentences"):
            assert f_answer[key] == m_answer[key]
    finally:
        disconnect(str(tmp_path / "news.db"))


@pytest.mark.real
@pytest.mark.parametrize("unit", ["sentence", "chunk"])
def test_both_stores_rank_the_same_chunks_first(real_embedder, tmp_path: Path, seeds_copy: Path, unit: str) -> None:
    """Dense ranking by each chunk's best sentence (or its one vector) is the same in both stores, also after
    an incremental update that carries the unchanged articles' sentence vectors over."""
    from rag.stores.milvus import SENT, MilvusStore, disconnect

    folder = Settings(index_dir=tmp_path / "index", dense_unit=unit)
    milvus = folder.replace(store=f"milvus:{tmp_path / 'news.db'}")
    questions = (*QUERIES, "Who took the photo of the robot dog?", "What did analysts say about the yield of SMIC?")
    try:
        for step in ("built", "updated"):
            if step == "updated":
                (seeds_copy / "lanterns.txt").write_text(NEW_ARTICLE, encoding="utf-8")
                (seeds_copy / "001_fec9117f088a86d3.txt").unlink()
            reports = [build_index([seeds_copy], s, real_embedder) for s in (folder, milvus)]
            assert reports[0].embedded_sentences == reports[1].embedded_sentences
            f_store, m_store = open_store(folder), open_store(milvus)
            assert isinstance(m_store, MilvusStore)
            assert m_store.manifest.get("sentences") == f_store.manifest.get("sentences")
            has_sent = m_store.client.has_collection(m_store.collection + SENT)
            assert has_sent == (unit == "sentence")
            for q in questions:
                vec = real_embedder.embed_cached([q], "query")[0]
                f_dense, m_dense = f_store.dense(vec, 30), m_store.dense(vec, 30)
                assert [i for i, _ in f_dense][:10] == [i for i, _ in m_dense][:10], (step, q)
                assert [s for _, s in f_dense] == pytest.approx([s for _, s in m_dense], abs=1e-4)
                f_hits = Retriever(f_store, real_embedder, folder).search(q)
                m_hits = Retriever(m_store, real_embedder, milvus).search(q)
                assert [p.chunk.chunk_id for p in f_hits] == [p.chunk.chunk_id for p in m_hits], (step, q)
    finally:
        disconnect(str(tmp_path / "news.db"))


@pytest.mark.real
@pytest.mark.llm
@pytest.mark.slow
@pytest.mark.timeout(2400)  # two answers from the GGUF model; 900 s was too short on a machine at load 20
def test_rag_ask_json_cites_the_same_spans_on_both_stores(real_embedder, tmp_path: Path) -> None:
    """The real GGUF model on both stores: the same answer, citing the same spans (greedy decoding)."""
    from rag.stores.milvus import disconnect

    folder = Settings(index_dir=tmp_path / "index")
    milvus = folder.replace(store=f"milvus:{tmp_path / 'news.db'}")
    build_index([SEEDS], folder, real_embedder)
    build_index([SEEDS], milvus, real_embedder)
    try:
        first = Assistant(folder, embedder=real_embedder)
        second = Assistant(milvus, embedder=real_embedder, llm=first.llm)
        q = "Which chip powers Huawei's Mate 60 series phone?"
        a, b = first.ask(q).to_dict(), second.ask(q).to_dict()
        spans = [(c["article"], c["start"], c["end"], c["quote"]) for c in a["citations"]]
        assert spans and spans == [(c["article"], c["start"], c["end"], c["quote"]) for c in b["citations"]]
        for c in b["citations"]:
            assert second.store.texts[c["article"]][c["start"]:c["end"]] == c["quote"]
    finally:
        disconnect(str(tmp_path / "news.db"))


def test_upload_from_the_ui_service_lands_in_milvus(milvus: Settings, fake_embedder: HashEmbedder,
                                                    tmp_path: Path) -> None:
    from ui.service import Service

    build_index([SEEDS], milvus.replace(corpus=SEEDS), fake_embedder)
    service = Service(Assistant(milvus, embedder=fake_embedder, llm=FakeLLM()))
    before = service.assistant().store.version
    upload = tmp_path / "lanterns.txt"
    upload.write_text(NEW_ARTICLE, encoding="utf-8")
    added = service.add_article(upload)
    assert added.report.added == ["lanterns.txt"] and "6 articles" in added.message()
    store = service.assistant().store
    assert store.version != before and "lanterns.txt" in store.articles
    top = service.assistant().retriever.search("lantern festival Harbin visitors", 1)[0]
    assert top.article == "lanterns.txt" and store.texts["lanterns.txt"][top.chunk.start:top.chunk.end] == top.chunk.text


def test_store_comes_from_flag_env_or_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from rag.cli import main
    from rag.errors import InputError
    from rag.stores import store_kind

    config = tmp_path / "rag.toml"
    config.write_text('store = "milvus:archive/news.db"\n', encoding="utf-8")
    assert store_kind(Settings.load(config)) == ("milvus", "archive/news.db")
    monkeypatch.setenv("RAG_STORE", "milvus:http://127.0.0.1:19530")
    assert store_kind(Settings.load(config)) == ("milvus", "http://127.0.0.1:19530")
    assert store_kind(Settings.load(config, store="folder")) == ("folder", "")
    for bad in ("milvus:", "qdrant:x", "milvus"):
        with pytest.raises(InputError, match="use 'folder' or 'milvus:URI'"):
            store_kind(Settings().replace(store=bad))
    result = CliRunner().invoke(main, ["search", "chip", "--store", "elastic:x", "--config", str(config)])
    assert result.exit_code == 1 and "unknown store 'elastic:x'" in result.output


def test_bench_store_cells_run_on_both_stores(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from rag.benchmark.store import main, synthetic_store_data
    from rag.benchmark.store import markdown as store_markdown
    from rag.stores.milvus import disconnect

    articles, chunks, vectors = synthetic_store_data(200)
    assert len(chunks) == len(vectors) == 200 and len(articles) == 20
    assert all(articles[c.article].text[c.start:c.end] == c.text for c in chunks)
    rows = []
    for spec in ("folder", f"milvus:{tmp_path / 'b.db'}"):
        args = ["--store", spec, "--index-dir", str(tmp_path / spec[:6] / "index"), "--n", "200", "--queries", "5"]
        main(["build", *args])
        main(["query", *args])
        built, asked = (json.loads(line) for line in capsys.readouterr().out.strip().splitlines()[-2:])
        rows.append({"store": spec[:6], "chunks": 200, **built, **asked})
        assert {"build_s", "open_s", "dense_p95_ms", "lexical_p50_ms", "hybrid_p95_ms", "rss_mb"} <= set(rows[-1])
    disconnect(str(tmp_path / "b.db"))
    table = store_markdown({"rows": rows, "queries": 5, "candidates": 30, "k": 4, "not_run": []})
    assert sum(line.startswith(("| folder | 200 |", "| milvus | 200 |")) for line in table) == 2
