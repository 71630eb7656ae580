"""Uncertainty of evaluation figures: bootstrap intervals, paired tests between runs, calibration error.

Pure functions over plain per-question scores (``None``: the metric does not apply to that question), so
that "2 questions out of 60" is read as noise and not as progress. Resampling uses a fixed seed, so the
same scores always give the same interval. Not handled: stratified or clustered resampling (questions
are treated as independent even when several ask about one article).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

RESAMPLES = 2000
SEED = 13
LEVEL = 0.95

Interval = tuple[float, float]


def _values(scores: Sequence[float | None]) -> np.ndarray:
    return np.array([float(s) for s in scores if s is not None], dtype=float)


def bootstrap_ci(scores: Sequence[float | None], resamples: int = RESAMPLES, seed: int = SEED,
                 level: float = LEVEL) -> Interval | None:
    """Percentile bootstrap interval of the mean of the scores that apply (``None`` when none does).

    Resamples the questions with replacement ``resamples`` times and takes the central ``level`` share
    of the resampled means. Two scores 0 and 1: the resampled mean is 0, 0.5 or 1 with chances 1/4, 1/2,
    1/4, so the 95% interval is (0, 1); one score, or all scores equal, give a zero-width interval.

    >>> bootstrap_ci([0.0, 1.0]), bootstrap_ci([1.0, 1.0, None, 1.0]), bootstrap_ci([None])
    ((0.0, 1.0), (1.0, 1.0), None)
    """
    x = _values(scores)
    if not len(x):
        return None
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(resamples, len(x)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(lo), float(hi)


def wilson(right: int, n: int, level: float = LEVEL) -> Interval:
    """Wilson score interval of a proportion ``right / n`` (n > 0).

    >>> [round(x, 4) for x in wilson(5, 5)], [round(x, 4) for x in wilson(0, 2)]  # 5 / (5 + 1.96**2)
    ([0.5655, 1.0], [0.0, 0.6576])
    """
    z = _z(level)
    p = right / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _z(level: float) -> float:
    """The standard normal quantile for a two-sided ``level`` (1.96 for 95%), by bisection on erf."""
    lo, hi = 0.0, 10.0
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if math.erf(mid / math.sqrt(2)) < level else (lo, mid)
    return (lo + hi) / 2


def interval(scores: Sequence[float | None], resamples: int = RESAMPLES, seed: int = SEED,
             level: float = LEVEL) -> Interval | None:
    """The interval the reports give: the percentile bootstrap, except when every score is 0 or every
    score is 1. There the bootstrap has no spread (5 right of 5 would read as certain), so the Wilson
    score interval is given instead (5 of 5: 0.57 - 1.00).

    >>> interval([1.0, 0.0]), [round(x, 4) for x in interval([1.0] * 5)]
    ((0.0, 1.0), [0.5655, 1.0])
    """
    x = _values(scores)
    if len(x) and (np.all(x == 0.0) or np.all(x == 1.0)):
        return wilson(int(x.sum()), len(x), level)
    return bootstrap_ci(scores, resamples, seed, level)


@dataclass(frozen=True)
class Paired:
    """A metric compared on the questions both runs scored: the mean difference ``new - old``, its
    paired-bootstrap interval, the exact McNemar p-value when the scores are 0/1, and the verdict."""

    n: int
    old: float | None
    new: float | None
    diff: float | None
    ci: Interval | None
    p_mcnemar: float | None
    old_only: int = 0  # right in old only (binary scores)
    new_only: int = 0  # right in new only

    @property
    def beyond_noise(self) -> bool:
        """McNemar p < 0.05 for right/wrong scores; otherwise the 95% interval of the difference excludes 0."""
        if self.p_mcnemar is not None:
            return self.p_mcnemar < 1 - LEVEL
        return self.ci is not None and (self.ci[0] > 0 or self.ci[1] < 0)


def mcnemar_exact(old_only: int, new_only: int) -> float:
    """Two-sided exact McNemar test: the chance, if both runs were equally good, of a split of the
    discordant questions at least this lopsided (binomial, p = 1/2).

    >>> mcnemar_exact(0, 0), mcnemar_exact(0, 5), round(mcnemar_exact(1, 9), 4)   # 2 / 2**5; 2 * 11 / 2**10
    (1.0, 0.0625, 0.0215)
    """
    n = old_only + new_only
    if n == 0:
        return 1.0
    k = min(old_only, new_only)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def paired(old: Sequence[float | None], new: Sequence[float | None], resamples: int = RESAMPLES,
           seed: int = SEED, level: float = LEVEL) -> Paired:
    """Compare two runs' scores of the same questions (parallel lists); questions either run did not
    score are left out."""
    if len(old) != len(new):
        raise ValueError(f"paired scores differ in length: {len(old)} and {len(new)}")
    pairs = np.array([(a, b) for a, b in zip(old, new, strict=True) if a is not None and b is not None],
                     dtype=float).reshape(-1, 2)
    n = len(pairs)
    if n == 0:
        return Paired(0, None, None, None, None, None)
    d = pairs[:, 1] - pairs[:, 0]
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, n, size=(resamples, n))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    binary = bool(np.isin(pairs, (0.0, 1.0)).all())
    old_only = int(((pairs[:, 0] == 1) & (pairs[:, 1] == 0)).sum()) if binary else 0
    new_only = int(((pairs[:, 0] == 0) & (pairs[:, 1] == 1)).sum()) if binary else 0
    return Paired(n, float(pairs[:, 0].mean()), float(pairs[:, 1].mean()), float(d.mean()),
                  (float(lo), float(hi)), mcnemar_exact(old_only, new_only) if binary else None,
                  old_only, new_only)


@dataclass(frozen=True)
class Calibration:
    """Expected calibration error and the reliability diagram's bins (equal-width on confidence)."""

    ece: float
    n: int
    bins: tuple[tuple[float, float, int, float | None, float | None], ...]  # (lo, hi, count, mean conf, acc)


