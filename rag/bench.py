"""``rag bench``: how fast ingestion, retrieval, answering, start-up and memory are, on this machine.

Each figure is the median over several runs, and every ratio compares runs made in the same process
minutes apart, so a noisy machine shifts both sides alike. Everything the bench needs is made here:
a synthetic corpus recombined from the seed paragraphs, synthetic clustered vectors for the scaling
test, an index of the seeds in a temp folder. The live index is never touched. Results go to
``<out>/bench.json`` (rewritten after each section, so a crash keeps what was measured) and
``<out>/bench.md``.

Not measured: GPUs, other models than the configured one, concurrent users.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import RagError
from .files import write_atomic
from .settings import Settings

Echo = Callable[[str], None]

# Gold-style questions about the seed articles: distinct, so the answer cache never serves them.
QUESTIONS = (
    "Which chip powers Huawei's Mate 60 series phone, according to the China Daily commentary?",
    "Which TikTok parent company has started using Huawei's Ascend chip to train its large AI models?",
    "Who is behind the effort to replicate Sora as an open-source model?",
    "How big a gap did Zhou Hongyi estimate between China's best large language models and GPT-4?",
    "How many AI-related products and solutions were showcased at the World AI Conference?",
    "In which month did OpenAI launch Sora, according to the China Daily commentary?",
    "By how much did the Sora Index rise on the first trading day after the Lunar New Year holiday?",
    "Which ByteDance executive has made recruiting AI talent a top priority?",
)

# Follow-ups after a first question: the rewrite and the answer should both reuse the cached prompt prefix.
FOLLOW_UPS = (
    ("Which chip powers Huawei's Mate 60 series phone?", "Who makes it?"),
    ("How much did the Sora Index gain after the Lunar New Year?", "How many companies are in it?"),
    ("What did Zhou Hongyi call Sora's release?", "What is his company?"),
)

# The naive baseline: one generic "stuff the chunks" prompt, as in a first RAG tutorial.
NAIVE_SYSTEM = ("Use the following pieces of context to answer the question at the end. If you don't know "
                "the answer, just say that you don't know. Keep the answer concise.")


@dataclass(frozen=True)
class Plan:
    """Sizes and repetitions; ``QUICK`` is a smoke test that finishes in about two minutes."""

    name: str
    corpus_chunks: int  # synthetic corpus size for the ingestion throughput
    ingest_runs: int
    vector_sizes: tuple[int, ...]
    hnsw_max_vectors: int  # HNSW builds for 13 min at 1M on 2 cores (and the store never picks it)
    queries: int  # single queries per latency run
    search_runs: int
    questions: int
    cold_runs: int
    memory_questions: int


FULL = Plan("full", corpus_chunks=2000, ingest_runs=3, vector_sizes=(10_000, 100_000, 1_000_000),
            hnsw_max_vectors=100_000, queries=200, search_runs=3, questions=6, cold_runs=3,
            memory_questions=3)
QUICK = Plan("quick", corpus_chunks=200, ingest_runs=1, vector_sizes=(10_000,), hnsw_max_vectors=10_000,
             queries=100, search_runs=2, questions=1, cold_runs=1, memory_questions=1)


def cli(settings: Settings, out: Path, quick: bool = False, echo: Echo = print,
        only: Sequence[str] = ()) -> dict[str, Any]:
    """Run every section (or ``only`` some, keeping the others of an earlier ``bench.json`` in ``out``),
    write ``bench.json`` and ``bench.md`` to ``out``; raise if a section failed."""
    plan = QUICK if quick else FULL
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    if only and (out / "bench.json").is_file():
        results = json.loads((out / "bench.json").read_text(encoding="utf-8"))
    results["meta"] = {**results.get("meta", {}), **_meta(settings, plan)}
    work = Path(tempfile.mkdtemp(prefix="rag-bench-"))
    ctx = _Context(settings, plan, work, echo)
    sections: list[tuple[str, Callable[[_Context], dict[str, Any]]]] = [
        ("ingest", bench_ingest), ("retrieval", bench_retrieval), ("answer", bench_answer),
        ("cold_start", bench_cold_start), ("memory", bench_memory), ("store", _bench_store),
    ]
    try:
        for name, fn in sections:
            if only and name not in only:
                continue
            echo(f"bench: {name} …")
            t = time.perf_counter()
            try:
                results[name] = fn(ctx)
            except Exception as e:  # noqa: BLE001 - one broken section must not lose the others
                results[name] = {"error": f"{type(e).__name__}: {e}"}
                echo(f"bench: {name} failed: {e}")
            results[name]["section_s"] = round(time.perf_counter() - t, 1)
            results[name]["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")  # sections may come from several runs
            results["meta"]["load_avg_end"] = _load_avg()
            write_results(out, results)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    echo(f"bench: wrote {out / 'bench.json'} and {out / 'bench.md'}")
    failed = [n for n, _ in sections if "error" in results.get(n, {})]
    if failed:
        raise RagError(f"bench sections failed: {', '.join(failed)}; see {out / 'bench.json'}")
    return results


class _Context:
    """What the sections share: settings, plan, a temp folder, and the seed index and embedder once built."""

    def __init__(self, settings: Settings, plan: Plan, work: Path, echo: Echo) -> None:
        self.settings, self.plan, self.work, self.echo = settings, plan, work, echo
        self._seed_settings: Settings | None = None

    @property
    def embedder(self) -> Any:
        from .embed import get_embedder  # loaded once per process by get_embedder itself

        return get_embedder(self.settings)

    @property
    def seed_settings(self) -> Settings:
        """Settings whose index (in the temp folder) holds the seed articles, built with the real embedder."""
        if self._seed_settings is None:
            from .store import build_index

            s = self.settings.replace(index_dir=self.work / "seed-index")
            build_index([self.settings.corpus], s, self.embedder)
            self._seed_settings = s
        return self._seed_settings


# -- ingestion ---------------------------------------------------------------------------------------

def synthesize_corpus(seed_dir: Path, dest: Path, min_chunks: int, settings: Settings, seed: int = 0) -> int:
    """Write distinct articles made of shuffled seed paragraphs until they hold ``min_chunks`` chunks.

    Each article gets a title, a dateline, 5-12 paragraphs drawn from all seeds and one sentence of its
    own, so no two files share a hash and chunking sees real news prose. Returns the chunk count.
    """
    from .chunk import chunk_article
    from .ingest import iter_paths, load_article, parse_article

    paragraphs = []
    for path in iter_paths([seed_dir]):
        a = load_article(path, settings.max_file_bytes)
        paragraphs += [a.text[b.start:b.end] for b in a.blocks if len(a.text[b.start:b.end]) > 80]
    if len(paragraphs) < 5:
        raise RagError(f"{seed_dir}: too few article paragraphs to build a synthetic corpus")
    rng = random.Random(seed)
    dest.mkdir(parents=True, exist_ok=True)
    chunks = i = 0
    while chunks < min_chunks:
        body = rng.sample(paragraphs, min(len(paragraphs), rng.randint(5, 12)))
        body.insert(rng.randrange(len(body) + 1), f"This is briefing number {i} of the synthetic benchmark "
                                                  f"corpus, filed under code {rng.getrandbits(40):x}.")
        text = (f"Synthetic briefing {i} on technology and trade\n\n2024-03-{1 + i % 28:02d} Bench Desk\n\n"
                + "\n\n".join(body) + "\n")
        (dest / f"syn_{i:05d}.txt").write_text(text, encoding="utf-8")
        chunks += len(chunk_article(parse_article(text, f"syn_{i:05d}.txt"), settings.chunk_size,
                                    settings.chunk_overlap))
        i += 1
    return chunks


def bench_ingest(ctx: _Context) -> dict[str, Any]:
    """Chunks per second of ``build_index`` (read, clean, chunk, embed, write) on a fresh index."""
    from .chunk import chunk_article
    from .ingest import iter_paths, load_article
    from .store import build_index

    corpus = ctx.work / "synthetic"
    n_chunks = synthesize_corpus(ctx.settings.corpus, corpus, ctx.plan.corpus_chunks, ctx.settings)
    t = time.perf_counter()
    embedder = ctx.embedder
    load_s = time.perf_counter() - t
    files = list(iter_paths([corpus]))
    parse_rates, embed_rates, total_rates = [], [], []
    for run in range(ctx.plan.ingest_runs):
        t = time.perf_counter()
        texts = [c.text for f in files for c in chunk_article(load_article(f), ctx.settings.chunk_size,
                                                               ctx.settings.chunk_overlap)]
        parse_rates.append(len(texts) / (time.perf_counter() - t))
        t = time.perf_counter()
        embedder.embed(texts)
        embed_rates.append(len(texts) / (time.perf_counter() - t))
        s = ctx.settings.replace(index_dir=ctx.work / f"ingest-index-{run}")
        report = build_index([corpus], s, embedder)
        total_rates.append(report.total_chunks / report.seconds)
        shutil.rmtree(s.index_dir, ignore_errors=True)
        ctx.echo(f"  run {run + 1}: {report.total_chunks} chunks in {report.seconds:.1f}s "
                 f"({total_rates[-1]:.1f} chunks/s)")
    return {"articles": len(files), "chunks": n_chunks, "runs": ctx.plan.ingest_runs,
            "embedder": ctx.settings.embedder, "embedder_load_s": round(load_s, 2),
            "index_chunks_per_s": _r(statistics.median(total_rates)),
            "parse_chunk_per_s": _r(statistics.median(parse_rates)),
            "embed_chunks_per_s": _r(statistics.median(embed_rates)),
            "all_runs_chunks_per_s": [_r(x) for x in total_rates]}


# -- retrieval scaling -------------------------------------------------------------------------------

def synthetic_vectors(n: int, dim: int = 384, seed: int = 0) -> np.ndarray:
    """Unit vectors from a two-level Gaussian mixture: topics, then stories of ~20 vectors per topic.

    Tuned to look like MiniLM neighbourhoods of news chunks: a query's 10th neighbour has cosine
    ~0.46, its 100th ~0.28, a random pair ~0.01. Stories of one topic overlap, so the ten nearest
    neighbours are not one well-separated blob (100-vector blobs put all of them in one IVF list
    and gave recall 1.0 at any nprobe, which says nothing).
    """
    rng = np.random.default_rng(seed)
    n_topics = max(8, n // 20_000)
    n_stories = max(16, n // 20)
    topics = _unit(rng.standard_normal((n_topics, dim), dtype=np.float32))
    stories = _unit(0.6 * topics[rng.integers(0, n_topics, n_stories)]
                    + 0.8 * _unit(rng.standard_normal((n_stories, dim), dtype=np.float32)))
    spread = rng.uniform(0.75, 1.25, n_stories).astype(np.float32)
    labels = rng.integers(0, n_stories, n)
    x = np.empty((n, dim), np.float32)
    for s in range(0, n, 100_000):  # in blocks: the noise for 1M x 384 at once would need another 1.5 GB
        e = min(n, s + 100_000)
        noise = rng.standard_normal((e - s, dim), dtype=np.float32) / np.float32(np.sqrt(dim))
        x[s:e] = stories[labels[s:e]] + noise * spread[labels[s:e], None]
    return _unit(x, inplace=True)


def near_queries(x: np.ndarray, n: int, seed: int = 1) -> np.ndarray:
    """Queries near stored vectors (a paraphrase of an indexed passage), not copies of them."""
    rng = np.random.default_rng(seed)
    q = x[rng.integers(0, len(x), n)]
    return _unit(q + rng.standard_normal(q.shape, dtype=np.float32) * np.float32(0.5 / np.sqrt(x.shape[1])))


def _unit(x: np.ndarray, inplace: bool = False) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if inplace:
        x /= norms
        return x
    return x / norms


def search_latencies(index: Any, queries: np.ndarray, k: int = 10) -> list[float]:
    """Seconds per single-query search: the assistant asks one question at a time."""
    out = []
    for q in queries:
        t = time.perf_counter()
        index.search(q[None, :], k)
        out.append(time.perf_counter() - t)
    return out


def recall_at_k(index: Any, queries: np.ndarray, truth: np.ndarray, k: int = 10) -> float:
    _, ids = index.search(queries, k)
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(ids, truth, strict=True)]))


def _latency(index: Any, queries: np.ndarray, runs: int) -> dict[str, float]:
    p50s, p95s = [], []
    for _ in range(runs):
        lat = search_latencies(index, queries)
        p50s.append(float(np.percentile(lat, 50)) * 1e3)
        p95s.append(float(np.percentile(lat, 95)) * 1e3)
    return {"p50_ms": _r(statistics.median(p50s)), "p95_ms": _r(statistics.median(p95s))}


def bench_retrieval(ctx: _Context) -> dict[str, Any]:
    """Single-query latency and recall@10 of each index kind the store can build, at each size."""
    import faiss

    from .store import APPROXIMATE_KINDS, auto_index_kind, make_faiss_index, tune_for_search

    faiss.omp_set_num_threads(2)
    plan = ctx.plan
    sizes = []
    for n in plan.vector_sizes:
        t = time.perf_counter()
        x = synthetic_vectors(n)
        q = near_queries(x, plan.queries)
        entry: dict[str, Any] = {"vectors": n, "dim": x.shape[1], "generate_s": _r(time.perf_counter() - t),
                                 "auto_kind": auto_index_kind(n), "kinds": {}}
        for kind in ("flat", *APPROXIMATE_KINDS):
            if kind == "hnsw" and n > plan.hnsw_max_vectors:
                entry["kinds"][kind] = {"skipped": f"above hnsw_max_vectors={plan.hnsw_max_vectors}"}
                continue
            t = time.perf_counter()
            index, _ = make_faiss_index(x, kind)
            build_s = time.perf_counter() - t
            if kind == "flat":
                _, truth = index.search(q, 10)
            params = tune_for_search(index)
            row: dict[str, Any] = {"build_s": _r(build_s), **params, **_latency(index, q, plan.search_runs),
                                   "recall_at_10": round(recall_at_k(index, q, truth), 4)}
            if kind != "flat":
                row["sweep"] = _sweep(index, q, truth)
                tune_for_search(index)
            entry["kinds"][kind] = row
            ctx.echo(f"  {n:>9,} vectors {kind:5}: build {build_s:6.1f}s  p50 {row['p50_ms']:.3f} ms  "
                     f"p95 {row['p95_ms']:.3f} ms  recall@10 {row['recall_at_10']:.3f}")
            del index
        sizes.append(entry)
        del x
    return {"threads": 2, "queries_per_run": plan.queries, "runs": plan.search_runs, "k": 10,
            "sizes": sizes}


def _sweep(index: Any, q: np.ndarray, truth: np.ndarray) -> list[dict[str, float]]:
    """Latency and recall for other search-time settings: what the store's choice trades against."""
    values: tuple[int, ...]
    if hasattr(index, "hnsw"):
        param, values = "efSearch", (16, 32, 64, 128, 256)
    else:
        param, values = "nprobe", (4, 8, 16, 32, 64, 128)
    rows = []
    for v in values:
        if param == "efSearch":
            index.hnsw.efSearch = v
        else:
            index.nprobe = v
        rows.append({param: v, "p50_ms": _r(float(np.percentile(search_latencies(index, q), 50)) * 1e3),
                     "recall_at_10": round(recall_at_k(index, q, truth), 4)})
    return rows


