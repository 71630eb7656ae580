"""The chat UI and OpenAI-compatible HTTP API: a thin layer over ``rag`` (no retrieval or generation here).

``ui.app.serve`` starts one process serving the Gradio app and ``/v1/chat/completions``; both share
the ``Assistant`` (index, embedder and LLM loaded once) through ``ui.service.Service``.
"""
