"""The one settings object: defaults < config file (``rag.toml``) < environment (``RAG_*``) < CLI flags.

It is the one home of defaults: functions that take a setting default to ``Settings()``'s value.
Settings that shape the index (embedder, its prefixes, chunking) are recorded in the manifest and
checked on load (``rag.store.check_manifest``), so a changed chunk size or embedder can never silently
reuse a stale index.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .errors import InputError

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
DEFAULT_MODEL = "qwen2.5-coder-1.5b"


def _cache_home() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rag-news"


@dataclass(frozen=True)
class Settings:
    # corpus and index
    index_dir: Path = Path("index")
    corpus: Path = Path("seeds")
    embedder: str = DEFAULT_EMBEDDER  # a bundled name, a local sentence-transformers folder or a served model
    embed_backend: str = "sentence-transformers"  # a key of rag.embed.EMBEDDERS: sentence-transformers | openai
    embed_base_url: str = ""  # for embed_backend=openai, e.g. http://127.0.0.1:8080/v1
    query_prefix: str = ""  # prepended to questions before embedding (E5: "query: ")
    passage_prefix: str = ""  # prepended to article text before embedding (E5: "passage: ")
    chunk_size: int = 700  # characters; ~150 tokens, so 4 chunks fit a small model's budget
    chunk_overlap: int = 100
    index_type: str = "auto"  # auto | flat | hnsw | ivf (auto: flat below store.APPROX_MIN_VECTORS)
    # Where the index lives: "folder" (FAISS + bm25s + JSON Lines in index_dir, the default) or
    # "milvus:URI" (a Milvus Lite file "milvus:archive/news.db", or a server "milvus:http://host:19530").
    store: str = "folder"
    max_file_bytes: int = 5_000_000
    # retrieval
    k: int = 5  # passages retrieved (chunks); evidence is then chosen within context_tokens
    max_k: int = 50  # the most passages a client may ask for (CLI, Gradio /ask, /v1)
    candidates: int = 30  # per retriever, before fusion
    # Reciprocal rank fusion: score = sum of weight / (rrf_k + rank). A small rrf_k lets a retriever's first
    # ranks count for more than agreement far down both lists. On eval/gold.jsonl (153 answerable, sentence
    # vectors) fused recall@5 is 0.944 at 60 (the textbook value), 0.941 at 30, 0.961 at 20, 0.971 at 15 and
    # 0.964 at 10 and 5 (furniture 0.882 -> 0.971 at 15); holdout (22) 0.909 at 10 to 60. On the blind set
    # (fourth round, 60 -> 15 with other changes) recall@5 held (0.877 -> 0.875) and MRR rose 0.751 -> 0.775.
    rrf_k: int = 15
    # Dense ranking's weight in the fusion (BM25's is 1). On eval/gold.jsonl recall@5 is 0.877 dense, 0.978
    # BM25; fused 0.949 at weight 1 and 0.964 at 0.5: news questions hinge on names and numbers.
    dense_weight: float = 0.5
    # Fused score multiplier for headlines, captions, related links and page furniture (roles.RANKED_DOWN):
    # they stay findable, but article text that matches as well ranks first. With role_context, on
    # eval/gold.jsonl fused recall@5 (20 furniture questions / 77 others) is 0.30 / 0.974 at 0.8,
    # 0.80 / 0.974 at 0.95 and 0.85 / 0.961 at 1.0; holdout (22, no furniture) 0.909 at 0.8 to 0.95.
    role_weight: float = 0.95
    # A question holding a role's cue words ("credited for the photo", "related headline": roles.CUES) lifts
    # that role's ranking down. On gold + 90 new questions (227 answerable, `rag eval --retrieval`) fused
    # recall@1 0.717 -> 0.779, MRR 0.835 -> 0.877, recall@5 0.947 both: 21 questions ranked higher, none lower.
    # As a classifier of furniture questions: precision 1.00 (34 of 34), recall 0.74 (34 of 46).
    role_intent: bool = True
    # Captions, credits, related links and furniture are embedded and BM25-indexed with their role's
    # phrase and the lines around them (chunk.search_text); off: their own text only. On gold at
    # role_weight 0.95, fused recall@5 0.80 / 0.974 with it, 0.65 / 0.948 without; holdout 0.909 / 0.955.
    role_context: bool = True
    # What the dense ranking compares the question with: "sentence" ranks each chunk by its best sentence's
    # cosine (each sentence embedded alone, or with its role phrase and neighbouring lines like
    # chunk.search_text), "chunk" by the chunk's one vector. A chunk vector averages several topics, so a
    # paraphrase of one sentence or a short caption matched it badly. On eval/gold.jsonl (153 answerable)
    # fused recall@5 0.928 with chunk vectors, 0.944 with sentences (furniture 0.824 -> 0.882, paraphrase
    # 0.833 -> 0.889); holdout 0.909 both. Recorded in the manifest: a change means a rebuild.
    dense_unit: str = "sentence"  # sentence | chunk
    # prompt
    # A caption, credit or teaser shorter than role_prompt_context characters comes to the prompt with the first
    # role_prompt_context characters of the lines around it ("Photo: Handout" alone does not say which item it
    # illustrates; a related headline says enough); 0: its own text only. On gold, ~10 prompt tokens a question.
    role_prompt_context: int = 80
    context_tokens: int = 220  # budget for the evidence sentences in the prompt (~9 ms/token to process)
    max_evidence: int = 6
    # generation
    model: str = DEFAULT_MODEL  # a bundled name or a path to any GGUF instruct model
    backend: str = "llama"  # llama | openai
    base_url: str = ""  # for backend=openai, e.g. http://127.0.0.1:8080/v1
    api_key: str = "not-needed"
    n_ctx: int = 2048
    n_threads: int = 2
    temperature: float = 0.0
    max_tokens: int = 160
    seed: int = 0
    cache_dir: Path = dataclasses.field(default_factory=_cache_home)
    # llama.cpp weight repacking into extra buffer types (AMX, CPU_REPACK): off, on, or auto (off only on
    # CPUs with AMX, where it crashes: llama.cpp issue 20824). Off everywhere by default: one code path on
    # every x86-64 CPU, and on AVX2 it measured faster to start (whole `rag ask`, wall 0.87x, 600 MB less
    # peak memory) with the same answers (110 of 111 gold) and first token (1.96 s vs 1.90 s p50). See
    # rag/native.py.
    llama_repack: str = "off"
    # verification
    support_threshold: float = 0.5
    # Tuned for the embedder (all-MiniLM-L6-v2), not for the task: they belong to the embedder, and another
    # model, whose cosines spread differently, needs its own. cite.support rescales a sentence-quote cosine
    # from [support_cosine_low, support_cosine_high] to [0, 1] (MiniLM: unrelated sentences ~0.2, paraphrases
    # 0.8 and up). prompt.select_evidence scores a sentence as cosine + evidence_lexical_weight * (idf-weighted
    # share of the question's terms it holds) + 0.1 / passage rank, and leaves out those more than
    # evidence_margin below the best.
    support_cosine_low: float = 0.2
    support_cosine_high: float = 0.8
    evidence_margin: float = 0.5
    evidence_lexical_weight: float = 0.75
    relevance_gate: int = 1  # refuse, without a model call, a question whose names no article holds
    trim_unsupported: int = 1  # drop the phrase with a detail no passage gives, instead of the sentence
    # Stage switches, for ablation (``rag eval --ablate`` turns each off in turn; all on by default).
    # Citation verification is switched off with support_threshold = 0: every sentence then passes.
    retrieval_mode: str = "hybrid"  # hybrid | dense | lexical (retrieve.Retriever.search)
    evidence_selection: bool = True  # off: every sentence of the passages, up to n_ctx / 2 tokens (answer)
    adequacy_checks: bool = True  # off: no echo or answer-kind check (cite.verify)
    extract_on_echo: bool = True  # off: an answer that only restated the question is refused, not quoted (cite)
    complete_parts: bool = True  # off: a part of a compound question the answer left open is only named (answer)
    injection_filter: bool = True  # off: sentences giving orders to the assistant reach the prompt (prompt)
    follow_up_rewrite: bool = True  # off: a follow-up is searched as typed (answer.Assistant.stream)
    # off: the confidence leaves out the model's token log-probabilities (~0.8 s after the answer has
    # streamed on 2 cores; confidence.token_signals) and is computed from the other signals alone
    token_confidence: bool = True
    # guards
    max_question_chars: int = 2000
    answer_cache_size: int = 256

    def replace(self, **changes: Any) -> Settings:
        changes = {k: v for k, v in changes.items() if v is not None}
        return dataclasses.replace(self, **{k: _coerce(k, v) for k, v in changes.items()})

    @classmethod
    def load(cls, config: str | Path | None = None, **overrides: Any) -> Settings:
        """Build settings from the config file, then ``RAG_*`` environment variables, then ``overrides``."""
        values: dict[str, Any] = {}
        path = Path(config) if config else Path(os.environ.get("RAG_CONFIG", "rag.toml"))
        if config and not path.is_file():
            raise InputError(f"config file {path} not found")
        if path.is_file():
            try:
                values.update(tomllib.loads(path.read_text(encoding="utf-8")))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
                raise InputError(f"config file {path} is not valid TOML: {e}") from e
        names = {f.name for f in fields(cls)}
        for name in names:
            env = os.environ.get(f"RAG_{name.upper()}")
            if env is not None:
                values[name] = env
        unknown = set(values) - names
        if unknown:
            raise InputError(f"unknown setting(s) {sorted(unknown)} in {path}; known: {sorted(names)}")
        return cls().replace(**values).replace(**overrides)


def _coerce(name: str, value: Any) -> Any:
    kind = {f.name: f.type for f in fields(Settings)}.get(name)
    if kind is None:
        raise InputError(f"unknown setting {name!r}")
    try:
        if kind == "Path":
            return Path(value).expanduser()
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "bool":
            return _bool(value)
        return str(value)
    except (TypeError, ValueError) as e:
        raise InputError(f"setting {name}={value!r} is not a valid {kind}") from e


def _bool(value: Any) -> bool:
    """true/false, 1/0, yes/no, on/off (any case), as TOML and ``RAG_*`` variables give them."""
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {value!r}")