# -- answering: ours vs llama.cpp directly vs a naive pipeline ---------------------------------------

def bench_answer(ctx: _Context) -> dict[str, Any]:
    """Time to first token and tokens/s of a warm ``Assistant``, of the same prompt sent to llama.cpp
    directly, and of a naive 1000-character-chunk pipeline with the same model.

    Before each measured call the model's key/value cache is reset to "fixed prompt prefix + a dummy
    question", so every call reuses its cached prefix (system prompt, examples) and nothing else.
    Questions are distinct and the answer cache is cleared, so ours really retrieves and generates.
    """
    from .answer import Assistant
    from .prompt import build_messages

    s = ctx.seed_settings
    assistant = Assistant(s, embedder=ctx.embedder)
    assistant.load()
    llama = getattr(assistant.llm, "llama", None)
    if llama is None:
        raise RagError(f"the answer bench needs the local llama backend, not {s.backend!r}")
    recorder = _Recorder(assistant.llm)
    assistant._llm = recorder
    naive = _NaivePipeline(s.corpus, ctx.embedder, llama)
    ours_prime, naive_prime = build_messages("warm up", []), naive.messages("warm up", [])
    sampling = {"temperature": s.temperature, "top_k": 1 if s.temperature == 0 else 40, "seed": s.seed}
    rows = []
    for i, question in enumerate(QUESTIONS[:ctx.plan.questions]):
        _prime(llama, ours_prime)
        assistant._cache.clear()
        ours = _stream(assistant, question)
        messages, max_tokens, stop = recorder.last  # exactly what Assistant.stream sent
        # Prompt-prefix reuse: the same question right after, answer cache cleared ...
        assistant._cache.clear()
        repeat = _stream(assistant, question)
        # ... and the answer cache: the same question against the unchanged index.
        cached = _stream(assistant, question)
        _prime(llama, ours_prime)
        direct = _direct(llama, messages, {**sampling, "max_tokens": max_tokens, "stop": stop or []})
        _prime(llama, naive_prime)
        baseline = naive.run(question, {**sampling, "max_tokens": max_tokens})
        ours["uncached_tokens"] = _count(llama, messages[-1]["content"])
        row = {"question": question, "ours": ours, "direct": direct, "naive": baseline,
               "repeat_ttft_s": repeat["ttft_s"], "cached_ttft_s": cached["ttft_s"],
               "overhead_ratio": ours["ttft_s"] / direct["ttft_s"],
               "vs_naive_ratio": ours["ttft_s"] / baseline["ttft_s"]}
        rows.append(_round_all(row))
        ctx.echo(f"  q{i + 1}: ours {ours['ttft_s']:.2f}s ({ours['prompt_tokens']} prompt tokens), direct "
                 f"{direct['ttft_s']:.2f}s, naive {baseline['ttft_s']:.2f}s "
                 f"({baseline['prompt_tokens']} tokens); again {repeat['ttft_s']:.3f}s, "
                 f"cached {cached['ttft_s'] * 1e3:.1f} ms")

    def med(key: str, sub: str | None = None) -> float:
        return _r(statistics.median(float(r[key][sub] if sub else r[key]) for r in rows))

    follow_ups: list[dict[str, Any]] = []  # a question, then a follow-up that needs rewriting
    follow_ttft: list[float] = []  # from the follow-up's arrival to its first token, rewrite included
    for first_q, follow_q in FOLLOW_UPS[:max(1, ctx.plan.questions // 2)]:
        assistant._cache.clear()
        first_answer = assistant.ask(first_q)
        follow = assistant.ask(follow_q, history=[first_q])
        follow_ttft.append(follow.timings["first_token_s"])
        follow_ups.append({"question": first_q, "follow_up": follow_q, "rewritten": follow.rewritten_question,
                           "first_ttft_s": _r(first_answer.timings["first_token_s"]),
                           "follow_up_ttft_s": _r(follow.timings["first_token_s"])})
        ctx.echo(f"  follow-up {follow_q!r} -> {follow.rewritten_question!r}: first token after "
                 f"{follow.timings['first_token_s']:.2f}s (rewrite included)")

    measures = ("ttft_s", "tokens_per_s", "prompt_tokens", "uncached_tokens", "completion_tokens")
    return {
        "model": recorder.name, "questions": len(rows),
        "load": {k: _r(v) for k, v in assistant.load_timings.items()},
        **{who: {m: med(who, m) for m in measures} for who in ("ours", "direct", "naive")},
        "naive_pipeline": {"chunk_size": 1000, "chunk_overlap": 200, "top_k": 4},
        "overhead_ratio": med("overhead_ratio"), "overhead_target": 1.10,
        "vs_naive_ratio": med("vs_naive_ratio"), "vs_naive_target": 0.5,
        "repeat_ttft_s": med("repeat_ttft_s"), "cached_ttft_s": med("cached_ttft_s"),
        "follow_up_ttft_s": _r(statistics.median(follow_ttft)),
        "follow_ups": follow_ups,
        "per_question": rows,
    }


class _Recorder:
    """Passes calls through to the real LLM and keeps the last request, so the direct call gets the
    identical prompt and limits. It returns the LLM's own generator: no cost per token."""

    def __init__(self, llm: Any) -> None:
        self.llm, self.name = llm, llm.name
        self.last: tuple[list[dict[str, str]], int, list[str] | None] = ([], 0, None)

    def count_tokens(self, text: str) -> int:
        return int(self.llm.count_tokens(text))

    def stream_chat(self, messages: list[dict[str, str]], max_tokens: int, stop: list[str] | None = None
                    ) -> Any:
        self.last = (messages, max_tokens, stop)
        return self.llm.stream_chat(messages, max_tokens, stop=stop)


def _stream(assistant: Any, question: str) -> dict[str, Any]:
    """One answer through ``Assistant.stream``, timed from the question to its first and last token."""
    from .answer import Token
    from .records import Answer

    t0 = time.perf_counter()
    first = last = None
    answer = None
    for ev in assistant.stream(question):
        if isinstance(ev, Token):
            last = time.perf_counter()
            first = first or last
        elif isinstance(ev, Answer):
            answer = ev
    assert answer is not None
    end = time.perf_counter()
    return {"ttft_s": (first or end) - t0, "tokens_per_s": _rate(answer.completion_tokens, first, last),
            "prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.completion_tokens,
            "answer": answer.answer, **{k: v for k, v in answer.timings.items() if k != "first_token_s"}}


def _direct(llama: Any, messages: list[dict[str, str]], params: dict[str, Any]) -> dict[str, Any]:
    """llama-cpp-python called directly with the Assistant's sampling settings, streamed."""
    t0 = time.perf_counter()
    first = last = None
    pieces = []
    for part in llama.create_chat_completion(messages=messages, stream=True, **params):
        delta = part["choices"][0].get("delta", {}).get("content")
        if delta:
            last = time.perf_counter()
            first = first or last
            pieces.append(delta)
    text = "".join(pieces).strip()
    n = _count(llama, text) if text else 0
    return {"ttft_s": (first or time.perf_counter()) - t0, "tokens_per_s": _rate(n, first, last),
            "prompt_tokens": _prompt_tokens(llama, messages),
            "uncached_tokens": _count(llama, messages[-1]["content"]), "completion_tokens": n, "answer": text}


def _prime(llama: Any, messages: list[dict[str, str]]) -> None:
    """Leave exactly this prompt in the key/value cache (a one-token completion)."""
    for _ in llama.create_chat_completion(messages=messages, max_tokens=1, temperature=0.0, stream=True):
        pass


def _count(llama: Any, text: str) -> int:
    return len(llama.tokenize(text.encode("utf-8"), add_bos=False, special=True))


def _prompt_tokens(llama: Any, messages: list[dict[str, str]]) -> int:
    """Counted as ``Assistant`` counts them: the messages' tokens plus ~12 for the chat template."""
    return sum(_count(llama, m["content"]) for m in messages) + 12


def _rate(tokens: int, first: float | None, last: float | None) -> float:
    """Generation speed after the first token (which is prompt processing, reported as TTFT)."""
    if first is None or last is None or tokens < 2 or last <= first:
        return 0.0
    return (tokens - 1) / (last - first)


class _NaivePipeline:
    """The baseline: raw files cut into 1000-character chunks, top-4 dense chunks stuffed into one prompt."""

    def __init__(self, corpus: Path, embedder: Any, llama: Any) -> None:
        import faiss
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        from .ingest import iter_paths, read_text

        split = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)
        self.chunks = [c for p in iter_paths([corpus]) for c in split.split_text(read_text(p)[0])]
        self.embedder, self.llama = embedder, llama
        self.index = faiss.IndexFlatIP(embedder.dim)
        self.index.add(embedder.embed(self.chunks))

    @staticmethod
    def messages(question: str, chunks: list[str]) -> list[dict[str, str]]:
        context = "\n\n".join(chunks)
        return [{"role": "system", "content": NAIVE_SYSTEM},
                {"role": "user", "content": f"Context:\n{context}\n\nQuestion: {question}"}]

    def run(self, question: str, params: dict[str, Any]) -> dict[str, Any]:
        t0 = time.perf_counter()
        _, ids = self.index.search(self.embedder.embed([question]), 4)
        messages = self.messages(question, [self.chunks[i] for i in ids[0] if i >= 0])
        retrieve_s = time.perf_counter() - t0
        row = _direct(self.llama, messages, params)
        row["ttft_s"] += retrieve_s
        row["retrieve_s"] = retrieve_s
        return row


# -- cold start and memory (fresh processes) ----------------------------------------------------------

def bench_cold_start(ctx: _Context) -> dict[str, Any]:
    """``rag ask --json`` in a fresh process, split by its ``RAG_TRACE_STARTUP`` line into imports (process
    start to command body), index, embedder and LLM loads (the LLM loads in parallel), and answering."""
    s = ctx.seed_settings
    cmd = [*_rag_command(), "ask", QUESTIONS[0], "--json"]
    runs = []
    for r in range(ctx.plan.cold_runs):
        spawned = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=_child_env(s, RAG_TRACE_STARTUP="1"),
                              timeout=900, check=False)
        wall = time.time() - spawned
        if proc.returncode != 0:
            raise RagError(f"rag ask exited with {proc.returncode}: {proc.stderr.strip()[-500:]}")
        line = next(ln for ln in proc.stderr.splitlines() if ln.startswith("rag-startup "))
        trace = json.loads(line.removeprefix("rag-startup "))
        answer = json.loads(proc.stdout)
        row = {"wall_s": wall, "imports_s": trace.pop("imported_at") - spawned, **trace,
               "answer_first_token_s": answer["timings"]["first_token_s"]}
        row["exit_s"] = wall - row["imports_s"] - row["load_s"] - row["answer_s"]
        runs.append(_round_all(row))
        ctx.echo(f"  run {r + 1}: {wall:.1f}s (imports {row['imports_s']:.1f}, load {row['load_s']:.1f}: "
                 f"embedder {row['embedder_s']:.1f} ‖ llm {row['llm_s']:.1f}; answer {row['answer_s']:.1f})")
    summary = {k: _r(statistics.median(r[k] for r in runs)) for k in runs[0]}
    return {**summary, "target_s": 15.0, "runs": runs, "command": "rag ask QUESTION --json"}


