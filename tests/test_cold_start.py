"""What a fresh process loads: the numpy MiniLM (same vectors as sentence-transformers, no torch), the
embedder only where dense search needs it, and the prompt prefix's llama.cpp state saved once and reused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rag.settings import Settings

ROOT = Path(__file__).resolve().parent.parent

TEXTS = [
    "Which chip powers Huawei's Mate 60?",
    "The Mate 60 Pro runs on the Kirin 9000S, made by SMIC on a 7-nanometre process.",
    "Stocks rose 11.4 per cent; the rally was the biggest in years.",
    "  padded   text with   spaces ",
    "x",
    "word " * 400,  # longer than max_seq_length (256 tokens): truncated the same way
]


def _child(code: str, cwd: Path, env_extra: dict[str, str] | None = None) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.real
def test_the_bundled_minilm_runs_in_numpy() -> None:
    from rag.embed import is_plain_bert, resolve_embedder_path

    path = resolve_embedder_path("all-MiniLM-L6-v2")
    assert is_plain_bert(path)
    assert is_plain_bert(ROOT) is False  # not a model folder: sentence-transformers handles the rest


@pytest.mark.real
@pytest.mark.slow
def test_numpy_minilm_gives_sentence_transformers_vectors() -> None:
    from rag.embed import BertEmbedder, SentenceTransformerEmbedder, resolve_embedder_path

    ours = BertEmbedder(resolve_embedder_path("all-MiniLM-L6-v2")).embed(TEXTS)
    theirs = SentenceTransformerEmbedder().embed(TEXTS)
    assert ours.shape == theirs.shape == (len(TEXTS), 384)
    assert np.abs(ours - theirs).max() < 1e-5
    # and the neighbours agree: the same nearest text for each text
    assert ((ours @ ours.T).argsort(1)[:, -2] == (theirs @ theirs.T).argsort(1)[:, -2]).all()


@pytest.mark.real
def test_search_and_answer_paths_do_not_import_torch(real_index, real_settings: Settings, tmp_path: Path) -> None:
    """Lexical search loads no embedder at all; dense search and evidence selection use the numpy one."""
    code = f"""
import json, sys
from rag.answer import Assistant
from rag.settings import Settings
a = Assistant(Settings().replace(index_dir={str(real_settings.index_dir)!r}))
lexical = [p.chunk.article for p in a.retriever.search("Kirin 9000S Mate 60", 3, mode="lexical")]
after_lexical = {{"embedder": a._embedder is not None, "torch": "torch" in sys.modules}}
hybrid = [p.chunk.article for p in a.retriever.search("Which chip powers Huawei's Mate 60?", 3)]
print(json.dumps({{"lexical": lexical, "after_lexical": after_lexical, "hybrid": hybrid,
                  "torch": "torch" in sys.modules, "st": "sentence_transformers" in sys.modules,
                  "kind": type(a.embedder).__name__}}))
"""
    out = _child(code, tmp_path)
    assert out["lexical"] and out["hybrid"]
    assert out["after_lexical"] == {"embedder": False, "torch": False}
    assert out["kind"] == "BertEmbedder"
    assert out["torch"] is False and out["st"] is False


# -- the prompt prefix's saved state ------------------------------------------------------------------------

QUESTION = [{"role": "user", "content": "Passages:\n[1] The Mate 60 runs on the Kirin 9000S chip.\n\n"
             "Question: Which chip powers the Mate 60?"}]


def _answer(llm, prefix: list[dict[str, str]]) -> str:  # type: ignore[no-untyped-def]
    return "".join(llm.stream_chat(prefix + QUESTION, max_tokens=24))


@pytest.mark.llm
def test_prefix_state_is_saved_once_reused_and_keyed_by_prompt_and_model(tmp_path: Path) -> None:
    import shutil

    from rag.llm import LlamaCppLLM, model_path
    from rag.prompt import build_messages

    small, big = (str(model_path(m)) for m in ("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"))
    s = Settings(cache_dir=tmp_path, model=big)
    probes = Settings().cache_dir / "probes"  # the child-process check, already passed in setup
    if probes.is_dir():
        shutil.copytree(probes, tmp_path / "probes")
    prefix = build_messages("warm up", [])
    fixed = prefix[:-1]  # system prompt and worked examples

    first = LlamaCppLLM(s)
    first.warm(prefix)
    assert first.prefix_state == "saved"
    files = sorted((tmp_path / "prefix").glob("*.kv"))
    assert len(files) == 1 and files[0].stat().st_size > 1_000_000
    saved_answer = _answer(first, fixed)
    written = files[0].stat().st_mtime_ns

    second = LlamaCppLLM(s)
    second.warm(prefix)
    assert second.prefix_state == "loaded"
    assert files[0].stat().st_mtime_ns == written  # reused, not rewritten
    assert second.llama.n_tokens > 300  # the system prompt and examples are in the cache
    assert _answer(second, fixed) == saved_answer  # same greedy answer as after evaluating the prefix

    # a changed prompt is a new key: evaluated and saved beside the old one
    changed = [{**prefix[0], "content": prefix[0]["content"] + " Be brief."}, *prefix[1:]]
    assert second.prefix_key(changed) != second.prefix_key(prefix)
    second.warm(changed)
    assert second.prefix_state == "saved"
    assert len(list((tmp_path / "prefix").glob("*.kv"))) == 2

    # an unreadable file is evaluated again, never trusted
    files[0].write_bytes(files[0].read_bytes()[:1000])
    third = LlamaCppLLM(s)
    third.warm(prefix)
    assert third.prefix_state == "saved"
    assert _answer(third, fixed) == saved_answer

    # another model file is another key (the key reads the file's path, size and mtime)
    before = third.prefix_key(prefix)
    third.path = Path(small)
    assert third.prefix_key(prefix) != before
