"""Classical saliency models: hand-checkable behaviour on drawn stimuli, and the building blocks against
independent references (the C++ flood fill, the closed-form equilibrium of a reversible chain, the MATLAB
decimation loops, hand-computed normalisation)."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from saliency_probe import matlab
from saliency_probe.classical import BMS, CLASSICAL_MODELS, GBVS, SaliencyModel, build_classical, features
from saliency_probe.classical import gbvs as gbvs_module
from saliency_probe.classical.bms import bms_feature_maps
from saliency_probe.classical.itti import max_normalize_std

NAMES = ("bms", "gbvs", "itti", "spectral_residual")
CONF = Path(__file__).resolve().parents[1] / "conf" / "classical"


@pytest.fixture(scope="module")
def models() -> dict[str, SaliencyModel]:
    return {name: build_classical(name) for name in NAMES}


def disc_image(height: int = 160, width: int = 200, centre: tuple[int, int] = (70, 135), radius: int = 14):
    image = np.full((height, width, 3), 128, np.uint8)
    cv2.circle(image, (centre[1], centre[0]), radius, (255, 255, 255), -1)
    rows, cols = np.mgrid[:height, :width]
    return image, (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2


def search_array(target: tuple[int, int] = (2, 3), grid: int = 5, radius: int = 9, spacing: int = 40):
    """A grid of green discs on grey with one red target; returns the image and each item's mask."""
    size = spacing * grid
    image = np.full((size, size, 3), 128, np.uint8)
    rows, cols = np.mgrid[:size, :size]
    masks = {}
    for i in range(grid):
        for j in range(grid):
            cy, cx = spacing // 2 + i * spacing, spacing // 2 + j * spacing
            colour = (220, 40, 40) if (i, j) == target else (40, 180, 40)
            cv2.circle(image, (cx, cy), radius, colour, -1)
            masks[(i, j)] = (rows - cy) ** 2 + (cols - cx) ** 2 <= radius**2
    return image, masks


# --- interface and registry ------------------------------------------------------------------------------------


def test_registry_lists_the_four_models_and_rejects_unknown_names():
    build_classical("bms")
    assert set(CLASSICAL_MODELS) == set(NAMES)
    with pytest.raises(ValueError, match="valid names: bms, gbvs, itti, spectral_residual"):
        build_classical("deepgaze")
    with pytest.raises(TypeError, match="valid parameters"):
        build_classical("bms", sample_stp=4)
    assert build_classical("bms", sample_step=4).sample_step == 4


@pytest.mark.parametrize("name", NAMES)
def test_hydra_config_builds_the_published_defaults(name):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    model = instantiate(OmegaConf.load(CONF / f"{name}.yaml"))
    assert model == build_classical(name)
    assert model.name == name


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(131, 149), (149, 131)])
def test_output_is_finite_float32_of_the_input_size(models, name, shape):
    image = np.random.default_rng(sum(shape)).integers(0, 256, (*shape, 3), dtype=np.uint8)
    saliency = models[name](image)
    assert saliency.dtype == np.float32 and saliency.shape == shape
    assert np.isfinite(saliency).all() and saliency.max() > saliency.min()


