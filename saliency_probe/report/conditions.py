"""Which paper row a probed model stands beside, and how its conditions differ from the paper's.

A model is matched to the row of the same *experiment* (Table 2/3 row 0 for a pretrained trunk, Table 3 row k for
a saliency model with k layers fine-tuned on SALICON, Table 7 pt / sp / sr for the pretrained, saliency-tuned and
scene-tuned trunks of the same images); every difference between the conditions it was made under
(``probe_summary.json``: ``models[i].conditions`` and ``probe_conditions``, written by
:mod:`saliency_probe.probe.conditions`) and the paper's is one phrase of its *conditions line*. Pure functions
of those dicts: the report can be rebuilt from the run folder.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

#: The paper's conditions (Sections 4-8; docs/protocol.md): what every comparison is checked against.
PAPER = {
    "backbone": "vgg16",
    "weights": "imagenet",
    "training_data": {"table3": "SALICON", "table7": "SALICON-SAL-SCE"},
    "epochs": 20,
    "checkpoint": "last",
    "trained_image_size": 224,
    "probe_data": "OSIE-SR",
    "input_size": 224,
    "precision": "fp32",
    "top_k": 10,
    "threshold": 1.5,
}
#: Table 7's row names, as ``probe=table7`` names the models.
TABLE7_ROLES = ("pt", "sp", "sr")


def table_title(key: str) -> str:
    """``table7`` -> ``Table 7``, ``section6`` -> ``Section 6`` (the keys of ``paper_values.json``)."""
    return key.replace("table", "Table ").replace("section", "Section ")


def _info(model: Mapping[str, Any]) -> dict[str, Any]:
    """A model's details: ``probe_summary.json`` flattens them into the entry, a source keeps them in ``info``."""
    return {**model, **(model.get("info") or {})}


def _trained_on(model: Mapping[str, Any]) -> Mapping[str, Any]:
    return (model.get("conditions") or {}).get("trained_on") or {}


