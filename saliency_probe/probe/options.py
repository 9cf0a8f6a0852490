"""Typed options of ``probe.py``'s sections, as Hydra structured configs (each default is defined here, once).

Every section is a dataclass registered with Hydra's ConfigStore as the group ``<section>/default`` and
composed by ``conf/probe.yaml``'s defaults list, so ``probe.py popout.max_fixations=50`` is type-checked when the
config is composed and a key that does not exist is refused. Analyses read their section with
:func:`read_options`, which also accepts a plain mapping (tests, scripts): absent keys take the defaults below,
and ``__post_init__`` checks the values. The keys are documented in docs/probe.md and docs/analyses.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from hydra.core.config_store import ConfigStore
from omegaconf import II, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from saliency_probe.errors import ConfigError

__all__ = [
    "ControlsOptions", "FiguresOptions", "OutputOptions", "SceneAttentionOptions", "PopoutOptions",
    "BenchmarkOptions", "SECTIONS", "read_options", "register_configs",
]

SCENE_SPLITS = ("val", "train", "all")
#: The benchmark's metrics, in table order (``benchmark.metrics`` takes any subset).
BENCHMARK_METRICS = ("nss", "cc", "kld", "sim", "auc_judd", "auc_shuffled")
#: The benchmark's reference models besides the saliency models (its lower and upper bars).
BENCHMARK_BASELINES = ("center_bias", "inter_observer")
MODEL_PREFIXES = ("ckpt:", "maps:", "model:")


def check_model_names(key: str, specs: list[str], baselines: tuple[str, ...] = ()) -> None:
    """Refuse a model name that no analysis can build: ``baselines``, a classical name, ``ckpt:<path>``,
    ``maps:<folder>`` or ``model:<name>`` (the files are checked when the models are built)."""
    from saliency_probe.classical import CLASSICAL_MODELS  # the registry, filled by importing the models

    known = [*baselines, *sorted(CLASSICAL_MODELS)]
    unknown = [spec for spec in specs if spec not in known and not spec.startswith(MODEL_PREFIXES)]
    if unknown:
        also = f" (and {unknown[1:]})" if len(unknown) > 1 else ""
        raise ConfigError(
            f"{key}: unknown model {unknown[0]!r}{also}; expected any of {', '.join(known)}, ckpt:<checkpoint path>, "
            "maps:<folder of maps> or model:<name> (the configured backbone=custom model's own output)"
        )


@dataclass
class ControlsOptions:
    """``controls``: baselines reported beside each probed model."""

    #: A random-initialisation trunk probed as a model of its own (seeded by ``seed``).
    random_trunk: bool = True
    #: Each region's fixations replaced by as many random fixations of the same image (chance level of Eq. 1).
    shuffled_regions: bool = True


@dataclass
class FiguresOptions:
    """``figures``: the unit figures (Figs. 3-6, 11) and the improvement figure (Fig. 4)."""

    enabled: bool = True
    #: Layers with a best-unit figure (Fig. 3); null = every probed layer.
    layers: list[str] | None = None
    #: Images searched for each best unit's example.
    search_images: int = 32
    #: Layer of the improvement figure when several models are probed; null = the deepest probed layer.
    improvement_layer: str | None = None

    def __post_init__(self) -> None:
        if self.search_images < 1:
            raise ConfigError(f"figures.search_images={self.search_images}: expected an integer >= 1")


@dataclass
class OutputOptions:
    """``output``: the output analysis (Section 6, Eqs. 2-3, Fig. 7)."""

    #: Ground truth = fixation map blurred with this sigma (pixels): about one degree, 24 px on OSIE's 800x600.
    gt_sigma: float = 24.0
    #: Significance level of the Tukey HSD pairs listed in statistics.json.
    alpha: float = 0.05
    #: Model whose statistics lead statistics.json; null = the first saliency checkpoint with tuned conv layers.
    model: str | None = None

    def __post_init__(self) -> None:
        if self.gt_sigma < 0:
            raise ConfigError(f"output.gt_sigma={self.gt_sigma}: need gt_sigma >= 0 and 0 < alpha < 1 (gt_sigma in pixels)")
        if not 0 < self.alpha < 1:
            raise ConfigError(f"output.alpha={self.alpha}: need gt_sigma >= 0 and 0 < alpha < 1 (a significance level)")


@dataclass
class SceneAttentionOptions:
    """``scene_attention``: Table 8 on held-out images of each scene checkpoint's own training data."""

    #: Data folder when the training data moved (null = the root recorded in the checkpoint).
    root: str | None = None
    #: val (held out), train or all.
    split: str = "val"
    #: Percentile bootstrap interval of the mean NSS per group.
    confidence: float = 0.95
    n_resamples: int = 9999
    seed: int = II("seed")
    batch_size: int | None = None

    def __post_init__(self) -> None:
        if self.split not in SCENE_SPLITS:
            raise ConfigError(f"scene_attention.split must be one of {list(SCENE_SPLITS)}, got {self.split!r}")
        if not 0 < self.confidence < 1:
            raise ConfigError(f"scene_attention.confidence={self.confidence}: need 0 < confidence < 1")
        if self.n_resamples < 1:
            raise ConfigError(f"scene_attention.n_resamples={self.n_resamples}: need n_resamples >= 1")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"scene_attention.batch_size={self.batch_size}: expected an integer >= 1 or null")


