"""What the UI and the HTTP API share: one ``Assistant`` per model, answer streaming, adding articles.

``Assistant.stream`` holds the assistant's re-entrant lock while it yields, so the whole stream must
run in one thread: a web server would otherwise resume it from different worker threads. ``astream``
runs it in a dedicated thread and hands its events to the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import shutil
import threading
import uuid
from collections import Counter
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from rag.answer import Assistant, Event, History, shared_assistant
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


def check_uploaded(src: Path, upload_dirs: Sequence[Path], name: str) -> None:
    """Refuse a path outside the upload folders (symlinks and ``..`` resolved first)."""
    real = Path(os.path.realpath(src))
    for d in upload_dirs:
        root = Path(os.path.realpath(d))
        if real != root and real.is_relative_to(root):
            return
    log.warning("refused an upload event naming %s, outside the upload folder", src)
    raise InputError(f"{name}: not a file uploaded by this browser; upload the file itself")


@dataclass(frozen=True)
class Tick:
    """No event for a while: the UI updates its elapsed seconds."""


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
                      history: History | None = None, stop: threading.Event | None = None,
                      tick: float | None = None) -> AsyncGenerator[Event | Tick, None]:
        """``Assistant.stream`` run in its own thread; closing this iterator (or ``stop``) stops it.
        With ``tick``, a ``Tick`` comes whenever no event came for ``tick`` seconds."""
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
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), tick) if tick else await queue.get()
                except TimeoutError:
                    yield Tick()
                    continue
                if item is _END:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item  # type: ignore[misc]
        finally:
            stop.set()  # a no-op once the answer is complete; otherwise the generation stops early

    # -- adding articles ----------------------------------------------------------------------------------
    @property
    def uploads_dir(self) -> Path:
        return self.settings.index_dir / "uploads"

    def add_article(self, src: Path, name: str | None = None, *, upload_dirs: Sequence[Path] | None = None) -> Added:
        """Validate an uploaded file, copy it into ``<index_dir>/uploads/``, index it and reload.

        With ``upload_dirs`` (the web UI), ``src`` must lie inside one of them: a client names the file
        of an upload event, and without this check could make the server index any file it can read.
        A bad file raises ``InputError`` (naming the upload, not its temp path) and changes nothing.
        """
        src = Path(src)
        name = Path(name or src.name).name
        if upload_dirs is not None:
            check_uploaded(src, upload_dirs, name)
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
        try:
            size = src.stat().st_size
        except OSError as e:
            raise InputError(f"{name}: cannot read the upload ({e.strerror})") from None
        if size > self.settings.max_file_bytes:
            raise InputError(f"{name}: {size} bytes is larger than the {self.settings.max_file_bytes}-byte limit "
                             "(max_file_bytes)")
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


# -- example questions ------------------------------------------------------------------------------------
# A name in an article: capitalised words or model numbers, two to five in a row ("Kirin 9000S").
_NAME = re.compile(r"\b(?:[A-Z][\w’'-]*|\d+[A-Z]\w*)(?:[ -](?:[A-Z][\w’'-]*|\d[\w.]*)){1,4}")
_NOT_NAMES = frozenset("the a an in on at for of and but this that these those it its he she they we i as "
                       "by with from to if when while after before however meanwhile".split())


def key_names(articles: Mapping[str, Article], per_article: int = 1) -> list[tuple[str, str]]:
    """The most telling name of each article, (article name, name): names in its kept text (not page
    chrome) that recur in it, that few other articles hold, best those in its title. Uploaded articles
    come first."""
    found: dict[str, Counter[str]] = {}
    with_the: Counter[str] = Counter()  # "the United States", "the World AI Conference"
    for name, a in articles.items():
        text = "\n".join(a.text[b.start:b.end] for b in a.blocks) if a.blocks else a.text
        counts: Counter[str] = Counter()
        for m in _NAME.finditer(text):
            words = m.group(0).removesuffix("’s").removesuffix("'s").split()
            while words and words[0].lower() in _NOT_NAMES:
                words = words[1:]
            credit = any(len(w) > 3 and w.isalpha() and w.isupper() for w in words)  # "KEVIN FRAYER/GETTY"
            if len(words) >= 2 and words[-1].lower() not in _NOT_NAMES and not credit:
                key = " ".join(words).strip("’'-")
                counts[key] += 1
                if text[max(0, m.start() - 4):m.start()].lower() == "the " or m.group(0).startswith("The "):
                    with_the[key] += 1
        found[name] = counts
    df = Counter(n for counts in found.values() for n in counts)
    total = len(found)
    order = sorted(articles, key=lambda n: ("/uploads/" not in articles[n].path.replace("\\", "/"), n))
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name in order:
        title = articles[name].title.lower()
        scored = sorted(((c * math.log(1 + total / df[n]) * (3 if n.lower() in title else 1), n)
                         for n, c in found[name].items() if n.lower() not in seen), reverse=True)
        for _, n in scored[:per_article]:
            seen.add(n.lower())
            out.append((name, f"the {n}" if 2 * with_the[n] > sum(c[n] for c in found.values()) else n))
    return out


def example_questions(articles: Mapping[str, Article], n: int = 3) -> list[str]:
    """A few questions about what the indexed articles hold, built from their key names."""
    return [f"What do the articles say about {name}?" for _, name in key_names(articles)[:n]]
