"""Shared fixtures: fakes for unit tests, and the real embedder / index / LLM loaded once per session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

from rag.settings import Settings  # noqa: E402

from .fakes import FakeLLM, HashEmbedder  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"


@pytest.fixture
def fake_embedder() -> HashEmbedder:
    return HashEmbedder()


@pytest.fixture
def fake_llm() -> FakeLLM:
    return FakeLLM()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings whose index lives in a temp folder, named for the fake embedder."""
    return Settings(index_dir=tmp_path / "index", embedder="fake-hash")


@pytest.fixture
def seeds_copy(tmp_path: Path) -> Path:
    dst = tmp_path / "corpus"
    shutil.copytree(SEEDS, dst)
    return dst


@pytest.fixture(scope="session")
def real_embedder():
    from rag.embed import get_embedder

    return get_embedder()


@pytest.fixture(scope="session")
def real_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(index_dir=tmp_path_factory.mktemp("real") / "index")


@pytest.fixture(scope="session")
def real_index(real_settings: Settings, real_embedder):
    """The seed articles indexed with the real embedding model into a real FAISS index."""
    from rag.store import IndexStore, build_index

    build_index([SEEDS], real_settings, real_embedder)
    return IndexStore.load(real_settings.index_dir, real_settings)


@pytest.fixture(scope="session")
def real_assistant(real_settings: Settings, real_index, real_embedder):
    """The assistant with the real index, embedder and default GGUF model (loaded once)."""
    from rag.answer import Assistant

    return Assistant(real_settings, store=real_index, embedder=real_embedder)
