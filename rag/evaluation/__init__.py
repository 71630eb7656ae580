"""Score the assistant on a gold question file: answers, refusals, citations, retrieval and latency.

Every question goes through ``Assistant.ask(...).to_dict()``, the code path and JSON of ``rag ask --json``;
a gold line with a ``history`` (OpenAI-style messages) is asked with those earlier turns, as the chat asks
a follow-up, so a question that leans on them is rewritten before retrieval. What is scored is what a user gets. A
run folder holds::

    config.json     what the run was made with (gold file hash, model, k, index version, every setting
                    that can change an answer, a fingerprint of every module on the answer path)
    results.jsonl   one ask-JSON per question plus its id, kind, tags, history and scores; appended and
                    flushed per question
    summary.json    the metrics (definitions in ``scoring.METRICS``) with 95% bootstrap intervals, overall, per
                    kind and per tag; the checks as classifiers; calibration when answers carry a confidence
    report.md       headline table, per kind, the worst questions, plots, checks, calibration, latency
    metrics.png, kinds.png, reliability.png, latency.png

A run that was interrupted continues where it stopped when started again with the same ``--out``: ids
already in results.jsonl are skipped, provided config.json matches (otherwise it refuses and says why).

The modules: ``gold`` (the gold file), ``scoring`` (metrics of a run), ``runner`` (the run folder, resume,
code fingerprint), ``report`` and ``plots`` (report.md and its figures), ``retrieval`` (``--retrieval``, no LLM),
``compare`` (``--compare``), ``command`` (``rag eval``). The metrics are pure functions in ``rag.metrics``, the
intervals and tests in ``rag.stats``, the checks' scoring in ``rag.checkscore``, the ablation in ``rag.ablation``.
"""
