"""The probe's statistical tests (scipy), as pure functions on arrays.

- :func:`spearman`, :func:`category_tests`, :func:`two_factor_anova` and :func:`model_statistics`: the output
  analysis's statistics of Section 6 (Spearman r_s between inner and output saliency across categories; one-way
  ANOVA and Tukey HSD across categories on per-region values; the two-factor ANOVA, category x measurement, the
  test the paper describes; docs/protocol.md);
- :func:`ranked_improvements` and :func:`finetune_statistics`: Section 5.2's ANOVA and Tukey HSD across categories
  of the top-k improvements from fine-tuning (docs/protocol.md);
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

__all__ = [
    "spearman", "category_tests", "two_factor_anova", "model_statistics", "ranked_improvements",
    "finetune_statistics", "bootstrap_interval", "group_test",
]

#: The levels of the two-factor ANOVA's measurement factor (per-region NSS of the model output, of the human map).
MEASUREMENTS = ("output", "ground_truth")
#: The term of the two-factor ANOVA whose p the paper's Section 6 reports (p = 9e-9; docs/protocol.md).
PAPER_TERM = "category:measurement"


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


def two_factor_anova(
    region_os: np.ndarray, region_gt: np.ndarray, region_category: np.ndarray, categories: Sequence[str],
    typ: int = 2,
) -> dict[str, Any]:
    """Two-factor ANOVA of per-region NSS with category and measurement as factors (statsmodels ``ols`` +
    ``anova_lm``).

    Every region with fixations gives two observations, its NSS of the model output (``os``, level ``output``)
    and of the ground truth (``gt``, level ``ground_truth``); the model is ``nss ~ C(category) * C(measurement)``
    (ordinary least squares, the two observations of a region treated as independent). The interaction
    ``category:measurement`` tests whether the output-minus-human difference depends on the category: the
    paper's "ANOVA test with measurements and clusters as factors" (``PAPER_TERM``). The groups are those of the
    one-way tests (:func:`category_tests`: categories with at least 2 regions with fixations).

    Parameters
    ----------
    region_os, region_gt : ndarray
        ``(N,)`` per-region NSS of the prediction and of the ground truth (regions where either is not finite
        are left out).
    region_category : ndarray
        ``(N,)`` category index of each region (into ``categories``).
    categories : sequence of str
        Category names.
    typ : int
        Type of the sums of squares (``anova_lm(typ=...)``: 1, 2 or 3). The interaction, the highest-order term,
        has the same sum of squares in all three; the main effects differ when categories hold unequal counts.

    Returns
    -------
    dict
        ``{test, response, factors, levels, sums_of_squares, paper_term, n_regions, n_observations, left_out,
        terms}``; ``terms`` lists ``{term, df, sum_sq, F, p}`` for ``category``, ``measurement``,
        ``category:measurement`` and ``residual`` (F and p None for the residual, and where undefined). ``terms``
        is empty when fewer than 2 categories remain.
    """
    region_os, region_gt = np.asarray(region_os, dtype=np.float64), np.asarray(region_gt, dtype=np.float64)
    region_category = np.asarray(region_category)
    valid = np.isfinite(region_os) & np.isfinite(region_gt)
    counts = {name: int((region_category[valid] == k).sum()) for k, name in enumerate(categories)}
    used = [name for name, count in counts.items() if count >= 2]
    result: dict[str, Any] = {
        "test": "two-factor ANOVA (category x measurement), statsmodels ols + anova_lm",
        "response": "per-region NSS",
        "factors": ["category", "measurement"],
        "levels": {"category": used, "measurement": list(MEASUREMENTS)},
        "sums_of_squares": {1: "type I", 2: "type II", 3: "type III"}[int(typ)],
        "paper_term": PAPER_TERM,
        "n_regions": 0,
        "n_observations": 0,
        "left_out": sorted(name for name, count in counts.items() if count == 1),
        "terms": [],
    }
    if len(used) < 2:
        return result
    import pandas as pd  # statsmodels and pandas load only when the test runs (a second on import)
    from statsmodels.formula.api import ols
    from statsmodels.stats.anova import anova_lm

    index = {k for k, name in enumerate(categories) if name in used}
    keep = valid & np.isin(region_category, list(index))
    names = np.asarray(list(categories), dtype=object)[region_category[keep].astype(np.int64)]
    n = int(keep.sum())
    frame = pd.DataFrame({
        "nss": np.concatenate([region_os[keep], region_gt[keep]]),
        "category": np.concatenate([names, names]),
        "measurement": [MEASUREMENTS[0]] * n + [MEASUREMENTS[1]] * n,
    })
    # sum-to-zero contrasts make type III sums of squares meaningful; types I and II do not depend on them
    formula = "nss ~ C(category, Sum) * C(measurement, Sum)" if int(typ) == 3 else "nss ~ C(category) * C(measurement)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a perfect fit: statsmodels warns, F and p are NaN (reported as None)
        table = anova_lm(ols(formula, data=frame).fit(), typ=int(typ))
    labels = {"category": "category", "measurement": "measurement", "category:measurement": PAPER_TERM,
              "Residual": "residual"}
    terms = []
    for label, row in table.iterrows():
        key = str(label)
        if key == "Intercept":
            continue
        plain = key.replace("C(category, Sum)", "category").replace("C(measurement, Sum)", "measurement")
        plain = plain.replace("C(category)", "category").replace("C(measurement)", "measurement")
        terms.append({"term": labels.get(plain, plain), "df": int(round(float(row["df"]))),
                      "sum_sq": _finite(row["sum_sq"]),
                      "F": None if plain == "Residual" else _finite(row["F"]),
                      "p": None if plain == "Residual" else _finite(row["PR(>F)"])})
    result.update(n_regions=n, n_observations=2 * n, terms=terms)
    return result


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
        ``{spearman, anova, tukey, anova_os, tukey_os, anova_two_factor, n_regions, regions_without_fixations}``:
        the one-way ANOVA and Tukey tests on per-region ``od = |os - gt|`` (``anova``, ``tukey``) and on ``os``
        (``anova_os``, ``tukey_os``) over the regions with fixations, and the two-factor ANOVA of ``os`` and
        ``gt`` (:func:`two_factor_anova`, type II sums of squares).
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
        "anova_two_factor": two_factor_anova(region_os, region_gt, region_category, categories),
        "n_regions": int(valid.sum()),
        "regions_without_fixations": int((~valid).sum()),
    }


def ranked_improvements(tuned: np.ndarray, reference: np.ndarray, top_k: int) -> np.ndarray:
    """Rank-matched top-k improvements: the i-th largest unit mean of ``tuned`` minus the i-th largest of
    ``reference``, per category, i = 1 .. ``min(top_k, C)``.

    Their mean over i is the change of the top-k mean NSS (Table 3's statistic, the bars of Fig. 4). NaN unit
    means are ranked last; a category without finite means in either model gives NaN.

    Parameters
    ----------
    tuned, reference : ndarray
        ``(C, K)`` unit means of the same layer (units x categories) after and before fine-tuning.
    top_k : int
        Units per category (the paper's 10).

    Returns
    -------
    ndarray
        ``(min(top_k, C), K)`` float64.
    """
    tuned, reference = np.asarray(tuned, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if tuned.shape != reference.shape or tuned.ndim != 2:
        raise ValueError(f"ranked_improvements: expected two (C, K) arrays of one shape, got {tuned.shape} and "
                         f"{reference.shape}")
    if top_k < 1:
        raise ValueError(f"ranked_improvements: top_k must be >= 1, got {top_k}")

    def ranked(means: np.ndarray) -> np.ndarray:
        ordered = -np.sort(-np.where(np.isfinite(means), means, -np.inf), axis=0)[: min(top_k, means.shape[0])]
        return np.where(np.isfinite(ordered), ordered, np.nan)

    return ranked(tuned) - ranked(reference)


def finetune_statistics(
    tuned: np.ndarray, reference: np.ndarray, categories: Sequence[str], top_k: int, alpha: float
) -> dict[str, Any]:
    """Section 5.2: one-way ANOVA and Tukey HSD across categories of the rank-matched top-k improvements.

    Parameters
    ----------
    tuned, reference : ndarray
        ``(C, K)`` unit means of one layer of the fine-tuned trunk and of the trunk before fine-tuning.
    categories : sequence of str
        The ``K`` category names.
    top_k : int
        Units per category (:func:`ranked_improvements`).
    alpha : float
        Significance level of the Tukey pairs.

    Returns
    -------
    dict
        ``{anova, tukey, improvement, differs_from_all, values_per_category}``: the tests of
        :func:`category_tests` on the ``min(top_k, C)`` improvements per category; ``improvement``, per category,
        their mean (the change of the top-k mean); ``differs_from_all``, the tested categories whose Tukey pairs
        with every other tested category have ``p < alpha`` (the paper's "significantly different than all other
        categories").
    """
    values = ranked_improvements(tuned, reference, top_k)
    rows = values.shape[0]
    category = np.repeat(np.arange(len(categories))[None], rows, axis=0)
    anova, pairs = category_tests(values.ravel(), category.ravel(), categories, alpha,
                                  f"rank-matched top-{top_k} improvements")
    tested = anova["categories"]
    differ = {name: set() for name in tested}
    for pair in pairs:
        differ[pair["a"]].add(pair["b"])
        differ[pair["b"]].add(pair["a"])
    finite = np.isfinite(values)
    improvement = {
        name: (float(values[finite[:, k], k].mean()) if finite[:, k].any() else None)
        for k, name in enumerate(categories)
    }
    return {
        "anova": anova,
        "tukey": pairs,
        "improvement": improvement,
        "differs_from_all": [name for name in tested if len(tested) > 1 and differ[name] == set(tested) - {name}],
        "values_per_category": int(rows),
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
