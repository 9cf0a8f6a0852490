"""The fast region NSS path: regions as fixated pixels (``FixatedRegions``), the chunked and buffered small-map
statistics (``MapStats``) and the bilinear taps, against naive full-resolution references and the mask path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from region_sets_reference import as_masks, mask_region_sets
from test_metrics_functional import naive_region_nss, np_resize, random_fixations

from saliency_probe.metrics import RegionNSS
from saliency_probe.metrics import functional as MF
from saliency_probe.metrics import resize as _resize
from saliency_probe.probe.regions import probe_region_points

CATEGORIES = ["face", "text", "object"]


def _data(seed: int) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Post-ReLU float32 maps with a dead and a constant unit, fixations, and 3 / 1 / 2 region masks."""
    rng = np.random.default_rng(seed)
    act = np.maximum(rng.standard_normal((3, 6, 7, 9)), 0).astype(np.float32)
    act[:, 1] = 0  # dead unit
    act[2, 4] = 0.75  # constant unit in one image
    fix = random_fixations(rng, (3, 41, 57), 35)
    fix[1] = 0  # an image without fixations
    masks = [(rng.random((r, 41, 57)) > 0.55) for r in (3, 1, 2)]
    masks[0][2] = False
    masks[0][2, :6, :6] = True
    fix[0, :6, :6] = 0  # a region with pixels but no fixation
    return act, fix, masks


def _padded(masks: list[np.ndarray]) -> np.ndarray:
    out = np.zeros((len(masks), max(m.shape[0] for m in masks), *masks[0].shape[1:]), np.float32)
    for b, m in enumerate(masks):
        out[b, : m.shape[0]] = m
    return out


@pytest.mark.parametrize("chunk", [None, 2 * 63])  # one pass per image, or 2 maps per pass (several chunks)
def test_fixated_regions_equal_the_naive_full_resolution_reference(
    monkeypatch: pytest.MonkeyPatch, chunk: int | None
) -> None:
    if chunk is not None:
        monkeypatch.setattr(_resize, "_STATS_CHUNK_ELEMENTS", chunk)
    act, fix, masks = _data(0)
    regions = MF.fixated_regions(torch.from_numpy(fix), [torch.from_numpy(m) for m in masks])
    assert regions.membership.shape == (int((fix > 0).sum()), 3) and regions.membership.dtype == torch.bool
    assert regions.fixations_per_image().tolist() == (fix > 0).sum(axis=(1, 2)).tolist()
    got = MF.region_nss_fixated(torch.from_numpy(act), regions)
    expected = naive_region_nss(act, fix, _padded(masks))
    assert got.shape == (3, 6, 3) and got.dtype == torch.float64
    np.testing.assert_array_equal(np.isnan(got.numpy()), np.isnan(expected))
    assert np.isnan(expected[0, :, 2]).all() and np.isnan(expected[1]).all()  # no fixation: excluded
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-9)
    assert (got[:, 1].nan_to_num() == 0).all() and (got[2, 4].nan_to_num() == 0).all()
    padded = MF.region_nss(torch.from_numpy(act), torch.from_numpy(fix), torch.from_numpy(_padded(masks)))
    torch.testing.assert_close(padded, got, equal_nan=True, rtol=0, atol=0)


def test_map_stats_in_chunks_buffered_or_differentiable_equal_the_resized_maps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(1)
    maps = rng.standard_normal((4, 5, 6, 8)) * 3 + 1
    maps[1, 2] = 0.7  # constant
    full = (30, 41)
    big = np.stack([[np_resize(m, full) for m in row] for row in maps])
    projections = torch.from_numpy(rng.random((4, 3, 6, 8)))
    monkeypatch.setattr(_resize, "_STATS_CHUNK_ELEMENTS", 3 * 48)  # 3 maps per pass: 2 passes per image
    plain = _resize.MapStats(torch.from_numpy(maps), full, projections=projections)
    tracked = torch.from_numpy(maps).requires_grad_(True)
    graph = _resize.MapStats(tracked, full, projections=projections)  # the autograd path, no buffers
    for stats in (plain, graph):
        np.testing.assert_allclose(
            (stats.mean + stats.offset).detach().numpy(), big.mean(axis=(-2, -1)), rtol=1e-12
        )
        std = stats.std.detach().numpy()
        np.testing.assert_allclose(
            std[~stats.constant.numpy()], big.std(axis=(-2, -1))[~stats.constant.numpy()]
        )
        assert stats.constant.nonzero().tolist() == [[1, 2]]
        expected = np.einsum(
            "bchw,brhw->bcr", maps - maps.mean(axis=(-2, -1), keepdims=True), projections.numpy()
        )
        np.testing.assert_allclose(stats.sums.detach().numpy(), expected, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(
            stats.centered.detach(), torch.from_numpy(maps) - stats.offset[..., None, None]
        )
    graph.std.sum().backward()
    assert tracked.grad is not None and torch.isfinite(tracked.grad).all() and tracked.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="projections"):
        _resize.MapStats(torch.from_numpy(maps), full, projections=projections[:2])


