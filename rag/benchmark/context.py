"""What the bench sections share: the plan, the context (settings, temp folder, seed index, embedder),
the questions asked, and rounding."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..settings import Settings

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


class Context:
    """What the sections share: settings, plan, a temp folder, and the seed index and embedder once built."""

    def __init__(self, settings: Settings, plan: Plan, work: Path, echo: Echo) -> None:
        self.settings, self.plan, self.work, self.echo = settings, plan, work, echo
        self._seed_settings: Settings | None = None

    @property
    def embedder(self) -> Any:
        from ..embed import get_embedder  # loaded once per process by get_embedder itself

        return get_embedder(self.settings)

    @property
    def seed_settings(self) -> Settings:
        """Settings whose index (in the temp folder) holds the seed articles, built with the real embedder."""
        if self._seed_settings is None:
            from ..store import build_index

            s = self.settings.replace(index_dir=self.work / "seed-index")
            build_index([self.settings.corpus], s, self.embedder)
            self._seed_settings = s
        return self._seed_settings


def rounded(x: float) -> float:
    return round(float(x), 4 if abs(x) < 1 else 2)


def round_all(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (rounded(v) if isinstance(v, float) else round_all(v) if isinstance(v, dict) else v)
            for k, v in d.items()}
