"""The Gradio chat app mounted in a FastAPI app next to the OpenAI-compatible API; ``serve`` runs both.

Layout: the conversation (streamed answers with citation links) on the left, the cited sources on the
right, settings (passages, model) and "add an article" below. All answering goes through
``Service``/``Assistant``; this module only wires events and renders.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
import time
import unicodedata
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
from .service import UPLOAD_SUFFIXES, Service, Tick, example_questions  # noqa: E402

log = logging.getLogger(__name__)

TITLE = "News QA — cited answers from your articles"
WAITING = '<span class="rag-wait">Searching the articles…</span>'
N_EXAMPLES = 3
# Soft with its indigo one step darker where it is text or holds white text: indigo-500 gives 4.46:1 on
# white and 3.6:1 on indigo-100, below WCAG AA's 4.5:1; indigo-600/700 give 6.3:1 and more.
_THEME = gr.themes.Soft(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]).set(
    button_primary_background_fill="*primary_600", button_primary_background_fill_hover="*primary_700",
    block_label_text_color="*primary_700", block_title_text_color="*primary_700", color_accent="*primary_600",
    body_text_color_subdued="*neutral_600")


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

    def count_note(self) -> str:
        """The header with the article count, read from the index now (not when the server started)."""
        try:
            n = len(self.service.assistant().store.articles)
        except RagError:
            return f"# {TITLE}\nNo index yet: add an article below."
        return f"# {TITLE}\n{n} article{'s' * (n != 1)} indexed · every sentence of an answer cites its passage"

    def example_texts(self) -> list[str]:
        """``N_EXAMPLES`` questions drawn from the indexed articles ("" where there are fewer)."""
        try:
            questions = example_questions(self.service.assistant().store.articles, N_EXAMPLES)
        except RagError:
            questions = []
        return questions + [""] * (N_EXAMPLES - len(questions))

    def example_updates(self) -> list[Any]:
        """The example-question buttons, refreshed (an empty one is hidden)."""
        return [gr.Button(value=q, visible=bool(q)) for q in self.example_texts()]

    def refresh(self) -> list[Any]:
        """On page load and after an upload: the live article count, the corpus note and the examples."""
        return [self.count_note(), self.corpus_note(), *self.example_updates()]

    def reset(self) -> list[Any]:
        """New conversation (or the chat's trash icon): bubbles, sources, memory and the last answer go."""
        return [[], [], render.sources_panel([]), "", "", gr.DownloadButton(value=None, interactive=False),
                gr.Button(interactive=False), gr.Column(visible=True)]

    def save_markdown(self, answer: Answer, articles: Any = None) -> str:
        """The answer as a Markdown file named after its question."""
        folder = self.downloads / uuid.uuid4().hex[:12]
        folder.mkdir()
        path = folder / f"{slug(answer.question)}.md"
        path.write_text(single_markdown(answer, articles), encoding="utf-8")
        return str(path)

    async def respond(self, question: str, chat: list[dict[str, Any]] | None, turns: list[dict[str, str]],
                      k: float, model: str) -> AsyncIterator[dict[Any, Any]]:
        """Stream one answer: the stages with elapsed seconds, raw tokens, then the verified answer and
        its sources."""
        c = self.components
        if not (question or "").strip():
            gr.Warning("The question is empty: type a question about the articles.")
            return
        t0 = time.monotonic()
        chat = list(chat or [])
        turn = len(turns)
        chat += [{"role": "user", "content": render.escape_chat(question.strip())},
                 {"role": "assistant", "content": WAITING}]
        stages: list[str] = []
        yield {c["chat"]: list(chat), c["question"]: "", c["status"]: render.progress(stages, 0.0),
               c["examples"]: gr.Column(visible=False)}
        history = [t["query"] for t in turns]
        raw = ""
        try:
            async for event in self.service.astream(question, model=model, k=int(k), history=history, tick=1.0):
                if isinstance(event, Status | Tick):
                    if isinstance(event, Status):
                        stages.append(event.text)
                    yield {c["status"]: render.progress(stages, time.monotonic() - t0)}
                elif isinstance(event, Token):
                    raw += event.text
                    chat[-1] = {"role": "assistant", "content": render.streaming_html(raw)}
                    yield {c["chat"]: list(chat), c["status"]: render.progress(stages, time.monotonic() - t0)}
                elif isinstance(event, Answer):
                    store = self.service.assistant(model).store
                    chat[-1] = {"role": "assistant", "content": render.answer_html(event, turn)}
                    turns = turns + [{"question": event.question,
                                      "query": event.rewritten_question or event.question,
                                      "html": render.turn_html(event, turn, store.articles)}]
                    yield {c["chat"]: list(chat), c["turns"]: turns, c["sources"]: render.sources_panel(
                        [t["html"] for t in turns]), c["status"]: _status(event),
                        c["markdown"]: single_markdown(event, store.articles),
                        c["copy"]: gr.Button(interactive=True),
                        c["download"]: gr.DownloadButton(value=self.save_markdown(event, store.articles),
                                                         interactive=True)}
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
            # security: only files Gradio received from the client (its upload folder), never a path the
            # client merely names; mounted apps skip Gradio's own check (blocks.has_launched is False).
            added = self.service.add_article(Path(file), name=Path(file).name, upload_dirs=upload_dirs())
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
            count = gr.Markdown(self.count_note(), elem_id="rag-count")
            with gr.Row(equal_height=False):
                with gr.Column(scale=3, min_width=320):
                    # No per-message copy buttons: they would copy the rendered HTML ("Copy answer"
                    # copies the Markdown with its references).
                    chat = gr.Chatbot(label="Conversation", show_label=False, height=460, elem_id="rag-chat",
                                      sanitize_html=True, latex_delimiters=[], buttons=[],
                                      feedback_options=None, layout="bubble",
                                      placeholder="Ask about the indexed news articles, or try a question "
                                                  "below.")
                    with gr.Column(visible=True, elem_id="rag-examples") as examples:
                        gr.Markdown("Try a question about the articles:")
                        example_buttons = [gr.Button(q, size="sm", visible=bool(q), elem_id=f"rag-example-{i}")
                                           for i, q in enumerate(self.example_texts())]
                    status = gr.Markdown("", elem_id="rag-status")
                    with gr.Row():
                        question = gr.Textbox(label="Question", show_label=False, scale=6, lines=1,
                                              placeholder="Ask a question about the articles",
                                              autofocus=True, elem_id="rag-question")
                        ask = gr.Button("Ask", variant="primary", scale=1, min_width=70, elem_id="rag-ask")
                        # Secondary: it must not look like the thing to press (it is a no-op when idle).
                        stop = gr.Button("Stop", variant="secondary", scale=1, min_width=70, elem_id="rag-stop")
                    with gr.Row():
                        new = gr.Button("New conversation", size="sm", elem_id="rag-new")
                        copy = gr.Button("Copy answer", size="sm", interactive=False, elem_id="rag-copy")
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
                        markdown = gr.Textbox(label="Last answer as Markdown", show_label=False, lines=3,
                                              max_lines=10, interactive=False, buttons=["copy"],
                                              elem_id="rag-markdown")
                with gr.Column(scale=2), gr.Accordion("Add an article", open=True):
                    upload = gr.File(label=f"Upload {', '.join(UPLOAD_SUFFIXES)}",
                                     type="filepath", height=120, elem_id="rag-upload")
                    upload_status = gr.Markdown("", elem_id="rag-upload-status")
                    corpus = gr.Markdown(self.corpus_note(), elem_id="rag-corpus")
            self.components = {"chat": chat, "question": question, "status": status, "turns": turns,
                               "sources": sources, "markdown": markdown, "download": download, "copy": copy,
                               "examples": examples}

            inputs = [question, chat, turns, k, model]
            outputs = [chat, question, status, turns, sources, markdown, download, copy, examples]
            # One LLM-bound event at a time across tabs and the /ask endpoint; the rest wait in the queue.
            answering: dict[str, Any] = dict(api_visibility="private", show_progress="hidden",
                                             concurrency_limit=1, concurrency_id="llm")
            runs: list[Any] = [question.submit(self.respond, inputs, outputs, **answering),
                               ask.click(self.respond, inputs, outputs, **answering)]
            for button in example_buttons:  # an example fills the question box, then is asked
                runs.append(button.click(lambda q: q, [button], [question], queue=False, api_visibility="private")
                            .then(self.respond, inputs, outputs, **answering))
            stop.click(None, None, None, cancels=runs, api_visibility="private")
            for event in runs:
                event.then(self.stopped, [chat], [chat, status], queue=False, api_visibility="private")
            reset_outputs = [chat, turns, sources, status, markdown, download, copy, examples]
            new.click(self.reset, None, reset_outputs, queue=False, cancels=runs, api_visibility="private")
            chat.clear(self.reset, None, reset_outputs, queue=False, cancels=runs, api_visibility="private")
            copy.click(None, [markdown], None, api_visibility="private", js=COPY_JS)
            model.change(lambda m: f"Model **{m}** answers the next questions (loaded on first use).",
                         [model], [status], queue=False, api_visibility="private")
            refreshed = [count, corpus, *example_buttons]
            upload.upload(self.add_article, [upload], [upload, upload_status, corpus], concurrency_limit=1,
                          concurrency_id="index", api_visibility="private").then(
                self.refresh, None, refreshed, queue=False, show_progress="hidden", api_visibility="private")
            demo.load(self.refresh, None, refreshed, queue=False, show_progress="hidden", api_visibility="private")
            gr.api(self.ask, api_name="ask", concurrency_limit=1, concurrency_id="llm")
        demo.queue(default_concurrency_limit=1)
        return demo


def upload_dirs() -> list[Path]:
    """Where Gradio stores files uploaded by clients (GRADIO_TEMP_DIR, default <tmp>/gradio)."""
    from gradio.utils import get_upload_folder

    return [Path(get_upload_folder())]


# Copy the last answer's Markdown and say so on the button for a moment.
COPY_JS = """(md) => {
  const b = document.querySelector('#rag-copy');
  if (!md || !b) return [];
  navigator.clipboard.writeText(md).then(() => {
    b.textContent = 'Copied';
    setTimeout(() => { b.textContent = 'Copy answer'; }, 1500);
  });
  return [];
}"""


def slug(text: str, limit: int = 60) -> str:
    """A safe file name stem from a question: ASCII letters, digits and hyphens ("answer" if none).

    >>> slug("Which chip powers Huawei's Mate 60? <img src=x>")
    'which-chip-powers-huawei-s-mate-60-img-src-x'
    """
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    stem = re.sub(r"[^a-z0-9]+", "-", ascii_text).strip("-")[:limit].rstrip("-")
    return stem or "answer"


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
    demo = ui.build()
    # security: Gradio refuses file paths a client names (only files it received into its upload folder)
    # once the app "has launched", which a mounted app never does; without this a client could make
    # the server copy any local file into its cache and index it.
    demo.has_launched = True
    return gr.mount_gradio_app(app, demo, path="/", server_name=host, server_port=port, theme=_THEME,
                               css=render.CSS, head=render.HEAD, ssr_mode=False, footer_links=["api"],
                               max_file_size=service.settings.max_file_bytes)  # security: upload size cap


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
