"""What the UI and the HTTP API share: one ``Assistant`` per model, answer streaming, adding articles.

``Assistant.stream`` holds the assistant's re-entrant lock while it yields, so the whole stream must
run in one thread: a web server would otherwise resume it from different worker threads. ``astream``
runs it in a dedicated thread and hands its events to the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import threading
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path

from rag.answer import Assistant, Event, shared_assistant
from rag.errors import InputError, RagError
from rag.ingest import load_article
from rag.llm import installed_models
from rag.readers import SUFFIXES, formats
from rag.records import Article
from rag.settings import Settings
from rag.store import IndexReport, build_index

log = logging.getLogger(__name__)

UPLOAD_SUFFIXES = SUFFIXES  # every format rag.readers reads
_END = object()


@dataclass(frozen=True)
class Added:
    """An article added from an upload."""

    article: Article
    report: IndexReport

    def message(self) -> str:
        a = self.article
        if a.name in self.report.unchanged:
            return f"“{a.title}” ({a.name}) is already in the index, unchanged."
        verb = "Replaced" if a.name in self.report.updated else "Added"
        n = self.report.embedded_chunks
        return (f"{verb} “{a.title}” ({a.name}): {n} passage{'s' * (n != 1)} indexed; "
                f"{self.report.total_articles} articles are now searchable.")


class Service:
    """Assistants by model name (created on first use) over one index; the default one is given or shared."""

    def __init__(self, base: Settings | Assistant, *, assistants: dict[str, Assistant] | None = None) -> None:
        default = base if isinstance(base, Assistant) else shared_assistant(base)
        self.settings = default.settings
        self.default_model = self.settings.model
        self._assistants: dict[str, Assistant] = {self.default_model: default, **(assistants or {})}
        self._lock = threading.Lock()

    # -- models -------------------------------------------------------------------------------------------
    def models(self) -> list[str]:
        """The default model first, then the other installed bundled models."""
        names = [self.default_model] + [m for m in installed_models() if m != self.default_model]
        return names + [m for m in self._assistants if m not in names]

    def assistant(self, model: str | None = None) -> Assistant:
        """The assistant for ``model`` (default if empty); unknown names raise ``InputError``."""
        model = model or self.default_model
        with self._lock:
            if model not in self._assistants:
                if model not in self.models():
                    raise InputError(f"unknown model {model!r}; choose one of {', '.join(self.models())}")
                self._assistants[model] = shared_assistant(self.settings.replace(model=model))
            return self._assistants[model]

    # -- answering ----------------------------------------------------------------------------------------
    async def astream(self, question: str, *, model: str | None = None, k: int | None = None,
                      history: list[str] | None = None, stop: threading.Event | None = None
                      ) -> AsyncGenerator[Event, None]:
        """``Assistant.stream`` run in its own thread; closing this iterator (or ``stop``) stops it."""
        assistant = self.assistant(model)
        stop = stop or threading.Event()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()

        def put(item: object) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the event loop is gone: nobody is listening
                stop.set()

        def work() -> None:
            try:
                for event in assistant.stream(question, k=k, history=history, stop=stop):
                    put(event)
            except Exception as e:  # noqa: BLE001 - handed to the consumer, which re-raises it
                put(e)
            finally:
                put(_END)

        threading.Thread(target=work, name="rag-answer", daemon=True).start()
        try:
            while (item := await queue.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                yield item  # type: ignore[misc]
        finally:
            stop.set()  # a no-op once the answer is complete; otherwise the generation stops early

    # -- adding articles ----------------------------------------------------------------------------------
    @property
    def uploads_dir(self) -> Path:
        return self.settings.index_dir / "uploads"

    def add_article(self, src: Path, name: str | None = None) -> Added:
        """Validate an uploaded file, copy it into ``<index_dir>/uploads/``, index it and reload.

        A bad file raises ``InputError`` (naming the upload, not its temp path) and changes nothing.
        """
        src = Path(src)
        name = Path(name or src.name).name
        try:
            article = self._validate(src, name)
        except InputError as e:
            raise InputError(str(e).replace(str(src), name)) from None
        self.uploads_dir.mkdir(parents=True, exist_ok=True)
        dest = self.uploads_dir / name
        previous = dest.read_bytes() if dest.is_file() else None
        tmp = self.uploads_dir / f".{name}.{uuid.uuid4().hex[:8]}.part"  # dot files are never indexed
        try:
            shutil.copyfile(src, tmp)
            os.replace(tmp, dest)
            default = self.assistant()
            report = build_index([dest], self.settings, embedder=default.embedder, keep_existing=True)
        except BaseException:
            tmp.unlink(missing_ok=True)
            if previous is None:
                dest.unlink(missing_ok=True)
            else:
                dest.write_bytes(previous)
            raise
        for assistant in list(self._assistants.values()):
            assistant.reload()
        return Added(Article(**{**article.__dict__, "path": str(dest)}), report)

    def _validate(self, src: Path, name: str) -> Article:
        if not name or name.startswith("."):
            raise InputError(f"{name or 'the file'}: names starting with a dot are not indexed; rename it")
        if Path(name).suffix.lower() not in UPLOAD_SUFFIXES:
            raise InputError(f"{name}: unsupported file type {Path(name).suffix or '(none)'!r}; upload a "
                             f"{formats()} file")
        article = load_article(src, self.settings.max_file_bytes, name=name)
        try:
            existing = self.assistant().store.articles.get(name)
        except RagError:
            existing = None  # no index yet: the upload starts one
        if existing is not None and Path(existing.path).resolve().parent != self.uploads_dir.resolve():
            raise InputError(f"{name}: an article of the corpus already has this name; rename the file")
        return article
