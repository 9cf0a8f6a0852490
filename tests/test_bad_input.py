"""Bad input at the entry points, as a user types it: ``python train.py ...`` / ``python probe.py ...``.

Every case runs the real entry point in-process (``saliency_probe.cli.run`` on the script's ``@hydra.main``
function) and asserts exit code 2, one line ``<program>: error: <message>`` on stderr naming what is wrong and
where, no traceback, no result written, and that nothing the user had (the inputs, the run folder, the shared
synthetic set) was changed: every file is hashed before and after.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from PIL import Image
from test_probe import synthetic_overrides

from saliency_probe import cli

REPO = Path(__file__).resolve().parents[1]
#: What a run writes when it gets to work; a refused run writes none of them.
RESULTS = ("summary.json", "probe_summary.json", "report.md", "manifest.json", "tables", "figures", "checkpoints")

_ENTRIES: dict[str, ModuleType] = {}


def entry_point(program: str) -> ModuleType:
    """``train.py`` or ``probe.py`` imported from the repository root (they are scripts, not a package)."""
    if program not in _ENTRIES:
        spec = importlib.util.spec_from_file_location(f"_entry_{program}", REPO / f"{program}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _ENTRIES[program] = module
    return _ENTRIES[program]


def run_entry(program: str, overrides: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    """Run ``python <program>.py <overrides>`` in this process; return its exit code."""
    module = entry_point(program)
    monkeypatch.setattr(sys, "argv", [f"{program}.py", *overrides])
    # The script is imported under another name: Hydra finds conf/ beside it as for `python train.py`.
    monkeypatch.setenv("HYDRA_MAIN_MODULE", "__main__")
    saved = os.environ.pop("HYDRA_FULL_ERROR", None)  # cli.run sets it; a user's own value would show tracebacks
    GlobalHydra.instance().clear()
    try:
        cli.run(module.main, f"{program}.py")
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 1
    finally:
        GlobalHydra.instance().clear()
        HydraConfig.instance().cfg = None  # later tests run outside Hydra
        if saved is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = saved
    return 0


def snapshot(folders: list[Path]) -> dict[str, str]:
    """SHA-256 of every file under ``folders`` (folders themselves too, as "dir")."""
    digests: dict[str, str] = {}
    for folder in folders:
        if not folder.exists():
            continue
        digests[str(folder)] = "dir"
        for path in sorted(folder.rglob("*")):
            if path.is_dir():
                digests[str(path)] = "dir"
            elif path.is_file():
                digests[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


# ------------------------------------------------------------------------------------------------------------
# the workspace of a case: its inputs, its run folder, the shared synthetic set
# ------------------------------------------------------------------------------------------------------------


@dataclass
class Workspace:
    tmp: Path
    synthetic: Path
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    @property
    def inputs(self) -> Path:
        path = self.tmp / "inputs"
        path.mkdir(exist_ok=True)
        return path

    @property
    def run(self) -> Path:
        return self.tmp / "run"

    def synthetic_overrides(self, root: Path | None = None) -> list[str]:
        return synthetic_overrides(root or self.synthetic)

    def train(self, *overrides: str, synthetic: bool = True) -> list[str]:
        base = ["logger=none", "print_config=false", "trainer.max_epochs=1", f"hydra.run.dir={self.run}"]
        return [*base, *(self.synthetic_overrides() if synthetic else ["data.image_size=64"]), *overrides]

    def probe(self, *overrides: str, synthetic: bool = True) -> list[str]:
        base = ["logger=none", "print_config=false", "progress_bar=false", "analyses=[inner]",
                f"hydra.run.dir={self.run}"]
        return [*base, *(self.synthetic_overrides() if synthetic else ["data.image_size=64"]), *overrides]

    def benchmark(self, *overrides: str) -> list[str]:
        """``analyses=[benchmark]`` on the synthetic set's OSIE part (``data=osie``)."""
        sizes = [f"+{item}" for item in self.synthetic_overrides()[1:-2]]  # data=osie has no generator sizes
        return [*self.probe("analyses=[benchmark]", synthetic=False), "data=osie", f"data.root={self.synthetic}",
                "data.synthetic=true", *sizes, "data.image_size=64", *overrides]

    def file(self, name: str, content: bytes | str = b"") -> Path:
        path = self.inputs / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            path.write_bytes(content)
        return path

    def folder(self, name: str) -> Path:
        path = self.inputs / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def copy_synthetic(self) -> Path:
        """A copy of the synthetic set in the inputs, to be damaged by the case."""
        return Path(shutil.copytree(self.synthetic, self.inputs / "synthetic"))

    def previous_run(self, summary: str) -> str:
        """The run folder holding a finished run (its results and Hydra's config), as a user keeps it."""
        self.run.mkdir(parents=True, exist_ok=True)
        (self.run / summary).write_text(json.dumps({"metrics": {"val/nss": 1.0}}), encoding="utf-8")
        (self.run / ".hydra").mkdir()
        (self.run / ".hydra" / "config.yaml").write_text("seed: 0\n", encoding="utf-8")
        (self.run / "notes.txt").write_text("mine\n", encoding="utf-8")
        return f"hydra.run.dir={self.run}"

    def run_file(self, name: str) -> str:
        """The run folder holding a file of the user's named ``name`` (where the run writes a folder)."""
        self.run.mkdir(parents=True, exist_ok=True)
        (self.run / name).write_text("mine\n", encoding="utf-8")
        return f"hydra.run.dir={self.run}"

    def read_only(self, folder: Path) -> str:
        """Make ``folder`` unwritable, also for root (the immutable flag); skip where neither works."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "notes.txt").write_text("mine\n", encoding="utf-8")
        if os.geteuid() == 0:
            made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0
            if made:
                self.cleanups.append(lambda: subprocess.run(["chattr", "-i", str(folder)], capture_output=True))
        else:
            folder.chmod(0o555)
            self.cleanups.append(lambda: folder.chmod(0o755))
        if os.access(folder, os.W_OK):
            pytest.skip(f"cannot make {folder} read-only here")
        return f"hydra.run.dir={folder}"


def checkpoint_payload(task: str = "saliency", trunk: bool = True) -> dict:
    """A checkpoint in the framework's format (plain containers, the metadata block) with a tiny state."""
    state = {"trunk.features.0.weight": torch.zeros(1)} if trunk else {"head.weight": torch.zeros(1, 512, 1, 1)}
    return {
        "state_dict": state,
        "hyper_parameters": {"run_name": "fake"},
        "saliency_probe": {"format_version": 1, "task": task, "run_name": "fake", "finetune_layers": "1",
                           "config": {}},
    }


