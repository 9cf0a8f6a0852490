"""torchmetrics classes: accumulation over batches against per-image references, exclusion counts,
the paper's unit statistics, and the RegionNSS update API (lists of variable regions or padded tensors)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_metrics_functional import naive_region_nss, np_cc, np_kld, np_nss, np_resize, np_sim

from saliency_probe.metrics import CC, NMM, NSS, SIM, AUCJudd, KLDiv, RegionNSS
from saliency_probe.metrics import functional as MF

CATEGORIES = ["face", "text", "object", "never"]


def _batches(seed: int, sizes: list[int], small: tuple[int, int] = (6, 8), big: tuple[int, int] = (24, 32)):
    rng = np.random.default_rng(seed)
    for b in sizes:
        pred = rng.random((b, *small))
        fix = (rng.random((b, *big)) > 0.95).astype(np.float32)
        fix[0] = 0  # the first image of every batch has no fixation
        yield torch.from_numpy(pred), torch.from_numpy(fix)


def test_nss_metric_is_the_mean_over_images_with_fixations() -> None:
    metric = NSS()
    expected = []
    for pred, fix in _batches(0, [3, 2, 4]):
        metric.update(pred, fix)
        for i in range(1, pred.shape[0]):
            expected.append(np_nss(np_resize(pred[i].numpy(), (24, 32)), fix[i].numpy()))
    assert metric.compute().item() == pytest.approx(np.mean(expected), abs=1e-9)
    assert metric.excluded_images == 3
    metric.reset()
    assert metric.excluded_images == 0


@pytest.mark.parametrize(
    "cls,reference",
    [(CC, np_cc), (KLDiv, np_kld), (SIM, np_sim)],
)
def test_distribution_metric_classes(cls: type, reference) -> None:
    rng = np.random.default_rng(1)
    metric = cls()
    expected = []
    for b in (2, 3):
        pred, gt = rng.random((b, 10, 12)), rng.random((b, 20, 24)) ** 2
        metric.update(torch.from_numpy(pred), torch.from_numpy(gt))
        expected += [reference(np_resize(pred[i], (20, 24)), gt[i]) for i in range(b)]
    assert metric.compute().item() == pytest.approx(np.mean(expected), abs=1e-9)
    assert metric.excluded_images == 0


def test_auc_judd_metric_excludes_images_without_fixations() -> None:
    metric = AUCJudd()
    values = []
    for pred, fix in _batches(2, [3, 3]):
        metric.update(pred, fix)
        values += MF.auc_judd(pred, fix)[1:].tolist()
    assert metric.compute().item() == pytest.approx(np.mean(values))
    assert metric.excluded_images == 2 and all(math.isfinite(v) for v in values)


def _region_data(seed: int):
    """Three images with 2, 0 and 3 regions; image 1 has no fixation; one region holds no fixation."""
    rng = np.random.default_rng(seed)
    size = (30, 40)
    act = np.maximum(rng.standard_normal((3, 5, 5, 7)), 0)
    act[:, 4] = 0  # dead unit
    fix = (rng.random((3, *size)) > 0.93).astype(np.float32)
    fix[1] = 0
    masks = [
        rng.random((2, *size)) > 0.5,
        np.zeros((0, *size), bool),
        rng.random((3, *size)) > 0.6,
    ]
    masks[2][1] = False
    masks[2][1, :4, :4] = True
    fix[2, :4, :4] = 0  # region (2, 1) has pixels but no fixation
    cats = [["face", "text"], [], ["object", "text", "face"]]
    return act, fix, masks, cats


def _naive_unit_table(act, fix, masks, cats):
    """Per-unit, per-category lists of region NSS values from the naive full-resolution reference."""
    table: dict[str, list[np.ndarray]] = {c: [] for c in CATEGORIES}
    excluded = 0
    for b in range(act.shape[0]):
        if masks[b].shape[0] == 0:
            continue
        values = naive_region_nss(act[b : b + 1], fix[b : b + 1], masks[b][None].astype(np.float32))[0]
        for r, name in enumerate(cats[b]):
            if np.isnan(values[0, r]):
                excluded += 1
            else:
                table[name].append(values[:, r])
    return table, excluded


def test_region_nss_metric_matches_naive_accumulation() -> None:
    act, fix, masks, cats = _region_data(3)
    metric = RegionNSS(num_units=5, categories=CATEGORIES)
    metric.update(
        torch.from_numpy(act[:2]),
        torch.from_numpy(fix[:2]),
        [torch.from_numpy(m) for m in masks[:2]],
        cats[:2],
    )
    metric.update(
        torch.from_numpy(act[2:]), torch.from_numpy(fix[2:]), [torch.from_numpy(masks[2])], cats[2:]
    )
    table, excluded = _naive_unit_table(act, fix, masks, cats)
    means = metric.compute()
    assert means.shape == (5, 4)
    for k, name in enumerate(CATEGORIES):
        if table[name]:
            np.testing.assert_allclose(
                means[:, k].numpy(), np.mean(table[name], axis=0), rtol=1e-6, atol=1e-9
            )
        else:
            assert torch.isnan(means[:, k]).all()  # a category never seen
    assert (means[4, :3] == 0).all()  # the dead unit: 0, not NaN
    assert metric.region_counts().tolist() == [len(table[name]) for name in CATEGORIES] == [2, 1, 1, 0]
    assert metric.excluded_regions == excluded == 1
    assert metric.excluded_images == 1
    # sample std per unit and category, from the sum of squares
    face = np.stack(table["face"])
    np.testing.assert_allclose(
        metric.unit_std()[:, 0].numpy(), face.std(axis=0, ddof=1), rtol=1e-6, atol=1e-9
    )
    single = RegionNSS(num_units=5, categories=CATEGORIES)
    single.update(
        torch.from_numpy(act[:1]), torch.from_numpy(fix[:1]), [torch.from_numpy(masks[0])], cats[:1]
    )
    assert torch.isnan(single.unit_std()).all()  # one region per category: no sample std


def test_region_nss_statistics_helpers() -> None:
    act, fix, masks, cats = _region_data(4)
    metric = RegionNSS(num_units=5, categories=CATEGORIES)
    metric.update(torch.from_numpy(act), torch.from_numpy(fix), [torch.from_numpy(m) for m in masks], cats)
    means = metric.compute().numpy()
    assert np.isfinite(means[:, :3]).all()
    top2 = [np.sort(means[:, k])[::-1][:2].mean() for k in range(3)]
    np.testing.assert_allclose(metric.top_k_mean(k=2).numpy()[:3], top2)
    assert math.isnan(metric.top_k_mean(k=2)[3])
    assert metric.count_above(threshold=0.2).tolist() == [int((means[:, k] > 0.2).sum()) for k in range(4)]


def test_padded_tensor_and_indices_give_the_same_result_as_lists() -> None:
    act, fix, masks, cats = _region_data(5)
    listed = RegionNSS(num_units=5, categories=CATEGORIES)
    listed.update(torch.from_numpy(act), torch.from_numpy(fix), [torch.from_numpy(m) for m in masks], cats)
    padded_masks = torch.zeros(3, 3, 30, 40, dtype=torch.bool)
    index = torch.full((3, 3), -1)
    for b, m in enumerate(masks):
        padded_masks[b, : m.shape[0]] = torch.from_numpy(m)
        index[b, : m.shape[0]] = torch.tensor([CATEGORIES.index(c) for c in cats[b]], dtype=torch.long)
    padded = RegionNSS(num_units=5, categories=CATEGORIES)
    padded.update(torch.from_numpy(act), torch.from_numpy(fix), padded_masks, index)
    shorter = RegionNSS(num_units=5, categories=CATEGORIES)
    shorter.update(torch.from_numpy(act), torch.from_numpy(fix), padded_masks, cats)  # lists shorter than R
    for other in (padded, shorter):
        torch.testing.assert_close(other.compute(), listed.compute(), equal_nan=True)
        assert other.excluded_regions == listed.excluded_regions
        assert other.region_counts().tolist() == listed.region_counts().tolist()


def test_region_nss_bad_input() -> None:
    metric = RegionNSS(num_units=2, categories=["a", "b"])
    act, fix = torch.rand(1, 2, 4, 4), torch.ones(1, 8, 8)
    with pytest.raises(ValueError, match="unknown category 'c'"):
        metric.update(act, fix, [torch.ones(1, 8, 8)], [["c"]])
    with pytest.raises(ValueError, match="1 categories for 2 region masks"):
        metric.update(act, fix, [torch.ones(2, 8, 8)], [["a"]])
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        metric.update(act, fix, [torch.ones(1, 8, 8)], [[5]])
    with pytest.raises(ValueError, match=r"region_masks\[0\]"):
        metric.update(act, fix, [torch.ones(1, 8, 9)], [["a"]])
    with pytest.raises(ValueError, match=r"\(B, 2, h, w\)"):
        metric.update(torch.rand(1, 3, 4, 4), fix, [torch.ones(1, 8, 8)], [["a"]])
    with pytest.raises(ValueError, match="unique"):
        RegionNSS(num_units=2, categories=["a", "a"])


def test_nmm_metric_per_unit() -> None:
    rng = np.random.default_rng(6)
    maps = rng.random((4, 3, 6, 6))
    masks = np.zeros((4, 24, 24), np.float32)
    masks[0, 2:8, 2:8] = masks[1, 10:20, 3:9] = masks[3, 0:5, 15:24] = 1  # image 2: empty mask
    metric = NMM(num_units=3)
    metric.update(torch.from_numpy(maps[:1]), torch.from_numpy(masks[:1]))
    metric.update(torch.from_numpy(maps[1:]), torch.from_numpy(masks[1:]))
    per_image = naive_region_nss(maps, np.ones((4, 24, 24)), masks[:, None])[..., 0]
    valid = per_image[[0, 1, 3]]
    np.testing.assert_allclose(metric.compute().numpy(), valid.mean(axis=0), rtol=1e-9)
    np.testing.assert_allclose(metric.unit_std().numpy(), valid.std(axis=0, ddof=1), rtol=1e-9)
    assert metric.top_k_mean(k=1).item() == pytest.approx(valid.mean(axis=0).max())
    assert metric.excluded_images == 1
    single = NMM()
    single.update(torch.from_numpy(maps[:, 0]), torch.from_numpy(masks))  # (B, h, w) model outputs
    assert single.compute().item() == pytest.approx(valid[:, 0].mean())