def bench_memory(ctx: _Context) -> dict[str, Any]:
    """Peak RSS (with children) of ``rag ui`` answering questions over HTTP; without the UI package, of
    a process that loads an Assistant and answers the same questions."""
    import importlib.util

    s = ctx.seed_settings
    questions = QUESTIONS[len(QUESTIONS) - ctx.plan.memory_questions:]
    errors = []
    if importlib.util.find_spec("ui.app") is not None:
        try:
            return _memory_ui(s, questions, ctx)
        except Exception as e:  # noqa: BLE001 - the UI is optional here: fall back to the library
            errors.append(f"ui: {type(e).__name__}: {e}")
            ctx.echo(f"  rag ui could not be measured ({e}); measuring an Assistant process instead")
    script = ("import sys; from rag.answer import Assistant; from rag.settings import Settings; "
              "a = Assistant(Settings.load()); a.warm_up(); print('ready', flush=True); "
              "[a.ask(q) for q in sys.argv[1:]]")
    with _Sampled([sys.executable, "-c", script, *questions], _child_env(s), ctx.work / "memory.log") as proc:
        ready_rss = proc.wait_for_line("ready", timeout=600)
        if proc.popen.wait(timeout=1800) != 0:
            raise RagError(f"the assistant process failed: {proc.log_tail()}")
    return {"mode": "assistant-process", "questions": len(questions), "peak_rss_mb": _r(proc.peak / 2**20),
            "ready_rss_mb": _r(ready_rss / 2**20), "errors": errors}


