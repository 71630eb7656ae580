"""The index: incremental updates, atomic versions, manifest checks, hybrid retrieval."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rag.chunk import search_text
from rag.errors import IndexCorruptError, IndexMismatchError, IndexMissingError, InputError
from rag.ingest import CLEANER_VERSION
from rag.retrieve import Retriever, check_question
from rag.settings import Settings
from rag.store import FORMAT_VERSION, IndexStore, build_index
from rag.vocab import terms, tokenize

from .conftest import ROOT, SEEDS


def test_incremental_index(settings: Settings, seeds_copy: Path, fake_embedder) -> None:
    first = build_index([seeds_copy], settings, fake_embedder)
    assert len(first.added) == 5 and first.embedded_chunks == first.total_chunks > 0
    calls = fake_embedder.calls

    again = build_index([seeds_copy], settings, fake_embedder)
    assert again.embedded_chunks == 0 and not again.changed and fake_embedder.calls == calls
    assert "nothing re-embedded" in again.summary()

    target = seeds_copy / "004_3487882a76378314.txt"
    target.write_text(target.read_text(encoding="utf-8") + "\nA new closing sentence was added today.\n",
                      encoding="utf-8")
    touched = build_index([seeds_copy], settings, fake_embedder)
    assert touched.updated == ["004_3487882a76378314.txt"] and len(touched.unchanged) == 4
    store = IndexStore.load(settings.index_dir, settings)
    assert touched.embedded_chunks == sum(c.article == target.name for c in store.chunks)

    (seeds_copy / "001_fec9117f088a86d3.txt").unlink()
    dropped = build_index([seeds_copy], settings, fake_embedder)
    assert dropped.removed == ["001_fec9117f088a86d3.txt"] and dropped.embedded_chunks == 0
    store = IndexStore.load(settings.index_dir, settings)
    assert "001_fec9117f088a86d3.txt" not in store.articles
    assert all(c.article != "001_fec9117f088a86d3.txt" for c in store.chunks)
    # vectors kept for unchanged articles are the ones their chunks had
    fresh = fake_embedder.embed([search_text(c, store.articles[c.article]) for c in store.chunks])
    assert abs(fresh - store.vectors).max() < 1e-5


def test_bad_files_are_skipped_and_named(settings: Settings, seeds_copy: Path, fake_embedder) -> None:
    (seeds_copy / "binary.txt").write_bytes(b"\x00\x01\x02\x03")
    (seeds_copy / "latin1.txt").write_bytes("caf\xe9".encode("latin-1") * 20)
    report = build_index([seeds_copy], settings, fake_embedder)
    assert sorted(Path(p).name for p, _ in report.skipped) == ["binary.txt", "latin1.txt"]
    assert report.total_articles == 5


def test_empty_corpus_and_missing_path(settings: Settings, tmp_path: Path, fake_embedder) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no usable articles"):
        build_index([tmp_path / "empty"], settings, fake_embedder)
    with pytest.raises(InputError, match="no such file"):
        build_index([tmp_path / "nope"], settings, fake_embedder)
    with pytest.raises(IndexMissingError, match="rag index"):
        IndexStore.load(settings.index_dir, settings)


def test_failed_ingest_keeps_previous_index(settings: Settings, seeds_copy: Path, fake_embedder) -> None:
    build_index([seeds_copy], settings, fake_embedder)
    before = IndexStore.load(settings.index_dir, settings)

    class Exploding(type(fake_embedder)):
        def _embed_batch(self, texts):
            raise RuntimeError("disk full")

    (seeds_copy / "new.txt").write_text("A brand new article sentence that needs embedding today.\n")
    with pytest.raises(RuntimeError):
        build_index([seeds_copy], settings, Exploding())
    after = IndexStore.load(settings.index_dir, settings)
    assert after.version == before.version and len(after.chunks) == len(before.chunks)
    # the next run completes it and cleans up
    report = build_index([seeds_copy], settings, fake_embedder)
    assert report.added == ["new.txt"]
    assert [p.name for p in settings.index_dir.iterdir() if p.name.startswith(("v-", ".tmp"))] == \
        [IndexStore.load(settings.index_dir, settings).version]


def test_manifest_mismatch_and_corruption(settings: Settings, seeds_copy: Path, fake_embedder) -> None:
    build_index([seeds_copy], settings, fake_embedder)
    with pytest.raises(IndexMismatchError, match="--rebuild"):
        IndexStore.load(settings.index_dir, settings.replace(chunk_size=300))
    with pytest.raises(IndexMismatchError, match="embedder"):
        IndexStore.load(settings.index_dir, settings.replace(embedder="other-model"))
    store = IndexStore.load(settings.index_dir, settings)
    faiss_file = store.path / "faiss.index"
    faiss_file.write_bytes(faiss_file.read_bytes()[:100])
    with pytest.raises(IndexCorruptError, match="--rebuild"):
        IndexStore.load(settings.index_dir, settings)
    # a plain re-run repairs it
    report = build_index([seeds_copy], settings, fake_embedder)
    assert report.rebuilt_reason and report.total_articles == 5
    IndexStore.load(settings.index_dir, settings)


def test_changed_settings_trigger_full_rebuild(settings: Settings, seeds_copy: Path, fake_embedder) -> None:
    build_index([seeds_copy], settings, fake_embedder)
    report = build_index([seeds_copy], settings.replace(chunk_size=300), fake_embedder)
    assert report.rebuilt_reason and report.embedded_chunks == report.total_chunks
    manifest = json.loads((IndexStore.load(settings.index_dir, settings.replace(chunk_size=300)).path /
                           "manifest.json").read_text())
    assert manifest["chunking"] == {"chunk_size": 300, "chunk_overlap": 100, "cleaner_version": CLEANER_VERSION,
                                    "role_context": 1, "dense_unit": "sentence"}
    again = build_index([seeds_copy], settings.replace(chunk_size=300, role_context=False), fake_embedder)
    assert again.rebuilt_reason and "role_context" in again.rebuilt_reason  # furniture re-embedded without context
    assert manifest["index_type"] == "flat" and manifest["format_version"] == FORMAT_VERSION
    assert set(manifest["articles"]) == {p.name for p in SEEDS.glob("*.txt")}


def test_tokenize_keeps_names_and_numbers() -> None:
    assert tokenize("The Kirin 9000S rose 11.4 per cent; U.S. curbs") == \
        ["kirin", "9000s", "rose", "11.4", "per", "cent", "u", "s", "curbs"]


def test_hybrid_retrieval_with_fakes(settings: Settings, seeds_copy: Path, fake_embedder) -> None:
    build_index([seeds_copy], settings, fake_embedder)
    store = IndexStore.load(settings.index_dir, settings)
    r = Retriever(store, fake_embedder, settings)
    hits = r.search("Kirin 9000S", k=3)
    assert hits[0].article == "000_24afeec690d630ed.txt" and "Kirin 9000S" in hits[0].chunk.text
    assert [h.rank for h in hits] == [1, 2, 3]
    assert hits[0].score >= hits[1].score >= hits[2].score
    lexical = r.search("11.4 per cent", k=1, mode="lexical")
    assert "11.4 per cent" in lexical[0].chunk.text


@pytest.mark.parametrize("q", ["", "   ", "\x00\n\t"])
def test_empty_question_is_refused(q: str) -> None:
    with pytest.raises(InputError, match="empty"):
        check_question(q)


def test_huge_question_is_refused() -> None:
    with pytest.raises(InputError, match="limit"):
        check_question("why " * 1000)


@pytest.mark.real
def test_real_embedder_and_faiss(real_index, real_embedder, real_settings) -> None:
    """The bundled MiniLM model and a real FAISS index find the passage with the answer."""
    r = Retriever(real_index, real_embedder, real_settings)
    assert real_index.manifest["embedder"] == {"name": "all-MiniLM-L6-v2", "dim": 384,
                                               "backend": "sentence-transformers", "passage_prefix": ""}
    cases = {
        "Which chip powers the Mate 60 phone?": "Kirin 9000S",
        "How much did the Sora Index rise?": "11.4 per cent",
        "Which GPUs did Nvidia develop for China after the October curbs?": "H20",
        "Who compared Sora to the Newton moment?": "Newton moment",
    }
    for q, needle in cases.items():
        dense = r.search(q, k=5, mode="dense")
        fused = r.search(q, k=5)
        assert any(needle in p.chunk.text for p in fused), q
        assert any(needle in p.chunk.text for p in dense), q
    v = real_embedder.embed(["Huawei chips", "Huawei semiconductors", "a recipe for soup"])
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2


@pytest.mark.real
def test_cli_index_and_search_json(tmp_path: Path) -> None:
    """`rag index` then `rag search --json`: every passage is an exact span of its file."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    rag = [sys.executable, "-m", "rag.cli"]
    idx = tmp_path / "idx"
    out = subprocess.run(rag + ["index", str(SEEDS), "--index-dir", str(idx)], capture_output=True, text=True,
                         env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "5 added" in out.stdout
    again = subprocess.run(rag + ["index", str(SEEDS), "--index-dir", str(idx)], capture_output=True,
                           text=True, env=env, cwd=ROOT)
    assert "nothing re-embedded" in again.stdout
    res = subprocess.run(rag + ["search", "Ascend 910B Nvidia A100", "--k", "3", "--json", "--index-dir", str(idx)],
                         capture_output=True, text=True, env=env, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert len(data["passages"]) == 3
    for p in data["passages"]:
        assert set(p) >= {"rank", "article", "title", "chunk_id", "start", "end", "score", "text"}
        original = (SEEDS / p["article"]).read_text(encoding="utf-8")
        assert p["text"] in original[p["start"]:p["end"]]
    assert any("Ascend 910B" in p["text"] for p in data["passages"])
    bad = subprocess.run(rag + ["search", "x", "--index-dir", str(tmp_path / "none")], capture_output=True,
                         text=True, env=env, cwd=ROOT)
    assert bad.returncode == 1 and "no index" in bad.stderr and "Traceback" not in bad.stderr


def test_bm25_is_saved_with_the_index_and_read_back_not_rebuilt(settings: Settings, seeds_copy: Path,
                                                                  fake_embedder, monkeypatch) -> None:
    from rag.stores import folder

    build_index([seeds_copy], settings, fake_embedder)
    store = IndexStore.load(settings.index_dir, settings)
    manifest = json.loads((store.path / "manifest.json").read_text())
    assert {f for f in manifest["files"] if f.startswith("bm25/")} >= {"bm25/vocab.index.json",
                                                                       "bm25/data.csc.index.npy"}
    # The same rankings and idf as an index built in memory from the same chunks:
    built = folder.build_lexical(folder.lexical_corpus(store.chunks, store.articles, settings.role_context))
    monkeypatch.setattr(folder, "build_lexical", lambda corpus: pytest.fail("BM25 was rebuilt on load"))
    saved = folder.FolderStore(store)
    for q in (["kirin", "9000s"], terms("Sora text-to-video"), terms("photo Xinhua telecom")):
        ids, scores = built.retrieve([q], k=5, show_progress=False, n_threads=1)
        assert [i for i, _ in saved.lexical(q, 5)] == [store.chunks[int(i)].chunk_id
                                                     for i, s in zip(ids[0], scores[0], strict=True) if s > 0]
    assert saved.idf("kirin") > saved.idf("huawei") > 0 and saved.idf("zzzz") == 0.0


def test_an_index_without_saved_bm25_still_answers(settings: Settings, seeds_copy: Path, fake_embedder) -> None:
    from rag.stores.folder import FolderStore

    build_index([seeds_copy], settings, fake_embedder)
    store = IndexStore.load(settings.index_dir, settings)
    shutil.rmtree(store.path / "bm25")  # as written before BM25 was saved (manifest without its files)
    manifest = json.loads((store.path / "manifest.json").read_text())
    manifest["files"] = {f: h for f, h in manifest["files"].items() if not f.startswith("bm25/")}
    (store.path / "manifest.json").write_text(json.dumps(manifest))
    old = FolderStore(IndexStore.load(settings.index_dir, settings))
    assert old.lexical(["kirin", "9000s"], 3)[0][0].startswith("000_")