@dataclass
class PopoutOptions:
    """``popout``: the pop-out analysis (Tables 4-6, Fig. 8; docs/popout_analysis.md)."""

    #: Table 4 models: classical names (bms, gbvs, itti, spectral_residual), ckpt:<checkpoint>, maps:<folder>.
    models: list[str] = field(default_factory=lambda: ["bms", "gbvs", "itti", "spectral_residual"])
    #: Saliency checkpoints among the probed models (ckpt=..., sweep=...) also enter Table 4 with their output.
    checkpoint_outputs: bool = True
    #: Input side of deep models (trunks and checkpoints; aspect not kept, as in the paper).
    image_size: int = 224
    #: Seed of the tie-breaking jitter (per image: (seed, image id)) and its amplitude (fraction of the range).
    seed: int = II("seed")
    jitter: float = 1.0e-6
    #: Inhibition-of-return box of the fixations-to-find search: ``item`` (median item box) or a side in pixels.
    inhibition: Any = "item"
    max_fixations: int = 100
    #: Tables 5/6: top-k unit NMM per probed layer (``layers``, ``top_k``) of every probed trunk.
    units: bool = True
    #: Arrays in the Fig. 8 grid (one per dimension at its strongest contrast).
    examples: int = 7
    #: Fig. 9: arrays shown (one per dimension at its strongest contrast; 0: no Fig. 9), the layer whose unit
    #: maps are matched to the targets (null: VGG conv4_1, as in the paper; other backbones: the first layer of
    #: their second-to-last stage) and how many best-matching units (by the array's NMM, Eq. 4) each array shows.
    fig9_arrays: int = 4
    fig9_layer: str | None = None
    fig9_units: int = 1
    #: A pop-out set read (or generated, when empty) here instead of ``data``.
    root: str | None = None
    #: Classical models' parameters, e.g. {bms: {max_dim: 200}} (conf/classical/*.yaml lists them).
    classical: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.models, str):
            self.models = [self.models]
        self.models = [str(model) for model in self.models or []]
        inhibition = self.inhibition
        if not (inhibition == "item" or (isinstance(inhibition, int) and not isinstance(inhibition, bool) and inhibition > 0)):
            raise ConfigError(f"popout.inhibition={inhibition!r}: expected 'item' or a positive box side in pixels")
        if self.max_fixations < 1:
            raise ConfigError(f"popout.max_fixations={self.max_fixations}: expected an integer >= 1")
        if self.jitter < 0:
            raise ConfigError(f"popout.jitter={self.jitter}: expected a number >= 0")
        if self.image_size < 32:
            raise ConfigError(f"popout.image_size={self.image_size}: expected an integer >= 32 (the trunk's smallest input)")
        if self.examples < 0:
            raise ConfigError(f"popout.examples={self.examples}: expected an integer >= 0")
        if self.fig9_arrays < 0:
            raise ConfigError(f"popout.fig9_arrays={self.fig9_arrays}: expected an integer >= 0 (0: no Fig. 9)")
        if self.fig9_units < 1:
            raise ConfigError(f"popout.fig9_units={self.fig9_units}: expected an integer >= 1")
        if self.fig9_layer is not None and not str(self.fig9_layer).strip():
            self.fig9_layer = None
        self.classical = {str(k): dict(v or {}) for k, v in (self.classical or {}).items()}
        check_model_names("popout.models", self.models)