def torch_file(w: Workspace, name: str, payload: object) -> Path:
    path = w.inputs / name
    torch.save(payload, path)
    return path


class NotAllowed:
    """Unpickling this needs arbitrary code: ``weights_only=True`` must refuse the file."""


def unsafe_checkpoint(w: Workspace) -> Path:
    path = w.inputs / "unsafe.ckpt"
    with open(path, "wb") as handle:
        pickle.dump({"state_dict": NotAllowed(), "saliency_probe": {}}, handle, protocol=2)
    return path


def sweep_with_bad_summary(w: Workspace) -> Path:
    job = w.folder("sweep/0")
    (job / "summary.json").write_text("{not json", encoding="utf-8")
    return job.parent


def salicon_with_bad_mat(w: Workspace) -> Path:
    root = w.folder("salicon")
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "fixations" / split).mkdir(parents=True)
        stem = f"COCO_{split}2014_000000000001"
        Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(root / "images" / split / f"{stem}.jpg")
        (root / "fixations" / split / f"{stem}.mat").write_bytes(b"MATLAB? no: a damaged download")
    return root


def damaged_osie(w: Workspace) -> Path:
    copy = w.copy_synthetic()
    (copy / "osie" / "data" / "eye" / "fixations.mat").write_bytes(b"\x00" * 64)
    return copy


def osie_sr_without_names(w: Workspace) -> Path:
    copy = w.copy_synthetic()
    (copy / "osie_sr" / "class_names.txt").write_text("_background_\n__ignore__\n", encoding="utf-8")
    return copy


def osie_sr_args(root: Path, regions: Path | None = None) -> list[str]:
    return ["data=osie_sr", f"data.root={root / 'osie'}", f"data.regions_root={regions or root / 'osie_sr'}",
            "data.num_workers=0", "data.image_size=64"]


# ------------------------------------------------------------------------------------------------------------
# the cases: (id, program, overrides from the workspace, patterns the message must match)
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    program: str
    overrides: Callable[[Workspace], list[str]]
    #: Regular expressions the one-line message must all match; ``{inputs}``, ``{run}`` and ``{synthetic}``
    #: stand for those folders (escaped).
    expect: tuple[str, ...]
    env: Callable[[Workspace], dict[str, str]] | None = None
    #: ``validation pending: <key>`` while the check of that key is not written yet (strict xfail).
    pending: str | None = None


