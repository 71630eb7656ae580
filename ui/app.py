"""The Gradio chat app mounted in a FastAPI app next to the OpenAI-compatible API; ``serve`` runs both.

Layout: the conversation (streamed answers with citation links) on the left, the cited sources on the
right, settings (passages, model) and "add an article" below. All answering goes through
``Service``/``Assistant``; this module only wires events and renders.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gradio as gr  # noqa: E402
from fastapi import FastAPI  # noqa: E402

from rag.answer import Answer, Assistant, Status, Token  # noqa: E402
from rag.errors import RagError  # noqa: E402
from rag.report import single_markdown  # noqa: E402
from rag.settings import Settings  # noqa: E402

from . import render  # noqa: E402
from .api import citations_payload, create_router  # noqa: E402
from .service import UPLOAD_SUFFIXES, Service  # noqa: E402

log = logging.getLogger(__name__)

TITLE = "News QA — cited answers from your articles"
WAITING = '<span class="rag-wait">Searching the articles…</span>'
_THEME = gr.themes.Soft(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])


class ChatUI:
    """Event handlers of the Blocks app; state per browser tab is the list of answered turns."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.downloads = Path(tempfile.mkdtemp(prefix="rag-ui-"))

    def corpus_note(self) -> str:
        try:
            n = len(self.service.assistant().store.articles)
        except RagError as e:
            return f"Problem: {e}"
        return f"{n} articles indexed. Added articles are kept in `{self.service.uploads_dir}/`."

    def save_markdown(self, answer: Answer) -> str:
        folder = self.downloads / uuid.uuid4().hex[:12]
        folder.mkdir()
        path = folder / "answer.md"
        path.write_text(single_markdown(answer), encoding="utf-8")
        return str(path)

    async def respond(self, question: str, chat: list[dict[str, Any]] | None, turns: list[dict[str, str]],
                      k: float, model: str) -> AsyncIterator[dict[Any, Any]]:
        """Stream one answer: raw tokens first, then the verified answer and its sources."""
        c = self.components
        if not (question or "").strip():
            gr.Warning("The question is empty: type a question about the articles.")
            return
        chat = list(chat or [])
        turn = len(turns)
        chat += [{"role": "user", "content": render.escape_chat(question.strip())},
                 {"role": "assistant", "content": WAITING}]
        yield {c["chat"]: list(chat), c["question"]: "", c["status"]: "Searching the articles…"}
        history = [t["query"] for t in turns]
        raw = ""
        try:
            async for event in self.service.astream(question, model=model, k=int(k), history=history):
                if isinstance(event, Status):
                    yield {c["status"]: render.escape_chat(event.text)}
                elif isinstance(event, Token):
                    raw += event.text
                    chat[-1] = {"role": "assistant", "content": render.streaming_html(raw)}
                    yield {c["chat"]: list(chat)}
                elif isinstance(event, Answer):
                    store = self.service.assistant(model).store
                    chat[-1] = {"role": "assistant", "content": render.answer_html(event, turn)}
                    turns = turns + [{"question": event.question,
                                      "query": event.rewritten_question or event.question,
                                      "html": render.turn_html(event, turn, store.articles)}]
                    yield {c["chat"]: list(chat), c["turns"]: turns, c["sources"]: render.sources_panel(
                        [t["html"] for t in turns]), c["status"]: _status(event),
                        c["markdown"]: single_markdown(event),
                        c["download"]: gr.DownloadButton(value=self.save_markdown(event), interactive=True)}
        except RagError as e:
            gr.Warning(str(e))
            yield {c["chat"]: chat[:-2], c["question"]: question,
                   c["status"]: f"**Problem:** {render.escape_chat(str(e))}"}

    @staticmethod
    def stopped(chat: list[dict[str, Any]] | None) -> tuple[Any, Any]:
        """After an answer event ends: if Stop cancelled it mid-way, mark the interrupted answer."""
        chat = list(chat or [])
        if chat and chat[-1].get("role") == "assistant":
            text = _message_text(chat[-1].get("content"))
            if text.endswith(render.CURSOR) or text == WAITING:
                text = text.removesuffix(render.CURSOR).replace(WAITING, "")
                chat[-1] = {"role": "assistant", "content": text + " <em>(stopped)</em>"}
                return chat, "Stopped."
        return gr.skip(), gr.skip()

    def add_article(self, file: str | None) -> tuple[None, str, str]:
        """Index an uploaded file; a bad one gets a message and changes nothing."""
        if not file:
            return None, "", self.corpus_note()
        try:
            added = self.service.add_article(Path(file), name=Path(file).name)
        except RagError as e:
            gr.Warning(f"Not added: {e}")
            return None, f"**Not added:** {render.escape_chat(str(e))}", self.corpus_note()
        gr.Info(added.message())
        return None, f"{render.escape_chat(added.message())}", self.corpus_note()

    async def ask(self, question: str, k: int = 0, model: str = "", history: str = "") -> dict[str, Any]:
        """API endpoint ``/ask``: the verified answer with its citations (history: one question a line)."""
        answer = None
        try:
            async for event in self.service.astream(question, model=model or None, k=k or None,
                                                    history=[h for h in history.splitlines() if h.strip()]):
                answer = event
        except RagError as e:
            raise gr.Error(str(e)) from None
        assert isinstance(answer, Answer)
        return {"question": answer.question, "answer": answer.answer, "answerable": answer.answerable,
                "citations": citations_payload(answer), "rewritten_question": answer.rewritten_question,
                "model": answer.model}

    def build(self) -> gr.Blocks:
        s = self.service
        with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
            turns = gr.State([])
            gr.Markdown(f"### {TITLE}")
            with gr.Row(equal_height=False):
                with gr.Column(scale=3, min_width=380):
                    # No per-message copy buttons: they would copy the rendered HTML ("Copy answer"
                    # copies the Markdown with its references).
                    chat = gr.Chatbot(label="Conversation", show_label=False, height=460, elem_id="rag-chat",
                                      sanitize_html=True, latex_delimiters=[], buttons=[],
                                      feedback_options=None, layout="bubble",
                                      placeholder="Ask about the indexed news articles. Every sentence of an "
                                                  "answer cites the passage it comes from.")
                    status = gr.Markdown("", elem_id="rag-status")
                    with gr.Row():
                        question = gr.Textbox(placeholder="Ask a question, e.g. Which chip powers Huawei's "
                                                          "Mate 60 series phone?", show_label=False, scale=6,
                                              autofocus=True, elem_id="rag-question")
                        ask = gr.Button("Ask", variant="primary", scale=1, min_width=70, elem_id="rag-ask")
                        stop = gr.Button("Stop", variant="stop", scale=1, min_width=70, elem_id="rag-stop")
                    with gr.Row():
                        new = gr.Button("New conversation", size="sm", elem_id="rag-new")
                        copy = gr.Button("Copy answer", size="sm", elem_id="rag-copy")
                        download = gr.DownloadButton("Download answer (.md)", size="sm", interactive=False,
                                                     elem_id="rag-download")
                with gr.Column(scale=2, min_width=320):
                    sources = gr.HTML(render.sources_panel([]), label="Sources", elem_id="rag-sources")
            with gr.Row():
                with gr.Column(scale=3), gr.Accordion("Settings", open=True):
                    with gr.Row():
                        k = gr.Slider(1, 12, value=s.settings.k, step=1, label="Passages to retrieve (k)",
                                      elem_id="rag-k")
                        model = gr.Dropdown(s.models(), value=s.default_model, label="Model",
                                            elem_id="rag-model")
                    with gr.Accordion("Last answer as Markdown", open=False):
                        markdown = gr.Textbox(show_label=False, lines=3, max_lines=10, interactive=False,
                                              buttons=["copy"], elem_id="rag-markdown")
                with gr.Column(scale=2), gr.Accordion("Add an article", open=True):
                    upload = gr.File(label=f"Upload {', '.join(UPLOAD_SUFFIXES)}",
                                     type="filepath", height=120, elem_id="rag-upload")
                    upload_status = gr.Markdown("", elem_id="rag-upload-status")
                    corpus = gr.Markdown(self.corpus_note(), elem_id="rag-corpus")
            self.components = {"chat": chat, "question": question, "status": status, "turns": turns,
                               "sources": sources, "markdown": markdown, "download": download}

            inputs = [question, chat, turns, k, model]
            outputs = [chat, question, status, turns, sources, markdown, download]
            # One LLM-bound event at a time across tabs and the /ask endpoint; the rest wait in the queue.
            submitted = question.submit(self.respond, inputs, outputs, api_visibility="private",
                                        show_progress="minimal", concurrency_limit=1, concurrency_id="llm")
            clicked = ask.click(self.respond, inputs, outputs, api_visibility="private",
                                show_progress="minimal", concurrency_limit=1, concurrency_id="llm")
            stop.click(None, None, None, cancels=[submitted, clicked], api_visibility="private")
            for event in (submitted, clicked):
                event.then(self.stopped, [chat], [chat, status], queue=False, api_visibility="private")
            new.click(lambda: ([], [], render.sources_panel([]), "", "",
                               gr.DownloadButton(value=None, interactive=False)),
                      None, [chat, turns, sources, status, markdown, download], queue=False,
                      cancels=[submitted, clicked], api_visibility="private")
            copy.click(None, [markdown], None, api_visibility="private",
                       js="(md) => { if (md) navigator.clipboard.writeText(md); return []; }")
            model.change(lambda m: f"Model **{m}** answers the next questions (loaded on first use).",
                         [model], [status], queue=False, api_visibility="private")
            upload.upload(self.add_article, [upload], [upload, upload_status, corpus], concurrency_limit=1,
                          concurrency_id="index", api_visibility="private")
            gr.api(self.ask, api_name="ask", concurrency_limit=1, concurrency_id="llm")
        demo.queue(default_concurrency_limit=1)
        return demo


