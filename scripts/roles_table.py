"""Print the role classifier's precision and recall per role on the hand-labelled seeds, then what each
rule adds: the macro-F1 with that rule switched off.

    PYTHONPATH=. .venv/bin/python scripts/roles_table.py
"""

from __future__ import annotations

import json
from pathlib import Path

from rag.roles import RULES, label_lines, scores, table_label

ROOT = Path(__file__).resolve().parent.parent
TRUTH = ROOT / "tests" / "roles_truth.jsonl"


def pairs(off: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    """(truth, predicted) for every non-blank line of the seeds in the truth file."""
    truth = [json.loads(line) for line in TRUTH.read_text(encoding="utf-8").splitlines() if line.strip()]
    got: dict[tuple[str, int], str] = {}
    for name in sorted({t["file"] for t in truth}):
        text = (ROOT / "seeds" / name).read_text(encoding="utf-8")
        got.update({(name, ln.number): table_label(ln) for ln in label_lines(text, off=off)})
    return [(t["role"], got.get((t["file"], t["line"]), "missing")) for t in truth]


def dropped(off: frozenset[str] = frozenset()) -> int:
    """Lines of the seeds left out of the index (repeats included)."""
    return sum(bool(ln.drop) for p in sorted((ROOT / "seeds").glob("*.txt"))
               for ln in label_lines(p.read_text(encoding="utf-8"), off=off))


def macro_f1(table: dict[str, tuple[float, float, int]]) -> float:
    f1 = [2 * p * r / (p + r) if p + r else 0.0 for p, r, n in table.values() if n]
    return sum(f1) / len(f1)


def main() -> None:
    table = scores(pairs())
    print("| role | precision | recall | lines |\n|---|---:|---:|---:|")
    for label, (p, r, n) in table.items():
        print(f"| {label} | {p:.2f} | {r:.2f} | {n} |")
    base = macro_f1(table)
    print(f"\n{dropped()} lines dropped.")
    print(f"\nmacro-F1 {base:.3f}. Each rule switched off:\n")
    print("| rule off | macro-F1 | lines relabelled | lines dropped |\n|---|---:|---:|---:|")
    ref = pairs()
    for rule in RULES:
        got = pairs(frozenset({rule}))
        changed = sum(a != b for a, b in zip(ref, got, strict=True))
        print(f"| {rule} | {macro_f1(scores(got)):.3f} | {changed} | {dropped(frozenset({rule}))} |")


if __name__ == "__main__":
    main()
