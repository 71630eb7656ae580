"""The real default GGUF model answers from the seed articles with checkable citations.

Also the OpenAI-compatible backend, against llama-cpp-python's own server started on loopback.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rag import native
from rag.answer import Assistant
from rag.llm import model_path
from rag.prompt import REFUSAL
from rag.settings import Settings

pytestmark = [pytest.mark.real, pytest.mark.llm]

CASES = [
    ("Which chip powers Huawei's Mate 60 series phone?", "Kirin 9000S", "000_24afeec690d630ed.txt"),
    ("By how much did the Sora Index rise on Monday?", "11.4 per cent", "003_0e7bd4611e476854.txt"),
    ("Which Ascend chip is considered equal to Nvidia's A100?", "910B", "002_03be9f1c06671bc9.txt"),
]


def check_citations(answer, store) -> None:
    assert answer.citations, answer.raw_answer
    for c in answer.citations:
        assert c.quote == store.articles[c.article].text[c.start:c.end]
        assert f"[{c.marker}]" in answer.answer
    assert len({c.marker for c in answer.citations}) == len(answer.citations)


@pytest.mark.parametrize("question,fact,article", CASES)
def test_answers_with_facts_and_exact_citations(real_assistant: Assistant, question: str, fact: str,
                                                article: str) -> None:
    answer = real_assistant.ask(question)
    assert answer.answerable, answer.raw_answer
    assert fact.lower() in answer.answer.lower()
    check_citations(answer, real_assistant.store)
    assert any(c.article == article and fact.split()[0] in c.quote for c in answer.citations)
    # narrowed: the quote is a sentence or two, not the whole chunk
    assert all(len(c.quote) < 600 for c in answer.citations)


@pytest.mark.parametrize("question", [
    "What is the retail price of the Huawei Mate 60 in US dollars?",
    "How old is Zhou Hongyi?",
])
def test_refuses_when_the_articles_do_not_say(real_assistant: Assistant, question: str) -> None:
    answer = real_assistant.ask(question)
    assert not answer.answerable and answer.answer == REFUSAL and answer.citations == ()


def test_both_parts_of_a_two_part_question_are_answered(real_assistant: Assistant) -> None:
    """A small model often answers one part; the part left open is asked alone (complete_parts)."""
    answer = real_assistant.ask("What software restriction did Nvidia impose, and which new data centre GPUs "
                                "did it develop for China after the October curbs?")
    assert answer.answerable, answer.raw_answer
    assert "CUDA" in answer.answer and "H20" in answer.answer, answer.answer
    assert answer.unanswered == ()
    check_citations(answer, real_assistant.store)


def test_json_contract(real_assistant: Assistant) -> None:
    d = real_assistant.ask(CASES[0][0]).to_dict()
    assert set(d) >= {"question", "answer", "answerable", "citations", "passages", "timings", "model"}
    assert set(d["timings"]) >= {"retrieve_s", "first_token_s", "total_s"}
    assert set(d["citations"][0]) >= {"marker", "article", "title", "chunk_id", "start", "end", "quote"}
    assert set(d["passages"][0]) >= {"rank", "article", "chunk_id", "start", "end", "score", "text"}
    json.dumps(d)


def test_the_model_scores_its_own_reply(real_assistant: Assistant) -> None:
    """Token log-probabilities (the answer confidence's strongest signal) come from the same prompt the
    chat completion fed the model, and rank its own greedy reply above the same reply with a fact changed."""
    from rag.prompt import build_messages, select_evidence

    a = real_assistant
    question = CASES[0][0]
    passages = a.retriever.search(question, k=a.settings.k)
    messages = build_messages(question, select_evidence(question, passages, a.embedder, a.store.texts,
                                                        a.settings))
    llm = a.llm
    reply = "".join(llm.stream_chat(messages, a.settings.max_tokens, stop=["\n\n\n"])).strip()
    prompt = llm.llama.tokenize(llm._chat_prompt(messages).encode(), add_bos=False, special=True)
    assert llm.llama.input_ids[:len(prompt)].tolist() == prompt  # the formatter is the chat template
    own = llm.logprobs(messages, reply)
    assert own and all(v <= 0 for v in own) and len(own) == min(64, llm.count_tokens(reply))
    assert llm.logprobs(messages, reply) == pytest.approx(own, abs=1e-3)  # scoring changes no state
    assert "9000S" in reply, reply
    changed = llm.logprobs(messages, reply.replace("9000S", "7000X"))
    assert sum(changed) < sum(own) - 3
    answer = a.ask(question)
    assert {"refusal_lp", "answer_min_lp"} <= set(answer.signals)
    assert 0.0 < answer.confidence < 1.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """llama-cpp-python's OpenAI-compatible server on loopback, with the default model, started through
    ``rag.native serve`` so that it loads with this CPU's safe parameters; yields its URL and log file."""
    port = _free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"  # a file: its verbose log would fill a pipe
    log_fh = open(log, "wb")  # noqa: SIM115 - closed in the finally below
    proc = subprocess.Popen(
        [sys.executable, "-m", "rag.native", "serve", "--model", str(model_path("qwen2.5-coder-1.5b")),
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "2",
         "--model_alias", "qwen-server"],
        stdout=subprocess.DEVNULL, stderr=log_fh, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited: {log.read_text(errors='replace')[-2000:]}")
            try:
                if httpx.get(f"{base}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            raise RuntimeError(f"llama_cpp.server did not start in 120 s: {log.read_text(errors='replace')[-2000:]}")
        yield base, log
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log_fh.close()


def test_openai_compatible_backend(llama_server: tuple[str, Path], real_settings, real_index, real_embedder) -> None:
    base, log = llama_server
    settings = real_settings.replace(backend="openai", base_url=base, model="qwen-server")
    assistant = Assistant(settings, store=real_index, embedder=real_embedder)
    answer = assistant.ask(CASES[0][0])
    assert answer.model == "qwen-server"
    assert answer.answerable and "kirin 9000s" in answer.answer.lower(), answer.raw_answer
    check_citations(answer, real_index)
    refusal = assistant.ask("How old is Zhou Hongyi?")
    assert not refusal.answerable
    # The server's llama.cpp loaded with this CPU's policy (no AMX repacking where AMX is present).
    assert f"use_extra_bufts={native.use_extra_bufts(Settings())}" in log.read_text(errors="replace")