@dataclass
class BenchmarkOptions:
    """``benchmark``: every model scored on the human fixations of ``data`` (docs/benchmark.md)."""

    #: center_bias, inter_observer, classical names, ckpt:<checkpoint path>, maps:<folder of maps>, model:<name>.
    models: list[str] = field(
        default_factory=lambda: ["center_bias", "inter_observer", "bms", "gbvs", "itti", "spectral_residual"]
    )
    #: Any subset of nss, cc, kld, sim, auc_judd, auc_shuffled (the tables keep this order).
    metrics: list[str] = field(default_factory=lambda: list(BENCHMARK_METRICS))
    #: Ground-truth blur (pixels): about one degree of visual angle, 24 px for OSIE's 800x600 images.
    gt_sigma: float = 24.0
    #: Folder of cached model maps (reused across runs); null = <run folder>/map_cache, false = no cache.
    cache: Any = None
    #: Score only the first ``limit`` images (null = all).
    limit: int | None = None
    #: Processes scoring images (0 or 1 = this process).
    num_workers: int = 0
    #: Example images in figures/benchmark_examples.png (0 = no figure).
    figure_images: int = 4
    #: Parameters of the classical models; bgr_channel_order=true reproduces the released BMS program's colours.
    classical: dict[str, Any] = field(default_factory=lambda: {"bms": {"bgr_channel_order": False}})

    def __post_init__(self) -> None:
        self.models = [str(spec).strip() for spec in self.models or []]
        if not self.models:
            raise ConfigError("benchmark.models is empty: name at least one model, e.g. [center_bias, bms]")
        check_model_names("benchmark.models", self.models, BENCHMARK_BASELINES)
        unknown = [metric for metric in self.metrics or [] if metric not in BENCHMARK_METRICS]
        if unknown or not self.metrics:
            raise ConfigError(
                f"benchmark.metrics={list(self.metrics or [])}: unknown or none; expected a non-empty subset of "
                f"{', '.join(BENCHMARK_METRICS)}"
            )
        if not self.gt_sigma > 0:
            raise ConfigError(f"benchmark.gt_sigma={self.gt_sigma}: expected a number > 0 (pixels)")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"benchmark.limit={self.limit}: expected an integer >= 1 or null")
        self.num_workers = int(self.num_workers or 0)
        self.figure_images = int(self.figure_images or 0)
        if self.num_workers < 0:
            raise ConfigError(f"benchmark.num_workers={self.num_workers}: expected an integer >= 0")
        if self.figure_images < 0:
            raise ConfigError(f"benchmark.figure_images={self.figure_images}: expected an integer >= 0")
        self.classical = {str(k): dict(v or {}) for k, v in (self.classical or {}).items()}


#: Section key -> its options type (the ConfigStore groups composed by conf/probe.yaml).
SECTIONS: dict[str, type] = {
    "controls": ControlsOptions,
    "figures": FiguresOptions,
    "output": OutputOptions,
    "scene_attention": SceneAttentionOptions,
    "popout": PopoutOptions,
    "benchmark": BenchmarkOptions,
}

Options = TypeVar("Options")


def read_options(cfg: DictConfig | dict[str, Any], key: str, cls: type[Options]) -> Options:
    """The ``cfg[key]`` section as a checked ``cls`` instance (absent keys take the defaults).

    ``${seed}`` in a default resolves against ``cfg.seed``. A value of the wrong type or an unknown key raises
    ``ConfigError`` (a ``ValueError``) naming ``key``.
    """
    section = cfg.get(key) if cfg is not None else None
    if OmegaConf.is_config(section):
        section = OmegaConf.to_container(section, resolve=True)
    seed = cfg.get("seed", 0) if cfg is not None else 0
    section = dict(section or {})
    for item in fields(cls):  # a single name where a list is expected: `popout.models=bms`
        if isinstance(section.get(item.name), str) and str(item.type).startswith("list"):
            section[item.name] = [section[item.name]]
    try:
        root = OmegaConf.merge({"seed": seed, key: OmegaConf.structured(cls)}, {key: section})
        return OmegaConf.to_object(root[key])  # type: ignore[return-value]
    except OmegaConfBaseException as error:
        where = getattr(error, "full_key", None) or key
        lines = str(error).strip().splitlines()
        raise ConfigError(f"{where}: {lines[0] if lines else type(error).__name__}") from error


def register_configs() -> None:
    """Register every section as the config group ``<section>`` with the option ``default``."""
    store = ConfigStore.instance()
    for key, cls in SECTIONS.items():
        store.store(group=key, name="default", node=cls)


register_configs()
