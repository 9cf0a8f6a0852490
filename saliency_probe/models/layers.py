"""Layer tables and model graphs: probe name -> graph node, channels, stride (docs/backbones.md).

A model's graph is traced once, in eval mode, by torchvision's ``NodePathTracer`` (the tracer behind
``torchvision.models.feature_extraction``), so node names are the ones ``create_feature_extractor`` takes
(``features.29``, ``layer4.1.relu_1``); output shapes come from running the traced graph on a 224 px input on
the ``meta`` device (no arithmetic, no memory). A :class:`LayerTable` names the layers a backbone offers to
the probe and the units that ``finetune.layers`` counts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from saliency_probe.errors import ConfigError

#: Side of the dry-run input from which strides are measured.
PROBE_INPUT = 224
#: Names of classifier heads in torchvision models: stage detection stops where they begin.
HEAD_ATTRIBUTES = ("avgpool", "fc", "classifier", "head", "heads", "aux_logits", "AuxLogits", "aux1", "aux2")
#: The probe name ``last`` stands for the head's layer (the last table layer unless ``backbone.head_layer``).
LAST = "last"


@dataclass(frozen=True)
class Layer:
    """One probe-able layer: its name in tables, its graph node, its channels and stride, its stage (1-based)."""

    name: str
    node: str
    channels: int
    stride: int
    stage: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LayerTable:
    """The layers of one backbone in network order, its fine-tuning units and the head's layer.

    Attributes:
        backbone: the backbone's name (messages).
        layers: the table (network order).
        units: the fine-tuning units, network order (``finetune.layers=k`` trains the last k up to the head).
        unit_kind: what a unit is, for messages (``conv layers``, ``blocks``, ``stages``, ``layers``).
        max_finetune: the largest valid ``finetune.layers`` besides ``all``.
        head: the layer the heads read.
        aliases: extra names of table layers (ResNet stage -> its last block).
        defaults: the probe's default layers (None: every layer of the last two stages).
    """

    backbone: str
    layers: tuple[Layer, ...]
    units: tuple[str, ...]
    unit_kind: str
    max_finetune: int
    head: str
    aliases: Mapping[str, str] = field(default_factory=dict)
    defaults: tuple[str, ...] | None = None

    @property
    def names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    def get(self, name: str) -> Layer | None:
        """The table layer (or alias, or ``last``) called ``name``; None when it is not in the table."""
        if name == LAST:
            name = self.head
        for layer in self.layers:
            if layer.name == name:
                return layer
        target = self.aliases.get(name)
        if target is not None:
            layer = self.get(target)
            assert layer is not None
            return Layer(name, layer.node, layer.channels, layer.stride, layer.stage)
        return None

    def default_layers(self) -> list[str]:
        """The probe's default layers, the last two stages: VGG every conv layer of its last two blocks (VGG-16:
        conv4_1..conv5_3, the paper's Table 2), ResNets the outputs of layer3 and layer4, other models their last
        two table layers."""
        if self.defaults is not None:
            return list(self.defaults)
        stages = sorted({layer.stage for layer in self.layers})[-2:]
        return [layer.name for layer in self.layers if layer.stage in stages]

    def finetune_units(self) -> list[str]:
        """The units ``finetune.layers`` counts: those up to the head's layer."""
        head = self.get(self.head)
        assert head is not None
        order = {layer.name: index for index, layer in enumerate(self.layers)}
        limit = order.get(head.name, order.get(self.aliases.get(head.name, ""), len(self.layers)))
        return [unit for unit in self.units if order.get(unit, -1) <= limit]

    def valid_finetune(self) -> tuple[str, ...]:
        return (*(str(k) for k in range(self.max_finetune + 1)), "all")

    def as_list(self) -> list[dict[str, Any]]:
        """The table as plain dicts (checkpoints record it)."""
        return [layer.as_dict() for layer in self.layers]

    def describe(self) -> str:
        """A printable table (``python -m saliency_probe.models.backbone NAME``)."""
        width = max([len(layer.name) for layer in self.layers] + [5])
        node_width = max([len(layer.node) for layer in self.layers] + [4])
        lines = [f"{'layer':<{width}}  {'node':<{node_width}}  channels  stride  stage"]
        for layer in self.layers:
            lines.append(f"{layer.name:<{width}}  {layer.node:<{node_width}}  {layer.channels:8d}  "
                         f"{layer.stride:6d}  {layer.stage:5d}")
        if self.aliases:
            lines.append("aliases: " + ", ".join(f"{a} = {b}" for a, b in self.aliases.items()))
        lines.append(f"head layer: {self.head}; fine-tuning units ({self.unit_kind}): "
                     f"{', '.join(self.finetune_units())}; finetune.layers = {', '.join(self.valid_finetune())}")
        lines.append(f"default probe layers: {', '.join(self.default_layers())}")
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------------
# graphs
# ------------------------------------------------------------------------------------------------------------