def T(id: str, overrides: Callable[[Workspace], list[str]], *expect: str, **kwargs) -> Case:
    return Case(id, "train", overrides, expect, **kwargs)


def P(id: str, overrides: Callable[[Workspace], list[str]], *expect: str, **kwargs) -> Case:
    return Case(id, "probe", overrides, expect, **kwargs)


CASES: list[Case] = [
    # --- numeric and typed config values (train.py) ---------------------------------------------------------
    T("train-image-size-0", lambda w: w.train("data.image_size=0"), r"data\.image_size=0", r"expected .*>= 32"),
    T("train-image-size-8", lambda w: w.train("data.image_size=8"), r"data\.image_size=8", r">= 32"),
    T("train-max-epochs-foo", lambda w: w.train("trainer.max_epochs=foo"), r"trainer\.max_epochs='?foo", "integer"),
    T("train-max-epochs-0", lambda w: w.train("trainer.max_epochs=0"), r"trainer\.max_epochs=0", ">= 1"),
    T("train-seed-abc", lambda w: w.train("seed=abc"), r"seed='?abc", "integer"),
    T("train-batch-size-0", lambda w: w.train("data.batch_size=0"), r"data\.batch_size=0", ">= 1"),
    T("train-num-workers-negative", lambda w: w.train("data.num_workers=-1"), r"data\.num_workers=-1", ">= 0"),
    T("train-num-train-abc", lambda w: w.train("data.num_train=abc"), r"num_train", "abc", "integer"),
    T("train-salicon-hw-too-small", lambda w: w.train("data.salicon_hw=[10,10]"), r"salicon_hw", "32"),
    T("train-finetune-layers-9", lambda w: w.train("finetune.layers=9"), r"finetune\.layers=9",
      r"0, 1, 2, 3, 4, 5, 6, all"),
    T("train-on-error-unknown", lambda w: w.train("data.on_error=maybe"), r"data\.on_error='maybe'", "raise"),
    T("train-synthetic-off-with-sizes", lambda w: w.train("data.synthetic=false"), r"data\.synthetic=false",
      "synthetic is off"),
    # --- config composition ---------------------------------------------------------------------------------
    T("train-unknown-data-option", lambda w: w.train("data=nope", synthetic=False), r"data/nope",
      r"Available options.*synthetic"),
    T("train-unknown-experiment", lambda w: w.train("experiment=nope"), r"experiment/nope", "Available options"),
    T("train-unknown-key", lambda w: w.train("trainer.nokey=1"), r"trainer\.nokey", r"\+trainer\.nokey=1"),
    T("train-bad-override-syntax", lambda w: w.train("data.image_size=[64"), r"data\.image_size=\[64"),
    # --- weights and checkpoints (train.py) -----------------------------------------------------------------
    T("train-weights-missing-file", lambda w: w.train(f"backbone.weights={w.inputs / 'missing.pth'}"),
      r"backbone\.weights", r"{inputs}/missing\.pth"),
    T("train-weights-folder", lambda w: w.train(f"backbone.weights={w.folder('weights')}"),
      r"backbone\.weights={inputs}/weights is a folder", r"expected a VGG-16 state_dict file"),
    T("train-weights-text-file", lambda w: w.train(f"backbone.weights={w.file('vgg16.pth', 'not weights')}"),
      r"backbone\.weights: {inputs}/vgg16\.pth is not a PyTorch file", r"expected a VGG-16 state_dict file"),
    T("train-weights-not-vgg", lambda w: w.train(f"backbone.weights={torch_file(w, 'other.pth', {'fc.weight': torch.zeros(1)})}"),
      r"backbone\.weights={inputs}/other\.pth: no 'features\.\*' keys found", r"torchvision VGG-16 state_dict"),
    T("train-weights-unknown-name", lambda w: w.train("backbone.weights=IMAGENET9K_V9"),
      r"backbone\.weights='IMAGENET9K_V9'", "IMAGENET1K_V1"),
    T("train-weights-not-cached", lambda w: w.train("backbone.weights=IMAGENET1K_V1"),
      r"backbone\.weights=IMAGENET1K_V1", r"vgg16-397923af\.pth", r"{inputs}/torch_home/hub/checkpoints",
      env=lambda w: {"TORCH_HOME": str(w.folder("torch_home")), "SALIENCY_PROBE_ALLOW_DOWNLOAD": "0"}),
    T("train-resume-missing-checkpoint", lambda w: w.train(f"ckpt_path={w.inputs / 'last.ckpt'}"),
      r"ckpt_path={inputs}/last\.ckpt does not exist"),
    T("train-resume-from-folder", lambda w: w.train(f"ckpt_path={w.folder('checkpoints')}"),
      r"ckpt_path={inputs}/checkpoints is a folder", "expected a checkpoint file"),
    T("train-resume-from-text-file", lambda w: w.train(f"ckpt_path={w.file('last.ckpt', 'hello')}"),
      r"{inputs}/last\.ckpt is not a PyTorch file", r"\.ckpt file written by `python train\.py`"),
    T("train-resume-wrong-task", lambda w: w.train(f"ckpt_path={torch_file(w, 'scene.ckpt', checkpoint_payload('scene'))}"),
      r"ckpt_path={inputs}/scene\.ckpt is a scene checkpoint", "task=saliency"),
    # --- data folders and files (train.py) ------------------------------------------------------------------
    T("train-synthetic-other-sizes", lambda w: w.train("data.num_train=5"),
      r"synthetic data set {synthetic} was generated with different parameters", r"num_train: folder has 12, requested 5"),
    T("train-data-root-foreign-folder", lambda w: w.train(f"data.root={w.file('mine/notes.txt', 'mine').parent}"),
      r"{inputs}/mine is not empty and has no manifest\.json", "not a synthetic data set"),
    T("train-data-root-is-a-file", lambda w: w.train(f"data.root={w.file('data.txt', 'x')}"),
      r"{inputs}/data\.txt is a file", r"data\.root"),
    T("train-salicon-missing-folder", lambda w: w.train("data=salicon", f"data.root={w.inputs / 'nowhere'}",
                                                        synthetic=False),
      r"SALICON image folder not found: {inputs}/nowhere/images/train"),
    T("train-salicon-malformed-mat", lambda w: w.train("data=salicon", f"data.root={salicon_with_bad_mat(w)}",
                                                       "data.num_workers=0", synthetic=False),
      r"{inputs}/salicon/fixations/train/COCO_train2014_000000000001\.mat: not a readable MATLAB file"),
    T("train-salicon-unknown-edition", lambda w: w.train("data=salicon", f"data.root={w.folder('salicon')}",
                                                         "data.edition=2016", synthetic=False),
      r"data\.edition='?2016", "2017"),
    T("train-scene-labels-missing", lambda w: w.train("task=scene", f"data.labels_file={w.inputs / 'scenes.csv'}"),
      r"scene label file not found: {inputs}/scenes\.csv", "image,scene"),
    T("train-scene-labels-bad-header", lambda w: w.train("task=scene",
                                                         "data.labels_file=" + str(w.file("scenes.csv", "a,b\n1,2\n"))),
      r"{inputs}/scenes\.csv: header is \['a', 'b'\], expected \['image', 'scene'\]"),
    # --- run folders (train.py) -----------------------------------------------------------------------------
    T("train-run-folder-holds-a-run", lambda w: w.train(w.previous_run("summary.json")),
      r"hydra\.run\.dir={run} already holds another run's results \(summary\.json\)", "overwrite=true"),
    T("train-run-folder-read-only", lambda w: w.train(w.read_only(w.run)), r"{run} is not writable",
      r"hydra\.run\.dir"),
    T("train-run-folder-under-a-file", lambda w: w.train(f"hydra.run.dir={w.file('a_file')}/run"),
      r"{inputs}/a_file is a file", r"hydra\.run\.dir"),
    # --- numeric and typed config values (probe.py) ---------------------------------------------------------
    P("probe-image-size-8", lambda w: w.probe("data.image_size=8"), r"data\.image_size=8", ">= 32"),
    P("probe-limit-0", lambda w: w.probe("data.limit=0"), r"data\.limit=0", ">= 1"),
    P("probe-batch-size-0", lambda w: w.probe("data.batch_size=0"), r"data\.batch_size=0", ">= 1"),
    P("probe-seed-abc", lambda w: w.probe("seed=abc"), r"seed='?abc", "integer"),
    P("probe-top-k-0", lambda w: w.probe("top_k=0"), r"top_k=0", ">= 1"),
    P("probe-threshold-text", lambda w: w.probe("threshold=high"), r"threshold='?high", "number"),
    P("probe-unknown-layer", lambda w: w.probe("layers=[conv9_9]"), r"^layers: unknown VGG-16 layer\(s\) \['conv9_9'\]",
      r"conv1_1, conv1_2, .*, conv5_3"),
    P("probe-figure-layers-not-probed", lambda w: w.probe("layers=[conv5_3]", "figures.layers=[conv4_1]"),
      r"figures\.layers \['conv4_1'\] are not probed", r"layers=\['conv5_3'\]"),
    P("probe-figure-search-images-0", lambda w: w.probe("figures.search_images=0"), r"figures\.search_images=0",
      ">= 1"),
    P("probe-unknown-analysis", lambda w: w.probe("analyses=[nope]"), r"analys[ie]s", r"'nope'", r"inner"),
    P("probe-names-do-not-match", lambda w: w.probe("names=[a,b]"), r"names=\['a', 'b'\]", r"1 model"),
    # --- typed sections (probe.py) --------------------------------------------------------------------------
    P("probe-popout-unknown-key", lambda w: w.probe("popout.nokey=1"), r"nokey", r"popout"),
    P("probe-popout-max-fixations-foo", lambda w: w.probe("popout.max_fixations=foo"),
      r"popout\.max_fixations", r"'foo'"),
    P("probe-popout-inhibition-negative", lambda w: w.probe("popout.inhibition=-3"), r"popout\.inhibition=-3",
      r"'item' or a positive box side"),
    P("probe-popout-image-size-16", lambda w: w.probe("popout.image_size=16"), r"popout\.image_size=16", ">= 32"),
    P("probe-popout-fig9-layer-unknown", lambda w: w.probe("popout.fig9_layer=conv9_9"),
      r"^popout\.fig9_layer: unknown VGG-16 layer\(s\) \['conv9_9'\]", r"conv4_1"),
    P("probe-popout-fig9-arrays-negative", lambda w: w.probe("popout.fig9_arrays=-1"), r"popout\.fig9_arrays=-1",
      ">= 0"),
    P("probe-precision-fp16", lambda w: w.probe("probe_precision=fp16"), r"^probe_precision='fp16'",
      r"\['fp32', 'bf16'\]"),
    P("probe-output-alpha-2", lambda w: w.probe("output.alpha=2"), r"output\.alpha=2", r"0 < alpha < 1"),
    P("probe-output-gt-sigma-negative", lambda w: w.probe("output.gt_sigma=-1"), r"output\.gt_sigma=-1", ">= 0"),
    P("probe-scene-attention-split-test", lambda w: w.probe("scene_attention.split=test"),
      r"scene_attention\.split must be one of \['val', 'train', 'all'\], got 'test'"),
    P("probe-scene-attention-confidence", lambda w: w.probe("scene_attention.confidence=1.5"),
      r"scene_attention\.confidence=1\.5", r"0 < confidence < 1"),
    P("probe-benchmark-limit-0", lambda w: w.probe("benchmark.limit=0"), r"benchmark\.limit=0", ">= 1"),
    P("probe-benchmark-gt-sigma-0", lambda w: w.probe("benchmark.gt_sigma=0"), r"benchmark\.gt_sigma=0", "> 0"),
    P("probe-benchmark-models-empty", lambda w: w.probe("benchmark.models=[]"), r"benchmark\.models is empty"),
    P("probe-benchmark-unknown-metric", lambda w: w.benchmark("benchmark.metrics=[nope]"),
      r"benchmark\.metrics=\['nope'\]", r"nss, cc, kld, sim, auc_judd, auc_shuffled"),
    P("probe-benchmark-unknown-model", lambda w: w.benchmark("benchmark.models=[center_bias,nope]"),
      r"benchmark\.models: unknown model 'nope'", r"center_bias, inter_observer, bms", r"ckpt:<checkpoint path>"),
    P("probe-benchmark-missing-maps", lambda w: w.benchmark(f"benchmark.models=[maps:{w.inputs / 'maps'}]"),
      r"maps:{inputs}/maps: no folder {inputs}/maps", r"one saliency map per image"),
    P("probe-benchmark-checkpoint-text-file", lambda w: w.benchmark(f"benchmark.models=[ckpt:{w.file('b.ckpt', 'x')}]"),
      r"checkpoint {inputs}/b\.ckpt is not a PyTorch file"),
    P("probe-benchmark-on-mit1003-missing", lambda w: w.probe("analyses=[benchmark]", "data=mit1003",
                                                              f"data.root={w.inputs / 'mit'}", synthetic=False),
      r"MIT1003 folder not found: {inputs}/mit/ALLSTIMULI"),
    # --- models (probe.py) ----------------------------------------------------------------------------------
    P("probe-ckpt-folder", lambda w: w.probe(f"ckpt={w.folder('run1')}"), r"checkpoint {inputs}/run1 is a folder",
      r"expected a \.ckpt file"),
    P("probe-ckpt-text-file", lambda w: w.probe(f"ckpt={w.file('notes.ckpt', 'hello world')}"),
      r"checkpoint {inputs}/notes\.ckpt is not a PyTorch file", r"expected a \.ckpt file"),
    P("probe-ckpt-empty-file", lambda w: w.probe(f"ckpt={w.file('empty.ckpt')}"),
      r"checkpoint {inputs}/empty\.ckpt is an empty file"),
    P("probe-ckpt-missing", lambda w: w.probe(f"ckpt={w.inputs / 'nowhere.ckpt'}"),
      r"{inputs}/nowhere\.ckpt does not exist"),
    P("probe-ckpt-foreign", lambda w: w.probe(f"ckpt={torch_file(w, 'vgg.pth', {'features.0.weight': torch.zeros(1)})}"),
      r"checkpoint {inputs}/vgg\.pth is not a saliency_probe checkpoint", r"backbone\.weights=<file>"),
    P("probe-ckpt-unsafe", lambda w: w.probe(f"ckpt={unsafe_checkpoint(w)}"),
      r"checkpoint {inputs}/unsafe\.ckpt cannot be loaded with torch\.load\(weights_only=True\)"),
    P("probe-ckpt-without-trunk", lambda w: w.probe(f"ckpt={torch_file(w, 'head.ckpt', checkpoint_payload(trunk=False))}"),
      r"checkpoint {inputs}/head\.ckpt has no trunk weights"),
    P("probe-sweep-without-summary", lambda w: w.probe(f"sweep={w.folder('sweep/0').parent}"),
      r"no summary\.json under {inputs}/sweep", r"<job number>/summary\.json"),
    P("probe-sweep-missing", lambda w: w.probe(f"sweep={w.inputs / 'nosweep'}"),
      r"sweep folder not found: {inputs}/nosweep"),
    P("probe-sweep-is-a-file", lambda w: w.probe(f"sweep={w.file('sweep.txt', 'x')}"),
      r"sweep={inputs}/sweep\.txt is a file"),
    P("probe-sweep-bad-summary", lambda w: w.probe(f"sweep={sweep_with_bad_summary(w)}"),
      r"{inputs}/sweep/0/summary\.json: not valid JSON"),
    P("probe-weights-missing-file", lambda w: w.probe(f"backbone.weights={w.inputs / 'vgg16.pth'}"),
      r"backbone\.weights", r"{inputs}/vgg16\.pth"),
    P("probe-weights-not-cached", lambda w: w.probe("backbone.weights=IMAGENET1K_V1"),
      r"backbone\.weights=IMAGENET1K_V1", r"vgg16-397923af\.pth", r"{inputs}/torch_home/hub/checkpoints",
      env=lambda w: {"TORCH_HOME": str(w.folder("torch_home")), "SALIENCY_PROBE_ALLOW_DOWNLOAD": "0"}),
    # --- data (probe.py) ------------------------------------------------------------------------------------
    P("probe-osie-missing-folder", lambda w: w.probe(*osie_sr_args(w.inputs / "osie_nowhere", w.synthetic / "osie_sr"),
                                                     synthetic=False),
      r"OSIE folder not found: {inputs}/osie_nowhere/osie"),
    P("probe-osie-sr-missing-regions", lambda w: w.probe(*osie_sr_args(w.synthetic, w.inputs / "regions"),
                                                         synthetic=False),
      r"OSIE-SR region folder not found: {inputs}/regions"),
    P("probe-osie-malformed-fixations", lambda w: w.probe(*osie_sr_args(damaged_osie(w)), synthetic=False),
      r"{inputs}/synthetic/osie/data/eye/fixations\.mat: not a readable MATLAB file"),
    P("probe-osie-sr-no-category-names", lambda w: w.probe(*osie_sr_args(osie_sr_without_names(w)), synthetic=False),
      r"{inputs}/synthetic/osie_sr/class_names\.txt: no category names"),
    P("probe-osie-unknown-stems", lambda w: w.probe(*osie_sr_args(w.synthetic), "data.stems=[9999]", synthetic=False),
      r"data\.stems", r"9999"),
    P("probe-synthetic-other-sizes", lambda w: w.probe("data.num_probe=3"),
      r"synthetic data set {synthetic} was generated with different parameters", r"num_probe: folder has 8, requested 3"),
    P("probe-popout-foreign-folder", lambda w: w.probe("analyses=[popout]", "data=popout",
                                                       f"data.root={w.file('mine/notes.txt', 'mine').parent}",
                                                       "popout.models=[]", synthetic=False),
      r"{inputs}/mine is not empty", r"pop-out"),
    P("probe-popout-generate-num-0", lambda w: w.probe("analyses=[popout]", "data=popout",
                                                       f"data.root={w.inputs / 'popout'}", "data.generate.num=0",
                                                       "popout.models=[]", synthetic=False),
      r"num must be >= 1", r"data\.generate\.num"),
    # --- run folders (probe.py) -----------------------------------------------------------------------------
    P("probe-tables-is-a-file", lambda w: w.probe(w.run_file("tables")),
      r"{run}/tables is a file where the run writes a folder", r"hydra\.run\.dir"),
    P("probe-figures-is-a-file", lambda w: w.probe(w.run_file("figures")),
      r"{run}/figures is a file where the run writes a folder", r"hydra\.run\.dir"),
    P("probe-run-folder-holds-a-run", lambda w: w.probe(w.previous_run("probe_summary.json")),
      r"hydra\.run\.dir={run} already holds another run's results \(probe_summary\.json\)", "overwrite=true"),
    P("probe-run-folder-read-only", lambda w: w.probe(w.read_only(w.run)),
      r"{run} is not writable", r"hydra\.run\.dir"),
]


