"""llama.cpp on every x86-64 CPU: the AMX workaround is in force wherever the model is loaded, and a
crash in the child-process probe becomes one line, not a dead process."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from rag import native
from rag.errors import ModelError
from rag.settings import Settings

AMX_CPU = frozenset({"avx2", "avx512f", "amx_int8", "amx_tile", "amx_bf16"})
AVX2_CPU = frozenset({"avx2", "fma"})


@pytest.mark.parametrize(("choice", "flags", "expected"), [
    ("auto", AMX_CPU, False), ("auto", AVX2_CPU, True), ("off", AVX2_CPU, False), ("on", AMX_CPU, True)])
def test_policy(choice: str, flags: frozenset[str], expected: bool) -> None:
    assert native.use_extra_bufts(Settings(llama_repack=choice), flags) is expected


def test_unknown_choice_is_a_clear_error() -> None:
    with pytest.raises(ModelError, match="llama_repack"):
        native.use_extra_bufts(Settings(llama_repack="maybe"), AVX2_CPU)


def test_apply_sets_the_field_on_the_defaults_llama_starts_from() -> None:
    import llama_cpp.llama_cpp as lib

    original = getattr(lib.llama_model_default_params, "_rag_original", lib.llama_model_default_params)
    try:
        native.apply(False)
        assert lib.llama_model_default_params().use_extra_bufts is False
        native.apply(True)  # applying again wraps the original, not the wrapper
        assert lib.llama_model_default_params().use_extra_bufts is True
        assert lib.llama_model_default_params._rag_original is original
    finally:
        lib.llama_model_default_params = original


def _crashed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, returncode: int, extra: bool) -> str:
    """The message of the probe's verdict on a child that ended with ``returncode``."""
    settings = Settings(cache_dir=tmp_path, llama_repack="on" if extra else "off")
    model = tmp_path / "m.gguf"
    tmp_path.mkdir(parents=True, exist_ok=True)
    model.write_bytes(b"x")

    class Done:
        def __init__(self) -> None:
            self.returncode, self.stderr = returncode, "Fatal Python error: Segmentation fault"

    monkeypatch.setattr(native.subprocess, "run", lambda *a, **k: Done())
    with pytest.raises(ModelError) as e:
        native.probe(settings, model)
    assert not list(tmp_path.glob("probes/*.json"))  # a failure is not cached: a fix is seen at once
    return str(e.value)


def test_a_segfault_in_the_probe_is_one_line_naming_cause_and_way_out(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    msg = _crashed(tmp_path, monkeypatch, -signal.SIGSEGV, extra=True)
    assert "\n" not in msg and "SIGSEGV" in msg and "RAG_LLAMA_REPACK=off" in msg
    msg = _crashed(tmp_path / "b", monkeypatch, -signal.SIGSEGV, extra=False)
    assert "GGML_NATIVE=OFF" in msg or "rebuild" in msg


@pytest.mark.real
@pytest.mark.llm
def test_real_probe_passes_and_is_cached(tmp_path: Path) -> None:
    from rag.llm import model_path

    settings = Settings(cache_dir=tmp_path)
    model = model_path("qwen2.5-coder-1.5b", Settings())
    record = native.probe(settings, model)
    assert record["ok"] and record["extra_bufts"] == native.use_extra_bufts(settings)
    assert native.probe(settings, model) == record  # the second call reads the cache


@pytest.mark.real
@pytest.mark.llm
def test_the_loaded_model_carries_the_policy(real_assistant) -> None:
    """The in-process model was loaded with the parameter the policy gives for this CPU."""
    llm = real_assistant.llm
    assert llm.llama.model_params.use_extra_bufts is native.use_extra_bufts(real_assistant.settings)
    assert llm.extra_bufts is native.use_extra_bufts(real_assistant.settings)
