"""The platform transformations `kzlabel stress` applies: one definition, shared by the command, the tests and the
benchmarks (benchmarks/bench_watermark.py, bench_audio.py, bench_video.py import their overlapping attacks from here).

A transformation is a file → file step made with the real codecs (Pillow, PyAV, pypdf), no network: it reads the
labelled file, writes one new file into a work folder and returns its path; the input is never modified. One module
per media family (``image``, ``audio``, ``video``, ``pdf``, ``text``), each exporting ``TRANSFORMS``; the families
are imported on first use, so `kzlabel --help` loads none of their codecs. docs/stress.md describes each one.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ...io import Limits

__all__ = ["FAMILIES", "NotApplicable", "Original", "Transform", "for_family"]

FAMILIES = ("image", "audio", "video", "pdf", "text")


class NotApplicable(Exception):
    """This transformation does not apply to this file (a platform does not upscale a 960 px photo to 1080 px, nor
    cut the middle 10 s out of a 7 s clip); the message says why, and the report lists the row as not applied."""


@dataclass(frozen=True)
class Original:
    """The labelled file a transformation reads, and what reading it needs."""

    path: Path
    format: str  # the detected handler id (jpeg, mp3, markdown...)
    limits: Limits = Limits()
    password: str | None = None  # an encrypted PDF's


@dataclass(frozen=True)
class Transform:
    """One platform transformation: ``apply(original, work)`` writes ``work/NAME.EXT`` and returns that path."""

    name: str  # stable id, used by --only and in the JSON (jpeg75, mp3-128k...)
    title: str  # what it does, in a few words, for the table and the HTML report
    apply: Callable[[Original, Path], Path]
    formats: frozenset[str] | None = None  # the handler ids it applies to; None: every format of its family

    def applies_to(self, format_id: str) -> bool:
        return self.formats is None or format_id in self.formats


def for_family(family: str, format_id: str) -> list[Transform]:
    """The transformations of a media family that apply to files of ``format_id``, in report order."""
    if family not in FAMILIES:
        raise ValueError(f"no transformations for {family!r}")
    module = importlib.import_module(f"{__name__}.{family}")
    return [t for t in module.TRANSFORMS if t.applies_to(format_id)]
