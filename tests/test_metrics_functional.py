"""saliency_probe.metrics.functional against independent numpy references (pysaliency / MIT definitions),
hand-computed values and a naive full-resolution computation (OpenCV resize, z-score, average)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from saliency_probe.metrics import functional as MF
from saliency_probe.metrics.resize import project_weights

MIT_EPS = 2.2204e-16


# ----------------------------------------------------------------------------- numpy references
def np_resize(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize with half-pixel centres (OpenCV INTER_LINEAR, float64)."""
    return cv2.resize(np.asarray(a, np.float64), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def np_nss(s: np.ndarray, fix: np.ndarray) -> float:
    """pysaliency.metrics.NSS on the unique fixated pixels, averaged."""
    s = np.asarray(s, np.float64)
    ys, xs = np.nonzero(fix)
    values = s[ys, xs] - s.mean()
    std = s.std()
    if std:
        values = values / std
    return float(values.mean())


def np_cc(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(np.float64), b.ravel().astype(np.float64))[0, 1])


def np_density(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, np.float64)
    if m.min() < 0:
        m = m - m.min()
    total = m.sum()
    return m / total if total else np.full_like(m, 1.0 / m.size)


def np_kld(s: np.ndarray, gt: np.ndarray) -> float:
    """MIT benchmark KLdiv.m (and pysaliency.MIT_KLDiv)."""
    p, q = np_density(s), np_density(gt)
    return float((q * np.log(MIT_EPS + q / (p + MIT_EPS))).sum())


def np_sim(s: np.ndarray, gt: np.ndarray) -> float:
    return float(np.minimum(np_density(s), np_density(gt)).sum())


def mit_auc_judd(s: np.ndarray, fix: np.ndarray, seed: int = 0) -> float:
    """Line-by-line port of the MIT benchmark's AUC_Judd.m (jitter on, no resize: same size)."""
    rng = np.random.default_rng(seed)
    s = np.asarray(s, np.float64) + rng.random(s.shape) / 1e7
    s = (s - s.min()) / (s.max() - s.min())
    flat, f = s.ravel(), fix.ravel() > 0
    thresholds = np.sort(flat[f])[::-1]
    n_fix, n_pix = thresholds.size, flat.size
    tp, fp = np.zeros(n_fix + 2), np.zeros(n_fix + 2)
    tp[-1] = fp[-1] = 1
    for i, t in enumerate(thresholds, start=1):
        above = (flat >= t).sum()
        tp[i] = i / n_fix
        fp[i] = (above - i) / (n_pix - n_fix)
    return float(np.trapezoid(tp, fp))


def np_mann_whitney(pos: np.ndarray, neg: np.ndarray) -> float:
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


def naive_region_nss(act: np.ndarray, fix: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """The authors' loop: resize every map to the image, z-score (population std), average over regions."""
    b_n, c_n = act.shape[:2]
    r_n = masks.shape[1]
    size = fix.shape[-2:]
    out = np.full((b_n, c_n, r_n), np.nan)
    for b in range(b_n):
        for c in range(c_n):
            big = np_resize(act[b, c], size)
            std = big.std()
            z = (big - big.mean()) / std if std > 1e-12 * np.abs(big).max() else np.zeros_like(big)
            for r in range(r_n):
                sel = (fix[b] > 0) & (masks[b, r] > 0)
                if sel.any():
                    out[b, c, r] = z[sel].mean()
    return out


def random_fixations(rng: np.random.Generator, shape: tuple[int, ...], n: int) -> np.ndarray:
    fix = np.zeros(shape, np.float32)
    flat = fix.reshape(-1, shape[-2] * shape[-1])
    for row in flat:
        row[rng.choice(row.size, size=n, replace=False)] = 1
    return fix


# ----------------------------------------------------------------------------- NSS
def test_nss_hand_computed() -> None:
    s = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    fix = torch.tensor([[0, 0], [0, 1]])
    # mean 1.5, population std sqrt(1.25): (3 - 1.5) / 1.1180339887 = 1.3416407865
    assert MF.nss(s, fix).item() == pytest.approx(1.3416407865, abs=1e-7)
    # the fixation map is a set: a pixel fixated twice (value 2) counts once
    twice = torch.tensor([[2, 0], [0, 1]])
    assert MF.nss(s, twice).item() == pytest.approx((-1.5 + 1.5) / 2 / 1.118034, abs=1e-6)


def test_nss_matches_pysaliency_definition_same_size() -> None:
    rng = np.random.default_rng(1)
    s = rng.random((4, 37, 53)).astype(np.float32)
    fix = random_fixations(rng, (4, 37, 53), 25)
    got = MF.nss(torch.from_numpy(s), torch.from_numpy(fix))
    assert got.dtype == torch.float32 and got.shape == (4,)
    expected = [np_nss(s[i], fix[i]) for i in range(4)]
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("small,big", [((14, 14), (48, 64)), ((7, 9), (61, 33)), ((20, 30), (20, 45))])
def test_nss_small_map_equals_resized_reference(small: tuple[int, int], big: tuple[int, int]) -> None:
    rng = np.random.default_rng(2)
    s = rng.standard_normal((3, *small))
    fix = random_fixations(rng, (3, *big), 30)
    got = MF.nss(torch.from_numpy(s), torch.from_numpy(fix) > 0)
    expected = [np_nss(np_resize(s[i], big), fix[i]) for i in range(3)]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-9, atol=1e-12)


