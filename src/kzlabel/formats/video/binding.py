"""The content binding of a video label (``alg: "kz-video-2"``): every frame and the soundtrack.

Computed by one pass over the written file (:mod:`.scan`), as verify decodes it:

- ``packets``: a SHA-256 of the coded video stream (decoding setup and every packet with its timing and side data).
  Decoding is deterministic, so a file whose packets are the signed ones shows exactly the signed frames: verify then
  decodes nothing. ``layout``: the audio and video streams offered to a player and the display rotation; a file
  that differs there is never an exact match (a track added beside the signed ones, a rotation flag changed).
- ``sha256``: a SHA-256 over every decoded frame's planes (a remux that rewrites the packets, or an edit of bytes the
  decoder ignores, still decodes to the same frames).
- ``seg_packets`` / ``seg_pixels``: 4-byte digests per segment (``seg_s`` seconds, by presentation time) of the
  packets and of the decoded frames. When most segments' packets are still the signed ones, the stream was not
  re-encoded, and any segment whose frames no longer decode to the signed ones was changed there: damaged data or a
  local edit, however small (a re-encode changes every segment's packets, so it never gives this evidence).
- ``print``: the frame fingerprint (:mod:`kzlabel.fingerprint.frames`) of every frame, the burned-in warning's boxes
  left out: what a re-encode or a rescale keeps and an edit of the picture, or frames removed, inserted or replaced,
  does not. It also finds a shorter file's place in the signed frames: an excerpt.
- ``audio``: the soundtrack as audio files bind it (``kz-audio-2``: packets, sample digest, segment digests, sound
  fingerprint), looked for where the frames were found.

``kz-video-1`` labels (8 sampled frames) are checked by :mod:`.binding_v1`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ...errors import CorruptInput
from ...fingerprint import SOUND_ALG, Excerpt, SoundPrint, check_segments, match_sound, segment_print, sound_print
from ...fingerprint.common import pack_digests, unpack_digests
from ...fingerprint.frames import LUMA, MaskPlan, frame_print, match_frames, segment_length
from ...io import Input
from ..base import LabelMatch
from .binding_v1 import VIDEO_ALG_V1, video_matches_v1
from .codec import VideoInfo
from .scan import Scan, scan

VIDEO_ALG = "kz-video-2"
# a segment's packets count as evidence that the stream was not re-encoded only with this much coded data and a
# picture that is not flat: a flat frame (black) re-encoded by the same encoder can come out byte for byte the same
EVIDENCE_BYTES = 1024
EVIDENCE_SPREAD = 3.0  # levels: the spread of a frame's luma grid above which it is not flat


def mask_plan(warning: Mapping[str, Any] | None) -> MaskPlan:
    """The cells to leave out of the frame fingerprint: the opening warning's box before ``opening_s``, the
    persistent label's after it (as the warning op draws them)."""
    parts = (warning or {}).get("parts")
    if not isinstance(parts, dict):
        return MaskPlan.none()

    def box(name: str) -> list[list[float]]:
        part = parts.get(name)
        return [[float(v) for v in part["box"]]] if isinstance(part, dict) and "box" in part else []

    opening, persistent = box("opening"), box("persistent")
    switch = float((warning or {}).get("opening_s", 2.0))
    if not opening:
        return MaskPlan.from_boxes(persistent, persistent, 0.0)
    return MaskPlan.from_boxes(opening, persistent, switch)


def _layout(sc: Scan, info: VideoInfo) -> str:
    return f"{sc.layout} rotation={info.rotation}"


def _ends(sc: Scan) -> tuple[float, float, float]:
    """(first frame's time, when the last frame ends, frame interval) of the decoded frames."""
    assert sc.frames is not None
    t = np.asarray(sc.frames.times)
    gaps = np.diff(np.sort(t))
    dt = float(np.median(gaps[gaps > 0])) if (gaps > 0).any() else 0.04
    return float(t.min()), float(t.max()) + dt, dt