def calibration(confidence: Sequence[float | None], correct: Sequence[float | None], n_bins: int = 10
                ) -> Calibration | None:
    """ECE = sum over bins of (share of answers in the bin) * |accuracy - mean confidence|.

    Questions without a confidence or a correctness score are left out; ``None`` when none is left.
    Confidence 1.0 falls in the last bin. Half right at confidence 0.9: ECE = |0.5 - 0.9| = 0.4.

    >>> calibration([0.9, 0.9], [1, 0]).ece, calibration([0.25, 0.75, 0.75], [0, 1, 1]).ece  # 1/3 .25 + 2/3 .25
    (0.4, 0.25)
    """
    if len(confidence) != len(correct):
        raise ValueError(f"confidence and correctness differ in length: {len(confidence)} and {len(correct)}")
    pairs = [(float(c), float(y)) for c, y in zip(confidence, correct, strict=True)
             if c is not None and y is not None]
    for c, _ in pairs:
        if not 0.0 <= c <= 1.0 or math.isnan(c):
            raise ValueError(f"confidence must lie in [0, 1], got {c}")
    if not pairs:
        return None
    bins: list[tuple[float, float, int, float | None, float | None]] = []
    ece = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        inside = [(c, y) for c, y in pairs if lo <= c < hi or (b == n_bins - 1 and c == 1.0)]
        if inside:
            conf = sum(c for c, _ in inside) / len(inside)
            acc = sum(y for _, y in inside) / len(inside)
            ece += len(inside) / len(pairs) * abs(acc - conf)
            bins.append((lo, hi, len(inside), conf, acc))
        else:
            bins.append((lo, hi, 0, None, None))
    return Calibration(round(ece, 10), len(pairs), tuple(bins))


def auc(scores: Sequence[float], right: Sequence[bool]) -> float | None:
    """The chance that a right answer scores above a wrong one (ties count half): 0.5 is no better than
    a coin, 1.0 separates them. ``None`` without both kinds.

    >>> auc([0.9, 0.8, 0.3], [True, False, False]), auc([0.5, 0.5], [True, False])
    (1.0, 0.5)
    """
    pos = [s for s, ok in zip(scores, right, strict=True) if ok]
    neg = [s for s, ok in zip(scores, right, strict=True) if not ok]
    if not pos or not neg:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return round(wins / (len(pos) * len(neg)), 10)
