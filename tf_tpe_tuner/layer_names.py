"""Unit names after the Keras layers a TFLite op came from, where there is a Keras graph.

The front-ends convert a Keras graph with one name scope per layer call that they choose
themselves (`frontends`: `tpe<k>` per node of a Keras 3 graph; the walker's flat tf_keras model,
whose layers are named after their `outer__inner` path), so the converter's op names map to
layers exactly: Keras 3's own scopes carry `_1`, `_2` suffixes that collide with layer names
(`conv2d_1` is the scope of layer `conv2d` and the name of another layer), so nothing is
stripped or guessed.

A TFLite op fuses several TF ops and names its output `;`-joined after them (a Conv2D layer, the
BatchNormalization folded into it and the ReLU layer after it); the op is named after the layer
of its compute part (the convolution or matmul), else after the first layer named. An op whose
name names no layer (a model output, renamed `Identity` by the converter) is the output's layer.
Several ops of one layer (a SeparableConv2D's depthwise and pointwise convs, a Dense with its
softmax, the calls of a shared layer): the first is `layer`, the others `layer:<op type>`, and
`#2`, `#3` ... where those repeat, in op order (the same for the same model).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# The last component of a TF op name that is the compute op of a TFLite op (digits stripped).
_COMPUTE = re.compile(r"^(convolution|conv2d|conv1d|conv3d|separable_conv2d|depthwise|conv2d_transpose|"
                      r"conv2dbackpropinput|conv1d_transpose|matmul|batchmatmul|batchmatmulv2|einsum|tensordot)$",
                      re.IGNORECASE)


@dataclass(frozen=True)
class LayerScopes:
    """How a converted Keras graph's op names name its layers."""

    layer_of_scope: dict[str, str]  # an op name's leading `depth` components -> the layer's name
    output_layers: tuple[str, ...]  # the layer writing each model output, in output order
    depth: int = 1

    def layers_in(self, op_name: str) -> list[tuple[str, bool]]:
        """(layer, is its compute part) for each `;`-part of an op name that names a layer."""
        found = []
        for part in op_name.split(";"):
            pieces = part.split("/")
            if len(pieces) <= self.depth:
                continue
            layer = self.layer_of_scope.get("/".join(pieces[:self.depth]))
            if layer is not None:
                found.append((layer, bool(_COMPUTE.match(pieces[-1].rstrip("0123456789_")))))
        return found

    def layer_of(self, op_name: str, output_index: int | None) -> str | None:
        named = self.layers_in(op_name)
        compute = [layer for layer, is_compute in named if is_compute]
        if compute:
            return compute[0]
        if named:
            return named[0][0]
        if output_index is not None and output_index < len(self.output_layers):
            return self.output_layers[output_index]
        return None


def layer_unit_names(ops: list[tuple[str, str, str | None]]) -> list[str | None]:
    """Names for (op node, op type, layer or None) in op order: after the layer where there is
    one (see the module docstring), None where there is none."""
    first_kind: dict[str, str] = {}
    seen: dict[str, int] = {}
    names: list[str | None] = []
    for _node, kind, layer in ops:
        if layer is None:
            names.append(None)
            continue
        if layer not in first_kind:
            first_kind[layer] = kind
            base = layer
        else:
            base = layer if kind == first_kind[layer] else f"{layer}:{kind.lower()}"
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base}#{seen[base]}")
    return names