def video_binding(inp: Input, info: VideoInfo, warning: Mapping[str, Any] | None) -> dict[str, Any]:
    seg_s = segment_length(info.duration)
    sc = scan(inp, seg_s, rotation=info.rotation, plan=mask_plan(warning), video=True, audio=info.has_audio)
    if not sc.frame_count or sc.frames is None:
        raise CorruptInput("the written video has no frame to bind", format="video")
    _, length, _ = _ends(sc)
    fp = frame_print(sc.frames, seg_s, length)
    count = int(fp["segments"])
    none = bytes(4)
    out: dict[str, Any] = {
        "alg": VIDEO_ALG,
        "layout": _layout(sc, info),
        "duration": round(length, 3),
        "frames": sc.frame_count,
        "packets": sc.video_packets,
        "sha256": sc.pixels,
        "seg_s": seg_s,
        "seg_packets": pack_digests(sc.seg_packets.get(k, none) for k in range(count)),
        "seg_pixels": pack_digests(sc.seg_pixels.get(k, none) for k in range(count)),
        "print": fp,
    }
    sound = sc.sound
    if sound is not None and sound.at:
        out["audio"] = {
            "packets": sc.audio_packets,
            "rate": sound.rate,
            "channels": sound.channels,
            "samples": sound.at,
            "sha256": sound.digest(),
            "segments": segment_print(sound),
            "sound": {"alg": SOUND_ALG, **sound_print(sound, 0.0, sound.at / sound.rate)},
        }
    return out


def video_matches(
    inp: Input, info: VideoInfo, binding: Mapping[str, Any] | None, warning: Mapping[str, Any] | None
) -> LabelMatch:
    """``content`` True (the frames and soundtrack the label was signed over — exactly, re-encoded, or an excerpt of
    them), False (changed) or None (no video binding), a phrase for the evidence line and what an excerpt covers
    (``data``); ``exact`` only when every frame and the whole soundtrack decode as signed (``warning`` is left to
    the handler). A ``kz-video-1`` match does not tell exact from close (``exact`` None), as before."""
    alg = (binding or {}).get("alg")
    if not binding or alg not in (VIDEO_ALG, VIDEO_ALG_V1):
        return LabelMatch(None, None)
    if alg == VIDEO_ALG_V1:
        content, detail = video_matches_v1(inp, info, binding, warning)
        return LabelMatch(content, None, detail)
    try:
        seg_s, length = float(binding["seg_s"]), float(binding["duration"])
        packets, layout = str(binding["packets"]), str(binding["layout"])
        signed_print = dict(binding["print"])
        sound = dict(binding["audio"]) if "audio" in binding else None
    except (KeyError, TypeError, ValueError):
        return LabelMatch(False, None, "the signed video binding is malformed")
    quick = scan(inp, seg_s)  # the packets alone: no decode
    same_video = quick.video_packets == packets
    same_audio = sound is None or quick.audio_packets == sound.get("packets")
    now = _layout(quick, info)
    streams = "" if now == layout else f"; the streams differ from the signed ones ({now}; signed: {layout})"
    if same_video and same_audio and not streams:
        what = "frames and soundtrack" if sound is not None else "frames"
        return LabelMatch(True, None, f"{what} exactly as signed (the coded data is unchanged)", exact=True)
    full = scan(
        inp,
        seg_s,
        rotation=info.rotation,
        plan=mask_plan(warning),
        video=not same_video,
        audio=sound is not None and not same_audio,
    )
    parts: list[str] = []
    tau, excerpt, exact = 0.0, None, True
    if same_video:
        parts.append("frames exactly as signed (the coded video is unchanged)")
    else:
        content, detail, tau, excerpt, exact = _frames_match(full, binding, signed_print, length)
        if not content:
            return LabelMatch(False, None, detail, exact=False)
        parts.append(detail)
    if sound is not None:
        if same_audio:
            parts.append("soundtrack exactly as signed")
        else:
            heard, detail, exact_sound = _sound_match(full.sound, sound, tau, full.damaged_audio)
            if not heard:
                return LabelMatch(False, None, f"soundtrack: {detail}", exact=False)
            parts.append(f"soundtrack: {detail}")
            exact = exact and exact_sound
    data = {"excerpt": excerpt.data()} if excerpt is not None else {}
    exact = exact and excerpt is None and not streams
    return LabelMatch(True, None, "; ".join(parts) + streams, exact=exact, data=data)


