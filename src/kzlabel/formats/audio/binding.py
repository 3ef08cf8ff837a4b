"""The content binding of an audio label: the body (the content after the start notice and before an end tone) bound
exactly, by a SHA-256 of its decoded samples, and perceptually, by a band-energy fingerprint
(:mod:`kzlabel.fingerprint`) that a benign re-encode or a cut notice keeps and an edit does not.

``kz-audio-2`` (written now) adds segment digests, which locate a changed stretch in a file that otherwise still
decodes exactly as signed (an edit of a lossless file, a damaged frame or page), and reads a file holding a
contiguous stretch of the body as that excerpt. ``kz-audio-1`` labels are checked as they were signed to be.

Both sides decode the file the same way (:func:`.codec.stream_blocks`, PyAV to float32): mark binds the file it
wrote, after encoding, so a lossy format's exact digest is that of its own decoded output.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...fingerprint import SOUND_ALG, Excerpt, SoundPrint, check_segments, match_sound, segment_print, sound_print
from ...io import Input, Limits
from ..base import LabelMatch
from .codec import stream_blocks

AUDIO_ALG = "kz-audio-2"
AUDIO_ALG_V1 = "kz-audio-1"


def scan(inp: Input, limits: Limits, fmt_id: str, start_s: float, tail_s: float) -> tuple[SoundPrint, int]:
    """Decode the whole stream once: its fingerprint sub-frames and the digests of the samples between ``start_s``
    and ``tail_s`` before the end; also the decoded rate."""
    blocks = stream_blocks(inp, limits, fmt_id, block_s=10.0)
    info = next(blocks)
    printer = SoundPrint(info.rate, info.channels, (round(start_s * info.rate), round(tail_s * info.rate)))
    for block in blocks:
        printer.add(block)
    return printer, info.rate


def audio_binding(inp: Input, limits: Limits, fmt_id: str, start_s: float, tail_s: float) -> dict[str, Any]:
    """The binding of the file ``inp`` whose content lies between ``start_s`` and ``tail_s`` before its end."""
    printer, rate = scan(inp, limits, fmt_id, start_s, tail_s)
    length_s = printer.at / rate - start_s - tail_s
    return {
        "alg": AUDIO_ALG,
        "rate": rate,
        "channels": printer.channels,
        "samples": printer.at,
        "start_s": round(start_s, 4),
        "tail_s": round(tail_s, 4),
        "sha256": printer.digest(),
        "segments": segment_print(printer),
        "sound": {"alg": SOUND_ALG, **sound_print(printer, start_s, length_s)},
    }


def audio_matches(inp: Input, limits: Limits, fmt_id: str, binding: Mapping[str, Any] | None) -> LabelMatch:
    """How the content compares with the label's audio binding: ``content`` True (the content the label was signed
    over, ``exact``-ly, or re-encoded, with its notice cut, or an excerpt of it), False (changed) or None (no audio
    binding), a phrase for the evidence line and, for an excerpt, what it covers in ``data``; ``warning`` is left
    to the handler's notice checks. Only the whole signed stream, sample for sample, is ``exact``."""
    alg = (binding or {}).get("alg")
    if not binding or alg not in (AUDIO_ALG, AUDIO_ALG_V1):
        return LabelMatch(None, None)
    try:
        start_s, tail_s = float(binding["start_s"]), float(binding["tail_s"])
        sound = dict(binding["sound"])
        segments = dict(binding["segments"]) if alg == AUDIO_ALG else {}
    except (KeyError, TypeError, ValueError):
        return LabelMatch(False, None, "the signed audio binding is malformed")
    printer, rate = scan(inp, limits, fmt_id, start_s, tail_s)
    same_stream = (rate, printer.channels) == (binding.get("rate"), binding.get("channels"))
    if same_stream and printer.at == binding.get("samples") and printer.digest() == binding.get("sha256"):
        return LabelMatch(True, None, "samples exactly as signed", exact=True)
    exact = check_segments(printer, segments) if segments and same_stream else None
    if exact is not None and exact.changed:
        return LabelMatch(False, None, exact.changed, exact=False)
    if exact is not None:  # the signed samples exactly, up to where the file ends: its end was cut
        excerpt = Excerpt(0.0, exact.held / rate, exact.signed / rate)
        detail = excerpt.phrase("sound") + " (exactly as signed up to there)"
        return LabelMatch(True, None, detail, exact=False, data={"excerpt": excerpt.data()})
    found = match_sound(printer.powers(), sound, start_s, tail_s, excerpts=alg == AUDIO_ALG)
    data = {"excerpt": found.data["excerpt"]} if "excerpt" in found.data else {}
    return LabelMatch(found.same, None, found.detail, exact=False, data=data)
