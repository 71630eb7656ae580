"""End-to-end `rag eval` on a temp index with the fake embedder and scripted LLMs: files, resume, compare;
and the retrieval evaluation with the real embedder (marked real)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from rag.answer import Assistant
from rag.cli import main
from rag.errors import InputError
from rag.evaluation import command, runner, scoring
from rag.evaluation.gold import file_sha256
from rag.settings import Settings
from rag.store import IndexStore, build_index

from .conftest import ROOT
from .fakes import FakeLLM, HashEmbedder

GOLD = ROOT / "eval" / "gold.jsonl"
# Unanswerable picks whose question asks for no particular kind of answer (a price question would be refused
# by the answer-kind check whatever the echo model copies).
PICK = ["a000-02", "a001-06", "a002-06", "a003-07", "multi-01", "neg-05", "neg-10"]


class EchoLLM(FakeLLM):
    """Answers with the first evidence passage, cited [1]: supported and verbatim, right or wrong by luck.

    Raises KeyboardInterrupt on answer number ``interrupt_at`` (1-based) to simulate Ctrl-C mid-run.
    """

    name = "echo-llm"

    def __init__(self, interrupt_at: int | None = None) -> None:
        super().__init__()
        self.answers = 0
        self.interrupt_at = interrupt_at

    def stream_chat(self, messages: list[dict[str, str]], max_tokens: int, stop: list[str] | None = None
                    ) -> Iterator[str]:
        self.calls.append(messages)
        user = messages[-1]["content"]
        if user.endswith("Question: warm up"):
            yield "ok"
            return
        self.answers += 1
        if self.answers == self.interrupt_at:
            raise KeyboardInterrupt
        first = re.search(r"^\[1\] (.+)$", user, re.MULTILINE)
        yield f"{first.group(1)} [1]" if first else "The articles do not say."


@pytest.fixture
def index(settings: Settings, seeds_copy: Path, fake_embedder: HashEmbedder) -> IndexStore:
    build_index([seeds_copy], settings, fake_embedder)
    return IndexStore.load(settings.index_dir, settings)


@pytest.fixture
def gold(tmp_path: Path) -> Path:
    """Seven of our gold questions: five single-doc, one multi-doc, two unanswerable (one removed)."""
    rows = [json.loads(line) for line in GOLD.read_text(encoding="utf-8").splitlines()]
    path = tmp_path / "gold.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows if r["id"] in PICK), encoding="utf-8")
    return path


def assistant(settings: Settings, index: IndexStore, embedder: HashEmbedder, llm: FakeLLM) -> Assistant:
    return Assistant(settings, store=index, embedder=embedder, llm=llm)


def run(settings: Settings, gold: Path, out: Path, asst: Assistant, **kw: object) -> list[str]:
    printed: list[str] = []
    args = {"limit": None, "k": None, "retrieval": False, "compare": None, **kw}
    command.cli(settings, gold=gold, out=out, echo=printed.append, assistant=asst, **args)  # type: ignore[arg-type]
    return printed


def results(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines()]


def test_run_writes_results_summary_report_and_plots(settings, index, fake_embedder, gold, tmp_path) -> None:
    out = tmp_path / "run"
    printed = run(settings, gold, out, assistant(settings, index, fake_embedder, EchoLLM()))
    for name in ("config.json", "results.jsonl", "summary.json", "report.md", "metrics.png", "latency.png"):
        assert (out / name).is_file(), name
    for png in ("metrics.png", "latency.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    recs = results(out)
    assert [r["id"] for r in recs] == PICK
    # each line is the ask JSON contract plus the id and the scores
    assert {"question", "answer", "answerable", "citations", "passages", "timings", "sentences", "usage",
            "raw_answer", "model"} <= set(recs[0])
    assert recs[0]["model"] == "echo-llm" and len(recs[0]["passages"]) == settings.k
    summary = json.loads((out / "summary.json").read_text())
    assert summary["questions"] == 7 and summary["answerable"] == 5 and summary["unanswerable"] == 2
    assert set(summary["metrics"]) == set(scoring.METRICS)
    assert summary["config"]["k"] == settings.k and summary["config"]["model"] == "echo-llm"
    # the summary is the mean of the per-question scores written to results.jsonl
    per_q = [r["scores"]["accuracy"] for r in recs]
    assert summary["metrics"]["accuracy"] == pytest.approx(sum(per_q) / 7, abs=1e-4)
    assert summary["metrics"]["verbatim_rate"] == 1.0  # every citation is an exact span
    # the echo model never refuses when it has evidence, so both unanswerable questions are answered
    assert summary["metrics"]["refusal_accuracy"] == 0.0
    report = (out / "report.md").read_text()
    assert "| Answer accuracy |" in report and f"Retrieval recall@{settings.k}" in report and "![metrics.png]" in report
    assert "## Worst questions" in report and "`neg-10`: answered an unanswerable question" in report
    assert "**Raw model output:**" in report
    assert "## Every question with a problem" in report and "| `neg-05` | unanswerable | answered an unanswerable" in report
    assert any("| Overall accuracy |" in p for p in printed)


def test_interrupted_run_resumes_without_redoing(settings, index, fake_embedder, gold, tmp_path) -> None:
    """Ctrl-C on the 4th answer leaves 3 results; the rerun answers only the 4 missing questions."""
    settings = settings.replace(complete_parts=False)  # one model call per question: calls count questions
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run(settings, gold, out, assistant(settings, index, fake_embedder, EchoLLM(interrupt_at=4)))
    assert [r["id"] for r in results(out)] == PICK[:3]
    assert not (out / "summary.json").exists()
    before = (out / "results.jsonl").read_text()
    llm = EchoLLM()
    run(settings, gold, out, assistant(settings, index, fake_embedder, llm))
    assert llm.answers == 4
    assert [r["id"] for r in results(out)] == PICK
    assert (out / "results.jsonl").read_text().startswith(before)  # earlier lines untouched
    assert json.loads((out / "summary.json").read_text())["questions"] == 7
    # a third run has nothing left to answer and does not even warm the model up
    llm = EchoLLM()
    run(settings, gold, out, assistant(settings, index, fake_embedder, llm))
    assert llm.calls == []


def test_torn_last_line_is_redone(settings, index, fake_embedder, gold, tmp_path) -> None:
    """A process killed mid-write leaves half a line: it is dropped and that question answered again."""
    out = tmp_path / "run"
    run(settings, gold, out, assistant(settings, index, fake_embedder, EchoLLM()), limit=2)
    with open(out / "results.jsonl", "a") as fh:
        fh.write('{"id": "a002-06", "question": "How mu')
    llm = EchoLLM()
    run(settings, gold, out, assistant(settings, index, fake_embedder, llm), limit=3)
    assert llm.answers == 1
    assert [r["id"] for r in results(out)] == PICK[:3]


def test_resume_refuses_another_configuration(settings, index, fake_embedder, gold, tmp_path,
                                              monkeypatch) -> None:
    out = tmp_path / "run"
    run(settings, gold, out, assistant(settings, index, fake_embedder, EchoLLM()), limit=1)
    with pytest.raises(InputError, match=r"another configuration \(k: 5 -> 2\)"):
        run(settings, gold, out, assistant(settings, index, fake_embedder, EchoLLM()), k=2)
    monkeypatch.setattr(runner, "code_fingerprint", lambda: "edited")
    with pytest.raises(InputError, match="code: .* -> 'edited'"):
        run(settings, gold, out, assistant(settings, index, fake_embedder, EchoLLM()))
    monkeypatch.undo()
    gold.write_text(gold.read_text() + "\n")
    with pytest.raises(InputError, match="gold_sha256"):
        run(settings, gold, out, assistant(settings, index, fake_embedder, EchoLLM()))


def test_finished_run_is_rescored_not_reasked(settings, index, fake_embedder, gold, tmp_path,
                                              monkeypatch) -> None:
    """After a gold fix (same ids, new hash) or a code change, rerunning a finished run re-scores the stored
    answers under the run's own config instead of refusing or asking again."""
    out = tmp_path / "run"
    run(settings, gold, out, assistant(settings, index, fake_embedder, EchoLLM()))
    first = {r["id"]: r["scores"]["answer_accuracy"] for r in results(out)}
    assert first["a000-02"] is not None
    rows = [json.loads(line) for line in gold.read_text().splitlines()]
    for r in rows:  # a must group nothing can contain: that question becomes wrong
        if r["id"] == "a000-02":
            r["must"] = [["zzz-never-said"]]
    gold.write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setattr(runner, "code_fingerprint", lambda: "edited")
    llm = EchoLLM()
    run(settings, gold, out, assistant(settings, index, fake_embedder, llm))
    assert llm.calls == []
    rescored = {r["id"]: r["scores"]["answer_accuracy"] for r in results(out)}
    assert rescored["a000-02"] == 0.0 and {i: v for i, v in rescored.items() if i != "a000-02"} == \
        {i: v for i, v in first.items() if i != "a000-02"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["code"] != "edited"  # the answers' own configuration is kept
    assert summary["config"]["scored_with_gold_sha256"] == file_sha256(gold)


def test_compare_reports_metric_deltas_and_flips(settings, index, fake_embedder, gold, tmp_path) -> None:
    """Old run: the echo model (answers everything). New run: a model that always refuses. Unanswerable
    questions flip wrong -> right; answerable ones the echo model got right flip right -> wrong."""
    old, new = tmp_path / "old", tmp_path / "new"
    run(settings, gold, old, assistant(settings, index, fake_embedder, EchoLLM()))
    run(settings, gold, new, assistant(settings, index, fake_embedder, FakeLLM()))
    printed = run(settings, gold, tmp_path / "unused", None, compare=(old, new))  # type: ignore[arg-type]
    text = (new / "compare.md").read_text()
    assert printed[0] == text.rstrip()
    assert "model: 'echo-llm' -> 'fake-llm'" in text
    assert re.search(r"\| Refusal accuracy \| 0\.000 \| 1\.000 \| \+1\.000 \| better \|", text)
    right_before = [r["id"] for r in results(old) if r["scores"]["accuracy"] and r["answerable"]]
    section = text.split("## right → wrong")[1].split("## wrong → right")[0]
    assert sorted(re.findall(r"`([\w-]+)`", section)) == sorted(right_before)
    assert "`neg-10`" in text.split("## wrong → right")[1] and "`neg-05`" in text.split("## wrong → right")[1]


class ContextLLM(FakeLLM):
    """Under the naive prompt: "I don't know." when the question holds "neg", else the context's first line."""

    name = "context-llm"

    def stream_chat(self, messages: list[dict[str, str]], max_tokens: int, stop: list[str] | None = None
                    ) -> Iterator[str]:
        self.calls.append(messages)
        user = messages[-1]["content"]
        first = user.removeprefix("Context:\n").split("\n")[0]
        yield "I don't know." if "warm up" in user or not first.strip() else first


def test_naive_baseline_is_scored_like_ours(settings, index, fake_embedder, gold, tmp_path) -> None:
    """`rag eval --baseline naive`: the tutorial pipeline's answers in the same records and scores, its 4
    passages exact 1000-character spans, a "don't know" a refusal; comparable with a run of ours."""
    from rag.baseline import SYSTEM, says_dont_know

    llm = ContextLLM()
    naive, ours = tmp_path / "naive", tmp_path / "ours"
    run(settings, gold, naive, assistant(settings, index, fake_embedder, llm), baseline="naive")
    recs = results(naive)
    assert [r["id"] for r in recs] == PICK
    config = json.loads((naive / "config.json").read_text())
    assert config["pipeline"] == "naive" and config["model"] == "context-llm"
    asked = [m for m in llm.calls if "warm up" not in m[-1]["content"]]
    assert len(asked) == len(PICK) and all(m[0]["content"] == SYSTEM for m in asked)
    for r in recs:
        assert r["citations"] == [] and len(r["passages"]) == 4
        for p in r["passages"]:
            assert index.articles[p["article"]].text[p["start"]:p["end"]] == p["text"] and len(p["text"]) <= 1000
        assert r["answerable"] == (not says_dont_know(r["raw_answer"]))
        assert r["answer"] == r["raw_answer"]  # no checks: what the model wrote is the answer
    import doctest

    from rag import baseline

    assert doctest.testmod(baseline).attempted and not doctest.testmod(baseline).failed  # says_dont_know
    run(settings, gold, ours, assistant(settings, index, fake_embedder, EchoLLM()))
    run(settings, gold, tmp_path / "unused", None, compare=(naive, ours))  # type: ignore[arg-type]
    assert "pipeline: 'naive' -> None" in (ours / "compare.md").read_text()
    with pytest.raises(InputError, match="does not combine"):
        run(settings, gold, tmp_path / "x", assistant(settings, index, fake_embedder, llm), baseline="naive",
            ablate=True)


def test_retrieval_only_with_fakes(settings, index, fake_embedder, gold, tmp_path) -> None:
    out = tmp_path / "ret"
    llm = EchoLLM()
    printed = run(settings, gold, out, assistant(settings, index, fake_embedder, llm), retrieval=True)
    assert llm.calls == []  # no LLM
    data = json.loads((out / "retrieval.json").read_text())
    assert data["questions"] == 5 and set(data["modes"]) == {"dense", "lexical", "hybrid"}
    assert set(data["modes"]["hybrid"]) == {"recall@1", "recall@5", "mrr@10"}
    assert data["recall_ceiling"] == 1.0  # every picked quote lies in an indexed chunk
    assert all(all(q["indexed"]) for q in data["per_question"])
    md = (out / "retrieval.md").read_text()
    assert "| fused (RRF) |" in md and "| BM25 |" in md and "| dense |" in md
    assert "| Retriever | recall@1 | recall@5 | mrr@10 |" in printed[0]


def test_cli_bad_gold_fails_before_running(settings, index, tmp_path) -> None:
    """Through the real command: a bad gold line is a one-line error naming it, exit code 1, no output."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "question": "q", "answerable": true, "must": [["a"]], "docs": ["nope.txt"], '
                   '"evidence": ["a"]}\n')
    config = tmp_path / "rag.toml"
    config.write_text('embedder = "fake-hash"\n')
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["eval", "--gold", str(bad), "--out", str(out), "--config", str(config),
                                  "--index-dir", str(settings.index_dir)])
    assert r.exit_code == 1
    assert f"{bad} line 1, field 'docs': unknown article 'nope.txt'" in r.output
    assert not out.exists()


def test_cli_compare_needs_finished_runs(tmp_path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    r = CliRunner().invoke(main, ["eval", "--compare", str(tmp_path / "a"), str(tmp_path / "b")])
    assert r.exit_code == 1 and "not a finished run" in r.output


@pytest.mark.real
def test_real_retrieval_recall(real_settings, real_index, real_embedder, tmp_path) -> None:
    """With the real embedder and our gold file, fused retrieval finds the evidence in the top 5."""
    asst = Assistant(real_settings, store=real_index, embedder=real_embedder, llm=FakeLLM())
    printed = run(real_settings, GOLD, tmp_path / "ret", asst, retrieval=True)
    data = json.loads((tmp_path / "ret" / "retrieval.json").read_text())
    assert data["questions"] >= 60
    kinds = {json.loads(line)["id"]: json.loads(line).get("kind") for line in GOLD.read_text().splitlines()}

    def recall(furniture: bool, new: bool = False) -> float:
        hits = [all(r is not None and r <= 5 for r in q["ranks"]["hybrid"]) for q in data["per_question"]
                if (kinds[q["id"]] == "furniture") == furniture and q["id"].startswith("s7-") == new]
        return sum(hits) / len(hits)

    # Every gold quote in the top 5, measured with dense ranking by each chunk's best sentence and rrf_k 15:
    # article text 0.966 over 119 questions (0.950 at rrf_k 60); captions, credits, related headlines and
    # page furniture 0.971 over 34 (0.882 at rrf_k 60, 0.80 over 20 with chunk vectors): findable, ranked
    # after matching text.
    assert recall(furniture=False) >= 0.95, printed[0]
    assert recall(furniture=True) >= 0.94, printed[0]
    # The 90 questions added in session 7 (s7-*), written for the kinds retrieval does worst (paraphrase,
    # structure, follow-ups asked as typed): measured 0.885 over 52 (article text) and 0.833 over 12
    # (furniture); the bars allow one question fewer each.
    assert recall(furniture=False, new=True) >= 0.86, printed[0]
    assert recall(furniture=True, new=True) >= 0.75, printed[0]


def test_ablation_memory_keeps_reply_scores_only_for_a_model_that_scores(tmp_path: Path) -> None:
    """Replayed answers get the same token confidence without the model: the scores of a reply are kept
    in the memory file beside the texts; a model that cannot score is not made to look as if it could."""
    from rag.ablation import Remembered

    class Scoring(FakeLLM):
        def __init__(self) -> None:
            super().__init__()
            self.scored = 0

        def logprobs(self, messages: list[dict[str, str]], reply: str, max_tokens: int = 64) -> list[float]:
            self.scored += 1
            return [-0.5] * len(reply.split())

    path, msgs = tmp_path / "generations.jsonl", [{"role": "user", "content": "q"}]
    first = Scoring()
    mem = Remembered(first, path)
    assert "".join(mem.stream_chat(msgs, 8)) == first.default
    assert mem.logprobs(msgs, "A b c") == mem.logprobs(msgs, "A b c") == [-0.5] * 3 and first.scored == 1
    again = Scoring()
    replay = Remembered(again, path)
    assert replay.logprobs(msgs, "A b c") == [-0.5] * 3 and again.scored == 0
    assert "".join(replay.stream_chat(msgs, 8)) == first.default and replay.replays == 1
    assert not hasattr(Remembered(FakeLLM(), path), "logprobs")
