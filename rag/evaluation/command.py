"""``rag eval``: validate the gold file against the index, then run, evaluate retrieval, ablate or compare."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InputError
from ..files import write_atomic as _write_atomic
from ..settings import Settings
from .compare import compare_runs
from .gold import load_gold
from .retrieval import run_retrieval
from .runner import Echo, default_out, run

if TYPE_CHECKING:
    from ..answer import Assistant


def cli(settings: Settings, *, gold: Path, out: Path | None, limit: int | None, k: int | None,
        retrieval: bool, compare: tuple[Path, Path] | None, echo: Echo = print,
        assistant: Assistant | None = None, ablate: bool = False, variants: Sequence[str] = (),
        baseline: str | None = None) -> None:
    """``rag eval``: the gold file is validated against the index before anything runs. ``baseline``
    ("naive") scores the tutorial pipeline of ``rag.baseline`` instead of ours, over the same index."""
    if compare:
        old, new = compare
        text = compare_runs(Path(old), Path(new))
        _write_atomic(Path(new) / "compare.md", text)
        echo(text.rstrip())
        echo(f"wrote {Path(new) / 'compare.md'}")
        return
    if limit is not None and limit < 1:
        raise InputError(f"--limit must be at least 1, got {limit}")
    if k is not None and k < 1:
        raise InputError(f"--k must be at least 1, got {k}")
    if baseline not in (None, "naive"):
        raise InputError(f"unknown baseline {baseline!r}; the one baseline is naive")
    if baseline and (retrieval or ablate or variants):
        raise InputError("--baseline scores the naive pipeline's answers; it does not combine with --retrieval "
                         "or --ablate")
    if assistant is None:
        from ..answer import Assistant

        assistant = Assistant(settings)
    texts = {name: a.text for name, a in assistant.store.articles.items()}
    items = load_gold(gold, texts, where=f"the index at {assistant.settings.index_dir}")
    items = items[:limit] if limit else items
    out = out or default_out()
    if retrieval:
        ks = sorted({1, 5, *([k] if k else [])})
        run_retrieval(assistant, items, gold, out, ks=ks, echo=echo)
    elif ablate or variants:
        from ..ablation import run_ablation

        run_ablation(assistant, items, gold, out, k=k or assistant.settings.k, echo=echo, only=variants)
    elif baseline:
        from ..baseline import NaivePipeline

        run(NaivePipeline.like(assistant), items, gold, out, k=k or assistant.settings.k, echo=echo)
    else:
        run(assistant, items, gold, out, k=k or assistant.settings.k, echo=echo)