def _frames_match(
    full: Scan, binding: Mapping[str, Any], signed_print: dict[str, Any], length: float
) -> tuple[bool, str, float, Excerpt | None, bool]:
    """(the frames match, a phrase, where they sit in the signed ones, the excerpt they are, exactly as signed)."""
    if full.damaged:
        where = f"{len(full.damaged)} packets, the first at {full.damaged[0]:.2f} s"
        return False, f"the video no longer decodes ({where})", 0.0, None, False
    if not full.frame_count or full.frames is None:
        return False, "the frames no longer decode", 0.0, None, False
    if full.pixels == binding.get("sha256") and full.frame_count == binding.get("frames"):
        return True, "frames exactly as signed (decoded; the coded data differs)", 0.0, None, True
    changed, exact = _in_place(full, binding, length)
    if changed is not None:
        return False, changed, 0.0, None, False
    found = match_frames(full.frames, signed_print, length)
    detail = found.detail + (" (frames exactly as signed)" if exact and found.same and found.excerpt else "")
    return bool(found.same), detail, found.tau, found.excerpt, False


def _in_place(full: Scan, binding: Mapping[str, Any], length: float) -> tuple[str | None, bool]:
    """(where the frames of a stream that was not re-encoded changed, or None; whether every segment the file
    holds is then exactly as signed) — see the module docstring."""
    assert full.frames is not None
    try:
        seg_s = float(binding["seg_s"])
        want_packets = unpack_digests(binding["seg_packets"])
        want_pixels = unpack_digests(binding["seg_pixels"])
    except (KeyError, TypeError, ValueError):
        return None, False
    start, end, dt = _ends(full)
    count = min(len(want_packets), len(want_pixels))
    held = [k for k in range(count) if k * seg_s >= start - dt / 2 and min((k + 1) * seg_s, length) <= end + dt / 2]
    spread = _spread_by_segment(full)
    evidence = [
        k
        for k in held
        if full.seg_packets.get(k) == want_packets[k]
        and full.packet_bytes.get(k, 0) >= EVIDENCE_BYTES
        and spread.get(k, 0.0) > EVIDENCE_SPREAD
    ]
    if len(evidence) < max(2, (len(held) + 1) // 2):
        return None, False
    changed = [k for k in held if full.seg_pixels.get(k) != want_pixels[k]]
    if held and end < length - dt and held[-1] in changed:
        changed.remove(held[-1])  # the cut edge of a shorter file: frames whose references were cut away
    if not changed:
        return None, True
    return (
        f"the frames changed since signing between {changed[0] * seg_s:.1f} and "
        f"{min((changed[-1] + 1) * seg_s, length):.1f} s ({len(changed)} of {len(held)} segments), while the coded "
        f"video is otherwise as signed ({len(evidence)} segments byte for byte): damaged or edited, not re-encoded"
    ), False


def _spread_by_segment(full: Scan) -> dict[int, float]:
    """Per segment, the largest spread (max - min) of a frame's luma grid: 0 for flat frames."""
    assert full.frames is not None
    t, late, _ = full.frames.arrays()
    with np.errstate(invalid="ignore"):
        spread = np.nan_to_num(np.nanmax(late[:, :LUMA], axis=1) - np.nanmin(late[:, :LUMA], axis=1))
    out: dict[int, float] = {}
    for when, value in zip(t, spread, strict=True):
        k = full.segment(float(when))
        out[k] = max(out.get(k, 0.0), float(value))
    return out


def _sound_match(
    printer: SoundPrint | None, sound: Mapping[str, Any], tau: float, damaged: list[float]
) -> tuple[bool, str, bool]:
    """(the soundtrack matches, a phrase, sample for sample as signed)."""
    if damaged:
        where = f"{len(damaged)} packets, the first at {damaged[0]:.2f} s"
        return False, f"the soundtrack no longer decodes ({where})", False
    if printer is None or not printer.at:
        return False, "the signed soundtrack is gone or no longer decodes", False
    same_stream = (printer.rate, printer.channels) == (sound.get("rate"), sound.get("channels"))
    if same_stream and printer.at == sound.get("samples") and printer.digest() == sound.get("sha256"):
        return True, "samples exactly as signed", True
    exact = check_segments(printer, dict(sound.get("segments") or {})) if same_stream else None
    if exact is not None and exact.changed:
        return False, exact.changed, False
    found = match_sound(printer.powers(), dict(sound.get("sound") or {}), 0.0, 0.0, excerpts=True, prefer_s=tau)
    return bool(found.same), found.detail, False