def _memory_ui(s: Settings, questions: tuple[str, ...], ctx: _Context) -> dict[str, Any]:
    import httpx

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with _Sampled([*_rag_command(), "ui", "--port", str(port)], _child_env(s), ctx.work / "ui.log") as proc:
        deadline = time.monotonic() + 600
        while True:
            if proc.popen.poll() is not None:
                raise RagError(f"rag ui exited with {proc.popen.returncode}: {proc.log_tail()}")
            try:
                if httpx.get(f"{base}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RagError("rag ui did not answer on /v1/models within 600 s")
            time.sleep(0.5)
        ready_rss = proc.current
        for q in questions:
            r = httpx.post(f"{base}/v1/chat/completions", timeout=600,
                           json={"model": s.model, "messages": [{"role": "user", "content": q}]})
            if r.status_code != 200:
                raise RagError(f"POST /v1/chat/completions answered {r.status_code}: {r.text[:200]}")
    return {"mode": "ui", "questions": len(questions), "peak_rss_mb": _r(proc.peak / 2**20),
            "ready_rss_mb": _r(ready_rss / 2**20)}


class _Sampled:
    """A child process (in its own session) whose RSS, children included, is sampled every 0.1 s."""

    def __init__(self, cmd: list[str], env: dict[str, str], log: Path) -> None:
        self.cmd, self.env, self.log = cmd, env, log
        self.peak = self.current = 0
        self._done = threading.Event()

    def __enter__(self) -> _Sampled:
        self._log = open(self.log, "w")  # noqa: SIM115 - closed in __exit__
        self.popen = subprocess.Popen(self.cmd, stdout=self._log, stderr=subprocess.STDOUT, env=self.env,
                                      start_new_session=True)
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.popen.pid)
        except psutil.NoSuchProcess:
            return
        while not self._done.is_set():
            try:
                total = root.memory_info().rss
                for child in root.children(recursive=True):
                    with contextlib.suppress(psutil.NoSuchProcess):
                        total += child.memory_info().rss
            except psutil.NoSuchProcess:
                return
            self.current = total
            self.peak = max(self.peak, total)
            self._done.wait(0.1)

    def wait_for_line(self, text: str, timeout: float) -> int:
        """Wait until the child prints ``text``; return the RSS at that moment."""
        deadline = time.monotonic() + timeout
        while text not in self.log.read_text(errors="replace"):
            if self.popen.poll() is not None or time.monotonic() > deadline:
                raise RagError(f"the child process never printed {text!r}: {self.log_tail()}")
            time.sleep(0.2)
        return self.current

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace").strip()[-500:]

    def __exit__(self, *exc: object) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._done.set()
        self._thread.join(timeout=5)
        self._log.close()


