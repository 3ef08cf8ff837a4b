"""The four label layers (floor 2): each module applies or reads one layer and never knows which format called it.

``LAYERS`` is the one definition of the layer names; everything that lists, checks or orders layers reads it here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, get_args

from ..errors import KzlabelError

__all__ = ["LAYERS", "Layer", "Style", "parse_layers"]

Layer = Literal["c2pa", "metadata", "watermark", "visible"]
LAYERS: tuple[Layer, ...] = get_args(Layer)
Style = Literal["plate", "outline", "icon"]  # how the visible warning is drawn (layers.visible)


def parse_layers(names: Iterable[str]) -> frozenset[Layer]:
    """Layer names given by a caller → a checked set; an unknown name is the caller's error."""
    chosen = set(names)
    unknown = chosen - set(LAYERS)
    if unknown:
        raise KzlabelError(f"unknown layer(s): {', '.join(sorted(unknown))}; known: {', '.join(sorted(LAYERS))}")
    return frozenset(n for n in LAYERS if n in chosen)
