"""The handler contract (floor 3): what every format module implements, and the shapes it hands the pipeline.

A handler never imports another format module or the pipeline; the pipeline (floor 4) drives the layers in order
through this contract alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar, get_args

from ..errors import CorruptInput, KzlabelError
from ..io import Input, Limits
from ..label import Label, TrainingSignal
from ..layers import LAYERS, Layer, Style
from ..rights.vocab import TrainingPolicy

if TYPE_CHECKING:
    from ..layers.c2pa_embed import Slot

__all__ = [
    "AudioNotice",
    "Findings",
    "Handler",
    "LabelMatch",
    "MarkOptions",
    "Pages",
    "Style",
    "Survival",
    "VideoWarning",
    "choice",
    "rewrite",
]


Pages = Literal["all", "first"]
VideoWarning = Literal["opening", "persistent", "both"]
AudioNotice = Literal["tone", "speech", "both"]
# where text carries the signed label: kzlabel's own carrier (trailer, front matter, meta, field), a C2PA 2.4 text
# manifest (docs/text.md), or both
TextCarrier = Literal["kzlabel", "c2pa", "both"]


def choice(option: str, value: str, allowed: Any) -> Any:
    """``value`` checked against a Literal type's values: a caller's wrong option is a kzlabel error naming them."""
    values = get_args(allowed)
    if value not in values:
        raise KzlabelError(f"{option} must be one of {', '.join(repr(v) for v in values)}, not {value!r}")
    return value


@dataclass(frozen=True)
class MarkOptions:
    """How the layers are applied; handlers read only what concerns them."""

    layers: frozenset[Layer] = frozenset(LAYERS)
    # text: "start" | "end"; audio: "start" | "end" | "both" (the tone); images/PDF: a corner such as "bottom-left";
    # video: a corner and/or a tone position ("top-right,start"): a tone position marks the soundtrack too
    position: str | None = None
    style: Style = "plate"
    watermark_key: bytes | None = None
    thumbnail: bool = False
    pages: Pages = "all"  # paged documents
    video_warning: VideoWarning = "both"  # "opening" (full size, first seconds), "persistent" (small, throughout)
    audio_notice: AudioNotice = "tone"  # "tone" (the · − · · rhythm), "speech" (the notice read aloud), or both
    text_carrier: TextCarrier = "kzlabel"

    def __post_init__(self) -> None:
        choice("style", self.style, Style)
        choice("pages", self.pages, Pages)
        choice("video_warning", self.video_warning, VideoWarning)
        choice("audio_notice", self.audio_notice, AudioNotice)
        choice("text_carrier", self.text_carrier, TextCarrier)


@dataclass
class Findings:
    """What a handler read from a file for verification; the pipeline turns it into Evidence."""

    tokens: list[tuple[str, str]] = field(default_factory=list)  # (carrier, compact JWS)
    fields: dict[str, Any] = field(default_factory=dict)  # standard fields seen, e.g. {"xmp:DigitalSourceType": uri}
    watermark: Any = None  # kzlabel.watermark.WatermarkResult, or None where the format has no watermark
    warning_found: bool | None = None  # a perceptible warning seen without a label to compare with
    warning_detail: str = ""  # how warning_found was decided, for the evidence line (where it matched, how well)
    state: Any = None  # handler-private data for check_label
    # carriers inside the file checked on their own, reported as "<layer>:<name>" evidence lines: a video's
    # soundtrack is {"audio": Findings(watermark=…, warning_found=…)}
    parts: dict[str, Findings] = field(default_factory=dict)


@dataclass(frozen=True)
class LabelMatch:
    """How a verified label relates to the content it sits in.

    content: True when the label's binding matches, False when the content changed after signing, None when the
    label binds nothing here (e.g. images rely on the C2PA hard binding). warning: whether the perceptible warning
    recorded in the label is still present (None when the format cannot tell). exact: for a match, False when the
    content matched only within a perceptual tolerance (a re-encode), True when exactly as signed; None when the
    handler does not tell the two apart. Only an exact (or undistinguished) match lets a still-embedded C2PA
    manifest whose hard binding broke read as a container edit (``unbound``): a re-encoder drops the manifest, so
    a manifest still there over content that is merely close to the signed one means its bytes were changed in place.
    data: how the content compares, for the evidence's data — ``{"excerpt": {"start_s", "end_s", "signed_s"}}``
    when the file holds a stretch of the signed audio or video: the signed content, trimmed (a match, not exact).
    """

    content: bool | None
    warning: bool | None
    detail: str = ""
    exact: bool | None = None
    data: Mapping[str, Any] = field(default_factory=dict)

    def excerpt_note(self) -> str:
        """The phrase the metadata line ends with when the file holds an excerpt of the signed content, else ""."""
        excerpt = self.data.get("excerpt")
        if not isinstance(excerpt, Mapping):
            return ""
        return (
            f"; the file holds an excerpt {excerpt.get('start_s')}–{excerpt.get('end_s')} s of the signed "
            f"{excerpt.get('signed_s')} s"
        )


@dataclass(frozen=True)
class Survival:
    """A standard degradation applied at mark time to the content as written, and what the real detector then read:
    mark() reports it so that robustness is a measured fact about this file, not a promise."""

    degradation: str  # e.g. "JPEG quality 75"
    found: bool  # the detector found the label's own payload afterwards
    p_value: float
    # the measured survival class of marks on content like this one (a still picture's size: "full" or "reduced"),
    # and what the report adds for a class short of the benchmark's whole attack list; "" when the format has none
    size_class: str = ""
    caveat: str = ""

    def line(self) -> str:
        tail = f"; {self.caveat}" if self.caveat else ""
        if self.found:
            return f"survives {self.degradation} (p = {self.p_value:.1e}){tail}"
        return f"not found after {self.degradation}: the mark is fragile on this content{tail}"


DocT = TypeVar("DocT")


def rewrite(path: Path, edit: Callable[[bytes], bytes]) -> None:
    """Apply a bytes-to-bytes container edit to the file at ``path`` (a spooled output, so writing it in place is
    safe: the destination is reached only by the pipeline's final rename). For formats whose files are small enough to
    edit in memory; streaming handlers edit their file without reading it whole."""
    path.write_bytes(edit(path.read_bytes()))


class Handler(Generic[DocT]):
    """Base class of a format handler over its decoded document type ``DocT``; subclasses override what their format
    supports.

    Marking is file-backed from the encoder on: ``encode`` writes the content to a spooled file, ``bind`` and
    ``write_metadata`` work on that file, and the pipeline signs it and renames it onto the destination, so a handler
    never returns a copy of its output and an hours-long WAV is never held in memory.
    """

    id: ClassVar[str] = ""
    name: ClassVar[str] = ""
    mime: ClassVar[str] = "application/octet-stream"
    extensions: ClassVar[tuple[str, ...]] = ()
    layers: ClassVar[frozenset[Layer]] = frozenset()
    is_text: ClassVar[bool] = False
    # kzlabel places the C2PA manifest itself, data-hashed and streamed (layers/c2pa_embed): the format has a slot
    # (c2pa_slot / c2pa_reserve) and the C2PA library never loads the whole file
    c2pa_streamed: ClassVar[bool] = False

    def score(self, header: bytes, name: str | None) -> int:
        """0: not this format; higher: surer. Magic bytes should score ≥ 100, content heuristics less."""
        raise NotImplementedError

    # --- mark ---------------------------------------------------------------------------------------------------
    def load(self, inp: Input, limits: Limits) -> DocT:
        raise NotImplementedError

    def draw_warning(self, doc: DocT, label: Label, opts: MarkOptions) -> None:
        raise NotImplementedError(f"{self.name} has no visible layer")

    def embed_watermark(self, doc: DocT, payload: bytes, key: bytes | None) -> None:
        raise NotImplementedError(f"{self.name} has no watermark layer")

    def encode(self, doc: DocT, opts: MarkOptions, out: Path) -> None:
        """Write the encoded content to ``out`` (an existing empty file)."""
        raise NotImplementedError

    def bind(self, doc: DocT, out: Path) -> Mapping[str, Any]:
        """Label fields (``binding``, ``warning``) computed from the encoded content in ``out`` before signing."""
        return {}

    def write_metadata(self, out: Path, label: Label, token: str) -> None:
        """Write the signed label and the standard fields into the file ``out`` (in place, or replaced whole)."""
        raise NotImplementedError(f"{self.name} has no metadata layer")

    def survival(self, doc: DocT, out: Path, payload: bytes, key: bytes | None) -> Survival | None:
        """The watermark after this format's standard degradation, tried on the content as written to ``out`` (after
        ``bind``); None where the format has none that is cheap enough to try on every mark."""
        return None

    def encoding(self, doc: DocT) -> Mapping[str, str]:
        """How ``encode`` re-encoded the content, one line per stream (rates measured on the written output beside the
        source's); empty where the format is not re-encoded at a rate."""
        return {}

    def left_out(self, opts: MarkOptions) -> dict[Layer, str]:
        """Layers this format has but leaves out under ``opts``, with why (text: the carrier chosen for the label)."""
        return {}

    def c2pa_reserve(self, src: IO[bytes], dst: IO[bytes], size: int) -> Slot:
        """Write ``src`` to ``dst`` with a zero-filled manifest slot of ``size`` bytes (any old one dropped), in a
        stream; where it is. Formats with ``c2pa_streamed`` only."""
        raise NotImplementedError(f"{self.name} leaves the C2PA manifest to the C2PA library")

    def c2pa_slot(self, content: IO[bytes]) -> Slot | None:
        """Where the file's manifest store is (None: it has none), from the container's structure alone."""
        raise NotImplementedError(f"{self.name} leaves the C2PA manifest to the C2PA library")

    def c2pa_streams(self, inp: Input) -> bool:
        """Whether this file's manifest is placed by kzlabel in its slot (``c2pa_streamed``); a format that does so
        for some of its files only (PNG: animated ones) says which."""
        return self.c2pa_streamed

    def find_c2pa_slot(self, inp: Input) -> Slot | None:
        """The manifest slot of ``inp`` (None: none found, or the format has no ``c2pa_streamed`` slot). A container
        too damaged to walk has none to find: verify reports what the other readers make of it, it does not raise."""
        if not self.c2pa_streams(inp):
            return None
        with inp.open() as content:
            try:
                return self.c2pa_slot(content)
            except CorruptInput:
                return None

    def c2pa_skip_reason(self, inp: Input) -> str | None:
        """Why an embedded manifest must not be written into this particular file (None: go ahead)."""
        return None

    # --- verify -------------------------------------------------------------------------------------------------
    def inspect(self, inp: Input, limits: Limits, key: bytes | None, watermark: bool = True) -> Findings:
        """Everything verify reads from the file; ``watermark=False`` skips the watermark search (mark's read-back of
        a file it did not watermark)."""
        raise NotImplementedError

    def check_label(self, findings: Findings, label: Label) -> LabelMatch:
        return LabelMatch(content=None, warning=findings.warning_found)

    # --- training permissions (Art. 23(5)) ------------------------------------------------------------------------
    def read_training(self, inp: Input, limits: Limits) -> list[TrainingSignal]:
        """Training statements in this format's own carriers (XMP, meta tags, tags); C2PA and labels are generic."""
        return []

    def write_training(self, data: bytes, policy: TrainingPolicy, limits: Limits) -> bytes:
        raise NotImplementedError(f"{self.name} has no carrier for training permissions")
