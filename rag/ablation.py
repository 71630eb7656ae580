"""``rag eval --ablate``: the gold file answered once with every stage on and once with each stage off.

Each stage has a switch in ``Settings`` that the answer path honours (all on by default):

    retrieval_mode = "dense"      hybrid (dense + BM25, RRF) -> dense only          (retrieve)
    evidence_selection = false    every sentence of the passages, up to n_ctx / 2    (answer -> prompt)
    support_threshold = 0         citation verification off: every sentence passes   (cite)
    trim_unsupported = 0          an ungrounded detail removes the whole sentence    (cite)
    adequacy_checks = false       no echo or answer-kind check                       (cite -> adequacy)
    extract_on_echo = false       an answer that only restated the question is refused (cite)
    complete_parts = false        a part the answer left open is named, not asked alone (answer)
    relevance_gate = 0            off-corpus questions reach the model               (answer -> relevance)
    injection_filter = false      instruction-like sentences reach the prompt        (prompt)
    follow_up_rewrite = false     a follow-up is searched as typed                   (answer)

The ``switch`` of each declared answer check (``rag.cite.CHECKS``) is one of these fields.

Every variant is a normal run folder under ``OUT/<variant>/`` (so an interrupted ablation resumes), and
``OUT/ablation.md``/``ablation.json`` hold the table: the headline rates with their 95% intervals and,
per variant, whether its overall accuracy differs from the full pipeline's beyond noise (exact McNemar
on the same questions). A variant whose switch cannot matter for the gold file (the follow-up rewrite,
when no question has a history) is skipped and says so.

Generation is the cost, and most switches act after it (the checks) or change few prompts (the relevance
gate, the injection filter): a prompt already answered in this ablation is answered again from memory
(``Remembered``; greedy decoding writes the same text), so those variants cost seconds, not a model run.
Their latency figures are then not the model's.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import stats
from .errors import InputError
from .files import write_atomic

if TYPE_CHECKING:
    from .answer import Assistant
    from .evaluation.gold import GoldItem
    from .evaluation.runner import Echo

FULL = "full"
MEMORY = "generations.jsonl"
# name -> (what is off, settings changed)
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    FULL: ("nothing: every stage on", {}),
    "dense-only": ("hybrid retrieval: dense ranking only, no BM25", {"retrieval_mode": "dense"}),
    "no-evidence-selection": ("evidence selection: every sentence of the passages goes to the prompt",
                              {"evidence_selection": False}),
    "no-citation-check": ("citation verification: no sentence is removed as unsupported (support_threshold 0)",
                          {"support_threshold": 0.0}),
    "no-trim": ("trimming: a sentence with an ungrounded detail is removed whole, not cut",
                {"trim_unsupported": 0}),
    "no-adequacy": ("adequacy checks: no echo or answer-kind check", {"adequacy_checks": False}),
    "no-extract": ("extraction: an answer that only restated the question is refused, not quoted from the top "
                   "passage", {"extract_on_echo": False}),
    "no-part-completion": ("part completion: a part of a compound question the answer left open is named, not "
                           "asked alone", {"complete_parts": False}),
    "no-relevance-gate": ("relevance gate: a question naming nothing in the articles goes to the model",
                          {"relevance_gate": 0}),
    "no-injection-filter": ("injection filter: sentences giving orders reach the prompt",
                            {"injection_filter": False}),
    "no-follow-up-rewrite": ("follow-up rewrite: a follow-up is searched as typed", {"follow_up_rewrite": False}),
}
COLUMNS = ("answer_accuracy", "refusal_accuracy", "false_refusal_rate", "citation_precision", "accuracy")


def run_ablation(assistant: Assistant, items: Sequence[GoldItem], gold: Path, out: Path, *, k: int,
                 echo: Echo = print, only: Sequence[str] = ()) -> dict[str, Any]:
    """Answer ``items`` once per variant (``only``: these variants, plus the full pipeline to compare with)."""
    from .answer import Assistant
    from .evaluation.runner import read_results, run

    unknown = [v for v in only if v not in VARIANTS]
    if unknown:
        raise InputError(f"unknown ablation variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    names = [v for v in VARIANTS if not only or v in only or v == FULL]
    out.mkdir(parents=True, exist_ok=True)
    llm = Remembered(assistant.llm, out / MEMORY) if assistant.settings.temperature == 0 else assistant.llm
    rows: dict[str, dict[str, Any]] = {}
    for name in names:
        what, change = VARIANTS[name]
        if change.get("follow_up_rewrite") is False and not any(it.history for it in items):
            rows[name] = {"off": what, "skipped": "no question of the gold file has a history"}
            echo(f"ablation {name}: skipped (no question has a history)")
            continue
        echo(f"ablation {name}: {what}")
        variant = Assistant(assistant.settings.replace(**change), store=assistant.store,
                            embedder=assistant.embedder, llm=llm)
        summary = run(variant, items, gold, out / name, k=k, echo=lambda _m: None)
        rows[name] = {"off": what, "settings": change, "metrics": summary["metrics"], "ci": summary["ci"],
                      "counts": summary["counts"], "checks": summary.get("checks")}
    full = read_results(out / FULL / "results.jsonl")
    ids = [it.id for it in items]
    for name, row in rows.items():
        if name == FULL or "skipped" in row:
            continue
        mine = read_results(out / name / "results.jsonl")
        pair = stats.paired([(full[i].get("scores") or {}).get("accuracy") for i in ids],
                            [(mine[i].get("scores") or {}).get("accuracy") for i in ids])
        row["vs_full"] = {"diff": pair.diff, "ci": pair.ci, "p_mcnemar": pair.p_mcnemar,
                          "full_only": pair.old_only, "variant_only": pair.new_only,
                          "beyond_noise": pair.beyond_noise}
    result = {"gold": str(gold), "questions": len(items), "k": k, "variants": rows}
    text = ablation_markdown(result)
    write_atomic(out / "ablation.json", json.dumps(result, indent=1) + "\n")
    write_atomic(out / "ablation.md", text)
    echo(text.rstrip())
    echo(f"wrote {out / 'ablation.md'}, {out / 'ablation.json'}")
    return result


def ablation_markdown(result: dict[str, Any]) -> str:
    from .evaluation.report import fmt, fmt_ci
    from .evaluation.scoring import METRICS

    head = ["Variant", "Stage off", *(METRICS[c][0] + ("" if METRICS[c][2] else " (lower is better)")
                                      for c in COLUMNS), "Accuracy vs full (McNemar p)"]
    lines = [f"# Ablation on `{result['gold']}` ({result['questions']} questions, k={result['k']})", "",
             "Each rate: mean and 95% interval (as in report.md). Last column: the variant's overall accuracy minus "
             "the full pipeline's, on the same questions, with the exact McNemar p-value; **bold** when beyond noise "
             "(p < 0.05).", "",
             "| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    for name, row in result["variants"].items():
        if "skipped" in row:
            lines.append(f"| {name} | {row['off']} | " + " | ".join(["–"] * len(COLUMNS)) +
                         f" | skipped: {row['skipped']} |")
            continue
        cells = [f"{fmt(row['metrics'].get(c))} ({fmt_ci(row['ci'].get(c), 2)})" for c in COLUMNS]
        vs = row.get("vs_full")
        if vs is None or vs["diff"] is None:
            last = "–"
        else:
            last = f"{vs['diff']:+.3f} (p {vs['p_mcnemar']:.3f})"
            last = f"**{last}**" if vs["beyond_noise"] else last
        lines.append(f"| {name} | {row['off']} | " + " | ".join(cells) + f" | {last} |")
    return "\n".join(lines) + "\n"


class Remembered:
    """An LLM that answers a prompt it has answered before (same messages, token limit and stops) from
    memory, kept in a JSON Lines file so an interrupted ablation keeps it; the log-probabilities of a
    reply too, when the model can score one. Only for greedy decoding (temperature 0), where the model
    would write the same text again."""

    def __init__(self, llm: Any, path: Path) -> None:
        self.llm, self.name, self.path = llm, llm.name, path
        self.replays = 0  # prompts answered from memory: their answers' timings measure no model
        self.memory: dict[str, str] = {}
        self.scores: dict[str, list[float]] = {}  # log-probabilities of replies (confidence.token_signals)
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                    if "logprobs" in row:
                        self.scores[row["key"]] = [float(v) for v in row["logprobs"]]
                    else:
                        self.memory[row["key"]] = row["text"]
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut short by an interruption: that prompt is answered again
        if hasattr(llm, "logprobs"):  # only a model that can score a reply offers to (confidence.token_signals)
            self.logprobs = self._logprobs

    def count_tokens(self, text: str) -> int:
        return int(self.llm.count_tokens(text))

    def _key(self, *parts: Any) -> str:
        return hashlib.sha256(json.dumps([self.name, *parts]).encode()).hexdigest()

    def _keep(self, row: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")

    def _logprobs(self, messages: list[dict[str, str]], reply: str, max_tokens: int = 64) -> list[float]:
        key = self._key(messages, reply, max_tokens)
        if key not in self.scores:
            self.scores[key] = list(self.llm.logprobs(messages, reply, max_tokens))
            self._keep({"key": key, "logprobs": self.scores[key]})
        return self.scores[key]

    def stream_chat(self, messages: list[dict[str, str]], max_tokens: int, stop: list[str] | None = None
                    ) -> Iterator[str]:
        key = self._key(messages, max_tokens, stop)
        if key in self.memory:
            self.replays += 1
            yield self.memory[key]
            return
        pieces = []
        for piece in self.llm.stream_chat(messages, max_tokens, stop=stop):
            pieces.append(piece)
            yield piece
        self.memory[key] = "".join(pieces)
        self._keep({"key": key, "text": self.memory[key]})