def test_nss_larger_map_is_downsampled() -> None:
    rng = np.random.default_rng(3)
    s = rng.random((2, 50, 70))
    fix = random_fixations(rng, (2, 21, 30), 12)
    expected = [np_nss(np_resize(s[i], (21, 30)), fix[i]) for i in range(2)]
    np.testing.assert_allclose(
        MF.nss(torch.from_numpy(s), torch.from_numpy(fix)).numpy(), expected, rtol=1e-9
    )


def test_nss_broadcasts_batch_dimensions() -> None:
    rng = np.random.default_rng(4)
    s = torch.from_numpy(rng.random((2, 3, 8, 8)))
    fix = torch.from_numpy(random_fixations(rng, (2, 1, 16, 16), 5))
    got = MF.nss(s, fix)
    assert got.shape == (2, 3)
    assert got[1, 2].item() == pytest.approx(np_nss(np_resize(s[1, 2].numpy(), (16, 16)), fix[1, 0].numpy()))


def test_nss_constant_maps_give_zero_including_rounding_noise() -> None:
    filled = torch.full((1, 48, 64), 0.7, dtype=torch.float64)
    assert filled.std().item() > 0  # torch's std of this "constant" map is rounding noise, not 0
    fix = torch.zeros(1, 48, 64)
    fix[0, 3, 4] = 1
    assert MF.nss(filled, fix).item() == 0.0
    small = torch.full((2, 7, 7), 0.3, dtype=torch.float32)
    assert MF.nss(small, fix.expand(2, -1, -1)).tolist() == [0.0, 0.0]
    assert MF.nss(torch.zeros(1, 5, 5), fix).item() == 0.0
    # a genuine but tiny structure is not "constant": scale invariance holds down to small contrasts
    tiny = 1.0 + 1e-9 * torch.from_numpy(np.random.default_rng(5).random((1, 48, 64)))
    assert MF.nss(tiny, fix).item() == pytest.approx(np_nss(tiny[0].numpy(), fix[0].numpy()), rel=1e-5)


def test_nss_no_fixation_is_nan() -> None:
    s = torch.rand(3, 6, 6)
    fix = torch.zeros(3, 12, 12)
    fix[1, 2, 2] = 1
    got = MF.nss(s, fix)
    assert torch.isnan(got[0]) and torch.isnan(got[2]) and torch.isfinite(got[1])


@pytest.mark.parametrize("size", [(6, 6), (24, 24)])
def test_nss_gradients_are_finite_on_constant_maps(size: tuple[int, int]) -> None:
    fix = torch.zeros(3, 24, 24)
    fix[0, 5, 7] = fix[1, 10, 3] = 1  # image 2 has no fixation: the loss ignores it
    pred = torch.full((3, *size), 0.25, requires_grad=True)
    loss = -MF.nss(pred, fix).nanmean()
    loss.backward()
    assert loss.item() == 0.0
    assert pred.grad is not None and torch.isfinite(pred.grad).all()
    # a non-constant prediction gets a useful (non-zero, finite) gradient, and none for the empty image
    pred2 = torch.rand(3, *size, generator=torch.Generator().manual_seed(0)).requires_grad_()
    (-MF.nss(pred2, fix).nanmean()).backward()
    assert torch.isfinite(pred2.grad).all() and pred2.grad[:2].abs().sum() > 0
    assert pred2.grad[2].abs().sum() == 0