@dataclass
class GraphInfo:
    """A model's eval-mode graph: node names in execution order, each node's inputs, the modules or attributes
    it reads (``call_module`` / ``get_attr`` targets) and its output shape at a 224 px input (None for
    non-tensors)."""

    nodes: list[str]
    inputs: dict[str, tuple[str, ...]]
    targets: dict[str, str]
    shapes: dict[str, tuple[int, ...] | None]

    def __post_init__(self) -> None:
        self.position = {name: index for index, name in enumerate(self.nodes)}
        self.last_of: dict[str, str] = {}  # module path (every prefix of a node name) -> its last node
        for name in self.nodes:
            parts = name.split(".")
            for depth in range(1, len(parts) + 1):
                self.last_of[".".join(parts[:depth])] = name

    def resolve(self, query: str) -> str | None:
        """The node ``query`` names: itself, or the last node inside the module ``query`` (torchvision's
        ``create_feature_extractor`` rule); None when the graph has neither."""
        if query in self.position:
            return query
        return self.last_of.get(query)

    def depth(self, node: str) -> int:
        """Depth of the shallowest module (or root-level operation) that ends with ``node``."""
        parts = node.split(".")
        return next(d for d in range(1, len(parts) + 1) if self.last_of.get(".".join(parts[:d])) == node)

    def ancestors(self, node: str) -> set[str]:
        """``node`` and every node it depends on."""
        seen: set[str] = set()
        stack = [node]
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            stack.extend(self.inputs.get(current, ()))
        return seen

    def targets_of(self, nodes: Iterable[str]) -> set[str]:
        """The module / attribute paths read by ``nodes``."""
        return {self.targets[node] for node in nodes if node in self.targets}

    def map_shape(self, node: str) -> tuple[int, int, int] | None:
        """``(C, h, w)`` of a node whose output is a ``(1, C, h, w)`` tensor, else None."""
        shape = self.shapes.get(node)
        if shape is None or len(shape) != 4:
            return None
        return int(shape[1]), int(shape[2]), int(shape[3])

    def layer(self, name: str, node: str, stage: int = 0) -> Layer:
        """The :class:`Layer` of a graph node (channels and stride from its dry-run shape)."""
        shape = self.map_shape(node)
        if shape is None:
            raise ConfigError(
                f"node {node!r} outputs {self.shapes.get(node)}, not a (batch, channels, height, width) map; "
                "only convolutional maps can be probed"
            )
        channels, height, _ = shape
        return Layer(name, node, channels, stride_of(height), stage)


def stride_of(height: int) -> int:
    """The stride of a map of ``height`` rows at the 224 px dry run (rounded)."""
    return max(1, round(PROBE_INPUT / max(1, height)))


def trace_graph(model: nn.Module, input_size: int = PROBE_INPUT) -> GraphInfo:
    """Trace ``model`` in eval mode (node names of ``torchvision.models.feature_extraction``) and measure every
    node's output shape on a ``(1, 3, input_size, input_size)`` input on the model's device (``meta`` costs
    nothing). The model's train/eval mode is restored."""
    from torch.fx.passes.shape_prop import ShapeProp
    from torchvision.models.feature_extraction import NodePathTracer, _set_default_tracer_kwargs

    training = model.training
    model.eval()
    try:
        tracer = NodePathTracer(**_set_default_tracer_kwargs(None))
        graph = tracer.trace(model)
        module = fx.GraphModule(tracer.root, graph)
        device = next((t.device for t in [*model.parameters(), *model.buffers()]), torch.device("cpu"))
        with torch.no_grad():
            ShapeProp(module).propagate(torch.zeros(1, 3, input_size, input_size, device=device))
    finally:
        model.train(training)
    names = tracer.node_to_qualname
    nodes, inputs, targets, shapes = [], {}, {}, {}
    for node in graph.nodes:
        name = names.get(node)
        if name is None:
            continue
        nodes.append(name)
        inputs[name] = tuple(names[n] for n in node.all_input_nodes if n in names)
        if node.op in ("call_module", "get_attr"):
            targets[name] = str(node.target)
        meta = node.meta.get("tensor_meta")
        shapes[name] = tuple(int(s) for s in meta.shape) if meta is not None and hasattr(meta, "shape") else None
    return GraphInfo(nodes, inputs, targets, shapes)


