"""The probe's statistical tests (scipy), as pure functions on arrays.

- :func:`spearman`, :func:`category_tests` and :func:`model_statistics`: the output analysis's statistics of
  Section 6 (Spearman r_s between inner and output saliency across categories; one-way ANOVA and Tukey HSD across
  categories on per-region values; docs/analyses.md);
- :func:`bootstrap_interval` and :func:`group_test`: the scene-attention analysis's percentile bootstrap interval
  of a mean and Mann-Whitney U test between two groups (Table 8).

Undefined statistics (too few values, constant inputs) are reported as None (JSON null) or NaN, never raised.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

__all__ = ["spearman", "category_tests", "model_statistics", "bootstrap_interval", "group_test"]


def _finite(value: float) -> float | None:
    """JSON-friendly float: None for NaN/inf."""
    value = float(value)
    return value if math.isfinite(value) else None


def spearman(inner: Sequence[float], output: Sequence[float]) -> dict[str, Any]:
    """Spearman r_s (and its two-sided p) between two per-category statistics.

    Parameters
    ----------
    inner, output : sequence of float
        One value per category (inner saliency and ``OS_c``); categories where either is not finite are left out.

    Returns
    -------
    dict
        ``{r, p, n_categories}``; ``r`` and ``p`` are None when fewer than 3 categories remain or an input is
        constant (r_s undefined).
    """
    x, y = np.asarray(inner, dtype=np.float64), np.asarray(output, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"r": None, "p": None, "n_categories": int(x.size)}
    result = stats.spearmanr(x, y)
    return {"r": _finite(result.statistic), "p": _finite(result.pvalue), "n_categories": int(x.size)}


def category_tests(
    values: np.ndarray, category: np.ndarray, categories: Sequence[str], alpha: float, what: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One-way ANOVA and Tukey HSD of per-region ``values`` across the categories with at least 2 regions.

    Parameters
    ----------
    values : ndarray
        ``(N,)`` per-region values (non-finite ones are left out).
    category : ndarray
        ``(N,)`` category index of each region (into ``categories``).
    categories : sequence of str
        Category names.
    alpha : float
        Significance level of the Tukey pairs returned (and ``1 - alpha`` their confidence level).
    what : str
        Name of the values, recorded as ``anova["values"]``.

    Returns
    -------
    anova : dict
        ``{F, p, df_between, df_within, values, categories, left_out}`` (``categories``: the groups tested;
        ``left_out``: the categories with a single region). F, p and the degrees of freedom are None when fewer
        than 2 groups remain; F and p are None where scipy returns NaN (constant groups).
    pairs : list of dict
        The pairs that differ, ``{a, b, mean_difference (a - b), p, ci_low, ci_high}`` with ``p < alpha``.
    """
    groups = {name: values[category == k] for k, name in enumerate(categories)}
    groups = {name: group[np.isfinite(group)] for name, group in groups.items()}
    used = [name for name, group in groups.items() if group.size >= 2]
    left_out = sorted(name for name, group in groups.items() if 0 < group.size < 2)
    anova: dict[str, Any] = {"F": None, "p": None, "df_between": None, "df_within": None, "values": what,
                             "categories": used, "left_out": left_out}
    if len(used) < 2:
        return anova, []
    samples = [groups[name] for name in used]
    n_total = sum(sample.size for sample in samples)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant groups: scipy warns and returns NaN, which we report as None
        result = stats.f_oneway(*samples)
        tukey = stats.tukey_hsd(*samples)
        interval = tukey.confidence_interval(confidence_level=1 - alpha)
    anova.update(F=_finite(result.statistic), p=_finite(result.pvalue), df_between=len(used) - 1,
                 df_within=int(n_total - len(used)))
    pairs = []
    for i in range(len(used)):
        for j in range(i + 1, len(used)):
            p = float(tukey.pvalue[i, j])
            if math.isfinite(p) and p < alpha:
                pairs.append({"a": used[i], "b": used[j], "mean_difference": float(tukey.statistic[i, j]), "p": p,
                              "ci_low": float(interval.low[i, j]), "ci_high": float(interval.high[i, j])})
    return anova, pairs


def model_statistics(
    inner_nss: Sequence[float],
    category_os: Sequence[float],
    region_os: np.ndarray,
    region_gt: np.ndarray,
    region_category: np.ndarray,
    categories: Sequence[str],
    alpha: float,
) -> dict[str, Any]:
    """One model's statistics of the output analysis (one ``statistics.json`` entry).

    Parameters
    ----------
    inner_nss, category_os : sequence of float
        Per category (the same categories in both): inner saliency and ``OS_c``, for the Spearman r_s.
    region_os, region_gt : ndarray
        ``(N,)`` per-region NSS of the prediction and of the ground truth (NaN where a region holds no fixation).
    region_category : ndarray
        ``(N,)`` category index of each region (into ``categories``).
    categories : sequence of str
        Category names.
    alpha : float
        Significance level of the Tukey pairs.

    Returns
    -------
    dict
        ``{spearman, anova, tukey, anova_os, tukey_os, n_regions, regions_without_fixations}``: the ANOVA and
        Tukey tests on per-region ``od = |os - gt|`` (``anova``, ``tukey``) and on ``os`` (``anova_os``,
        ``tukey_os``) over the regions with fixations.
    """
    region_os, region_gt = np.asarray(region_os, dtype=np.float64), np.asarray(region_gt, dtype=np.float64)
    region_category = np.asarray(region_category)
    valid = np.isfinite(region_os) & np.isfinite(region_gt)
    region_od = np.abs(region_os - region_gt)
    anova, tukey = category_tests(region_od[valid], region_category[valid], categories, alpha, "od")
    anova_os, tukey_os = category_tests(region_os[valid], region_category[valid], categories, alpha, "os")
    return {
        "spearman": spearman(inner_nss, category_os),
        "anova": anova,
        "tukey": tukey,
        "anova_os": anova_os,
        "tukey_os": tukey_os,
        "n_regions": int(valid.sum()),
        "regions_without_fixations": int((~valid).sum()),
    }


def bootstrap_interval(values: np.ndarray, confidence: float, n_resamples: int, seed: int) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (``scipy.stats.bootstrap``, seeded).

    Parameters
    ----------
    values : ndarray
        The sample.
    confidence : float
        Confidence level in (0, 1).
    n_resamples : int
        Bootstrap resamples.
    seed : int
        Seed of the resampling generator (``numpy.random.default_rng(seed)``).

    Returns
    -------
    tuple of float
        ``(low, high)``; NaN for fewer than 2 values, the common value when all are equal.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        return math.nan, math.nan
    if np.ptp(values) == 0:
        return float(values[0]), float(values[0])
    result = stats.bootstrap((values,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
                             method="percentile", rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def group_test(values: np.ndarray, members: np.ndarray) -> dict[str, Any]:
    """Two-sided Mann-Whitney U test between the members and the others (non-finite values left out).

    Parameters
    ----------
    values : ndarray
        ``(N,)`` values (e.g. per-image NSS).
    members : ndarray
        ``(N,)`` booleans: the first group (e.g. correctly classified images); the rest is the second.

    Returns
    -------
    dict
        ``{U, p}``, None when a group is empty.
    """
    values, members = np.asarray(values, dtype=np.float64), np.asarray(members, dtype=bool)
    finite = np.isfinite(values)
    a, b = values[members & finite], values[~members & finite]
    if a.size == 0 or b.size == 0:
        return {"U": None, "p": None}
    result = stats.mannwhitneyu(a, b, alternative="two-sided")
    return {"U": float(result.statistic), "p": float(result.pvalue)}