@pytest.mark.parametrize("out_size,in_size", [(600, 28), (800, 14), (13, 13), (5, 9), (53, 7)])
def test_resize_taps_rebuild_the_resize_matrix(out_size: int, in_size: int) -> None:
    matrix = _resize.resize_matrix(out_size, in_size, torch.device("cpu"), torch.float64)
    index, weight = _resize.resize_taps(out_size, in_size, torch.device("cpu"), torch.float64)
    assert index.shape[1] <= 2
    rebuilt = torch.zeros_like(matrix).scatter_add_(1, index, weight)
    torch.testing.assert_close(rebuilt, matrix, rtol=0, atol=0)


def test_probe_region_points_hold_the_probe_region_sets() -> None:
    _, fix, masks = _data(2)
    fix[1, 10:12, 10:12] = 1  # fixations for the second image
    fixations = torch.from_numpy(fix)
    tensors = [torch.from_numpy(m) for m in masks]
    names = [["face", "text", "face"], ["object"], ["text", "text"]]
    stems = ["a", "b", "c"]
    sets, index = mask_region_sets(fixations, tensors, names, CATEGORIES, stems, seed=3, shuffled=True)
    regions, point_index = probe_region_points(
        fixations, tensors, names, CATEGORIES, stems, seed=3, shuffled=True
    )
    assert torch.equal(point_index, index) and regions.batch == 3 and regions.size == (41, 57)
    rebuilt = as_masks(regions, sets.shape[1])
    # the real slots hold each mask's fixated pixels, the control slots their (fixated) draws
    assert torch.equal(rebuilt, sets & (fixations[:, None] != 0))
    assert rebuilt[:, 3:].any()  # the control is present
    plain, _ = probe_region_points(fixations, tensors, names, CATEGORIES, stems, seed=3, shuffled=False)
    assert torch.equal(plain.membership, regions.membership[:, :3])
    with pytest.raises(ValueError, match="image b: unknown region categories \\['dog'\\]"):
        probe_region_points(fixations, tensors, [names[0], ["dog"], names[2]], CATEGORIES, stems, 0, True)


def test_region_nss_metric_takes_fixated_regions_in_place_of_masks() -> None:
    act, fix, masks = _data(3)
    names = [["face", "text", "face"], ["object"], ["text", "object"]]
    tensors = [torch.from_numpy(m) for m in masks]
    listed = RegionNSS(num_units=6, categories=CATEGORIES)
    listed.update(torch.from_numpy(act), torch.from_numpy(fix), tensors, names)
    regions, index = probe_region_points(
        torch.from_numpy(fix), tensors, names, CATEGORIES, ["a", "b", "c"], 0, False
    )
    fast = RegionNSS(num_units=6, categories=CATEGORIES)
    fast.update(torch.from_numpy(act), torch.from_numpy(fix), regions, index)
    torch.testing.assert_close(fast.compute(), listed.compute(), equal_nan=True, rtol=0, atol=0)
    assert (
        fast.excluded_regions == listed.excluded_regions == 1 + 1
    )  # the empty region, the unfixated image's
    assert fast.excluded_images == listed.excluded_images == 1
    assert fast.region_counts().tolist() == listed.region_counts().tolist()
    with pytest.raises(ValueError, match="region_masks: FixatedRegions of 3 images"):
        fast.update(torch.from_numpy(act[:2]), torch.from_numpy(fix[:2]), regions, index[:2])