def test_nss_gradient_matches_finite_differences() -> None:
    fix = torch.zeros(2, 20, 17, dtype=torch.float64)
    fix[0, 3, 4] = fix[0, 15, 9] = fix[1, 7, 7] = 1
    pred = torch.rand(2, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p: MF.nss(p, fix), (pred,), fast_mode=True)


# ----------------------------------------------------------------------------- CC, KLD, SIM
def test_cc_kld_sim_match_references_on_random_maps() -> None:
    rng = np.random.default_rng(6)
    s = rng.random((3, 40, 50)).astype(np.float32)
    gt = rng.random((3, 40, 50)).astype(np.float32) ** 3
    ts, tg = torch.from_numpy(s), torch.from_numpy(gt)
    np.testing.assert_allclose(
        MF.cc(ts, tg).numpy(), [np_cc(s[i], gt[i]) for i in range(3)], atol=1e-6, rtol=0
    )
    np.testing.assert_allclose(
        MF.sim(ts, tg).numpy(), [np_sim(s[i], gt[i]) for i in range(3)], atol=1e-6, rtol=0
    )
    np.testing.assert_allclose(
        MF.kld(ts, tg).numpy(), [np_kld(s[i], gt[i]) for i in range(3)], atol=1e-5, rtol=0
    )


def test_distribution_metrics_resize_small_predictions() -> None:
    rng = np.random.default_rng(7)
    s, gt = rng.random((10, 15)), rng.random((33, 41))
    big = np_resize(s, (33, 41))
    ts, tg = torch.from_numpy(s), torch.from_numpy(gt)
    assert MF.cc(ts, tg).item() == pytest.approx(np_cc(big, gt), abs=1e-9)
    assert MF.sim(ts, tg).item() == pytest.approx(np_sim(big, gt), abs=1e-9)
    assert MF.kld(ts, tg).item() == pytest.approx(np_kld(big, gt), abs=1e-9)


def test_cc_constant_maps_give_zero() -> None:
    gt = torch.rand(1, 48, 64)
    filled = torch.full((1, 48, 64), 0.7, dtype=torch.float64)  # torch std 1.1e-16, not 0
    assert MF.cc(filled, gt).item() == 0.0
    assert MF.cc(gt, filled).item() == 0.0
    assert MF.cc(gt, gt).item() == pytest.approx(1.0, abs=1e-12)
    assert MF.cc(gt, -3 * gt + 1).item() == pytest.approx(-1.0, abs=1e-9)


def test_density_conventions() -> None:
    negative = torch.tensor([[-1.0, 0.0], [1.0, 2.0]])
    np.testing.assert_allclose(MF.to_density(negative).numpy(), [[0.0, 1 / 6], [2 / 6, 3 / 6]])
    np.testing.assert_allclose(MF.to_density(torch.zeros(2, 2)).numpy(), np.full((2, 2), 0.25))
    # identical densities: SIM 1, KLD 0; an all-zero prediction is uniform
    gt = torch.tensor([[1.0, 3.0], [0.0, 4.0]])
    assert MF.sim(gt, 2 * gt).item() == pytest.approx(1.0)
    assert MF.kld(gt, 2 * gt).item() == pytest.approx(0.0, abs=1e-12)
    # hand-computed: P uniform, Q = (1,3,0,4)/8: KLD = sum q log(q / 0.25)
    q = np.array([1, 3, 0, 4]) / 8
    expected = sum(v * np.log(MIT_EPS + v / (0.25 + MIT_EPS)) for v in q)
    assert MF.kld(torch.zeros(2, 2), gt).item() == pytest.approx(expected, abs=1e-12)
    assert MF.sim(torch.zeros(2, 2), gt).item() == pytest.approx(0.125 + 0.25 + 0 + 0.25)


# ----------------------------------------------------------------------------- AUC
def test_auc_judd_hand_computed_and_ties() -> None:
    s = torch.tensor([[0.1, 0.4], [0.35, 0.8]])
    fix = torch.tensor([[0, 0], [1, 1]])
    # points (0,0) (0,.5) (.5,1) (1,1): area .5 * .75 + .5 * 1
    assert MF.auc_judd(s, fix).item() == pytest.approx(0.875)
    # a constant map (4 of 16 pixels fixated): the MIT code's jitter orders the tie at random; each
    # unfixated pixel earns (2k + 1) / 8 with k ~ U{0..3} fixations above it, or 1 below all: mean 0.6
    assert MF.auc_judd(torch.ones(4, 4), torch.eye(4)).item() == pytest.approx(0.6)
    jittered = np.mean([mit_auc_judd(np.ones((4, 4)), np.eye(4), seed=k) for k in range(4000)])
    assert jittered == pytest.approx(0.6, abs=0.01)


