"""The answer checks scored as classifiers: of what each check removed, how much was right to remove.

A check that removes or refuses makes a decision the gold labels can judge. Definitions (a *draft* is
what the model wrote; the answer records list each draft sentence with the ``note`` of the check that
removed it):

* **Sentence checks** (``rag.cite.CHECKS``, by the ``Note`` each leaves: ``support``: "unsupported";
  ``echo``: restates the question; ``trim``: "trimmed"). A draft sentence is *right* when the question is
  answerable and the sentence holds a phrase of at least one ``must`` group (whole words, as answer
  accuracy matches them); otherwise it is *wrong* (every sentence drafted for an unanswerable question is
  wrong). Removing a wrong sentence is a correct removal; removing a right one a wrong removal.
  precision = correct removals / removals; recall = correct removals / (correct removals + wrong
  sentences left in the answers shown), i.e. of the wrong sentences this check could still catch.
* **Refusing checks** (``kind``: the answer lacks the kind of thing asked for, so it is refused although
  supported sentences remained; ``all removed``: the sentence checks removed every drafted sentence).
  A refusal is wrong when the question is answerable and the model's draft held every ``must`` group (a
  right answer thrown away), right otherwise. precision = right refusals / refusals; recall = right
  refusals / (right refusals + wrong answers shown: answerable ones missing a ``must`` group, and every
  answer to an unanswerable question).
* **Injection filter** (sentences of the retrieved passages that give orders to the assistant never reach
  the prompt). A dropped sentence is a wrong drop when it overlaps the question's gold evidence, a right
  one otherwise. Gold files do not label injected sentences, so recall is not defined.

The model's own refusals and the "extract" fallback (the top passage quoted when the model only echoed the
question) are not check decisions and are not counted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from . import metrics as M
from .cite import CHECKS
from .records import Note

if TYPE_CHECKING:
    from .evaluation.gold import GoldItem

# Note -> the check scored for it: the declared sentence checks that remove (rag.cite.CHECKS), by their names
# ("unsupported" -> "support", "echo" -> "echo", "trimmed" -> "trim").
NOTE_NAMES: dict[str, str] = {c.note: c.name for c in CHECKS if c.note and c.note is not Note.REFUSAL}
NOT_CHECKS = {Note.KEPT, Note.REFUSAL, Note.EXTRACT, Note.TRIM}
# Refusals decided before the model is called; the note is on the one sentence the answer lists.
PRE_REFUSALS = {Note.OFF_CORPUS: "relevance gate", Note.INSTRUCTION: "attack question"}
KIND, ALL_REMOVED, INJECTION = "kind", "all removed", "injection"  # the first two: rag.cite.ANSWER_CHECKS
DESCRIPTIONS = {
    "trim": "cuts the phrase with a detail no passage gives from a sentence (the original is removed)",
    "relevance gate": "refuses, before the model, a question whose names no article holds",
    "attack question": "refuses, before the model, a question that gives the assistant orders",
    "support": "removes an answer sentence its cited passage does not support",
    "echo": "removes an answer sentence that only restates the question",
    KIND: "refuses an answer that lacks the kind of thing asked for (date, number, unit...)",
    ALL_REMOVED: "refuses when the sentence checks removed every drafted sentence",
    INJECTION: "drops passage sentences that give orders to the assistant before the prompt",
}


def _counts(unit: str) -> dict[str, Any]:
    return {"unit": unit, "decisions": 0, "right": 0, "wrong": 0, "missed": 0}


def _right_sentence(text: str, item: GoldItem) -> bool:
    return item.answerable and any(any(M.mentions(text, p) for p in group) for group in item.must)


def score_checks(items: Sequence[GoldItem], records: Sequence[Mapping[str, Any]], texts: Mapping[str, str],
                 injection_on: bool = True) -> dict[str, dict[str, Any]]:
    """Per check: decisions, right and wrong ones, wrong things it let through (``missed``), precision and
    recall (``None`` when undefined)."""
    out: dict[str, dict[str, Any]] = {}
    shown_wrong_sentences = 0
    shown_wrong_answers = 0
    for it, r in zip(items, records, strict=True):
        sentences = r.get("sentences") or []
        shown = bool(r.get("answerable"))
        pre = next((PRE_REFUSALS[s.get("note")] for s in sentences if s.get("note") in PRE_REFUSALS), None)
        if pre and not shown:  # no draft: the refusal is right exactly when the question is unanswerable
            c = out.setdefault(pre, _counts("answers"))
            c["decisions"] += 1
            c["wrong" if it.answerable else "right"] += 1
            continue
        for n, sent in enumerate(sentences):
            note = sent.get("note") or ""
            if sent.get("supported"):
                if shown and not _right_sentence(sent.get("text", ""), it):
                    shown_wrong_sentences += 1
                continue
            if note in NOT_CHECKS:
                continue
            c = out.setdefault(NOTE_NAMES.get(note, note), _counts("answer sentences"))
            c["decisions"] += 1
            lost = _right_sentence(sent.get("text", ""), it)
            if note == Note.TRIMMED and n + 1 < len(sentences) and sentences[n + 1].get("note") == Note.TRIM:
                # wrong only if the cut took the answer out: a must group the original held and the rest lacks
                kept = sentences[n + 1].get("text", "")
                lost = it.answerable and any(any(M.mentions(sent.get("text", ""), p) for p in g)
                                             and not any(M.mentions(kept, p) for p in g) for g in it.must)
            c["wrong" if lost else "right"] += 1
        draft = r.get("raw_answer", "")
        if shown:
            shown_wrong_answers += not it.answerable or not M.has_all(r.get("answer", ""), it.must)
        elif any(s.get("supported") or (s.get("note") or "") not in NOT_CHECKS for s in sentences):
            # not the model's own refusal: a check refused a draft that had sentences left, or removed them all
            cause = KIND if any(s.get("supported") for s in sentences) else ALL_REMOVED
            c = out.setdefault(cause, _counts("answers"))
            c["decisions"] += 1
            c["wrong" if it.answerable and M.has_all(draft, it.must) else "right"] += 1
        if injection_on:
            _injection(it, r, texts, out)
    for name, c in out.items():
        if name == INJECTION:
            c["missed"] = None
        elif c["unit"] == "answers":
            c["missed"] = shown_wrong_answers
        else:
            c["missed"] = shown_wrong_sentences
        c["precision"] = c["right"] / c["decisions"] if c["decisions"] else None
        found = c["right"] + (c["missed"] or 0)
        c["recall"] = c["right"] / found if c["missed"] is not None and found else None
    for name in ("support", "echo", KIND, ALL_REMOVED) + ((INJECTION,) if injection_on else ()):
        if name not in out:  # a check that never fired: zero decisions, and everything wrong was missed
            c = _counts("answers" if name in (KIND, ALL_REMOVED) else "passage sentences" if name == INJECTION
                        else "answer sentences")
            c["missed"] = (None if name == INJECTION else shown_wrong_answers if c["unit"] == "answers"
                           else shown_wrong_sentences)
            c["precision"] = None
            c["recall"] = 0.0 if c["missed"] else None
            out[name] = c
    return out


def _injection(item: GoldItem, record: Mapping[str, Any], texts: Mapping[str, str],
               out: dict[str, dict[str, Any]]) -> None:
    """Count the sentences of this question's retrieved passages that the filter drops: the spans a
    passage lists as ``flagged`` when it carries them, else the sentences the prompt's filter matches."""
    from .chunk import sentence_spans
    from .injection import is_injection

    seen: set[tuple[str, int, int]] = set()
    for p in record.get("passages") or []:
        text = texts.get(p["article"])
        if text is None:
            continue
        if p.get("flagged") is not None:
            dropped = [(int(a), int(b)) for a, b in p["flagged"]]
        else:
            dropped = [(a, b) for a, b in sentence_spans(text, p["start"], p["end"]) if is_injection(text[a:b])]
        for a, b in dropped:
            if (p["article"], a, b) in seen:
                continue
            seen.add((p["article"], a, b))
            c = out.setdefault(INJECTION, _counts("passage sentences"))
            c["decisions"] += 1
            c["wrong" if M.hits_evidence((p["article"], a, b), item.spans) else "right"] += 1