def _message_text(content: Any) -> str:
    """A chat message's text: Gradio gives content back as a list of parts."""
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content or "")


def _status(answer: Answer) -> str:
    took = answer.timings.get("total_s", 0.0)
    if not answer.answerable:
        return f"No answer in the articles ({took:.1f} s)."
    n = len(answer.citations)
    note = " · from cache" if answer.cached else ""
    return f"Answered in {took:.1f} s by {answer.model} · {n} citation{'s' * (n != 1)}{note}"


def create_app(base: Settings | Assistant | Service, *, host: str = "127.0.0.1", port: int = 7860) -> FastAPI:
    """The FastAPI app: ``/v1`` API routes, and the Gradio app at ``/``."""
    service = base if isinstance(base, Service) else Service(base)
    app = FastAPI(title=TITLE)
    app.include_router(create_router(service))
    ui = ChatUI(service)
    app.state.service = service
    return gr.mount_gradio_app(app, ui.build(), path="/", server_name=host, server_port=port, theme=_THEME,
                               css=render.CSS, head=render.HEAD, ssr_mode=False, footer_links=["api"])


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 7860) -> None:
    """Load the index, embedder and model once, then serve the UI and the API until interrupted."""
    import uvicorn

    service = Service(settings)
    print(f"Loading the index and model {settings.model} …", flush=True)
    service.assistant().warm_up()
    app = create_app(service, host=host, port=port)
    print(f"Serving the chat UI on http://{host}:{port}/ and the API on http://{host}:{port}/v1", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")


class ServerThread:
    """Run an app with uvicorn in a background thread (for tests and notebooks)."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> None:
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, name="rag-ui-server", daemon=True)
        self.host = host

    def start(self, timeout: float = 30.0) -> str:
        """Start serving; return the base URL."""
        import time

        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the UI server did not start")
            time.sleep(0.05)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://{self.host}:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
