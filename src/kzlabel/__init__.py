"""kzlabel: label AI-generated content so it may be distributed lawfully, and verify such labels.

Kazakhstan's AI Law (No. 230-VIII) Art. 21(2) requires synthetic content to carry a machine-readable mark AND a
perceptible warning; kzlabel writes both in open standards (C2PA, IPTC XMP, GB 45438 AIGC, a signed JWS label, an
invisible watermark) and reads them back with a per-layer report.
"""

from __future__ import annotations

import os
from typing import IO, overload

from . import errors
from ._version import __version__
from .chat import TextStream, mark_text, verify_text
from .io import Limits, Source
from .keys import Signer, TrustStore
from .label import IPTC_COMPOSITE, IPTC_TRAINED, Label, Training
from .pipeline import Labeler
from .registry import Registry
from .report import Evidence, MarkResult, Report, Status, Verdict
from .rights.actions import training_allowed, write_optout
from .rights.vocab import TrainingCheck, TrainingPolicy
from .survival import StressReport, stress

__all__ = [
    "Evidence",
    "IPTC_COMPOSITE",
    "IPTC_TRAINED",
    "Label",
    "Labeler",
    "Limits",
    "MarkResult",
    "Registry",
    "Report",
    "Signer",
    "Source",
    "Status",
    "StressReport",
    "TextStream",
    "Training",
    "TrainingCheck",
    "TrainingPolicy",
    "TrustStore",
    "Verdict",
    "__version__",
    "errors",
    "mark",
    "mark_text",
    "stress",
    "training_allowed",
    "verify",
    "verify_text",
    "write_optout",
]


@overload
def mark(
    src: Source,
    dst: None = None,
    *,
    signer: Signer,
    system: str,
    owner: str,
    in_place: bool = False,
    name: str | None = None,
    password: str | None = None,
    **options: object,
) -> bytes: ...
@overload
def mark(
    src: Source,
    dst: str | os.PathLike | IO[bytes],
    *,
    signer: Signer,
    system: str,
    owner: str,
    in_place: bool = False,
    name: str | None = None,
    password: str | None = None,
    **options: object,
) -> MarkResult: ...


def mark(
    src: Source,
    dst: str | os.PathLike | IO[bytes] | None = None,
    *,
    signer: Signer,
    system: str,
    owner: str,
    in_place: bool = False,
    name: str | None = None,
    password: str | None = None,
    **options: object,
) -> bytes | MarkResult:
    """Label one file with every layer its format has; returns the bytes when no ``dst`` is given.

    ``name`` is the file name for bytes input (a hint for text dialects). ``options`` are Labeler settings:
    system_version, languages, source_type, training, depicts_real_person, layers, position, style, watermark_key,
    thumbnail, pages, registry, limits. ``password`` opens encrypted PDFs.
    """
    labeler = Labeler(signer, system=system, owner=owner, **options)  # type: ignore[arg-type]
    result = labeler.mark(src, dst, in_place=in_place, name=name, password=password)
    return result if dst is not None or in_place else result.data


def verify(
    src: Source,
    *,
    trust: TrustStore | None = None,
    registry: Registry | None = None,
    watermark_key: bytes | None = None,
    name: str | None = None,
    password: str | None = None,
) -> Report:
    """Check every label layer of one file and return the report; raises only for unusable input."""
    return Labeler(trust=trust, registry=registry, watermark_key=watermark_key).verify(
        src, name=name, password=password
    )