def test_auc_judd_matches_mit_code() -> None:
    rng = np.random.default_rng(8)
    s = rng.random((3, 30, 40)) ** 2
    fix = random_fixations(rng, (3, 30, 40), 40)
    got = MF.auc_judd(torch.from_numpy(s), torch.from_numpy(fix)).numpy()
    np.testing.assert_allclose(got, [mit_auc_judd(s[i], fix[i]) for i in range(3)], atol=2e-3)
    # without ties the jitter changes nothing: agreement far below the allowed 2e-3
    np.testing.assert_allclose(got, [mit_auc_judd(s[i], fix[i], seed=9) for i in range(3)], atol=1e-6)
    # a quantised map (many ties): the exact tie-aware value equals the MIT code's average over jitters
    q = np.round(s[0] * 4) / 4
    jittered = np.mean([mit_auc_judd(q, fix[0], seed=k) for k in range(200)])
    assert MF.auc_judd(torch.from_numpy(q), torch.from_numpy(fix[0])).item() == pytest.approx(
        jittered, abs=1e-3
    )


def test_auc_judd_resizes_and_marks_empty() -> None:
    rng = np.random.default_rng(10)
    s = rng.random((2, 8, 10))
    fix = random_fixations(rng, (2, 24, 30), 20)
    fix[1] = 0
    got = MF.auc_judd(torch.from_numpy(s), torch.from_numpy(fix))
    assert got[0].item() == pytest.approx(mit_auc_judd(np_resize(s[0], (24, 30)), fix[0]), abs=2e-3)
    assert torch.isnan(got[1])


def test_auc_shuffled_is_exact_mann_whitney() -> None:
    rng = np.random.default_rng(11)
    s = np.round(rng.random((2, 25, 35)) * 10) / 10  # ties between positives and negatives
    fix = random_fixations(rng, (2, 25, 35), 30)
    other = random_fixations(rng, (2, 25, 35), 60)
    got = MF.auc_shuffled(torch.from_numpy(s), torch.from_numpy(fix), torch.from_numpy(other))
    expected = [np_mann_whitney(s[i][fix[i] > 0], s[i][other[i] > 0]) for i in range(2)]
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-12)
    assert torch.isnan(MF.auc_shuffled(torch.from_numpy(s[0]), torch.from_numpy(fix[0]), torch.zeros(25, 35)))


# ----------------------------------------------------------------------------- region NSS and NMM
def test_region_nss_equals_naive_full_resolution_reference() -> None:
    rng = np.random.default_rng(12)
    b_n, c_n, r_n, small, big = 3, 9, 4, (7, 11), (53, 67)
    act = np.maximum(rng.standard_normal((b_n, c_n, *small)), 0).astype(np.float32)  # post-ReLU
    act[:, 2] = 0  # dead unit
    act[1, 5] = 1.5  # constant unit in one image
    fix = random_fixations(rng, (b_n, *big), 40)
    masks = (rng.random((b_n, r_n, *big)) > 0.6).astype(np.float32)
    masks[0, 3] = 0  # empty region
    masks[2, 1] = 0
    masks[2, 1, :5, :5] = 1
    fix[2, :5, :5] = 0  # a region with pixels but no fixation
    got = MF.region_nss(torch.from_numpy(act), torch.from_numpy(fix), torch.from_numpy(masks))
    expected = naive_region_nss(act, fix, masks)
    assert got.shape == (b_n, c_n, r_n) and got.dtype == torch.float64
    np.testing.assert_array_equal(np.isnan(got.numpy()), np.isnan(expected))
    assert np.isnan(expected[0, :, 3]).all() and np.isnan(expected[2, :, 1]).all()
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-9)
    assert (got[:, 2].nan_to_num() == 0).all() and (got[1, 5] == 0).all()


def test_region_nss_same_size_and_larger_maps() -> None:
    rng = np.random.default_rng(13)
    fix = random_fixations(rng, (2, 20, 24), 30)
    masks = (rng.random((2, 3, 20, 24)) > 0.5).astype(np.float32)
    for size in [(20, 24), (31, 29)]:
        act = rng.random((2, 4, *size))
        got = MF.region_nss(torch.from_numpy(act), torch.from_numpy(fix), torch.from_numpy(masks))
        np.testing.assert_allclose(got.numpy(), naive_region_nss(act, fix, masks), rtol=1e-9)