def stage_layers(graph: GraphInfo) -> list[Layer]:
    """The stages of a generic CNN: per run of nodes with the same, decreasing, map size (1x1 maps of
    squeeze-excitation branches and global pooling skipped), up to the classifier, the last node that ends the shallowest module
    (``features.5``, not the expansion conv of the next block that still runs at this size). Named by that
    module (``features.5``), else by the node."""
    runs: list[list[Any]] = []
    for name in graph.nodes[1:]:  # nodes[0] is the input
        if name.split(".")[0] in HEAD_ATTRIBUTES:
            break
        shape = graph.shapes.get(name)
        if shape is None:
            continue
        if len(shape) == 2 and runs:
            break  # flattened: the classifier begins
        if len(shape) != 4 or shape[2] != shape[3] or shape[2] == 1:
            continue  # not a (1, C, h, w) map of the square input (channels-last), or globally pooled
        size = shape[2]
        if runs and runs[-1][0] == size:
            if graph.depth(name) <= graph.depth(runs[-1][1]):
                runs[-1][1] = name
        elif not runs or size < runs[-1][0]:
            runs.append([size, name])
        # a larger map after a smaller one is a branch of a downsampling block: it belongs to no stage
    chosen = [node for _, node in runs]
    layers = []
    for stage, node in enumerate(chosen, start=1):
        layers.append(graph.layer(_module_name(graph, node, set(chosen) - {node}), node, stage))
    return layers


def _module_name(graph: GraphInfo, node: str, others: set[str]) -> str:
    """The shortest module path whose last node is ``node`` and that holds none of ``others``; else ``node``."""
    parts = node.split(".")
    for depth in range(1, len(parts)):
        prefix = ".".join(parts[:depth])
        if graph.last_of.get(prefix) == node and not any(o.startswith(prefix + ".") for o in others):
            return prefix
    return node


def segment_targets(graph: GraphInfo, nodes: Sequence[str]) -> list[set[str]]:
    """For consecutive ``nodes``: the module / attribute paths each one needs beyond the ones before it
    (``nodes[k]``'s ancestors minus ``nodes[k-1]``'s)."""
    out: list[set[str]] = []
    before: set[str] = set()
    for node in nodes:
        ancestors = graph.ancestors(node)
        out.append(graph.targets_of(ancestors - before))
        before |= ancestors
    return out


def table_from_nodes(graph: GraphInfo, nodes: Mapping[str, str] | Sequence[str], backbone: str) -> list[Layer]:
    """Table layers for given nodes (``{probe name: node}`` or a list of nodes / module paths)."""
    items = list(nodes.items()) if isinstance(nodes, Mapping) else [(str(n), str(n)) for n in nodes]
    layers = []
    for name, query in items:
        node = graph.resolve(str(query))
        if node is None:
            raise ConfigError(unknown_node_message(backbone, str(query), graph))
        layers.append(graph.layer(str(name), node))
    layers.sort(key=lambda layer: graph.position[layer.node])
    return [Layer(layer.name, layer.node, layer.channels, layer.stride, stage)
            for stage, layer in enumerate(layers, start=1)]


def unknown_node_message(backbone: str, query: str, graph: GraphInfo, limit: int = 60) -> str:
    shown = graph.nodes[1:limit + 1]
    more = f" ... ({len(graph.nodes) - 1 - limit} more)" if len(graph.nodes) - 1 > limit else ""
    return (f"{query!r} is not a node of {backbone}'s graph; its nodes are {', '.join(shown)}{more} "
            f"(`python -m saliency_probe.models.backbone {backbone} --nodes` lists them all)")
