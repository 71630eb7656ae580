"""``POST /v1/chat/completions`` and ``GET /v1/models``: the OpenAI chat API over the assistant.

The last user message is the question; earlier user messages are the conversation's history (used to
rewrite a follow-up). Responses carry two extra top-level fields: ``citations`` (each an exact span of
an article: marker, article, title, chunk_id, start, end, quote) and ``answerable``. A stream sends the
raw tokens as deltas, then a final chunk with ``citations``, ``answerable`` and the verified ``answer``
(whose ``[n]`` markers the citations number), then ``data: [DONE]``. A non-standard ``k`` field sets
the number of passages retrieved.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from rag.answer import Answer, Status, Token, check_k
from rag.errors import InputError, RagError

from .service import Service


def message_text(content: Any) -> str:
    """A message's text: a string, or the text parts of a list of content parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for p in content:
            if isinstance(p, dict) and p.get("type") == "text":
                if not isinstance(p.get("text"), str):
                    raise InputError("a text content part's 'text' must be a string")
                texts.append(p["text"])
        return " ".join(texts)
    raise InputError("a message's 'content' must be a string or a list of content parts")


def split_messages(messages: Any) -> tuple[str, list[dict[str, str]]]:
    """The question (the last user message) and the conversation before it: the earlier user and
    assistant messages, as text, so a follow-up ("When did he take over?") is read with the answers."""
    if not isinstance(messages, list) or not messages:
        raise InputError("'messages' must be a non-empty list of {role, content} objects")
    turns = [{"role": m["role"], "content": message_text(m.get("content"))} for m in messages
             if isinstance(m, dict) and m.get("role") in ("user", "assistant")]
    last = max((i for i, m in enumerate(turns) if m["role"] == "user"), default=None)
    if last is None:
        raise InputError("'messages' holds no user message; the last user message is the question")
    return turns[last]["content"], [m for m in turns[:last] if m["content"].strip()]


def citations_payload(answer: Answer) -> list[dict[str, Any]]:
    return [{"marker": c.marker, "article": c.article, "title": c.title, "chunk_id": c.chunk_id,
             "start": c.start, "end": c.end, "quote": c.quote} for c in answer.citations]


def _usage(answer: Answer) -> dict[str, int]:
    return {"prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.completion_tokens,
            "total_tokens": answer.prompt_tokens + answer.completion_tokens}


def _confidence(answer: Answer) -> float | None:
    return None if answer.confidence is None else round(answer.confidence, 3)


def completion_body(answer: Answer, model: str, cid: str, created: int) -> dict[str, Any]:
    """A ``chat.completion`` object for a verified answer, with ``citations``, ``answerable`` and the
    calibrated ``confidence``."""
    return {
        "id": cid, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.answer},
                     "finish_reason": "stop", "logprobs": None}],
        "usage": _usage(answer),
        "citations": citations_payload(answer),
        "answerable": answer.answerable,
        "confidence": _confidence(answer),
        "rewritten_question": answer.rewritten_question,
    }


def chunk_body(cid: str, created: int, model: str, delta: dict[str, Any], finish_reason: str | None = None,
               **extra: Any) -> dict[str, Any]:
    """One ``chat.completion.chunk``."""
    return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
            **extra}


def final_chunk(answer: Answer, cid: str, created: int, model: str) -> dict[str, Any]:
    """The last chunk: no content, the citations, the verified answer text and its confidence."""
    return chunk_body(cid, created, model, {}, "stop", citations=citations_payload(answer),
                      answerable=answer.answerable, answer=answer.answer,
                      confidence=_confidence(answer),
                      rewritten_question=answer.rewritten_question, usage=_usage(answer))


def error_response(message: str, status: int = 400, code: str | None = None) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": code}},
                        status_code=status)


def rag_error_response(e: RagError) -> JSONResponse:
    """400 for a bad question or parameter, 500 for a problem of the server (index, model)."""
    return error_response(str(e), 400 if isinstance(e, InputError) else 500)


def _sse(obj: dict[str, Any]) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def create_router(service: Service) -> APIRouter:
    """The ``/v1`` routes."""
    router = APIRouter(prefix="/v1")

    @router.get("/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": m, "object": "model", "created": 0, "owned_by": "local"}
                                           for m in service.models()]}

    @router.post("/chat/completions", response_model=None)
    async def chat_completions(request: Request) -> Response:
        # JSON only: a browser sends a cross-origin text/plain or form POST without asking first (no CORS
        # preflight), so accepting those would let any web page use this server.
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/json":
            return error_response("the request body must be JSON sent with 'Content-Type: application/json'", 415)
        try:
            body = await request.json()
        except ValueError:
            return error_response("the request body is not valid JSON")
        if not isinstance(body, dict):
            return error_response("the request body must be a JSON object")
        model = body.get("model") or service.default_model
        if not isinstance(model, str):
            return error_response("'model' must be a string")
        stream = body.get("stream", False)
        if stream is not None and not isinstance(stream, bool):
            return error_response("'stream' must be true or false")
        if model not in service.models():
            return error_response(f"unknown model {model!r}; GET /v1/models lists the available ones", 404,
                                  "model_not_found")
        try:
            question, history = split_messages(body.get("messages"))
            k = body.get("k")
            if k is not None:
                check_k(k, service.settings)  # 0 would mean "the default" inside; here it is an error
                if k == 0:
                    raise InputError(f"'k' must be an integer from 1 to {service.settings.max_k}")
            events = service.astream(question, model=model, k=k, history=history)
            first = await anext(events)  # errors in the question surface here, before any response
        except RagError as e:
            return rag_error_response(e)
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        if not stream:
            answer = first
            try:
                async for event in events:
                    answer = event
            except RagError as e:
                return rag_error_response(e)
            assert isinstance(answer, Answer)
            return JSONResponse(completion_body(answer, model, cid, created))

        async def sse() -> AsyncIterator[str]:
            try:
                yield _sse(chunk_body(cid, created, model, {"role": "assistant", "content": ""}))
                event = first
                while True:
                    if isinstance(event, Token):
                        yield _sse(chunk_body(cid, created, model, {"content": event.text}))
                    elif isinstance(event, Status):
                        pass  # the rewritten question comes with the final chunk
                    elif isinstance(event, Answer):
                        yield _sse(final_chunk(event, cid, created, model))
                    try:
                        event = await anext(events)
                    except StopAsyncIteration:
                        break
            except RagError as e:
                yield _sse({"error": {"message": str(e), "type": "server_error"}})
            finally:
                await events.aclose()
            yield "data: [DONE]\n\n"

        return StreamingResponse(sse(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return router
