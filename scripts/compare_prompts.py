"""For every gold question: the passages, the prompt messages and the verification of a fixed draft (the first
two evidence spans, cited), printed as JSON lines, so two versions of the code can be compared without the LLM:

    PYTHONPATH=<checkout> python scripts/compare_prompts.py <index-dir built by that checkout> > a.jsonl

Identical files mean the model sees identical prompts (greedy decoding then gives identical answers) and
the checks treat a given draft identically.
"""
import json, sys
from pathlib import Path
from rag.answer import Assistant
from rag.cite import verify
from rag.prompt import build_messages, select_evidence
from rag.settings import Settings

s = Settings(index_dir=Path(sys.argv[1]))
a = Assistant(s)
r = a.retriever
for line in open("eval/gold.jsonl", encoding="utf-8"):
    q = json.loads(line)["question"]
    passages = r.search_parts(q, s.k)
    ev = select_evidence(q, passages, a.embedder, a.store.texts, s.context_tokens, s.max_evidence, idf=r.idf)
    msgs = build_messages(q, ev)
    draft = " ".join(f"{e.text} [{e.marker}]" for e in ev[:2]) or "The articles do not say."
    about = {e.chunk.article: a.store.articles[e.chunk.article].about for e in ev}
    v = verify(draft, ev, a.embedder, a.store.texts, s.support_threshold, about, question=q)
    print(json.dumps({"q": q, "passages": [(p.chunk.chunk_id, round(p.score, 6)) for p in passages],
                      "messages": msgs, "answer": v.answer, "answerable": v.answerable,
                      "citations": [(c.article, c.start, c.end, round(c.support, 4)) for c in v.citations]}))
