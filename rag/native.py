"""llama.cpp on this CPU: the load parameters that avoid a known crash, and a child-process probe.

A natively built llama.cpp on a CPU with AMX (Sapphire Rapids and later Xeons) repacks Q4_K weights into
its AMX buffer type and segfaults on the first decode (llama.cpp issue 20824). Loading the model with
``llama_model_params.use_extra_bufts = False`` avoids it; ``Llama()`` does not take that field as a
keyword, so :func:`apply` sets it on the defaults llama-cpp-python starts from. ``llama_repack`` in
``Settings`` says when: ``off`` (the default, on every CPU), ``on``, or ``auto`` (off on CPUs that report
AMX, on elsewhere).

A crash by signal cannot be caught inside the process, so before the first load of a model with a given
llama.cpp build, CPU and parameters, one short generation runs in a child process (:func:`probe`). Its
success is cached; a crash becomes a one-line :class:`ModelError` that names the cause and the way out.

Run as ``python -m rag.native serve ARGS`` it starts ``llama_cpp.server`` with the same parameters.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from .errors import ModelError
from .files import write_atomic
from .settings import Settings

REPACK_CHOICES = ("auto", "on", "off")
_PATCH_LOCK = threading.Lock()


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("flags"):
                return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return "unknown CPU"


def has_amx(flags: frozenset[str] | None = None) -> bool:
    return any(f.startswith("amx") for f in (cpu_flags() if flags is None else flags))


def use_extra_bufts(settings: Settings, flags: frozenset[str] | None = None) -> bool:
    """Whether llama.cpp may repack weights into extra buffer types (AMX, CPU_REPACK) on this CPU."""
    choice = settings.llama_repack
    if choice not in REPACK_CHOICES:
        raise ModelError(f"llama_repack={choice!r} is not one of {', '.join(REPACK_CHOICES)}")
    if choice == "auto":
        return not has_amx(flags)
    return choice == "on"


def apply(extra_bufts: bool) -> None:
    """Make every later ``Llama(...)`` in this process load with ``use_extra_bufts = extra_bufts``."""
    import llama_cpp.llama_cpp as lib

    with _PATCH_LOCK:
        original = getattr(lib.llama_model_default_params, "_rag_original", lib.llama_model_default_params)

        def defaults() -> Any:
            params = original()
            params.use_extra_bufts = extra_bufts
            return params

        defaults._rag_original = original  # type: ignore[attr-defined]
        lib.llama_model_default_params = defaults


def build_id() -> str:
    """The llama-cpp-python version and the identity (size, mtime) of its compiled library."""
    import importlib.util

    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.origin:
        raise ModelError("llama-cpp-python is not installed; run ./run.sh to set up")
    lib_dir = Path(spec.origin).parent / "lib"
    libs = sorted(lib_dir.glob("*.so*")) or sorted(lib_dir.glob("*"))
    parts = [f"{p.name}:{p.stat().st_size}:{int(p.stat().st_mtime)}" for p in libs]
    version = "?"
    try:
        from importlib.metadata import version as _v

        version = _v("llama_cpp_python")
    except Exception:  # noqa: BLE001 - the version only names the build
        pass
    return version + "|" + ",".join(parts)


def probe_key(model: Path, extra_bufts: bool) -> str:
    try:
        size = model.stat().st_size
    except OSError:
        size = -1
    blob = json.dumps([build_id(), cpu_name(), sorted(cpu_flags()), str(model), size, extra_bufts])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def probe(settings: Settings, model: Path, *, force: bool = False, timeout: float = 300.0) -> dict[str, Any]:
    """Run one short generation with ``model`` in a child process, once per build, CPU and parameters.

    Returns the cached record ``{"ok": bool, ...}``; raises :class:`ModelError` with one line when the
    child died by a signal or failed.
    """
    extra = use_extra_bufts(settings)
    path = settings.cache_dir / "probes" / f"{probe_key(model, extra)}.json"
    if not force and path.is_file():
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            record = None
        if isinstance(record, dict) and "ok" in record:
            return _verdict(record, model)
    cmd = [sys.executable, "-m", "rag.native", "probe", str(model), "--threads", str(settings.n_threads),
           "--extra-bufts", "1" if extra else "0"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise ModelError(f"the llama.cpp check of {model} did not finish in {timeout:.0f} s") from None
    record = {"ok": done.returncode == 0, "returncode": done.returncode, "extra_bufts": extra,
              "cpu": cpu_name(), "amx": has_amx(), "detail": (done.stderr or "").strip()[-400:]}
    if record["ok"]:  # only success is cached: a fix (a setting, a rebuild) is picked up at once
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(record))
    return _verdict(record, model)


def _verdict(record: dict[str, Any], model: Path) -> dict[str, Any]:
    if record["ok"]:
        return record
    code = int(record.get("returncode", 1))
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
        hint = ("AMX weight repacking, llama.cpp issue 20824: set RAG_LLAMA_REPACK=off (already off: "
                "rebuild with CMAKE_ARGS=-DGGML_NATIVE=OFF, see README)"
                if record.get("extra_bufts") else
                "rebuild llama-cpp-python without native CPU features: see README, 'CPUs'")
        raise ModelError(f"llama.cpp crashed ({name}) running {model.name} on this CPU "
                         f"({record.get('cpu', '?')}); likely cause: {hint}")
    last = (record.get("detail") or "").strip().splitlines()[-1:] or [f"exit {code}"]
    raise ModelError(f"model file {model} could not be loaded ({last[0][:200]}); delete it and run ./run.sh "
                     "to reassemble it, or pass another --model")


def _probe_child(model: str, threads: int, extra_bufts: bool) -> None:
    apply(extra_bufts)
    from llama_cpp import Llama

    llm = Llama(model_path=model, n_ctx=512, n_threads=threads, n_batch=512, verbose=False)
    out = llm.create_chat_completion(messages=[{"role": "user", "content": "Say OK."}], max_tokens=4,
                                     temperature=0.0, top_k=1)
    print(json.dumps({"text": out["choices"][0]["message"]["content"]}))  # type: ignore[index]


def _serve(args: list[str]) -> None:
    """``llama_cpp.server`` with the load parameters of :func:`use_extra_bufts`."""
    extra = use_extra_bufts(Settings.load())
    apply(extra)
    print(f"rag.native: llama_cpp.server with use_extra_bufts={extra}", file=sys.stderr, flush=True)
    from llama_cpp.server.__main__ import main

    sys.argv = ["llama_cpp.server", *args]
    main()


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "serve":
        _serve(sys.argv[2:])
    elif len(sys.argv) >= 3 and sys.argv[1] == "probe":
        import argparse

        ap = argparse.ArgumentParser(prog="rag.native probe")
        ap.add_argument("model")
        ap.add_argument("--threads", type=int, default=2)
        ap.add_argument("--extra-bufts", type=int, choices=(0, 1), default=1)
        a = ap.parse_args(sys.argv[2:])
        _probe_child(a.model, a.threads, bool(a.extra_bufts))
    else:
        print("usage: python -m rag.native probe MODEL [--threads N] [--extra-bufts 0|1] | serve ARGS...",
              file=sys.stderr)
        sys.exit(2)
