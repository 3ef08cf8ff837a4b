"""The content binding of ``kz-video-1`` labels (written before ``kz-video-2``, :mod:`.binding`), kept so that files
labelled then verify as they did: sampled frames and the soundtrack.

Frames: :data:`FRAMES` frames at fixed fractions of the duration, decoded from the written file as verify decodes
them, shown upright, with the burned-in warning's boxes blanked (the picture's body, as images have), each bound
exactly (SHA-256 of its RGB pixels, folded into one digest) and perceptually (an 8×8 colour thumbnail, which a
re-encode or a rescale keeps and a patch painted over the picture does not). The soundtrack, when there is one, is
bound as audio files are (:mod:`kzlabel.fingerprint`): digest of its decoded samples and band-energy fingerprint.

Not bound: frames between the sampled ones (an edit of a few frames away from them goes unseen), and the timing: a
trimmed or re-timed video samples other frames and reads as changed.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np
from PIL import Image

from ...errors import CorruptInput
from ...fingerprint import SoundPrint, match_sound
from ...io import Input
from ...media_av import audio_blocks, av_errors, source
from .codec import VideoInfo, sample_frames
from .warning import displayed

VIDEO_ALG_V1 = "kz-video-1"
FRAMES = 8
_THUMB = 8
THUMB_MAX_DIFF = 24  # as images: the largest change of a thumbnail cell still taken as the same picture
THUMB_MEAN_DIFF = 4.0
DURATION_TOL_S = 0.3  # a re-encode or remux keeps the duration within a frame or two


def _boxes(record: Mapping[str, Any] | None) -> list[list[float]]:
    parts = (record or {}).get("parts")
    if not isinstance(parts, dict):
        return []
    return [list(p["box"]) for p in parts.values() if isinstance(p, dict) and "box" in p]


def _bodies(inp: Input, info: VideoInfo, times: list[float], boxes: list[list[float]]) -> list[Image.Image]:
    """The sampled frames (at or just after each of ``times`` while there are frames), upright, every warning box
    blanked."""
    out = []
    for _, rgb in sample_frames(inp, times):
        body = displayed(rgb, info.rotation).convert("RGB")
        w, h = body.size
        for fx, fy, fw, fh in boxes:
            body.paste((0, 0, 0), (int(fx * w) - 2, int(fy * h) - 2, int((fx + fw) * w) + 3, int((fy + fh) * h) + 3))
        out.append(body)
    return out


def _digest(bodies: list[Image.Image]) -> str:
    sha = hashlib.sha256()
    for body in bodies:
        sha.update(f"{body.width}x{body.height}:".encode() + hashlib.sha256(body.tobytes()).digest())
    return sha.hexdigest()


def _thumbs(bodies: list[Image.Image]) -> np.ndarray:
    return np.stack([np.asarray(b.resize((_THUMB, _THUMB), Image.Resampling.BOX), np.int16) for b in bodies])


def _soundtrack(inp: Input) -> SoundPrint | None:
    blocks = audio_blocks(source(inp))
    head = next(blocks, None)
    if head is None:
        return None
    rate, channels = head
    printer = SoundPrint(rate, channels, (0, 0))
    for block in blocks:
        printer.add(block)
    return printer


def video_matches_v1(
    inp: Input, info: VideoInfo, binding: Mapping[str, Any] | None, warning: Mapping[str, Any] | None
) -> tuple[bool | None, str]:
    """(True: the frames and soundtrack the label was signed over, exactly or re-encoded; False: changed; None: no
    video binding) and a phrase for the evidence line."""
    if not binding or binding.get("alg") != VIDEO_ALG_V1:
        return None, ""
    try:
        times = [float(t) for t in binding["times"]]
        signed = np.frombuffer(base64.b64decode(str(binding["thumbs"])), np.uint8).astype(np.int16)
        duration = float(binding["duration"])
    except (KeyError, TypeError, ValueError):
        return False, "the signed video binding is malformed"
    if abs(info.duration - duration) > DURATION_TOL_S:
        return False, f"the video lasts {info.duration:.2f} s, {duration:.2f} s when signed"
    try:
        bodies = _bodies(inp, info, times, _boxes(warning))
    except CorruptInput as exc:
        return False, f"the frames no longer decode ({exc.message})"
    if len(bodies) != len(times) or signed.size != len(times) * _THUMB * _THUMB * 3:
        return False, "the signed frames are no longer all there"
    parts: list[str] = []
    if _digest(bodies) == binding.get("sha256"):
        parts.append("sampled frames exactly as signed")
    else:
        diff = np.abs(_thumbs(bodies).reshape(len(times), -1) - signed.reshape(len(times), -1))
        worst = int(diff.max(axis=1).argmax())
        if int(diff.max()) > THUMB_MAX_DIFF or float(diff.mean(axis=1).max()) > THUMB_MEAN_DIFF:
            return False, f"the picture changed since signing (the frame at {times[worst]:.2f} s)"
        parts.append(f"re-encoded since signing, the same frames (thumbnails within {int(diff.max())})")
    sound = binding.get("audio")
    if isinstance(sound, dict):
        try:
            printer = _soundtrack(inp)
        except av_errors():
            printer = None
        if printer is None:
            return False, "the signed soundtrack is gone or no longer decodes"
        if printer.at == sound.get("samples") and printer.digest() == sound.get("sha256"):
            parts.append("soundtrack exactly as signed")
        else:
            found = match_sound(printer.powers(), dict(sound.get("sound") or {}), 0.0, 0.0)
            if not found.same:
                return False, f"soundtrack: {found.detail}"
            parts.append(f"soundtrack: {found.detail}")
    return True, "; ".join(parts)
