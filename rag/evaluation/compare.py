"""Two finished runs side by side: per-metric paired intervals and McNemar tests, and the flipped questions."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import stats
from ..errors import InputError
from ..records import short as _short
from .gold import NO_KIND
from .report import fmt, fmt_ci
from .runner import RESULTS, SUMMARY, config_diff, read_results
from .scoring import DISTRIBUTIONS, METRICS, Record


def _load_run(path: Path) -> tuple[dict[str, Any], dict[str, Record]]:
    try:
        summary = json.loads((path / SUMMARY).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path} has no {SUMMARY}: not a finished run (rerun rag eval --out {path} to "
                         "finish it)") from None
    except (OSError, ValueError) as e:
        raise InputError(f"{path / SUMMARY} is unreadable ({e})") from e
    return summary, read_results(path / RESULTS)


def compare_runs(old: Path, new: Path) -> str:
    """Markdown: config differences, per-metric old/new/difference, questions that flipped."""
    so, ro = _load_run(old)
    sn, rn = _load_run(new)
    lines = [f"# Comparison: `{old}` → `{new}`", ""]
    diff = config_diff(so.get("config", {}), sn.get("config", {}))
    if diff:
        lines += ["Configuration changes:", "", *(f"- {d}" for d in diff), ""]
        if any(d.startswith("gold_sha256") for d in diff):
            lines += ["**The gold files differ: metrics are over different questions.**", ""]
    both = [i for i in rn if i in ro]
    lines += [f"Old and new: each run's own means. Paired: over the {len(both)} questions both runs answered, the "
              f"{int(stats.LEVEL * 100)}% paired-bootstrap interval of new - old ({stats.RESAMPLES} resamples) "
              "and, for right/wrong scores, the exact McNemar p-value (right in old only : right in new only). "
              "A difference is beyond noise when p < 0.05 (right/wrong scores) or the interval excludes 0.", "",
              "| Metric | Old | New | Δ | Direction | Paired Δ interval | McNemar p (old only : new only) | Verdict |",
              "|---|---:|---:|---:|---|---:|---:|---|"]
    ks = {so.get("config", {}).get("k"), sn.get("config", {}).get("k")}
    same_k = f"@{next(iter(ks))}" if len(ks) == 1 else "@k"
    for name, (label, _, higher) in METRICS.items():
        label = label.replace("@k", same_k)
        a, b = so["metrics"].get(name), sn["metrics"].get(name)
        pair = paired_metric(ro, rn, both, name)
        lines.append(f"| {label} | {fmt(a)} | {fmt(b)} | " + _delta(a, b, higher) + " | "
                     + _paired_cells(pair, higher) + " |")
    for key, (label, unit, _) in DISTRIBUTIONS.items():
        for stat in ("p50", "p95"):
            a, b = (so.get(key) or {}).get(stat), (sn.get(key) or {}).get(stat)
            lines.append(f"| {label} {stat} | {fmt(a, unit or 'tok')} | {fmt(b, unit or 'tok')} | "
                         + _delta(a, b, False, 2) + " | – | – | – |")
    kinds = sorted({ro[i].get("kind") or NO_KIND for i in both}, key=lambda g: (g == NO_KIND, g))
    if len(kinds) > 1:
        lines += ["", "Overall accuracy per kind:", "",
                  "| Kind | questions | Old | New | Paired Δ interval | McNemar p (old only : new only) | Verdict |",
                  "|---|---:|---:|---:|---:|---:|---|"]
        for kind in kinds:
            ids = [i for i in both if (rn[i].get("kind") or NO_KIND) == kind]
            pair = paired_metric(ro, rn, ids, "accuracy")
            lines.append(f"| {kind} | {len(ids)} | {fmt(pair.old)} | {fmt(pair.new)} | "
                         + _paired_cells(pair, True) + " |")
    flips: dict[str, list[str]] = {"right → wrong": [], "wrong → right": []}
    for i in both:
        a = bool((ro[i].get("scores") or {}).get("accuracy"))
        b = bool((rn[i].get("scores") or {}).get("accuracy"))
        if a != b:
            flips["wrong → right" if b else "right → wrong"].append(
                f"- `{i}` {rn[i]['question']}\n  - old: {_short(ro[i]['answer'], 200)}\n"
                f"  - new: {_short(rn[i]['answer'], 200)}")
    lines += ["", f"{len(both)} questions in both runs."]
    only = sorted(set(ro) ^ set(rn))
    if only:
        lines.append(f"{len(only)} only in one run: " + ", ".join(f"`{i}`" for i in only[:30]))
    for title, rows in flips.items():
        lines += ["", f"## {title} ({len(rows)})", "", *(rows or ["_None._"])]
    return "\n".join(lines) + "\n"


def paired_metric(old: Mapping[str, Record], new: Mapping[str, Record], ids: Sequence[str], name: str
                  ) -> stats.Paired:
    """One metric of two runs compared question by question (the stored per-question scores)."""
    return stats.paired([(old[i].get("scores") or {}).get(name) for i in ids],
                        [(new[i].get("scores") or {}).get(name) for i in ids])


def _paired_cells(pair: stats.Paired, higher_is_better: bool) -> str:
    if pair.n == 0 or pair.diff is None:
        return "– | – | –"
    p = "–" if pair.p_mcnemar is None else f"{pair.p_mcnemar:.3f} ({pair.old_only} : {pair.new_only})"
    if pair.beyond_noise:
        verdict = "**better, beyond noise**" if (pair.diff > 0) == higher_is_better else "**worse, beyond noise**"
    else:
        verdict = "within noise"
    return f"{fmt_ci(pair.ci)} | {p} | {verdict}"


def _delta(a: float | None, b: float | None, higher_is_better: bool, digits: int = 3) -> str:
    if a is None or b is None:
        return "– |"
    d = b - a
    mark = "" if abs(d) < 10 ** -digits else ("better" if (d > 0) == higher_is_better else "worse")
    return f"{d:+.{digits}f} | {mark}"
