"""The trunks a probe run compares: checkpoints, a training sweep, backbone weights and the random control.

``resolve_sources`` turns the config keys ``ckpt`` (a path or a list), ``sweep`` (a training multirun folder)
and ``backbone.weights`` into named :class:`TrunkSource` s. Checkpoints are validated up front (a bad third
checkpoint fails before the first is probed) and loaded again, one at a time, when probed, so memory holds
one model at a time. A run probes one backbone: the checkpoints' (each records its own), else the ``backbone``
config's; :func:`run_backbone` says which, and refuses checkpoints of another backbone than an explicit
``backbone=``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from saliency_probe.errors import ConfigError, InputFileError, MissingInputError
from saliency_probe.models.backbone import BackboneSpec, Trunk, build_trunk, is_random_weights
from saliency_probe.models.checkpoint import LoadedCheckpoint, load_checkpoint

log = logging.getLogger(__name__)

RANDOM_NAME = "random-init"
SWEEP_LAYOUT = "<sweep>/<job number>/summary.json (written by `python train.py -m ...`)"


@dataclass(frozen=True)
class TrunkSource:
    """One model of the comparison.

    Attributes:
        name: the model's name in every table (a checkpoint's run name, the weights' name, ``random-init``).
        kind: ``checkpoint``, ``weights`` or ``random``.
        path: the checkpoint file (``kind == "checkpoint"``).
        weights: the ``backbone.weights`` value (``kind == "weights"``).
        seed: initialisation seed of a random trunk.
        control: True for controls added beside the requested models (the random-initialisation trunk).
        info: what is known about the model (task, fine-tuned layers, sweep job number, overrides, backbone).
        backbone: the ``backbone`` config of a weights or random trunk (None: VGG-16; checkpoints record theirs).
    """

    name: str
    kind: str
    path: Path | None = None
    weights: str | None = None
    seed: int = 0
    control: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    backbone: dict[str, Any] | None = None

    @property
    def spec(self) -> BackboneSpec:
        """The source's backbone (a checkpoint's as recorded in it)."""
        if self.kind == "checkpoint" and self.backbone is None:
            loaded = self.checkpoint()
            assert loaded is not None
            return loaded.backbone
        return BackboneSpec.from_config(self.backbone, weights=self.weights)

    @property
    def has_output_map(self) -> bool:
        """A saliency checkpoint, or a weights trunk of a ``custom`` model with ``backbone.output``."""
        if self.kind == "checkpoint":
            return str(self.info.get("task")) == "saliency"
        return self.kind == "weights" and not self.control and self.spec.output is not None

    def checkpoint(self) -> LoadedCheckpoint | None:
        """The loaded checkpoint (task, saliency head, metadata) or None for weights and random trunks."""
        return load_checkpoint(self.path) if self.kind == "checkpoint" and self.path is not None else None

    def trunk(self) -> Trunk:
        """Build the trunk in eval mode."""
        if self.kind == "checkpoint":
            loaded = self.checkpoint()
            assert loaded is not None
            trunk = loaded.trunk()
        elif self.kind == "weights":
            trunk = build_trunk(self.weights, self.spec)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                trunk = build_trunk(None, self.spec)
        return trunk.eval()


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (str, Path)):
        return [str(value)] if str(value).strip() else []
    return [str(item) for item in value if item is not None and str(item).strip()]


def weights_name(weights: Any) -> str:
    """Display name of ``backbone.weights``: the enum name, a file's stem, or ``random-init``."""
    if is_random_weights(weights):
        return RANDOM_NAME
    text = str(weights)
    path = Path(text).expanduser()
    if path.suffix in {".pth", ".pt", ".ckpt", ".bin"} or path.exists():
        return path.stem
    return text.split(".")[-1]


def checkpoint_source(
    path: str | Path, info: dict[str, Any] | None = None, name: str | None = None
) -> TrunkSource:
    """Validate a checkpoint (safe load, ours, has trunk weights) and describe it."""
    loaded = load_checkpoint(Path(path).expanduser())
    if not any(key.startswith("trunk.") for key in loaded.state_dict):
        raise InputFileError(
            f"checkpoint {loaded.path} has no trunk weights (keys 'trunk.*'); "
            "expected a checkpoint written by `python train.py`"
        )
    spec = loaded.backbone
    details = {
        "task": loaded.task,
        "finetune_layers": str(loaded.metadata.get("finetune_layers")),
        "checkpoint": str(loaded.path.resolve()),
        "backbone": spec.name,
        "trained_image_size": ((loaded.metadata.get("config") or {}).get("data") or {}).get("image_size"),
        **(info or {}),
    }
    return TrunkSource(name=name or loaded.run_name, kind="checkpoint", path=loaded.path, info=details,
                       backbone=spec.to_dict())


