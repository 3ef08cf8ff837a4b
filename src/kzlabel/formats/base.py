"""The handler contract (floor 3): what every format module implements, and the shapes it hands the pipeline.

A handler never imports another format module or the pipeline; the pipeline (floor 4) drives the layers in order
through this contract alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..io import Input, Limits
from ..label import Label, TrainingSignal
from ..layers import LAYERS, Layer
from ..rights.vocab import TrainingPolicy

__all__ = ["Findings", "Handler", "LabelMatch", "MarkOptions"]


@dataclass(frozen=True)
class MarkOptions:
    """How the layers are applied; handlers read only what concerns them."""

    layers: frozenset[Layer] = frozenset(LAYERS)
    # text: "start" | "end"; audio: "start" | "end" | "both" (the tone); images/PDF: a corner such as "bottom-left";
    # video: a corner and/or a tone position ("top-right,start"): a tone position marks the soundtrack too
    position: str | None = None
    style: str = "plate"  # "plate" | "outline" | "icon"
    watermark_key: bytes | None = None
    thumbnail: bool = False
    pages: str = "all"  # paged documents: "all" or "first"
    video_warning: str = "both"  # video: "opening" (full size, first seconds), "persistent" (small, throughout), "both"
    audio_notice: str = "tone"  # audio files: "tone" (the · − · · rhythm), "speech" (the notice read aloud), "both"


@dataclass
class Findings:
    """What a handler read from a file for verification; the pipeline turns it into Evidence."""

    tokens: list[tuple[str, str]] = field(default_factory=list)  # (carrier, compact JWS)
    fields: dict[str, Any] = field(default_factory=dict)  # standard fields seen, e.g. {"xmp:DigitalSourceType": uri}
    watermark: Any = None  # kzlabel.watermark.WatermarkResult, or None where the format has no watermark
    warning_found: bool | None = None  # a perceptible warning seen without a label to compare with
    state: Any = None  # handler-private data for check_label
    # carriers inside the file checked on their own, reported as "<layer>:<name>" evidence lines: a video's
    # soundtrack is {"audio": Findings(watermark=…, warning_found=…)}
    parts: dict[str, Findings] = field(default_factory=dict)


@dataclass(frozen=True)
class LabelMatch:
    """How a verified label relates to the content it sits in.

    content: True when the label's binding matches, False when the content changed after signing, None when the
    label binds nothing here (e.g. images rely on the C2PA hard binding). warning: whether the perceptible warning
    recorded in the label is still present (None when the format cannot tell).
    """

    content: bool | None
    warning: bool | None
    detail: str = ""


class Handler:
    """Base class of a format handler; subclasses override what their format supports."""

    id: ClassVar[str] = ""
    name: ClassVar[str] = ""
    mime: ClassVar[str] = "application/octet-stream"
    extensions: ClassVar[tuple[str, ...]] = ()
    layers: ClassVar[frozenset[str]] = frozenset()
    is_text: ClassVar[bool] = False
    # True: the handler writes its output to a file (``encode_to``, ``write_metadata_to``) and reads its input
    # through ``Input.path``/``Input.open()``, so the pipeline never holds the input or the output in memory (long
    # audio); ``c2pa_skip_reason`` is then not asked (it takes the whole input as bytes)
    streams: ClassVar[bool] = False

    def score(self, header: bytes, name: str | None) -> int:
        """0: not this format; higher: surer. Magic bytes should score ≥ 100, content heuristics less."""
        raise NotImplementedError

    # --- mark ---------------------------------------------------------------------------------------------------
    def load(self, inp: Input, limits: Limits) -> Any:
        raise NotImplementedError

    def draw_warning(self, doc: Any, label: Label, opts: MarkOptions) -> None:
        raise NotImplementedError(f"{self.name} has no visible layer")

    def embed_watermark(self, doc: Any, payload: bytes, key: bytes | None) -> None:
        raise NotImplementedError(f"{self.name} has no watermark layer")

    def encode(self, doc: Any, opts: MarkOptions) -> bytes:
        raise NotImplementedError

    def encode_to(self, doc: Any, opts: MarkOptions, path: Path) -> None:
        """A streaming handler's ``encode``: write the encoded content to ``path`` (an existing empty file)."""
        raise NotImplementedError

    def bind(self, doc: Any, encoded: bytes | Path) -> Mapping[str, Any]:
        """Label fields (``binding``, ``warning``) computed from the encoded content (bytes, or the file a streaming
        handler wrote) before signing."""
        return {}

    def write_metadata(self, data: bytes, label: Label, token: str) -> bytes:
        raise NotImplementedError(f"{self.name} has no metadata layer")

    def write_metadata_to(self, path: Path, label: Label, token: str) -> None:
        """A streaming handler's ``write_metadata``: edit the file at ``path`` (in place, or replaced whole)."""
        raise NotImplementedError(f"{self.name} has no metadata layer")

    # --- verify -------------------------------------------------------------------------------------------------
    def inspect(self, inp: Input, limits: Limits, key: bytes | None) -> Findings:
        raise NotImplementedError

    def check_label(self, findings: Findings, label: Label) -> LabelMatch:
        return LabelMatch(content=None, warning=findings.warning_found)

    def c2pa_skip_reason(self, data: bytes) -> str | None:
        """Why an embedded manifest must not be written into this particular file (None: go ahead)."""
        return None

    # --- training permissions (Art. 23(5)) ------------------------------------------------------------------------
    def read_training(self, inp: Input, limits: Limits) -> list[TrainingSignal]:
        """Training statements in this format's own carriers (XMP, meta tags, tags); C2PA and labels are generic."""
        return []

    def write_training(self, data: bytes, policy: TrainingPolicy, limits: Limits) -> bytes:
        raise NotImplementedError(f"{self.name} has no carrier for training permissions")
