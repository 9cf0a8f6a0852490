"""The run behind ``probe.py``: resolve the models, run each requested analysis, write the summary.

Analyses are looked up in :mod:`saliency_probe.probe.registry` and receive a
:class:`~saliency_probe.probe.context.ProbeContext` that gives them the config, the run folder, the models
(:class:`~saliency_probe.probe.sources.TrunkSource`), the data modules and predict passes. Outputs are written by
global rank zero only; under DDP every rank runs the same code (Lightning relaunches the script) and takes part
in the predict passes.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import WandbLogger

from saliency_probe.errors import ConfigError
from saliency_probe.io_utils import write_json
from saliency_probe.models.backbone import BackboneSpec, architecture
from saliency_probe.probe.conditions import probe_conditions
from saliency_probe.probe.context import ProbeContext
from saliency_probe.probe.options import SECTIONS, FiguresOptions, PopoutOptions, read_options
from saliency_probe.probe.precision import probe_precision
from saliency_probe.probe.registry import available_analyses, get_analysis
from saliency_probe.probe.sources import SWEEP_CHECKPOINTS, TrunkSource, resolve_sources, run_backbone
from saliency_probe.report import files
from saliency_probe.report.conditions import experiment_row, model_differences, probe_differences
from saliency_probe.report.report_md import write_report
from saliency_probe.run_context import (
    build_logger,
    data_notes,
    output_dir,
    print_run_config,
    quiet_third_party,
    run_identity,
)
from saliency_probe.run_folder import write_manifest
from saliency_probe.validation import as_name_list, check_common, require_choice, require_int, require_number

log = logging.getLogger(__name__)


def validate_config(cfg: DictConfig, backbone: BackboneSpec | None = None) -> list[str]:
    """Fail before any work on bad keys (one line naming the key); return the analyses to run.

    Layer names are checked against ``backbone`` (the run's, once its checkpoints are read), else against the
    ``backbone`` config when no checkpoint is probed; with checkpoints and no ``backbone`` (the check before
    Hydra creates the run folder) they are checked once the checkpoints' backbone is known (:func:`run_probe`).
    """
    check_common(cfg)
    layers = _layers(cfg.get("layers"))
    figures = read_options(cfg, "figures", FiguresOptions)
    if backbone is not None or not (cfg.get("ckpt") or cfg.get("sweep")):
        arch = architecture(backbone if backbone is not None else BackboneSpec.from_config(cfg.backbone))
        layers = arch.ordered(layers, key="layers")
        figure_layers = arch.ordered(list(figures.layers), key="figures.layers") if figures.layers else layers
        outside = [layer for layer in figure_layers if layer not in layers]
        if outside:
            raise ConfigError(f"figures.layers {outside} are not probed; choose among layers={layers}")
        fig9_layer = read_options(cfg, "popout", PopoutOptions).fig9_layer
        if fig9_layer:
            arch.ordered([fig9_layer], key="popout.fig9_layer")
    require_choice(cfg, "sweep_checkpoint", SWEEP_CHECKPOINTS)
    require_int(cfg, "top_k", 1)
    require_number(cfg, "threshold")
    probe_precision(cfg)
    for key, cls in SECTIONS.items():
        read_options(cfg, key, cls)  # type and range of every section's keys
    analyses = list(AUTO_ANALYSES) if is_auto(cfg.analyses) else as_name_list(cfg.analyses, "analyses")
    if not analyses:
        raise ConfigError("analyses is empty: name at least one (e.g. analyses=[inner]) or use analyses=auto")
    for name in analyses:
        if name not in available_analyses():
            raise ConfigError(f"analyses: unknown analysis {name!r}; available: {available_analyses()}")
        get_analysis(name)
    return analyses


def _layers(value: Any) -> list[str] | None:
    """``layers`` as a list (``layers=conv5_3`` is a one-item list); None or ``default``: the backbone's default
    layers."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("default", "")):
        return None
    return as_name_list(value, "layers")


#: ``analyses: auto`` (or null) runs these, in this order, where they apply to the probed models.
AUTO_ANALYSES = ("inner", "output", "scene_attention", "popout")


def is_auto(analyses: Any) -> bool:
    """True for ``analyses: auto`` or ``analyses: null``."""
    return analyses is None or (isinstance(analyses, str) and analyses.strip().lower() == "auto")


def applicable_analyses(cfg: DictConfig, names: list[str], sources: list[TrunkSource]) -> list[str]:
    """The ``names`` whose analysis applies to ``sources`` (``Analysis.applies_to``)."""
    return [name for name in names if get_analysis(name).applies_to(cfg, sources)]


def run_probe(cfg: DictConfig, explicit_backbone: bool | None = None) -> dict[str, Any]:
    """Run every analysis of ``cfg.analyses`` on the configured models; return (and write) the summary.

    ``explicit_backbone``: whether ``backbone=`` was given on the command line (probe.py reads Hydra's
    overrides); None: a backbone other than the default VGG-16 counts as explicit. Checkpoints of another
    backbone than an explicit one are refused (:func:`~saliency_probe.probe.sources.run_backbone`).
    """
    validate_config(cfg)
    config_backbone = BackboneSpec.from_config(cfg.backbone)
    if explicit_backbone is None:
        explicit_backbone = config_backbone.name != BackboneSpec().name
    sources = resolve_sources(
        ckpt=OmegaConf.to_container(cfg.ckpt) if OmegaConf.is_config(cfg.ckpt) else cfg.ckpt,
        sweep=cfg.get("sweep"),
        weights=config_backbone.weights,
        sweep_checkpoint=str(cfg.get("sweep_checkpoint") or "last"),
        random_control=bool(cfg.controls.random_trunk),
        seed=int(cfg.seed),
        names=list(cfg.get("names") or []),
        backbone=config_backbone,
        explicit_backbone=bool(explicit_backbone),
    )
    backbone = run_backbone([s for s in sources if s.kind == "checkpoint"], config_backbone)
    analyses = validate_config(cfg, backbone)
    cfg.layers = architecture(backbone).ordered(_layers(cfg.get("layers")))  # the probed layers, resolved
    quiet_third_party()
    print_run_config(cfg, title="probe.py")
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    run_dir = output_dir()
    if is_auto(cfg.analyses):
        analyses = applicable_analyses(cfg, analyses, sources)
    name, group = run_identity(default_name="probe")
    logger = build_logger(cfg.get("logger"), run_dir, name, group, job_type="probe")
    context = ProbeContext(cfg=cfg, run_dir=run_dir, sources=sources, logger=logger, backbone=backbone)
    started = time.perf_counter()
    finished = False
    try:
        for analysis in analyses:
            context.results[analysis] = get_analysis(analysis).run(context)
        data = context.data_summaries()
        probe = probe_conditions(cfg, data)
        models = [{"name": s.name, "kind": s.kind, "control": s.control, **s.info, "conditions": context.conditions(s)}
                  for s in sources]
        for model in models:
            row = experiment_row(model)
            model["paper_row"] = list(row) if row else None
            model["paper_differences"] = (model_differences(model, row) + probe_differences(probe)) if row else []
        summary = {
            "run_name": name,
            "backbone": backbone.name,
            "models": models,
            "probe_conditions": probe,
            "analyses": {key: value.summary for key, value in context.results.items()},
            "data": data,
            "input_size": int(cfg.data.image_size),
            "probe_precision": context.precision,
            "notes": run_notes(int(cfg.data.image_size), data, sources),
            "seconds": round(time.perf_counter() - started, 2),
            "output_dir": str(run_dir.resolve()),
        }
        if context.is_global_zero:
            write_json(run_dir / files.SUMMARY, summary)
            produced = [path for result in context.results.values() for path in result.files]
            write_report(run_dir, summary["models"], produced)
            print_summary(context, summary["notes"])
        finished = True
        return summary
    finally:
        if context.is_global_zero and context.scratch_dir.is_dir():
            for leftover in context.scratch_dir.iterdir():
                leftover.unlink(missing_ok=True)
            context.scratch_dir.rmdir()
        if isinstance(logger, WandbLogger):
            import wandb

            wandb.finish()
        if finished and context.is_global_zero:
            write_manifest(run_dir, "probe")


def run_notes(image_size: int, data: dict[str, dict[str, Any]], sources: list[TrunkSource]) -> list[str]:
    """What the run changed or left out, said once at the end and in report.md (nothing changes silently)."""
    notes = [f"input size: images resized to {image_size}x{image_size} (aspect not kept, as in the paper)"]
    notes += data_notes(data)
    for source in sources:
        trained = source.info.get("trained_image_size")
        if trained is not None and int(trained) != image_size:
            notes.append(f"{source.name}: trained at {int(trained)} px, probed at {image_size} px "
                         f"(data.image_size={int(trained)} probes it at its training size)")
    return notes


def print_summary(context: ProbeContext, notes: list[str]) -> None:
    """The one-screen summary: each analysis's ``lines``, the run's notes, then where the outputs are."""
    bar = "=" * 100
    print(bar)
    if any(get_analysis(name).uses_trunks for name in context.results):  # trunks matter to trunk analyses only
        print(f"probe: {len(context.sources)} model(s): {', '.join(s.name for s in context.sources)}")
    else:
        print(f"probe: {', '.join(context.results)}")
    for name, result in context.results.items():
        lines = result.lines
        if lines:
            print(f"-- {name} " + "-" * max(0, 96 - len(name)))
            for line in lines:
                print(line)
    for note in notes:
        print(f"note: {note}")
    print(f"outputs: {context.run_dir.resolve()}  (tables/, figures/, probe_summary.json)")
    print(bar)