def test_bad_input_is_refused_with_a_clear_message(models):
    with pytest.raises(ValueError, match=r"shape \(H, W, 3\)"):
        models["bms"](np.zeros((140, 140), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        models["bms"](np.zeros((140, 140, 3), np.float32))
    with pytest.raises(ValueError, match="odd width"):
        BMS(dilation_width_1=6)


@pytest.mark.parametrize("name", ["gbvs", "itti"])
def test_gbvs_code_refuses_images_under_128_pixels(models, name):
    with pytest.raises(ValueError, match=r"at least 128x128 pixels.*got 127x300"):
        models[name](np.zeros((127, 300, 3), np.uint8))


# --- hand-checkable behaviour ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_single_bright_disc_is_the_most_salient_region(models, name):
    image, disc = disc_image()
    saliency = models[name](image)
    ring = cv2.dilate(disc.astype(np.uint8), np.ones((17, 17), np.uint8)).astype(bool)  # disc + 8 px
    peak = np.unravel_index(np.argmax(saliency), saliency.shape)
    assert ring[peak], f"{name}: maximum at {peak}, outside the disc"
    assert saliency[disc].mean() > 4 * saliency[~ring].mean()


def test_bms_suppresses_regions_touching_the_border(models):
    image = np.full((160, 200, 3), 100, np.uint8)
    image[40:120, 0:12] = 230  # touches the left border
    image[40:120, 120:132] = 230  # the same bar, surrounded
    saliency = models["bms"](image)
    assert saliency[40:120, 0:12].mean() < 0.25 * saliency[40:120, 120:132].mean()


def test_bms_bgr_flag_changes_colour_images_only():
    rng = np.random.default_rng(3)
    colour = cv2.GaussianBlur(rng.integers(0, 256, (90, 120, 3), dtype=np.uint8), (0, 0), 4)
    grey = np.repeat(colour[..., :1], 3, axis=2)
    correct, swapped = BMS(max_dim=120), BMS(max_dim=120, bgr_channel_order=True)
    assert not np.allclose(correct(colour), swapped(colour), atol=1e-3)
    np.testing.assert_array_equal(correct(grey), swapped(grey))


def test_bms_ranks_a_colour_singleton_first(models):
    image, masks = search_array()
    saliency = models["bms"](image)
    means = {key: float(saliency[mask].mean()) for key, mask in masks.items()}
    target = means.pop((2, 3))
    assert target > max(means.values())


def test_spectral_residual_is_opencv(models):
    image = np.random.default_rng(5).integers(0, 256, (97, 133, 3), dtype=np.uint8)
    detector = cv2.saliency.StaticSaliencySpectralResidual_create()
    ok, expected = detector.computeSaliency(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert ok
    np.testing.assert_allclose(models["spectral_residual"](image), expected, rtol=0, atol=1e-6)


# --- building blocks against independent references ------------------------------------------------------------


def _cpp_attention_sum(feature_maps: list[np.ndarray], step: float, dilation_width: int) -> np.ndarray:
    """The released C++ BMS loop, transcribed: flood fill from every border pixel, 3x3 dilation iterated."""
    total = np.zeros(feature_maps[0].shape, np.float64)
    for feature in feature_maps:
        threshold = float(feature.min())
        while threshold < float(feature.max()):
            bm = np.where(feature > threshold, 255, 0).astype(np.uint8)
            ret = bm.copy()
            height, width = bm.shape
            seeds = [(0, r) for r in range(height)] + [(width - 1, r) for r in range(height)]
            seeds += [(c, 0) for c in range(width)] + [(c, height - 1) for c in range(width)]
            for x, y in seeds:
                if ret[y, x] != 1:
                    cv2.floodFill(ret, None, (x, y), 1, 0, 0, 8)
            inside = ret != 1
            for part in (inside & (bm > 0), inside & (bm == 0)):
                dilated = cv2.dilate(part.astype(np.uint8), None, iterations=(dilation_width - 1) // 2)
                norm = math.sqrt(float(dilated.sum()))
                if norm > 0:
                    total += dilated / norm
            threshold += step
    return total


def test_bms_surroundedness_matches_the_cpp_flood_fill():
    rng = np.random.default_rng(11)
    small = rng.integers(0, 256, (30, 36, 3), dtype=np.uint8)  # unblurred: many diagonal-only contacts
    model = BMS(sample_step=24)
    maps = bms_feature_maps(small, False, model.whitening_reg)
    np.testing.assert_allclose(model.boolean_map_sum(small), _cpp_attention_sum(maps, 24, 7), rtol=1e-5)


def test_bms_whitening_decorrelates_the_lab_channels():
    rng = np.random.default_rng(2)
    base = rng.normal(size=(60, 80, 1))
    image = np.clip(128 + 60 * base + 10 * rng.normal(size=(60, 80, 3)), 0, 255).astype(np.uint8)
    maps = np.stack([m.astype(float).ravel() for m in bms_feature_maps(image, False, 0.0)])
    correlation = np.corrcoef(maps)
    assert np.abs(correlation[np.triu_indices(3, 1)]).max() < 0.2  # the raw channels correlate at ~0.9


def test_gbvs_equilibrium_is_the_degree_distribution():
    # A reversible chain with symmetric weights W_ij = w(d_ij) |M_i - M_j| has stationary distribution
    # proportional to the node degrees sum_j W_ij: an independent closed form for the power iteration.
    feature = np.random.default_rng(4).random((6, 7))
    cells = [(r, c) for r in range(6) for c in range(7)]
    sigma = 0.15 * 6.5
    weights = np.array(
        [
            [
                math.exp(-((a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2) / (2 * sigma**2))
                * abs(feature[a] - feature[b])
                for b in cells
            ]
            for a in cells
        ]
    )
    degree = weights.sum(axis=1)
    activation = gbvs_module.graph_activation(feature, 0.15, tol=1e-14)
    np.testing.assert_allclose(activation.ravel(), degree / degree.sum(), rtol=1e-8)
    coarse = gbvs_module.graph_activation(feature, 0.15, tol=1e-4)
    np.testing.assert_allclose(coarse.ravel(), degree / degree.sum(), atol=2e-3)
    flat = gbvs_module.graph_activation(np.ones((4, 5)), 0.15, tol=1e-4)
    np.testing.assert_allclose(flat, 1 / 20)


def _decimate_1d_like_the_c_code(s: np.ndarray) -> np.ndarray:
    """mySubsample.cc's lowPass6 loop for one line of length >= 4, transcribed branch by branch."""
    n, out = len(s), [((s[0] + s[1]) * 10 + s[2] * 5 + s[3]) / 26]
    y = 0
    while y < n - 5:
        out.append(((s[y + 1] + s[y + 4]) * 5 + (s[y + 2] + s[y + 3]) * 10 + (s[y] + s[y + 5])) / 32)
        y += 2
    if y == n - 5:
        out.append(((s[y + 1] + s[y + 4]) * 5 + (s[y + 2] + s[y + 3]) * 10 + s[y]) / 31)
    else:
        out.append((s[y] + s[y + 1] * 5 + (s[y + 2] + s[y + 3]) * 10) / 26)
    return np.array(out)


@pytest.mark.parametrize("shape", [(23, 30), (24, 31)])
def test_pyramid_decimation_matches_the_c_loops(shape):
    image = np.random.default_rng(shape[0]).random(shape)
    rows_done = np.stack([_decimate_1d_like_the_c_code(row) for row in image])
    expected = np.stack([_decimate_1d_like_the_c_code(col) for col in rows_done.T]).T
    np.testing.assert_allclose(features.subsample(image), expected, rtol=1e-5)
    small = np.random.default_rng(0).random((10, 40))
    np.testing.assert_array_equal(features.subsample(small), small)  # sides <= 10 are left alone


def test_matlab_bicubic_resize_reproduces_ramps_and_constants():
    # Keys' cubic (a = -0.5) reproduces linear functions exactly away from the borders, and so does its
    # antialiasing stretch for a factor 1/2 (samples symmetric about each centre); output sample x (1-based)
    # sits at u = x / scale + (1 - 1 / scale) / 2.
    ramp = np.tile(np.arange(1, 41, dtype=float), (3, 1))
    for out_len in (80, 20):
        scale = out_len / 40
        resized = matlab.imresize(ramp, (3, out_len))[0]
        centres = np.arange(1, out_len + 1) / scale + 0.5 * (1 - 1 / scale)
        interior = (centres > 2 + 2 / min(scale, 1)) & (centres < 39 - 2 / min(scale, 1))
        np.testing.assert_allclose(resized[interior], centres[interior], atol=1e-9)
    # antialiasing (MATLAB's default when shrinking) all but removes an alternating signal; plain bicubic
    # sampling at 1/3 would keep it at full amplitude 1
    alternating = np.where(np.arange(60) % 2 == 0, 1.0, -1.0)[None, :]
    assert np.abs(matlab.imresize(alternating, (1, 20))).max() < 0.2
    for out_len in (80, 20, 13):
        np.testing.assert_allclose(matlab.imresize(np.full((5, 40), 7.0), (9, out_len)), 7.0)
    # hand-computed 2x upsampling weights of the first output: -0.0234375, 0.2265625, 0.8671875, -0.0703125
    # on samples (mirrored) 2, 1, 1, 2 -> 0.90625
    assert matlab.imresize(np.array([[1.0, 2.0, 3.0, 4.0]]), (1, 8))[0, 0] == pytest.approx(0.90625)


def test_map_sizes_and_kernel_widths_round_half_up_as_matlab():
    # 132 * 32 / 256 = 16.5 cells: MATLAB's round goes half away from zero, to 17 (numpy's round gives 16)
    assert features.saliency_map_size(132, 256, 32) == (17, 32)
    assert features.saliency_map_size(256, 132, 32) == (32, 17)
    assert len(features.gauss_kernel(1.25, 2.0)) == 2 * 3 + 1  # half-width round(2.5) = 3
    for value in np.arange(0.0, 40.0, 0.25):  # the models' int(matlab_round(x)) = MATLAB round of x >= 0
        assert int(matlab.matlab_round(value)) == math.floor(value + 0.5)


def test_itti_local_maxima_normalisation_by_hand():
    data = np.zeros((5, 7))
    data[1, 1], data[3, 4] = 8.0, 4.0  # after scaling to 0..10: maxima 10 and 5, mean 7.5 -> factor 2.5^2
    np.testing.assert_allclose(max_normalize_std(data), data / 8.0 * 10 * 6.25)
    single = np.zeros((5, 7))
    single[2, 3] = 3.0
    np.testing.assert_allclose(max_normalize_std(single), single / 3.0 * 10 * 100)


def test_gabor_filters_are_zero_mean_unit_norm_27_taps():
    for angle in features.GABOR_ANGLES:
        for phase in (0.0, 90.0):
            kernel = features.gabor_kernel(angle, phase)
            assert kernel.shape == (27, 27)
            assert abs(kernel.sum()) < 1e-12 and (kernel**2).sum() == pytest.approx(1.0)
    # 90 degrees is the 0 degree filter turned by a quarter
    np.testing.assert_allclose(features.gabor_kernel(90.0, 0.0), np.rot90(features.gabor_kernel(0.0, 0.0)))


def test_gbvs_prefers_the_odd_one_out_orientation():
    image = np.full((200, 200, 3), 128, np.uint8)
    for i in range(4):
        for j in range(4):
            cy, cx = 40 + 40 * i, 40 + 40 * j
            if (i, j) == (1, 2):
                cv2.line(image, (cx - 10, cy), (cx + 10, cy), (255, 255, 255), 3)
            else:
                cv2.line(image, (cx, cy - 10), (cx, cy + 10), (255, 255, 255), 3)
    saliency = GBVS()(image)
    target = saliency[70:91, 110:131].mean()
    centres = [(40 + 40 * i, 40 + 40 * j) for i in range(4) for j in range(4) if (i, j) != (1, 2)]
    others = [saliency[cy - 10 : cy + 11, cx - 10 : cx + 11].mean() for cy, cx in centres]
    assert target > max(others)
