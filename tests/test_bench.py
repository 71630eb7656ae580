"""The pieces behind ``rag bench`` and the start-up path it measures, with fakes (no models, no timing)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rag.answer import Assistant
from rag.benchmark import ann, command, context, ingest
from rag.chunk import chunk_article
from rag.errors import ModelError
from rag.ingest import iter_paths, load_article
from rag.prompt import SYSTEM_PROMPT
from rag.settings import Settings
from rag.store import (
    APPROX_KIND,
    APPROX_MIN_VECTORS,
    IVF_NPROBE,
    IndexStore,
    auto_index_kind,
    build_index,
    make_faiss_index,
)

from .conftest import SEEDS
from .fakes import FakeLLM


def test_synthetic_corpus_is_distinct_articles_with_enough_chunks(tmp_path: Path) -> None:
    settings = Settings()
    n = ingest.synthesize_corpus(SEEDS, tmp_path, 120, settings)
    files = list(iter_paths([tmp_path]))
    counted = sum(len(chunk_article(load_article(f), settings.chunk_size, settings.chunk_overlap))
                  for f in files)
    assert n == counted >= 120
    assert len({f.read_bytes() for f in files}) == len(files) > 5


def test_synthetic_vectors_are_unit_and_clustered() -> None:
    x = ann.synthetic_vectors(3000, dim=64)
    assert x.shape == (3000, 64) and x.dtype == np.float32
    assert np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(x, ann.synthetic_vectors(3000, dim=64))  # seeded: runs compare like with like
    q = ann.near_queries(x, 50)
    top = np.sort(q @ x.T, axis=1)
    assert top[:, -1].mean() > 0.8 > top[:, -10].mean() > np.median(q @ x.T) + 0.2  # near a point, not on it


def test_exact_index_has_full_recall_and_ivf_is_close() -> None:
    x = ann.synthetic_vectors(4000, dim=32)
    q = ann.near_queries(x, 100)
    flat, kind = make_faiss_index(x, "flat")
    _, truth = flat.search(q, 10)
    assert kind == "flat" and ann.ann_recall_at_k(flat, q, truth) == 1.0
    ivf, kind = make_faiss_index(x, "ivf")
    assert kind == "ivf" and ivf.nprobe == min(IVF_NPROBE, ivf.nlist)
    assert ann.ann_recall_at_k(ivf, q, truth) >= 0.9


def test_auto_index_choice_switches_at_the_threshold() -> None:
    assert auto_index_kind(APPROX_MIN_VECTORS - 1) == "flat"
    assert auto_index_kind(APPROX_MIN_VECTORS) == APPROX_KIND


def test_ivf_index_round_trip_records_and_retunes(tmp_path: Path, fake_embedder) -> None:
    settings = Settings(index_dir=tmp_path / "index", embedder="fake-hash", index_type="ivf")
    build_index([SEEDS], settings, fake_embedder)
    store = IndexStore.load(settings.index_dir, settings)
    assert store.manifest["index_type"] == "ivf"
    assert store.manifest["index_params"] == {"nlist": store.faiss_index.nlist,
                                              "nprobe": store.faiss_index.nprobe}
    assert store.search(fake_embedder.embed(["Kirin 9000S chip"])[0], 3)


def test_load_reraises_a_background_llm_failure(settings: Settings, seeds_copy: Path, fake_embedder) -> None:
    build_index([seeds_copy], settings, fake_embedder)
    assistant = Assistant(settings.replace(backend="openai", base_url=""), embedder=fake_embedder)
    with pytest.raises(ModelError, match="base_url"):
        assistant.load()
    assert assistant._retriever is not None  # the main thread's part finished before the error surfaced


def test_load_with_warm_primes_the_prompt_prefix(settings: Settings, seeds_copy: Path, fake_embedder,
                                                 fake_llm) -> None:
    build_index([seeds_copy], settings, fake_embedder)
    assistant = Assistant(settings, embedder=fake_embedder, llm=fake_llm)
    assistant.load()
    assert fake_llm.calls == []
    assistant.load(warm=True)
    assert len(fake_llm.calls) == 1 and fake_llm.calls[0][0] == {"role": "system", "content": SYSTEM_PROMPT}
    assert set(assistant.load_timings) >= {"embedder_s", "load_s"}


def test_results_render_with_a_failed_section(tmp_path: Path) -> None:
    results = {"meta": command._meta(Settings(), context.QUICK), "ingest": {"error": "RagError: boom"},
               "retrieval": {"threads": 2, "runs": 2, "queries_per_run": 10, "sizes": [
                   {"vectors": 10_000, "auto_kind": "flat", "kinds": {
                       "flat": {"build_s": 0.01, "p50_ms": 1.0, "p95_ms": 2.0, "recall_at_10": 1.0},
                       "hnsw": {"skipped": "above hnsw_max_vectors=0"}}}]}}
    command.write_results(tmp_path, results)
    md = (tmp_path / "bench.md").read_text(encoding="utf-8")
    assert "**ingest failed:** RagError: boom" in md and "| 10,000 | flat |" in md and "hnsw" not in md
    written = json.loads((tmp_path / "bench.json").read_text(encoding="utf-8"))
    assert written == json.loads(json.dumps(results))
    assert not list(tmp_path.glob(".*.tmp"))


def test_use_llm_swaps_the_model_and_clear_cache_forgets_answers(settings: Settings, seeds_copy: Path,
                                                                   fake_embedder) -> None:
    """What the answer bench relies on instead of setting ``_llm`` and ``_cache``."""
    build_index([seeds_copy], settings, fake_embedder)
    first, second = FakeLLM(), FakeLLM()
    second.name = "second-llm"
    assistant = Assistant(settings, embedder=fake_embedder, llm=first)
    question = "Which chip powers Huawei's Mate 60 series phone?"
    assistant.ask(question)
    assistant.ask(question)  # from the answer cache
    assert len(first.calls) == 1
    assistant.clear_cache()
    assistant.ask(question)
    assert len(first.calls) == 2
    assistant.use_llm(second)  # also forgets the answers the first model gave
    assert assistant.llm is second and assistant.ask(question).model == second.name
    assert len(first.calls) == 2 and len(second.calls) == 1


def test_load_without_wait_lets_the_question_be_searched_while_the_model_loads(
        settings: Settings, seeds_copy: Path, fake_embedder, fake_llm, monkeypatch) -> None:
    import threading

    from rag import answer

    build_index([seeds_copy], settings, fake_embedder)
    release, order = threading.Event(), []

    def slow_llm(s, model=None):
        release.wait(10)
        order.append("model loaded")
        return fake_llm

    monkeypatch.setattr(answer, "get_llm", slow_llm)
    assistant = Assistant(settings, embedder=fake_embedder)
    assistant.load(wait=False)  # returns while the model is still loading
    hits = assistant.retriever.search("Kirin 9000S chip", 3)
    order.append("searched")
    release.set()
    reply = assistant.ask("Which chip powers the Mate 60?")  # the first use of the model waits for it
    assert order == ["searched", "model loaded"] and hits and reply.model == fake_llm.name
    assert fake_llm.calls  # the answer came from the model the background load produced

    def broken_llm(s, model=None):
        raise ModelError("the model file is damaged")

    monkeypatch.setattr(answer, "get_llm", broken_llm)
    failing = Assistant(settings, embedder=fake_embedder)
    failing.load(wait=False)
    with pytest.raises(ModelError, match="damaged"):
        failing.ask("Which chip powers the Mate 60?")  # the loader's failure surfaces at first use