def _rag_command() -> list[str]:
    script = Path(sys.executable).with_name("rag")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "rag.cli"]


def _child_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment for a child ``rag``: every setting as ``RAG_*``, so it sees what the bench sees."""
    from dataclasses import fields

    env = {**os.environ, "HF_HUB_OFFLINE": "1", **extra}
    for f in fields(Settings):
        env[f"RAG_{f.name.upper()}"] = str(getattr(settings, f.name))
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- output ------------------------------------------------------------------------------------------

def write_results(out: Path, results: dict[str, Any]) -> None:
    """Write bench.json and bench.md atomically (a crash never leaves half a file)."""
    for name, text in (("bench.json", json.dumps(results, indent=1, ensure_ascii=False)),
                       ("bench.md", render_markdown(results))):
        write_atomic(out / name, text + "\n")


def render_markdown(results: dict[str, Any]) -> str:
    """A short human summary of bench.json; the JSON holds every run."""
    m = results["meta"]
    lines = [f"# rag bench ({m['plan']['name']})", "",
             f"{m['started']} · {m['cpus']} CPUs, {m['memory_gib']} GiB · Python {m['python']} · "
             f"load average {m['load_avg_start']} at start, {m.get('load_avg_end', '?')} at end · "
             f"model {m['settings']['model']}, embedder {m['settings']['embedder']}", ""]
    for name, part in results.items():
        if isinstance(part, dict) and "error" in part:
            lines += [f"**{name} failed:** {part['error']}", ""]
    ing = results.get("ingest", {})
    if "index_chunks_per_s" in ing:
        lines += ["## Ingestion", "",
                  f"{ing['chunks']} chunks from {ing['articles']} synthetic articles, median of "
                  f"{ing['runs']} runs: **{ing['index_chunks_per_s']} chunks/s** end to end (read, clean, "
                  f"chunk, embed, write); parse+chunk alone {ing['parse_chunk_per_s']} chunks/s, embedding "
                  f"alone {ing['embed_chunks_per_s']} chunks/s.", ""]
    ret = results.get("retrieval", {})
    if "sizes" in ret:
        lines += [f"## Retrieval (single query, k=10, {ret['threads']} threads, median of {ret['runs']} × "
                  f"{ret['queries_per_run']} queries)", "",
                  "| vectors | index | params | build s | p50 ms | p95 ms | recall@10 | auto picks |",
                  "| ---: | --- | --- | ---: | ---: | ---: | ---: | --- |"]
        for size in ret["sizes"]:
            for kind, row in size["kinds"].items():
                if "skipped" in row:
                    continue
                params = ", ".join(f"{k}={v}" for k, v in row.items() if k in ("efSearch", "nlist", "nprobe"))
                pick = "✓" if kind == size["auto_kind"] else ""
                lines.append(f"| {size['vectors']:,} | {kind} | {params} | {row['build_s']} | "
                             f"{row['p50_ms']} | {row['p95_ms']} | {row['recall_at_10']} | {pick} |")
        lines.append("")
    ans = results.get("answer", {})
    if "ours" in ans:
        lines += [f"## Answering ({ans['model']}, warm, median of {ans['questions']} questions)", "",
                  "| pipeline | first token s | generation tokens/s | prompt tokens | of them not cached |",
                  "| --- | ---: | ---: | ---: | ---: |"]
        for who, label in (("ours", "rag (Assistant.stream)"), ("direct", "llama-cpp-python, same prompt"),
                           ("naive", "naive: 4 × 1000-char chunks")):
            p = ans[who]
            lines.append(f"| {label} | {p['ttft_s']} | {p['tokens_per_s']} | {p['prompt_tokens']} | "
                         f"{p['uncached_tokens']} |")
        lines += ["", f"- overhead ratio rag/direct TTFT: **{ans['overhead_ratio']}** (target ≤ "
                  f"{ans['overhead_target']})",
                  f"- rag/naive TTFT: **{ans['vs_naive_ratio']}** (target ≤ {ans['vs_naive_target']})",
                  f"- same question again (prompt prefix reused, answer cache cleared): "
                  f"{ans['repeat_ttft_s']} s; from the answer cache: {ans['cached_ttft_s']} s",
                  f"- a follow-up that is rewritten first (\"Who makes it?\"), to its first token: "
                  f"{ans.get('follow_up_ttft_s', '?')} s", ""]
    cold = results.get("cold_start", {})
    if "wall_s" in cold:
        lines += ["## Cold start (`rag ask --json` in a fresh process)", "",
                  f"**{cold['wall_s']} s** (target < {cold['target_s']} s), median of {len(cold['runs'])}: "
                  f"imports {cold['imports_s']} s, load {cold['load_s']} s (index {cold.get('index_s', 0)} "
                  f"s; embedder {cold['embedder_s']} s in parallel with LLM {cold['llm_s']} s), answer "
                  f"{cold['answer_s']} s, exit {cold['exit_s']} s.", ""]
    mem = results.get("memory", {})
    if "peak_rss_mb" in mem:
        lines += ["## Memory", "", f"Peak RSS with children ({mem['mode']}, {mem['questions']} questions): "
                  f"**{mem['peak_rss_mb']} MB** (ready: {mem['ready_rss_mb']} MB).", ""]
    from .bench_store import store_markdown

    lines += store_markdown(results.get("store", {}))
    return "\n".join(lines)


def _bench_store(ctx: _Context) -> dict[str, Any]:
    from .bench_store import bench_store  # the folder and Milvus stores at 10k-1M chunks

    return bench_store(ctx)


def _meta(settings: Settings, plan: Plan) -> dict[str, Any]:
    import psutil

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                timeout=5, check=False).stdout.strip()
    except OSError:
        commit = ""
    return {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "commit": commit,
            "python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "memory_gib": round(psutil.virtual_memory().total / 2**30, 1), "load_avg_start": _load_avg(),
            "plan": asdict(plan),
            "settings": {k: str(getattr(settings, k)) for k in (
                "model", "embedder", "chunk_size", "chunk_overlap", "index_type", "n_threads", "n_ctx",
                "context_tokens", "k", "max_tokens")}}


def _load_avg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _r(x: float) -> float:
    return round(float(x), 4 if abs(x) < 1 else 2)


def _round_all(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (_r(v) if isinstance(v, float) else _round_all(v) if isinstance(v, dict) else v)
            for k, v in d.items()}