def _job_number(folder: Path) -> tuple[int, str]:
    return (int(folder.name), folder.name) if folder.name.isdigit() else (1 << 30, folder.name)


def sweep_jobs(sweep: str | Path) -> list[tuple[Path, dict[str, Any]]]:
    """``(job folder, summary)`` of every job of a training multirun folder, sorted by job number."""
    root = Path(sweep).expanduser()
    if root.is_file():
        raise InputFileError(f"sweep={root} is a file; expected a training multirun folder: {SWEEP_LAYOUT}")
    if not root.is_dir():
        raise MissingInputError(f"sweep folder not found: {root}; expected {SWEEP_LAYOUT}")
    files = sorted(root.glob("*/summary.json")) or sorted(root.rglob("summary.json"))
    if not files:
        raise MissingInputError(f"no summary.json under {root} (sweep); expected {SWEEP_LAYOUT}")
    missing = [
        p.name
        for p in root.iterdir()
        if p.is_dir() and p.name.isdigit() and not (p / "summary.json").is_file()
    ]
    if missing:
        log.warning(
            "sweep %s: job folder(s) %s have no summary.json (failed or running?) and are left out",
            root,
            missing,
        )
    jobs = []
    for file in sorted(files, key=lambda f: _job_number(f.parent)):
        try:
            summary = json.loads(file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise InputFileError(f"{file}: not valid JSON ({error}); expected a training summary.json") from error
        if not isinstance(summary, dict):
            raise InputFileError(f"{file}: expected a JSON object (a training summary.json)")
        jobs.append((file.parent, summary))
    return jobs


#: ``sweep_checkpoint``: which checkpoint of each sweep job is probed.
SWEEP_CHECKPOINTS = ("last", "best")


def _job_checkpoint(job: Path, summary: dict[str, Any], choice: str = "last") -> Path:
    """The job's ``last`` checkpoint (the end of training, the paper's "after 20 epochs") or its ``best`` by the
    monitored validation metric; found beside summary.json if the sweep folder was moved."""
    key = f"{choice}_checkpoint"
    value = summary.get(key)
    if value:
        path = Path(value)
        if path.is_file():
            return path
        moved = job / "checkpoints" / path.name
        if moved.is_file():
            return moved
    other = SWEEP_CHECKPOINTS[1 - SWEEP_CHECKPOINTS.index(choice)]
    raise MissingInputError(
        f"{job / 'summary.json'}: {key} ({value}) does not exist (sweep_checkpoint={choice}); "
        f"sweep_checkpoint={other} probes the {other} checkpoint ({summary.get(f'{other}_checkpoint')})"
    )


def job_overrides(job: Path) -> list[str] | None:
    """The job's command-line overrides from Hydra's ``.hydra/overrides.yaml`` (None when absent)."""
    path = job / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return None
    overrides = OmegaConf.load(path)
    return [str(item) for item in overrides] if OmegaConf.is_list(overrides) else None


def varying_overrides(overrides: Sequence[Sequence[str] | None]) -> list[str | None]:
    """For each job, its overrides that differ between the jobs (``finetune.layers=2``), comma-joined;
    None where a job's overrides are unknown or nothing varies."""
    known = [list(items) for items in overrides if items is not None]
    if len(known) < 2:
        return [None] * len(overrides)
    shared = set(known[0]).intersection(*map(set, known[1:]))
    names = []
    for items in overrides:
        varying = [item for item in items if item not in shared] if items is not None else []
        names.append(",".join(varying) or None)
    return names


def sweep_sources(sweep: str | Path, choice: str = "last") -> list[TrunkSource]:
    """One source per job of a training sweep (its ``choice`` checkpoint: ``last`` or ``best``), named by the
    overrides that vary between the jobs (``finetune.layers=0`` ...), else by the job's run name."""
    if choice not in SWEEP_CHECKPOINTS:
        raise ConfigError(f"sweep_checkpoint={choice!r}; expected one of {list(SWEEP_CHECKPOINTS)}")
    jobs = sweep_jobs(sweep)
    short = varying_overrides([job_overrides(job) for job, _ in jobs])
    sources = []
    for (job, summary), name in zip(jobs, short, strict=True):
        info = {
            "job": job.name,
            "run_name": summary.get("run_name"),
            "finetune_layers": str(summary.get("finetune_layers")),
            "metrics": summary.get("metrics", {}),
            "checkpoint_choice": choice,
        }
        name = name or str(summary.get("run_name") or f"job{job.name}")
        sources.append(checkpoint_source(_job_checkpoint(job, summary, choice), info=info, name=name))
    return sources


def _unique_names(sources: Iterable[TrunkSource]) -> list[TrunkSource]:
    """Append ``#2``, ``#3`` ... to repeated names so every table row is distinguishable."""
    seen: dict[str, int] = {}
    out = []
    for source in sources:
        count = seen.get(source.name, 0) + 1
        seen[source.name] = count
        if count > 1:
            source = replace(source, name=f"{source.name}#{count}")
        out.append(source)
    return out


def run_backbone(
    checkpoints: Sequence[TrunkSource], backbone: Any = None, explicit: bool = False
) -> BackboneSpec:
    """The backbone of a probe run: the checkpoints' (they must share one), else the ``backbone`` config's.

    ``explicit``: ``backbone=`` was given on the command line; checkpoints of another backbone are then one
    error naming both. The run's weights are always the config's (``backbone.weights``: Table 7's ``pt`` row).
    """
    config = BackboneSpec.from_config(backbone)
    if not checkpoints:
        return config
    first = checkpoints[0]
    for other in checkpoints[1:]:
        if other.spec.architecture_key() != first.spec.architecture_key():
            raise ConfigError(
                f"checkpoints {first.path} ({first.spec.describe()}) and {other.path} ({other.spec.describe()}) "
                "were trained on different backbones; probe each backbone in its own run"
            )
    if explicit and first.spec.architecture_key() != config.architecture_key():
        raise ConfigError(
            f"checkpoint {first.path} was trained on backbone {first.spec.describe()}, but backbone="
            f"{config.describe()} was given: drop backbone= (probe.py rebuilds the checkpoint's backbone) or "
            f"probe {config.describe()} checkpoints"
        )
    return BackboneSpec.from_config(first.spec, weights=config.weights)


def resolve_sources(
    ckpt: str | Sequence[str] | None = None,
    sweep: str | None = None,
    weights: str | None = None,
    sweep_checkpoint: str = "last",
    random_control: bool = True,
    seed: int = 0,
    names: Sequence[str] | None = None,
    backbone: Any = None,
    explicit_backbone: bool = False,
) -> list[TrunkSource]:
    """The models of a probe run, in table order.

    - ``backbone.weights`` (pretrained, a file, or random) is probed when no checkpoint is given, and beside
      the checkpoints when it names real weights (Table 7's "pt" row);
    - then every ``ckpt`` in order, then every job of ``sweep`` by job number (its ``sweep_checkpoint``:
      ``last`` or ``best``);
    - then the random-initialisation control, unless a random trunk is already probed.
    ``names`` gives display names to the requested models in this order (controls keep theirs), e.g. Table 7's
    ``[pt, sp, sr]``. ``backbone`` (a ``backbone`` config; None = VGG-16) and ``explicit_backbone``: see
    :func:`run_backbone`; the weights and random trunks are of the run's backbone.
    """
    checkpoints = [checkpoint_source(path) for path in _as_list(ckpt)]
    if sweep:
        checkpoints.extend(sweep_sources(sweep, sweep_checkpoint))
    config = BackboneSpec.from_config(backbone, weights=weights) if backbone is not None else \
        BackboneSpec.from_config(None, weights=weights)
    spec = run_backbone(checkpoints, config, explicit_backbone)
    plain = spec.to_dict()
    plain["weights"] = None
    sources: list[TrunkSource] = []
    if not checkpoints or not is_random_weights(weights):
        kind = "random" if is_random_weights(weights) else "weights"
        sources.append(
            TrunkSource(
                name=weights_name(weights),
                kind=kind,
                weights=None if kind == "random" else str(weights),
                seed=seed,
                info={"weights": None if kind == "random" else str(weights), "backbone": spec.name},
                backbone=plain,
            )
        )
    sources.extend(checkpoints)
    if names:
        labels = [str(name) for name in names]
        if len(labels) != len(sources):
            raise ConfigError(
                f"names={labels} gives {len(labels)} name(s) for {len(sources)} model(s) "
                f"({[source.name for source in sources]}, in this order)"
            )
        sources = [
            replace(source, name=label, info={**source.info, "original_name": source.name})
            for source, label in zip(sources, labels, strict=True)
        ]
    if random_control and not any(source.kind == "random" for source in sources):
        sources.append(
            TrunkSource(name=RANDOM_NAME, kind="random", seed=seed, control=True,
                        info={"control": True, "backbone": spec.name}, backbone=plain)
        )
    return _unique_names(sources)
