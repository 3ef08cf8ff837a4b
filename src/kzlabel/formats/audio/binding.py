"""The content binding of an audio label (``alg: "kz-audio-1"``): the body (the content after the start notice and
before an end tone) bound exactly, by a SHA-256 of its decoded samples, and perceptually, by a band-energy
fingerprint (:mod:`kzlabel.fingerprint`) that a benign re-encode or a cut notice keeps and an edit does not.

Both sides decode the file the same way (:func:`.codec.stream_blocks`, PyAV to float32): mark binds the file it
wrote, after encoding, so a lossy format's exact digest is that of its own decoded output.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...fingerprint import SOUND_ALG, SoundPrint, match_sound, sound_print
from ...io import Input, Limits
from ..base import LabelMatch
from .codec import stream_blocks

AUDIO_ALG = "kz-audio-1"


def scan(inp: Input, limits: Limits, fmt_id: str, start_s: float, tail_s: float) -> tuple[SoundPrint, int]:
    """Decode the whole stream once: its fingerprint sub-frames and the digest of the samples between ``start_s``
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
        "sound": {"alg": SOUND_ALG, **sound_print(printer, start_s, length_s)},
    }


def audio_matches(inp: Input, limits: Limits, fmt_id: str, binding: Mapping[str, Any] | None) -> LabelMatch:
    """How the content compares with the label's audio binding: ``content`` True (the content the label was signed
    over, ``exact``-ly, or re-encoded or with its notice cut), False (changed) or None (no audio binding), and a
    phrase for the evidence line; ``warning`` is left to the handler's notice checks."""
    if not binding or binding.get("alg") != AUDIO_ALG:
        return LabelMatch(None, None)
    try:
        start_s, tail_s = float(binding["start_s"]), float(binding["tail_s"])
        sound = dict(binding["sound"])
    except (KeyError, TypeError, ValueError):
        return LabelMatch(False, None, "the signed audio binding is malformed")
    printer, rate = scan(inp, limits, fmt_id, start_s, tail_s)
    exact = (rate, printer.channels, printer.at) == (
        binding.get("rate"),
        binding.get("channels"),
        binding.get("samples"),
    )
    if exact and printer.digest() == binding.get("sha256"):
        return LabelMatch(True, None, "samples exactly as signed", exact=True)
    found = match_sound(printer.powers(), sound, start_s, tail_s)
    return LabelMatch(found.same, None, found.detail, exact=False)
