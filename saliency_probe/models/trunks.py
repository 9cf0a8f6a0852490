"""The trunks: VGG, ResNet and any traced ``nn.Module`` (torchvision models, the user's own), their layer
tables and the freezing rule (docs/backbones.md, docs/protocol.md).

Every trunk is an ``nn.Module`` whose ``forward`` returns the maps of the head's layer, with

- ``layer_table`` (:class:`~saliency_probe.models.layers.LayerTable`): probe name -> graph node, channels, stride;
- ``graph_root``: the module ``torchvision.models.feature_extraction`` traces for the table's nodes;
- ``set_trainable(finetune_layers)``: the last k fine-tuning units (and, for ``custom`` with an output, the
  part after the last unit) train, everything else is frozen: ``requires_grad=False`` and eval mode, re-applied
  after every ``train()`` call (Lightning calls it each epoch and after validation), so BatchNorm running
  statistics of frozen parts do not move.

State-dict keys are torchvision's: ``features.<i>.*`` (VGG), ``layer4.1.conv2.*`` (ResNet), ``model.<the
model's own keys>`` (other models).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torchvision.models import get_model
from torchvision.models.vgg import cfgs, make_layers

from saliency_probe.errors import ConfigError
from saliency_probe.models.layers import (
    LAST,
    GraphInfo,
    Layer,
    LayerTable,
    segment_targets,
    stage_layers,
    table_from_nodes,
    trace_graph,
    unknown_node_message,
)
from saliency_probe.models.spec import CUSTOM, BackboneSpec

#: VGG name -> torchvision's layer configuration letter.
VGG_CONFIGS = {"vgg11": "A", "vgg13": "B", "vgg16": "D", "vgg19": "E"}
#: Key of a model's own output in :meth:`Trunk.extract` results (``backbone.output``).
OUTPUT_KEY = "__output__"


def _under(path: str, roots: set[str]) -> bool:
    return "" in roots or any(path == root or path.startswith(root + ".") for root in roots)


#: The trunks :meth:`Trunk.split` can cut (``cache.features=true``), for messages.
SPLIT_FAMILIES = "VGG (vgg11, vgg13, vgg16, vgg19 and their _bn variants) and ResNet (resnet*, resnext*, wide_resnet*)"


@dataclass(frozen=True)
class TrunkSplit:
    """Where ``finetune.layers`` cuts a trunk: the frozen prefix and the trainable suffix, as module paths
    (relative to the trunk, network order). The prefix's output is the suffix's input (the boundary):
    ``before <unit>`` (the input of the first trainable unit) or ``after <head layer>`` (``finetune.layers=0``)."""

    boundary: str
    prefix: tuple[str, ...]
    suffix: tuple[str, ...]


class Trunk(nn.Module):
    """Base of every trunk: the layer table, the head's layer, freezing, extraction of any graph node."""

    spec: BackboneSpec

    def __init__(self, spec: BackboneSpec) -> None:
        super().__init__()
        self.spec = spec
        self._frozen: list[str] = []
        self._head_node: str | None = None  # None: forward() is the full trunk (the head is its last layer)
        self._start: TrunkSplit | None = None  # set: forward() takes the boundary activations (start_at)

    # --- table ------------------------------------------------------------------------------------------
    @property
    def architecture(self) -> Architecture:
        return architecture(self.spec)

    @property
    def layer_table(self) -> LayerTable:
        return self.architecture.table

    def layer(self, name: str) -> Layer:
        return self.architecture.layer(name)

    def _setup_head(self) -> None:
        table = self.layer_table
        head = self.layer(table.head)
        self._head_node = None if head.node == table.layers[-1].node and self.natural_full_forward else head.node

    natural_full_forward = True  # full_forward() ends at the last table layer

    @property
    def graph_root(self) -> nn.Module:
        """The module traced for node extraction: the full trunk (to the last table layer)."""
        return self if self._head_node is None else _FullView(self)

    def full_forward(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Maps of the head's layer ``(B, C, h, w)`` (after :meth:`start_at`: from the boundary activations)."""
        if self._start is not None:
            return self.run_modules(images, self._start.suffix)
        if self._head_node is None:
            return self.full_forward(images)
        return self.extract(images, [self._head_node])[self._head_node]

    # --- the frozen prefix and the trainable suffix (feature cache) ----------------------------------------
    def split(self, finetune_layers: int | str) -> TrunkSplit:
        """The prefix that ``finetune.layers`` freezes and the suffix that trains (VGG and ResNet trunks)."""
        raise ConfigError(f"backbone {self.spec.describe()}: the trunk cannot be split at its freeze boundary; "
                          f"cache.features=true supports {SPLIT_FAMILIES}")

    def run_modules(self, x: torch.Tensor, paths: Sequence[str]) -> torch.Tensor:
        """Apply the modules at ``paths`` in turn (a prefix or a suffix of :meth:`split`)."""
        for path in paths:
            x = self.get_submodule(path)(x)
        return x

    def start_at(self, split: TrunkSplit | None) -> None:
        """From now on ``forward`` takes the boundary activations of ``split`` and runs its suffix only (the
        cached-feature training); None restores the full forward. Parameters and state dict are untouched."""
        self._start = split

    # --- extraction of graph nodes (unregistered graph modules sharing this trunk's parameters) ----------
    def extract(self, images: torch.Tensor, nodes: Sequence[str]) -> dict[str, torch.Tensor]:
        """Outputs of graph ``nodes`` of :attr:`graph_root` for ``images`` (one forward, pruned after the last)."""
        key = tuple(dict.fromkeys(nodes))
        cache = self.__dict__.setdefault("_extractors", {})
        extractor = cache.get(key)
        if extractor is None:
            from torchvision.models.feature_extraction import create_feature_extractor

            extractor = create_feature_extractor(self.graph_root, return_nodes={node: node for node in key})
            cache[key] = extractor
            self.train(self.training)  # tracing toggled every submodule's mode: restore (frozen parts in eval)
        if extractor.training != self.training:  # choose the graph of this mode without touching submodules
            extractor.graph = extractor.train_graph if self.training else extractor.eval_graph
            extractor.training = self.training
        return extractor(images)

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> Trunk:
        self.__dict__["_extractors"] = {}  # attributes may have moved: rebuild the graph modules when used
        return super()._apply(fn, *args, **kwargs)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_extractors"] = {}
        return state

    # --- freezing ----------------------------------------------------------------------------------------
    def unit_paths(self, units: Sequence[str]) -> set[str]:
        """Module / parameter paths (relative to this trunk) of fine-tuning ``units``."""
        raise NotImplementedError

    def head_paths(self) -> set[str]:
        """Paths that always train (``custom`` with an output: the part after the last unit)."""
        return set()

    def trainable_units(self, finetune_layers: int | str) -> list[str]:
        count = self.architecture.parse_finetune(finetune_layers)
        units = self.layer_table.finetune_units()
        if str(finetune_layers).strip().lower() == "all":
            return list(units)
        return units[len(units) - count:] if count else []

    def set_trainable(self, finetune_layers: int | str) -> list[str]:
        """Apply the static freezing rule; return the trainable unit names (network order)."""
        units = self.trainable_units(finetune_layers)
        everything = str(finetune_layers).strip().lower() == "all"
        roots = {""} if everything else self.unit_paths(units) | self.head_paths()
        for name, parameter in self.named_parameters():
            parameter.requires_grad_(_under(name, roots))
        self._frozen = [name for name, module in self.named_modules()
                        if name and not list(module.children()) and not _under(name, roots)]
        self.apply_frozen_mode()
        return units

    def frozen_modules(self) -> list[str]:
        """Paths of the frozen leaf modules (kept in eval mode)."""
        return list(self._frozen)

    def apply_frozen_mode(self) -> None:
        """Put the frozen modules in eval mode (the trainable ones keep the trunk's mode)."""
        for name in self._frozen:
            self.get_submodule(name).eval()

    def train(self, mode: bool = True) -> Trunk:
        super().train(mode)
        if mode:
            self.apply_frozen_mode()
        return self

    # --- the model's own output (custom) ----------------------------------------------------------------
    @property
    def has_output(self) -> bool:
        return False

    def saliency(self, images: torch.Tensor) -> torch.Tensor:
        """The model's own saliency map ``(B, 1, h, w)`` (``backbone.output``)."""
        raise ConfigError(f"backbone {self.spec.describe()} has no backbone.output: its saliency map is the 1x1 head's")


class _FullView(nn.Module):
    """The trunk's children with ``full_forward`` as forward (what the probe traces when the head is earlier)."""

    def __init__(self, trunk: Trunk) -> None:
        super().__init__()
        for name, child in trunk.named_children():
            self.add_module(name, child)
        self._full = type(trunk).full_forward

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self._full(self, images)


# ------------------------------------------------------------------------------------------------------------
# VGG
# ------------------------------------------------------------------------------------------------------------


def vgg_conv_layers(features: nn.Sequential) -> list[tuple[str, int, int, int, int]]:
    """``(name, conv index, ReLU index, channels, block)`` of every conv of a VGG ``features`` (conv<b>_<i>)."""
    out = []
    block, count, pending = 1, 0, None
    for index, module in enumerate(features):
        if isinstance(module, nn.MaxPool2d):
            block, count = block + 1, 0
        elif isinstance(module, nn.Conv2d):
            count += 1
            pending = (f"conv{block}_{count}", index, module.out_channels)
        elif isinstance(module, nn.ReLU) and pending is not None:
            out.append((pending[0], pending[1], index, pending[2], block))
            pending = None
    return out


class VGGTrunk(Trunk):
    """VGG conv1_1..conv5_3 (VGG-19: ..conv5_4) with their ReLUs, no pool5; ``forward`` returns the head layer's
    post-ReLU maps (conv5_3 for VGG-16). torchvision's ``features`` layout, so its state dicts load."""

    def __init__(self, spec: BackboneSpec | None = None, _bare: bool = False) -> None:
        spec = spec or BackboneSpec()
        super().__init__(spec)
        name = spec.name.removesuffix("_bn")
        layers = make_layers(cfgs[VGG_CONFIGS[name]], batch_norm=spec.name.endswith("_bn"))
        # torchvision's own layer builder (no classifier: building VGG-16's 124M-parameter head costs seconds).
        self.features = nn.Sequential(*list(layers.children())[:-1])
        for module in self.features.modules():  # torchvision's VGG initialisation
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.constant_(module.weight, 1)
                nn.init.constant_(module.bias, 0)
        convs = vgg_conv_layers(self.features)
        self._convs = {name: conv for name, conv, _, _, _ in convs}
        self._units = {name: list(range(conv, relu)) for name, conv, relu, _, _ in convs}  # conv (+ BatchNorm)
        if not _bare:
            self._setup_head()

    def full_forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self._start is not None:
            return self.run_modules(images, self._start.suffix)
        if self._head_node is None:
            return self.features(images)
        stop = int(self._head_node.split(".")[1])
        x = images
        for index, module in enumerate(self.features):
            x = module(x)
            if index == stop:
                break
        return x

    def conv(self, layer: str) -> nn.Conv2d:
        """The ``nn.Conv2d`` of a named layer."""
        return self.features[self._convs[layer]]

    def unit_paths(self, units: Sequence[str]) -> set[str]:
        return {f"features.{index}" for unit in units for index in self._units[unit]}

    def split(self, finetune_layers: int | str) -> TrunkSplit:
        stop = len(self.features) - 1 if self._head_node is None else int(self._head_node.split(".")[1])
        trainable = self.trainable_units(finetune_layers)
        if str(finetune_layers).strip().lower() == "all":
            first, boundary = 0, "input"
        elif trainable:
            first, boundary = self._convs[trainable[0]], f"before {trainable[0]}"
        else:
            first, boundary = stop + 1, f"after {self.layer_table.head}"
        paths = [f"features.{index}" for index in range(stop + 1)]
        return TrunkSplit(boundary, tuple(paths[:first]), tuple(paths[first:]))


# ------------------------------------------------------------------------------------------------------------
# ResNet
# ------------------------------------------------------------------------------------------------------------

RESNET_STAGES = ("layer1", "layer2", "layer3", "layer4")


class ResNetTrunk(Trunk):
    """torchvision's ResNet stem and four stages (no average pooling, no fc); ``forward`` returns the head
    layer's maps (the last block's post-ReLU output by default). Fine-tuning units: the residual blocks."""

    def __init__(self, spec: BackboneSpec, model: nn.Module | None = None, _bare: bool = False) -> None:
        super().__init__(spec)
        model = model if model is not None else get_model(spec.name, weights=None)
        for name in ("conv1", "bn1", "relu", "maxpool", *RESNET_STAGES):
            self.add_module(name, getattr(model, name))
        if not _bare:
            self._setup_head()

    def full_forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def blocks(self) -> list[str]:
        """``layer1.0`` ... ``layer4.2``: every residual block, network order."""
        return [f"{stage}.{index}" for stage in RESNET_STAGES for index in range(len(getattr(self, stage)))]

    def unit_paths(self, units: Sequence[str]) -> set[str]:
        return set(units)

    def split(self, finetune_layers: int | str) -> TrunkSplit:
        units = self.layer_table.finetune_units()  # the blocks up to the head's
        trainable = self.trainable_units(finetune_layers)
        paths = ["conv1", "bn1", "relu", "maxpool", *units]
        if str(finetune_layers).strip().lower() == "all":
            first, boundary = 0, "input"
        elif trainable:
            first, boundary = paths.index(trainable[0]), f"before {trainable[0]}"
        else:
            first, boundary = len(paths), f"after {units[-1]}"
        return TrunkSplit(boundary, tuple(paths[:first]), tuple(paths[first:]))


# ------------------------------------------------------------------------------------------------------------
# any traced model (torchvision classification models, custom)
# ------------------------------------------------------------------------------------------------------------


def build_model(spec: BackboneSpec) -> nn.Module:
    """The bare model a spec names: torchvision's (random init) or the ``custom`` builder's."""
    if spec.name == CUSTOM:
        from hydra.utils import instantiate

        model = instantiate(dict(spec.builder), _convert_="all")
        if not isinstance(model, nn.Module):
            raise ConfigError(f"backbone._target_={spec.builder.get('_target_')} built a {type(model).__name__}, "
                            "not a torch.nn.Module")
        return model
    return get_model(spec.name, weights=None)


class GraphTrunk(Trunk):
    """Any ``nn.Module`` that ``torch.fx`` can trace: ``model`` is the whole model (its classifier replaced by
    ``nn.Identity`` for torchvision models); ``forward`` returns the head layer's node. Fine-tuning units: the
    table layers, each owning the modules that run after the previous unit's node and up to its own."""

    natural_full_forward = False

    def __init__(self, spec: BackboneSpec, model: nn.Module | None = None, _bare: bool = False) -> None:
        super().__init__(spec)
        self.model = model if model is not None else build_model(spec)
        if not _bare:
            if spec.name != CUSTOM:
                _prune(self.model, self.architecture.used_targets())
            self._setup_head()

    @property
    def graph_root(self) -> nn.Module:
        return self.model

    def unit_paths(self, units: Sequence[str]) -> set[str]:
        return {f"model.{target}" for target in self.architecture.unit_targets(units)}

    def head_paths(self) -> set[str]:
        if self.spec.output is None:
            return set()
        return {f"model.{target}" for target in self.architecture.output_targets()}

    @property
    def has_output(self) -> bool:
        return self.spec.output is not None

    def saliency(self, images: torch.Tensor) -> torch.Tensor:
        if self.spec.output is None:
            return super().saliency(images)
        node = self.architecture.output_node()
        if node is None:
            out = getattr(self.model, self.spec.output)(images)
        else:
            out = self.extract(images, [node])[node]
        return as_saliency_map(out, self.spec.output)

    def saliency_and_layers(self, images: torch.Tensor, layers: Mapping[str, str]
                            ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The model's own map and the maps of ``layers`` (``{name: node}``) in one forward when the output is
        a graph node."""
        node = self.architecture.output_node()
        if node is None:
            features = self.extract(images, list(layers.values()))
            return self.saliency(images), {name: features[n] for name, n in layers.items()}
        out = self.extract(images, [*layers.values(), node])
        return as_saliency_map(out[node], str(self.spec.output)), {name: out[n] for name, n in layers.items()}


def as_saliency_map(out: Any, output: str) -> torch.Tensor:
    """A model output as ``(B, 1, h, w)``: ``(B, h, w)`` and ``(B, 1, h, w)`` tensors are accepted."""
    if isinstance(out, (tuple, list)) and out:
        out = out[0]
    if not isinstance(out, torch.Tensor) or out.dim() not in (3, 4) or (out.dim() == 4 and out.shape[1] != 1):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(f"backbone.output={output} gives {shape}; a saliency map must be (B, h, w) or (B, 1, h, w)")
    return out if out.dim() == 4 else out.unsqueeze(1)


def _prune(model: nn.Module, used: set[str]) -> None:
    """Replace the sub-trees of ``model`` that no used node reads (the classifier) by ``nn.Identity``."""
    def needed(path: str) -> bool:
        return any(t == path or t.startswith(path + ".") or path.startswith(t + ".") for t in used)

    for path, module in list(model.named_children()):
        if needed(path):
            continue
        if any(True for _ in module.parameters()) or any(True for _ in module.buffers()):
            setattr(model, path, nn.Identity())


# ------------------------------------------------------------------------------------------------------------
# the architecture of a spec: layer table and graph (cached; built on the meta device)
# ------------------------------------------------------------------------------------------------------------


def _meta_model(spec: BackboneSpec) -> nn.Module:
    """The bare model (``custom``: its builder's) on the meta device; the CPU and moved when the builder needs
    real tensors. No random numbers are drawn."""
    try:
        with torch.device("meta"):
            return build_model(spec)
    except Exception:  # noqa: BLE001 - some builders need real tensors: build on the CPU without touching the RNG
        with torch.random.fork_rng(devices=[]):
            return build_model(spec).to("meta")


class Architecture:
    """Layer table and graph of one architecture (a spec without its weights)."""

    def __init__(self, spec: BackboneSpec) -> None:
        self.spec = spec
        self.family = spec.family
        self._graph: GraphInfo | None = None
        if self.family == "vgg":
            with torch.device("meta"):
                trunk = VGGTrunk(spec, _bare=True)
            convs = vgg_conv_layers(trunk.features)
            layers = tuple(Layer(name, f"features.{relu}", channels, 2 ** (block - 1), block)
                           for name, _, relu, channels, block in convs)
            last_two = sum(1 for *_, block in convs if block >= convs[-1][4] - 1)
            self.table = LayerTable(spec.name, layers, tuple(layer.name for layer in layers), "conv layers",
                                    last_two, self._head_name(layers))
        elif self.family == "resnet":
            with torch.device("meta"):
                trunk = ResNetTrunk(spec, _bare=True)
            self._graph = trace_graph(trunk)
            blocks = trunk.blocks()
            layers = tuple(self._graph.layer(block, str(self._graph.resolve(block)), RESNET_STAGES.index(
                block.split(".")[0]) + 1) for block in blocks)
            aliases = {stage: [b for b in blocks if b.startswith(stage + ".")][-1] for stage in RESNET_STAGES}
            self.table = LayerTable(spec.name, layers, tuple(blocks), "blocks", len(blocks),
                                    self._head_name(layers), aliases, defaults=RESNET_STAGES[-2:])
        else:
            model = _meta_model(spec)
            self._graph = trace_graph(model)
            if spec.layers:
                layers = tuple(table_from_nodes(self._graph, spec.layers, spec.describe()))
                kind = "layers"
            else:
                layers = tuple(stage_layers(self._graph))
                kind = "stages"
            if not layers:
                raise ConfigError(f"{spec.describe()}: no convolutional stage found; name its nodes with "
                                 "backbone.layers=[...]")
            self.table = LayerTable(spec.name, layers, tuple(layer.name for layer in layers), kind, len(layers),
                                    self._head_name(layers))
            if spec.output is not None:
                self._check_output(model)

    def _head_name(self, layers: Sequence[Layer]) -> str:
        if self.spec.head_layer is None:
            return layers[-1].name
        name = str(self.spec.head_layer)
        if any(layer.name == name for layer in layers) or (self.family == "resnet" and name in RESNET_STAGES):
            return name
        raise ConfigError(f"backbone.head_layer={name!r} is not a layer of {self.spec.describe()}; "
                         f"valid layers are {[layer.name for layer in layers]}")

    def _check_output(self, model: nn.Module) -> None:
        output = str(self.spec.output)
        attribute = getattr(model, output, None)
        if self.output_node() is None and not (callable(attribute) and not isinstance(attribute, nn.Module)):
            raise ConfigError(f"backbone.output={output!r} is neither a node nor a method of "
                             f"{self.spec.describe()}; {unknown_node_message(self.spec.describe(), output, self.graph())}")

    # --- graph ---------------------------------------------------------------------------------------------
    def graph(self) -> GraphInfo:
        """The eval-mode graph of the trunk's graph root (node names, shapes at 224 px)."""
        if self._graph is None:
            with torch.device("meta"):
                trunk = VGGTrunk(self.spec, _bare=True)
            self._graph = trace_graph(trunk)
        return self._graph

    def used_targets(self) -> set[str]:
        """Modules and attributes the table's deepest layer needs (what a torchvision trunk keeps)."""
        graph = self.graph()
        deepest = max((layer.node for layer in self.table.layers), key=graph.position.__getitem__)
        return graph.targets_of(graph.ancestors(deepest))

    def unit_targets(self, units: Sequence[str]) -> set[str]:
        """Module / attribute paths (relative to the graph root) owned by fine-tuning ``units``."""
        everything = self.table.finetune_units()
        segments = segment_targets(self.graph(), [self.layer(unit).node for unit in everything])
        owned = {unit: segment for unit, segment in zip(everything, segments, strict=True)}
        return set().union(*(owned[unit] for unit in units)) if units else set()

    def output_node(self) -> str | None:
        """The graph node of ``backbone.output`` (None when it names a method, or is not set)."""
        if self.spec.output is None or self._graph is None:
            return None
        return self._graph.resolve(str(self.spec.output))

    def output_targets(self) -> set[str]:
        """What trains with the head of a ``custom`` model with an output: every module of the model that no
        fine-tuning unit owns (the decoder)."""
        graph = self.graph()
        owned = self.unit_targets(self.table.finetune_units())
        return set(graph.targets.values()) - owned

    # --- layers ------------------------------------------------------------------------------------------
    def layer(self, name: str) -> Layer:
        """A table layer, an alias, ``last`` (the head's layer) or any graph node (or module) by name."""
        layer = self.table.get(str(name))
        if layer is not None:
            return layer
        graph = self.graph()
        node = graph.resolve(str(name))
        if node is None:
            raise ConfigError(self.unknown_layer_message([str(name)]))
        return graph.layer(str(name), node, stage=0)

    def unknown_layer_message(self, names: Sequence[str]) -> str:
        valid = self.table.names + list(self.table.aliases)
        if self.spec.name == "vgg16" and all(n not in valid for n in names):
            return f"unknown VGG-16 layer(s) {list(names)}; valid layers are {', '.join(self.table.names)}"
        return (f"unknown layer(s) {list(names)} for {self.spec.describe()}; valid layers are {', '.join(valid)}, "
                f"'{LAST}' (the head's layer, {self.table.head}) or any node of its graph "
                f"(`python -m saliency_probe.models.backbone {self.spec.name} --nodes` lists them)")

    def ordered(self, names: Sequence[str] | None, key: str | None = None) -> list[str]:
        """Validated, de-duplicated probe layers in network order; None: the default (the last two stages).
        Errors name ``key`` (``layers``) when given."""
        requested = list(dict.fromkeys(str(n) for n in (names if names is not None else self.table.default_layers())))
        where = f"{key}: " if key else ""
        if not requested:
            raise ConfigError(f"{key or 'layers'} is empty: give at least one of {', '.join(self.table.names)}")
        resolved: dict[str, Layer] = {}
        unknown = []
        for name in requested:
            try:
                resolved[name] = self.layer(name)
            except ValueError as error:
                if "outputs" in str(error):
                    raise
                unknown.append(name)
        if unknown:
            raise ConfigError(where + self.unknown_layer_message(unknown))
        if LAST in resolved:  # ``last`` reads as the head layer's own name
            resolved = {(self.table.head if name == LAST else name): layer for name, layer in resolved.items()}
        order = {layer.name: index for index, layer in enumerate(self.table.layers)}

        def position(name: str) -> tuple[int, int]:
            node = resolved[name].node
            if self._graph is not None or any(name not in order for name in resolved):
                return (self.graph().position[node], order.get(name, -1))
            return (order[name], 0)

        return sorted(dict.fromkeys(resolved), key=position)

    def parse_finetune(self, value: int | str) -> int:
        """``finetune.layers`` (0..max or 'all') as a count of units, or an error giving the valid range."""
        table = self.table
        text = str(value).strip().lower()
        if text not in table.valid_finetune():
            units = table.finetune_units()
            if self.spec.name == "vgg16":
                raise ConfigError(
                    f"finetune.layers={value!r} is not valid; choose one of {', '.join(table.valid_finetune())} "
                    "(the number of conv layers counted back from conv5_3 that are fine-tuned; 'all' = all 13)")
            raise ConfigError(
                f"finetune.layers={value!r} is not valid: {self.spec.describe()} has {table.max_finetune} "
                f"{table.unit_kind}: 0..{table.max_finetune} or all ({table.unit_kind} counted back from "
                f"{units[-1]}; 'all' = the whole trunk)")
        return len(table.finetune_units()) if text == "all" else int(text)


_ARCHITECTURES: dict[str, Architecture] = {}


def architecture(spec: BackboneSpec | Mapping[str, Any] | str | None = None) -> Architecture:
    """The (cached) :class:`Architecture` of a spec, a ``backbone`` config or a name (default VGG-16)."""
    spec = BackboneSpec.from_config(spec, weights=None)
    key = spec.architecture_key()
    if key not in _ARCHITECTURES:
        _ARCHITECTURES[key] = Architecture(spec)
    return _ARCHITECTURES[key]


def make_trunk(spec: BackboneSpec) -> Trunk:
    """A randomly initialised trunk for ``spec`` (weights are loaded by :func:`saliency_probe.models.backbone.build_trunk`)."""
    if spec.family == "vgg":
        return VGGTrunk(spec)
    if spec.family == "resnet":
        return ResNetTrunk(spec)
    return GraphTrunk(spec)


class SaliencyNetwork(nn.Module):
    """Images -> saliency maps ``(B, 1, h, w)``: a 1x1 head on the trunk's head layer, or (``head=None``) the
    model's own output (``backbone.output``)."""

    def __init__(self, trunk: Trunk, head: nn.Module | None) -> None:
        super().__init__()
        self.trunk = trunk
        self.head = head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.head is None:
            return self.trunk.saliency(images)
        return self.head(self.trunk(images))
