"""Split-conformal prediction intervals, one per lead day, and how to score them.

On the calibration block (days the model neither trained nor early-stopped on) every window gives
a score per lead day, its absolute error sᵢ = |yᵢ − ŷᵢ| in target units. For a wanted coverage
1 − α and n scores, the interval's half-width is the k-th smallest score with
k = ⌈(n + 1)(1 − α)⌉, the empirical quantile at level ⌈(n + 1)(1 − α)⌉ / n. A later day whose
error is exchangeable with the calibration errors then falls inside [ŷ − q, ŷ + q] with
probability at least 1 − α, and at most 1 − α + 1 / (n + 1) (Vovk et al. 2005; Lei et al. 2018).
Persistence gets intervals by the same construction on its own errors, so "narrower than
persistence at the same coverage" compares like with like.

Scores on the test days, per lead: empirical coverage, mean width and the Winkler (interval) score
width + (2/α)·(distance outside the interval), which punishes narrow intervals that miss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rnnlab.errors import SettingError


def conformal_rank(count: int, coverage: float) -> int:
    """k = ⌈(count + 1) · coverage⌉: the rank of the calibration score that is the half-width."""
    # the small tolerance keeps (n + 1) · 0.9 = 90.00000000000001 from rounding up to the next rank
    return int(math.ceil((count + 1) * coverage - 1e-9))


def conformal_quantile(scores, coverage: float) -> np.ndarray:
    """The split-conformal half-width: scores (n,) or (n, H) -> () or (H,), the k-th smallest score
    per column with k = ⌈(n + 1) · coverage⌉.

    Raises SettingError when k > n: then no finite interval reaches that coverage with n scores.
    """
    scores = np.asarray(scores, dtype=np.float64)
    count = scores.shape[0]
    if not 0 < coverage < 1:
        raise SettingError(f"Coverage must lie between 0 and 1, got {coverage!r}.")
    rank = conformal_rank(count, coverage)
    if rank > count:
        raise SettingError(f"A {coverage:.0%} interval needs at least {math.ceil(coverage / (1 - coverage) - 1e-9)} "
                           f"calibration windows, got {count}: use a larger calibration share or a lower coverage.")
    return np.sort(scores, axis=0)[rank - 1]


@dataclass
class Calibration:
    """What turns point forecasts into intervals: ``predicted ± quantiles`` per lead day.

    quantiles, persistence_quantiles: (H,) half-widths in target units for the model and for
    persistence; windows: how many calibration windows they were taken from; coverage: 1 − α.
    """

    coverage: float
    quantiles: np.ndarray
    persistence_quantiles: np.ndarray
    windows: int

    def bounds(self, predicted, persistence: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """predicted: (n, H) in target units -> (lower, upper), (n, H) each."""
        half = self.persistence_quantiles if persistence else self.quantiles
        predicted = np.asarray(predicted, dtype=np.float64)
        return predicted - half, predicted + half

    def to_dict(self) -> dict:
        """For the weights file's metadata: plain lists and numbers."""
        return {"coverage": float(self.coverage), "quantiles": [float(q) for q in self.quantiles],
                "persistence_quantiles": [float(q) for q in self.persistence_quantiles],
                "windows": int(self.windows)}

    @classmethod
    def from_dict(cls, values: dict) -> "Calibration":
        return cls(float(values["coverage"]), np.asarray(values["quantiles"], dtype=np.float64),
                   np.asarray(values["persistence_quantiles"], dtype=np.float64), int(values["windows"]))


def calibrate(actual, predicted, persistence, coverage: float) -> Calibration:
    """Half-widths per lead from the calibration windows; actual, predicted, persistence: (n, H) in target units."""
    actual = np.asarray(actual, dtype=np.float64)
    model_scores = np.abs(actual - np.asarray(predicted, dtype=np.float64))
    persistence_scores = np.abs(actual - np.asarray(persistence, dtype=np.float64))
    return Calibration(float(coverage), conformal_quantile(model_scores, coverage),
                       conformal_quantile(persistence_scores, coverage), len(actual))


def interval_scores(actual, lower, upper, coverage: float) -> dict:
    """Per lead day, from (n, H) arrays: "coverage" (share of days inside), "width" (mean upper − lower)
    and "winkler" (mean width + 2/α · distance outside), each (H,)."""
    actual, lower, upper = (np.asarray(a, dtype=np.float64) for a in (actual, lower, upper))
    alpha = 1.0 - coverage
    below, above = np.maximum(lower - actual, 0.0), np.maximum(actual - upper, 0.0)
    inside = (actual >= lower) & (actual <= upper)
    width = upper - lower
    return {"coverage": inside.mean(axis=0), "width": width.mean(axis=0),
            "winkler": (width + (2.0 / alpha) * (below + above)).mean(axis=0)}