def test_region_nss_agrees_with_nss_on_the_whole_image() -> None:
    rng = np.random.default_rng(14)
    act = torch.from_numpy(rng.random((2, 5, 6, 8)))
    fix = torch.from_numpy(random_fixations(rng, (2, 30, 40), 15))
    whole = torch.ones(2, 1, 30, 40)
    torch.testing.assert_close(MF.region_nss(act, fix, whole)[..., 0], MF.nss(act, fix[:, None]))
    assert MF.region_nss(act, fix, torch.ones(2, 0, 30, 40)).shape == (2, 5, 0)


def test_nmm_equals_naive_reference() -> None:
    rng = np.random.default_rng(15)
    maps = rng.random((3, 4, 9, 13))
    maps[0, 1] = 0
    masks = np.zeros((3, 45, 60), np.float32)
    masks[0, 10:20, 5:15] = 1
    masks[1, 30:44, 40:59] = 1
    got = MF.nmm(torch.from_numpy(maps), torch.from_numpy(masks))
    expected = naive_region_nss(maps, np.ones((3, 45, 60)), masks[:, None])[..., 0]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-9)
    assert torch.isnan(got[2]).all() and got[0, 1] == 0


def test_sparse_and_dense_projection_agree() -> None:
    rng = np.random.default_rng(16)
    sparse = torch.from_numpy(random_fixations(rng, (3, 40, 50), 10))
    dense = torch.from_numpy((rng.random((3, 40, 50)) > 0.1).astype(np.float64))
    uh = np_resize(np.eye(8), (40, 8))  # column j: e_j resized along the rows
    uw = np_resize(np.eye(6), (6, 50)).T
    for weights in (sparse, dense):
        expected = np.einsum("hy,nhw,wx->nyx", uh, weights.numpy(), uw)
        np.testing.assert_allclose(project_weights(weights, (8, 6)).numpy(), expected, atol=1e-12)


# ----------------------------------------------------------------------------- unit statistics
def test_top_k_mean_and_count_above() -> None:
    nan = float("nan")
    means = torch.tensor([[3.0, nan, 1.0], [1.0, nan, nan], [2.0, nan, 2.0], [0.5, nan, 1.6]])
    torch.testing.assert_close(MF.top_k_mean(means, 2), torch.tensor([2.5, nan, 1.8]), equal_nan=True)
    torch.testing.assert_close(
        MF.top_k_mean(means, 10), torch.tensor([1.625, nan, 1.5333333]), equal_nan=True
    )
    assert MF.count_above(means, 1.5).tolist() == [2, 0, 2]
    assert MF.top_k_mean(torch.tensor([1.0, 4.0, 2.0]), 1).item() == 4.0


# ----------------------------------------------------------------------------- bad input
def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="fixation_map"):
        MF.nss(torch.rand(4, 4), torch.rand(4))
    with pytest.raises(ValueError, match="do not broadcast"):
        MF.nss(torch.rand(3, 4, 4), torch.rand(2, 8, 8))
    with pytest.raises(ValueError, match="region_masks"):
        MF.region_nss(torch.rand(2, 3, 4, 4), torch.rand(2, 8, 8), torch.rand(2, 8, 8))
    with pytest.raises(ValueError, match="mismatch"):
        MF.region_nss(torch.rand(2, 3, 4, 4), torch.rand(2, 8, 8), torch.rand(2, 1, 8, 9))
    with pytest.raises(ValueError, match="k must be"):
        MF.top_k_mean(torch.rand(3, 2), 0)
    with pytest.raises(TypeError, match="saliency_map"):
        MF.cc(np.zeros((3, 3)), torch.rand(3, 3))  # type: ignore[arg-type]


def test_sparse_projection_in_several_chunks() -> None:
    rng = np.random.default_rng(17)
    weights = torch.from_numpy(random_fixations(rng, (1, 200, 200), 18000).astype(np.float64))  # > 1 chunk
    uh, uw = np_resize(np.eye(2), (200, 2)), np_resize(np.eye(3), (3, 200)).T
    expected = np.einsum("hy,nhw,wx->nyx", uh, weights.numpy(), uw)
    np.testing.assert_allclose(project_weights(weights, (2, 3)).numpy(), expected, rtol=1e-12)
