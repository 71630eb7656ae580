"""Dense retrieval by the best sentence of each chunk (``Settings.dense_unit``): the sentence files are
written, checked and loaded; chunks are ranked by their best sentence; "chunk" keeps the chunk-vector
ranking; a change of unit is a stale index."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rag.chunk import search_text, sentence_texts
from rag.errors import IndexCorruptError, IndexMismatchError, InputError
from rag.settings import Settings
from rag.store import SENTENCE_FILES, IndexStore, build_index
from rag.stores.folder import FolderStore

QUESTION = "What familiar feeling did the writer have on returning to the old school?"
# One sentence of "council" answers the question; "leeds" and "fair" share its words all through, but none
# of their sentences answers it. MiniLM, question . text: council chunk 0.21, best sentence 0.53; leeds
# chunk 0.61, best 0.45; fair chunk 0.61, best 0.43.
ARTICLES = {
    "council.txt": "Council notes\n\nThe council approved the budget for road repairs on Tuesday. Bus fares will "
                   "rise by ten cents in March. Walking into my old school again, I had a strong sense of deja vu. "
                   "The library will extend its opening hours. Rain is expected across the region this weekend.\n",
    "leeds.txt": "Leeds notes\n\nThe author was born in Leeds. Schools reopen on Monday after the holiday. She "
                 "writes about feelings and memory. The return journey was long.\n",
    "fair.txt": "Fair notes\n\nA novelist spoke at the school fair. Pupils returned to classes. Teachers described "
                "a familiar mood of excitement.\n",
}


def _corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    for name, text in ARTICLES.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def _body(store: IndexStore, article: str) -> str:
    (chunk,) = [c for c in store.chunks if c.article == article and "." in c.text]
    return chunk.chunk_id


def test_sentence_vectors_are_written_checked_and_kept(settings: Settings, seeds_copy: Path,
                                                      fake_embedder) -> None:
    report = build_index([seeds_copy], settings, fake_embedder)
    store = IndexStore.load(settings.index_dir, settings)
    manifest = json.loads((store.path / "manifest.json").read_text())
    assert manifest["chunking"]["dense_unit"] == "sentence"
    assert set(SENTENCE_FILES) <= set(manifest["files"])  # checksummed like the other data files
    texts = [sentence_texts(c, store.articles[c.article]) for c in store.chunks]
    assert store.sentences is not None and len(store.sentences) == manifest["sentences"] == sum(map(len, texts))
    assert report.embedded_sentences == len({t for ts in texts for t in ts})  # a shared sentence once
    for i, ts in enumerate(texts):
        assert np.abs(store.sentences.of(i) - fake_embedder.embed(ts)).max() < 1e-5

    target = seeds_copy / "004_3487882a76378314.txt"
    target.write_text(target.read_text(encoding="utf-8") + "\nA new closing sentence was added today.\n",
                      encoding="utf-8")
    touched = build_index([seeds_copy], settings, fake_embedder)
    after = IndexStore.load(settings.index_dir, settings)
    assert touched.updated == [target.name]
    assert touched.embedded_sentences <= sum(len(sentence_texts(c, after.articles[c.article]))
                                             for c in after.chunks if c.article == target.name)
    for i, c in enumerate(after.chunks):  # carried and new vectors alike belong to their chunk's sentences
        assert np.abs(after.sentences.of(i) - fake_embedder.embed(sentence_texts(c, after.articles[c.article]))
                      ).max() < 1e-5

    (after.path / "sentences.faiss").write_bytes(b"\0" + (after.path / "sentences.faiss").read_bytes()[1:])
    with pytest.raises(IndexCorruptError, match="sentences.faiss.*--rebuild"):
        IndexStore.load(settings.index_dir, settings)


@pytest.mark.real
def test_dense_ranks_chunks_by_their_best_sentence(real_embedder, tmp_path: Path) -> None:
    corpus = _corpus(tmp_path)
    q = real_embedder.embed([QUESTION], "query")[0]
    ranked = {}
    for unit in ("sentence", "chunk"):
        s = Settings(index_dir=tmp_path / unit, dense_unit=unit)
        build_index([corpus], s, real_embedder)
        index = IndexStore.load(s.index_dir, s)
        bodies = [_body(index, a) for a in ARTICLES]
        # article text is ranked among article text (the headlines, embedded with the line after them,
        # are ranked among themselves in the fusion)
        ranked[unit] = [i for i, _ in FolderStore(index).dense(q, 10) if i in bodies]
        assert sorted(ranked[unit]) == sorted(bodies)
    council = bodies[0]
    assert ranked["sentence"][0] == council  # its one matching sentence beats the others' best
    assert ranked["chunk"][-1] == council  # its chunk vector is the furthest


@pytest.mark.real
def test_the_dense_ranking_is_the_best_sentence_cosine(real_index: IndexStore, real_embedder) -> None:
    """On the seeds, against a brute-force ranking: every chunk scored by the max over its sentences."""
    store = FolderStore(real_index)
    chunks = real_index.chunks
    vecs = [real_embedder.embed(sentence_texts(c, real_index.articles[c.article])) for c in chunks]
    for question in ("Which chip powers Huawei's Mate 60?", "Who took the photo of the robot dog?",
                     "How much did the Sora index rise after the holiday?"):
        q = real_embedder.embed([question], "query")[0]
        best = np.array([float((v @ q).max()) for v in vecs])
        got = store.dense(q, 20)
        want = sorted(range(len(chunks)), key=lambda i: (-best[i], i))[:20]
        assert [s for _, s in got] == pytest.approx([best[i] for i in want], abs=1e-4)
        assert [i for i, _ in got][:5] == [chunks[i].chunk_id for i in want][:5]
        assert len({i for i, _ in got}) == 20  # distinct chunks, not sentences


def test_chunk_unit_keeps_the_chunk_vector_ranking(settings: Settings, seeds_copy: Path, fake_embedder) -> None:
    s = settings.replace(dense_unit="chunk")
    report = build_index([seeds_copy], s, fake_embedder)
    index = IndexStore.load(s.index_dir, s)
    assert index.sentences is None and report.embedded_sentences == 0
    assert not any((index.path / f).exists() for f in SENTENCE_FILES)
    assert "sentences" not in json.loads((index.path / "manifest.json").read_text())
    vecs = fake_embedder.embed([search_text(c, index.articles[c.article]) for c in index.chunks])
    for question in ("Kirin 9000S chip Mate 60", "Sora Index Lunar New Year", "robot dog photo"):
        q = fake_embedder.embed([question], "query")[0]
        got = FolderStore(index).dense(q, 10)
        assert got == [(index.chunks[i].chunk_id, sc) for i, sc in index.search(q, 10)]
        assert [sc for _, sc in got] == pytest.approx(sorted(vecs @ q, reverse=True)[:10], abs=1e-5)


def test_a_change_of_unit_is_a_stale_index(settings: Settings, seeds_copy: Path, fake_embedder) -> None:
    build_index([seeds_copy], settings, fake_embedder)
    with pytest.raises(IndexMismatchError, match="dense_unit.*--rebuild"):
        IndexStore.load(settings.index_dir, settings.replace(dense_unit="chunk"))
    report = build_index([seeds_copy], settings.replace(dense_unit="chunk"), fake_embedder)
    assert report.rebuilt_reason and "dense_unit" in report.rebuilt_reason
    assert report.embedded_chunks == report.total_chunks
    assert IndexStore.load(settings.index_dir, settings.replace(dense_unit="chunk")).sentences is None
    with pytest.raises(InputError, match="dense_unit 'word'"):
        build_index([seeds_copy], settings.replace(dense_unit="word"), fake_embedder)


def test_dense_unit_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_DENSE_UNIT", "chunk")
    assert Settings.load(config=None).dense_unit == "chunk"
    assert Settings().dense_unit == "sentence"



def test_a_failure_while_embedding_sentences_keeps_the_previous_index(settings: Settings, seeds_copy: Path,
                                                                      fake_embedder) -> None:
    build_index([seeds_copy], settings, fake_embedder)
    before = IndexStore.load(settings.index_dir, settings)

    class FailsOnSentences(type(fake_embedder)):  # the new article's chunks embed, its sentences do not
        def _embed_batch(self, texts):
            if self.calls:
                raise RuntimeError("disk full")
            return super()._embed_batch(texts)

    (seeds_copy / "new.txt").write_text("A brand new article. It has two sentences that need embedding.\n")
    with pytest.raises(RuntimeError, match="disk full"):
        build_index([seeds_copy], settings, FailsOnSentences())
    after = IndexStore.load(settings.index_dir, settings)
    assert after.version == before.version and len(after.sentences) == len(before.sentences)
    report = build_index([seeds_copy], settings, fake_embedder)
    assert report.added == ["new.txt"] and report.embedded_sentences >= 2