def experiment_row(model: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(table, row)`` of the paper's inner statistics for the experiment a model comes from, or None.

    - a pretrained trunk (``backbone.weights``; not the random control) or a checkpoint with 0 layers tuned: Table 3
      row 0 (= Table 2, = Table 7 pt); a trunk named ``pt`` (``probe=table7``): Table 7 ``pt``;
    - a saliency checkpoint fine-tuned with 1 layer on scene-labelled images (the scene task's data:
      SALICON-SAL-SCE), or named ``sp``: Table 7 ``sp``; any other saliency checkpoint with k layers: Table 3 row k;
    - a scene checkpoint with 1 layer tuned: Table 7 ``sr`` (the paper's only scene setting).
    Random trunks, other scene settings and backbones other than VGG-16 have no row.
    """
    info = _info(model)
    if str(info.get("backbone") or "vgg16") != PAPER["backbone"]:
        return None
    kind, task, layers, name = model.get("kind"), info.get("task"), str(info.get("finetune_layers")), model.get("name")
    if kind == "weights":
        return ("table7", "pt") if name == "pt" else ("table3", "0")
    if kind != "checkpoint":
        return None
    if layers == "0":  # the trunk is untouched whatever the task
        return "table3", "0"
    if task == "saliency":
        if layers == "1" and (name == "sp" or _trained_on(model).get("scene_labels")):
            return "table7", "sp"
        return ("table3", layers) if layers in {"0", "1", "2", "3", "4", "5", "6", "all"} else None
    if task == "scene" and layers == "1":
        return "table7", "sr"
    return None


def _weights_phrase(conditions: Mapping[str, Any]) -> str | None:
    origin = conditions.get("origin")
    if origin == "imagenet":
        return None
    if origin == "random":
        return "random initialisation (paper: ImageNet weights)"
    return f"weights {conditions.get('weights')} are not torchvision's ImageNet VGG-16 (paper: ImageNet weights)"


def model_differences(model: Mapping[str, Any], row: tuple[str, str]) -> list[str]:
    """How one model's own conditions differ from those of its paper ``row``."""
    conditions = model.get("conditions") or {}
    if not conditions:
        return ["conditions not recorded (a probe_summary.json from an older version)"]
    found = [phrase for phrase in (_weights_phrase(conditions),) if phrase]
    if model.get("kind") != "checkpoint":
        return found
    trained = conditions.get("trained_on") or {}
    expected = PAPER["training_data"]["table7" if row[0] in ("table7", "table8") else "table3"]  # 7, 8: SAL-SCE
    data_set = trained.get("data_set")
    if data_set != expected:
        found.append(f"fine-tuned on {data_set or 'unrecorded data'} (paper: {expected})")
    size = trained.get("image_size")
    if size is not None and int(size) != PAPER["trained_image_size"]:
        found.append(f"trained at {int(size)} px (paper: {PAPER['trained_image_size']})")
    epochs = conditions.get("epochs")
    if epochs is not None and int(epochs) != PAPER["epochs"]:
        found.append(f"{int(epochs)} epoch(s) (paper: {PAPER['epochs']})")
    choice = conditions.get("checkpoint")
    if choice != PAPER["checkpoint"]:
        found.append(f"checkpoint {choice} (paper: the model after {PAPER['epochs']} epochs)")
    return found


def probe_differences(probe: Mapping[str, Any], regions: bool = True) -> list[str]:
    """How the probe run's own conditions differ from the paper's (the same for every model of the run);
    ``regions=False`` for comparisons that do not use the categorised regions (Table 8, the pop-out tables)."""
    if not probe:
        return []
    found = []
    if regions and probe.get("data_set") != PAPER["probe_data"]:
        found.append(f"probed on {probe.get('data_set')} (paper: {PAPER['probe_data']})")
    if probe.get("input_size") is not None and int(probe["input_size"]) != PAPER["input_size"]:
        found.append(f"probed at {int(probe['input_size'])} px (paper: {PAPER['input_size']})")
    if probe.get("precision", "fp32") != PAPER["precision"]:
        found.append(f"{probe.get('precision')} forward (paper: float32)")
    for key in ("top_k", "threshold") if regions else ():
        if probe.get(key) is not None and float(probe[key]) != float(PAPER[key]):
            found.append(f"{key}={probe[key]} (paper: {PAPER[key]})")
    return found


def same_images_differences(models: Sequence[Mapping[str, Any]]) -> list[str]:
    """Table 7's premise: sp and sr fine-tuned on the same images (the split fingerprints of their checkpoints)."""
    prints = {}
    for model in models:
        if experiment_row(model) in (("table7", "sp"), ("table7", "sr")):
            prints[model["name"]] = (_trained_on(model).get("fingerprints") or {}).get("train")
    if len(prints) < 2:
        return []
    if None in prints.values():
        return [f"the training images of {', '.join(prints)} are not all recorded: Table 7 needs the same images"]
    if len(set(prints.values())) > 1:
        return [f"{' and '.join(prints)} were fine-tuned on different images (training-split fingerprints "
                f"{', '.join(f'{k} {v}' for k, v in prints.items())}); Table 7 compares the same images"]
    return []


def start_difference(reference: Mapping[str, Any], tuned: Mapping[str, Any]) -> str | None:
    """None when ``tuned`` started from the weights of ``reference`` (setup I), or when either's ``start``
    (``models[i].conditions.start``) is not recorded; else one line saying what each started from."""
    before, after = reference.get("start") or {}, tuned.get("start") or {}
    if not before or not after or list(before.get("key") or ()) == list(after.get("key") or ()):
        return None
    return (f"started from {after.get('text')}, setup I from {before.get('text')}: its changes mix fine-tuning "
            "with another start")


def same_start_differences(models: Sequence[Mapping[str, Any]]) -> list[str]:
    """Table 7's other premise: pt, sp and sr start from the same weights (``conditions.start`` of each model)."""
    starts = {}
    for model in models:
        if (experiment_row(model) or ("", ""))[0] == "table7":
            start = (model.get("conditions") or {}).get("start") or {}
            starts[model["name"]] = (tuple(start.get("key") or ()), start.get("text"))
    if len(starts) < 2 or len({key for key, _ in starts.values()}) < 2:
        return []
    listed = "; ".join(f"{name} from {text or 'unrecorded weights'}" for name, (_, text) in starts.items())
    return [f"{', '.join(starts)} did not all start from the same weights ({listed}); Table 7 compares the tasks "
            "from one start"]


def conditions_line(model: Mapping[str, Any], row: tuple[str, str], probe: Mapping[str, Any]) -> str | None:
    """The visible line beside a paper comparison: every difference from the paper's conditions, or None."""
    found = model_differences(model, row) + probe_differences(probe)
    if not found:
        return None
    return f"{model['name']} ↔ {(table_title(row[0]) + ' ' + row[1]).strip()}: conditions differ from the paper's: " + "; ".join(found) + "."


def describe_conditions(model: Mapping[str, Any], probe: Mapping[str, Any]) -> str:
    """One line of what a model is: weights, training data (set, images, size), epochs, checkpoint; probe input."""
    conditions = model.get("conditions") or {}
    origin = conditions.get("origin")
    weights = {"random": "random init", "imagenet": "ImageNet weights"}.get(str(origin), str(conditions.get("weights")))
    parts = [weights]
    trained = conditions.get("trained_on")
    if trained:
        counts = "/".join(str(trained.get(key, "?")) for key in ("train_images", "val_images"))
        edition = f" {trained['edition']}" if trained.get("edition") and "SALICON" in str(trained.get("data_set")) else ""
        parts.append(f"fine-tuned on {trained.get('data_set')}{edition} ({counts} train/val images, "
                     f"{trained.get('image_size')} px)")
        parts.append(f"{conditions.get('epochs')} epoch(s), {conditions.get('checkpoint')} checkpoint")
    if probe:
        parts.append(f"probed on {probe.get('data_set')} ({probe.get('images')} images, {probe.get('input_size')} px, "
                     f"{probe.get('precision')})")
    return ", ".join(parts)