def _param(case: Case):
    marks = [pytest.mark.xfail(strict=True, reason=f"validation pending: {case.pending}")] if case.pending else []
    return pytest.param(case, id=case.id, marks=marks)


def test_the_list_is_long_enough() -> None:
    assert len(CASES) >= 45
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.fixture
def workspace(tmp_path: Path, synthetic_root: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)  # a relative default path can only land here, never in the repository
    monkeypatch.setenv("WANDB_MODE", "disabled")
    space = Workspace(tmp_path, synthetic_root)
    yield space
    for cleanup in reversed(space.cleanups):
        cleanup()


@pytest.mark.parametrize("case", [_param(case) for case in CASES])
def test_bad_input_is_one_line_and_exit_code_2(
    case: Case, workspace: Workspace, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    overrides = case.overrides(workspace)
    for key, value in (case.env(workspace) if case.env else {}).items():
        monkeypatch.setenv(key, value)
    watched = [workspace.inputs, workspace.run, workspace.synthetic]
    before = snapshot(watched)
    had = {name for name in RESULTS if (workspace.run / name).exists()}

    code = run_entry(case.program, overrides, monkeypatch)

    out, err = capsys.readouterr()
    shown = f"exit {code}\n--- stdout\n{out[-3000:]}\n--- stderr\n{err[-3000:]}"
    assert code == 2, shown
    assert "Traceback" not in out + err, shown
    lines = [line for line in err.splitlines() if line.strip()]
    prefix = f"{case.program}.py: error: "
    errors = [line for line in lines if line.startswith(prefix)]
    assert len(errors) == 1 and lines[-1] == errors[0], shown
    message = errors[0][len(prefix):]
    places = {name: re.escape(str(getattr(workspace, name))) for name in ("inputs", "run", "synthetic")}
    for pattern in case.expect:
        assert re.search(pattern.format(**places), message), f"{pattern!r} not in {message!r}"

    after = snapshot(watched)
    changed = sorted(path for path, digest in before.items() if after.get(path) != digest)
    assert not changed, f"changed or removed: {changed}"
    added = sorted(path for path in set(after) - set(before) if not path.startswith(str(workspace.run)))
    assert not added, f"written among the user's files: {added}"
    written = sorted(name for name in RESULTS if (workspace.run / name).exists() and name not in had)
    assert not written, f"a refused run wrote {written}"
