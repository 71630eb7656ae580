"""Answering: time to first token and tokens/s of a warm ``Assistant``, of the same prompt sent to the model
directly, and of a naive pipeline."""

from __future__ import annotations

import statistics
import time
from typing import Any

from ..baseline import CHUNK_OVERLAP, CHUNK_SIZE, TOP_K, NaivePipeline
from ..errors import RagError
from ..llm import LlamaCppLLM, prompt_tokens
from .context import QUESTIONS, Context, round_all, rounded

# Follow-ups after a first question: the rewrite and the answer should both reuse the cached prompt prefix.
FOLLOW_UPS = (
    ("Which chip powers Huawei's Mate 60 series phone?", "Who makes it?"),
    ("How much did the Sora Index gain after the Lunar New Year?", "How many companies are in it?"),
    ("What did Zhou Hongyi call Sora's release?", "What is his company?"),
)

def run(ctx: Context) -> dict[str, Any]:
    """Time to first token and tokens/s of a warm ``Assistant``, of the same prompt sent to llama.cpp
    directly, and of a naive 1000-character-chunk pipeline with the same model.

    Before each measured call the model's key/value cache is reset to "fixed prompt prefix + a dummy
    question", so every call reuses its cached prefix (system prompt, examples) and nothing else.
    Questions are distinct and the answer cache is cleared, so ours really retrieves and generates.
    """
    from ..answer import Assistant
    from ..prompt import build_messages

    s = ctx.seed_settings
    assistant = Assistant(s, embedder=ctx.embedder)
    assistant.load()
    llm = assistant.llm
    if not isinstance(llm, LlamaCppLLM):
        raise RagError(f"the answer bench needs the local llama backend, not {s.backend!r}")
    recorder = _Recorder(llm)
    assistant.use_llm(recorder)
    naive = NaivePipeline(s, assistant.store, ctx.embedder, llm)
    ours_prime, naive_prime = build_messages("warm up", []), naive.messages("warm up", [])
    rows = []
    for i, question in enumerate(QUESTIONS[:ctx.plan.questions]):
        _prime(llm, ours_prime)
        assistant.clear_cache()
        ours = _stream(assistant, question)
        messages, max_tokens, stop = recorder.last  # exactly what Assistant.stream sent
        # Prompt-prefix reuse: the same question right after, answer cache cleared ...
        assistant.clear_cache()
        repeat = _stream(assistant, question)
        # ... and the answer cache: the same question against the unchanged index.
        cached = _stream(assistant, question)
        _prime(llm, ours_prime)
        direct = _direct(llm, messages, max_tokens, stop)
        _prime(llm, naive_prime)
        baseline = _naive(naive, question, max_tokens)
        ours["uncached_tokens"] = llm.count_tokens(messages[-1]["content"])
        row = {"question": question, "ours": ours, "direct": direct, "naive": baseline,
               "repeat_ttft_s": repeat["ttft_s"], "cached_ttft_s": cached["ttft_s"],
               "overhead_ratio": ours["ttft_s"] / direct["ttft_s"],
               "vs_naive_ratio": ours["ttft_s"] / baseline["ttft_s"]}
        rows.append(round_all(row))
        ctx.echo(f"  q{i + 1}: ours {ours['ttft_s']:.2f}s ({ours['prompt_tokens']} prompt tokens), direct "
                 f"{direct['ttft_s']:.2f}s, naive {baseline['ttft_s']:.2f}s "
                 f"({baseline['prompt_tokens']} tokens); again {repeat['ttft_s']:.3f}s, "
                 f"cached {cached['ttft_s'] * 1e3:.1f} ms")

    def med(key: str, sub: str | None = None) -> float:
        return rounded(statistics.median(float(r[key][sub] if sub else r[key]) for r in rows))

    follow_ups: list[dict[str, Any]] = []  # a question, then a follow-up that needs rewriting
    follow_ttft: list[float] = []  # from the follow-up's arrival to its first token, rewrite included
    for first_q, follow_q in FOLLOW_UPS[:max(1, ctx.plan.questions // 2)]:
        assistant.clear_cache()
        first_answer = assistant.ask(first_q)
        follow = assistant.ask(follow_q, history=[first_q])
        follow_ttft.append(follow.timings["first_token_s"])
        follow_ups.append({"question": first_q, "follow_up": follow_q, "rewritten": follow.rewritten_question,
                           "first_ttft_s": rounded(first_answer.timings["first_token_s"]),
                           "follow_up_ttft_s": rounded(follow.timings["first_token_s"])})
        ctx.echo(f"  follow-up {follow_q!r} -> {follow.rewritten_question!r}: first token after "
                 f"{follow.timings['first_token_s']:.2f}s (rewrite included)")

    measures = ("ttft_s", "tokens_per_s", "prompt_tokens", "uncached_tokens", "completion_tokens")
    return {
        "model": recorder.name, "questions": len(rows),
        "load": {k: rounded(v) for k, v in assistant.load_timings.items()},
        **{who: {m: med(who, m) for m in measures} for who in ("ours", "direct", "naive")},
        "naive_pipeline": {"chunk_size": CHUNK_SIZE, "chunk_overlap": CHUNK_OVERLAP, "top_k": TOP_K},
        "overhead_ratio": med("overhead_ratio"), "overhead_target": 1.10,
        "vs_naive_ratio": med("vs_naive_ratio"), "vs_naive_target": 0.5,
        "repeat_ttft_s": med("repeat_ttft_s"), "cached_ttft_s": med("cached_ttft_s"),
        "follow_up_ttft_s": rounded(statistics.median(follow_ttft)),
        "follow_ups": follow_ups,
        "per_question": rows,
    }


class _Recorder:
    """Passes calls through to the real LLM and keeps the last request, so the direct call gets the
    identical prompt and limits. It returns the LLM's own generator: no cost per token."""

    def __init__(self, llm: Any) -> None:
        self.llm, self.name = llm, llm.name
        self.last: tuple[list[dict[str, str]], int, list[str] | None] = ([], 0, None)

    def count_tokens(self, text: str) -> int:
        return int(self.llm.count_tokens(text))

    def stream_chat(self, messages: list[dict[str, str]], max_tokens: int, stop: list[str] | None = None
                    ) -> Any:
        self.last = (messages, max_tokens, stop)
        return self.llm.stream_chat(messages, max_tokens, stop=stop)


def _stream(assistant: Any, question: str) -> dict[str, Any]:
    """One answer through ``Assistant.stream``, timed from the question to its first and last token."""
    from ..answer import Token
    from ..records import Answer

    t0 = time.perf_counter()
    first = last = None
    answer = None
    for ev in assistant.stream(question):
        if isinstance(ev, Token):
            last = time.perf_counter()
            first = first or last
        elif isinstance(ev, Answer):
            answer = ev
    assert answer is not None
    end = time.perf_counter()
    return {"ttft_s": (first or end) - t0, "tokens_per_s": _rate(answer.completion_tokens, first, last),
            "prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.completion_tokens,
            "answer": answer.answer, **{k: v for k, v in answer.timings.items() if k != "first_token_s"}}


def _direct(llm: LlamaCppLLM, messages: list[dict[str, str]], max_tokens: int, stop: list[str] | None = None
            ) -> dict[str, Any]:
    """The model called directly (``LlamaCppLLM.stream_chat``, the Assistant's sampling settings), streamed:
    no retrieval, no checks."""
    t0 = time.perf_counter()
    first = last = None
    pieces = []
    for delta in llm.stream_chat(messages, max_tokens, stop=stop):
        last = time.perf_counter()
        first = first or last
        pieces.append(delta)
    text = "".join(pieces).strip()
    n = llm.count_tokens(text) if text else 0
    return {"ttft_s": (first or time.perf_counter()) - t0, "tokens_per_s": _rate(n, first, last),
            "prompt_tokens": prompt_tokens(llm, messages),
            "uncached_tokens": llm.count_tokens(messages[-1]["content"]), "completion_tokens": n, "answer": text}


def _prime(llm: LlamaCppLLM, messages: list[dict[str, str]]) -> None:
    """Leave exactly this prompt in the key/value cache (a one-token completion)."""
    for _ in llm.stream_chat(messages, max_tokens=1):
        pass


def _rate(tokens: int, first: float | None, last: float | None) -> float:
    """Generation speed after the first token (which is prompt processing, reported as TTFT)."""
    if first is None or last is None or tokens < 2 or last <= first:
        return 0.0
    return (tokens - 1) / (last - first)


def _naive(naive: NaivePipeline, question: str, max_tokens: int) -> dict[str, Any]:
    """The naive pipeline's retrieval, then its prompt sent to the model as ``_direct`` sends ours."""
    t0 = time.perf_counter()
    _, messages = naive.prompt(question)
    retrieve_s = time.perf_counter() - t0
    row = _direct(naive.llm, messages, max_tokens)
    row["ttft_s"] += retrieve_s
    row["retrieve_s"] = retrieve_s
    return row


def markdown(ans: dict[str, Any]) -> list[str]:
    """The answering table of bench.md."""
    if "ours" not in ans:
        return []
    lines = [f"## Answering ({ans['model']}, warm, median of {ans['questions']} questions)", "",
             "| pipeline | first token s | generation tokens/s | prompt tokens | of them not cached |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for who, label in (("ours", "rag (Assistant.stream)"), ("direct", "llama-cpp-python, same prompt"),
                       ("naive", "naive: 4 × 1000-char chunks")):
        p = ans[who]
        lines.append(f"| {label} | {p['ttft_s']} | {p['tokens_per_s']} | {p['prompt_tokens']} | "
                     f"{p['uncached_tokens']} |")
    lines += ["", f"- overhead ratio rag/direct TTFT: **{ans['overhead_ratio']}** (target ≤ "
              f"{ans['overhead_target']})",
              f"- rag/naive TTFT: **{ans['vs_naive_ratio']}** (target ≤ {ans['vs_naive_target']})",
              f"- same question again (prompt prefix reused, answer cache cleared): "
              f"{ans['repeat_ttft_s']} s; from the answer cache: {ans['cached_ttft_s']} s",
              f"- a follow-up that is rewritten first (\"Who makes it?\"), to its first token: "
              f"{ans.get('follow_up_ttft_s', '?')} s", ""]
    return lines
