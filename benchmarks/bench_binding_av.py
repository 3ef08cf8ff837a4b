"""What the every-frame / every-sample binding (``kz-video-2``, ``kz-audio-2``) reports after the transformations
platforms and editors make, and what verify costs, beside the binding before it (``kz-video-1``: 8 sampled frames,
``kz-audio-1``: no excerpts, no segment digests) in the same run.

Run ``python benchmarks/bench_binding_av.py`` (``--quick``: 640×360 video and no 10-minute clip; ``--before REV`` the
commit whose ``src/`` is "before", default the last one before kz-video-2; ``--no-before`` skips it). The before side
is the old code checked out with ``git archive`` into a temp folder; each side marks its own copies of the sources
(their labels differ) and verifies in a worker process of its own, warm (one verify first), so the CPU times
(process_time, all threads) compare the verify passes alone.

Sources (generated, no downloads): 12 s of a generated photo panned at 1280×720/30 fps (640×360 with ``--quick``) with
12 s of music in AAC; the same as a vertical 720×1280 clip; 30 s of music as MP3 (44.1 kHz stereo); 8 s of steady
noise as WAV; and, unless ``--quick``, 10 minutes of 640×360/30 fps panned photos with a scene change every 20 s
(label size and verify time).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "fixtures"))
BEFORE = "1ce5707"  # main before kz-video-2 / kz-audio-2
TAGS = ["-map_metadata", "0", "-movflags", "use_metadata_tags"]
H264 = ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"]
AAC = ["-c:a", "aac", "-b:a", "128k"]
PATCH = "drawbox=x=iw*0.4:y=ih*0.3:w=iw*0.2:h=ih*0.2:c=red:t=fill:enable='between(t,6,7)'"


def ffmpeg(*args: object, data: bytes | None = None) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *map(str, args)], input=data, check=True)


def spliced(*parts: tuple[float, float | None], stream: str = "v") -> str:
    """A filter graph [o] joining stretches (start, end or None) of the input's video (or audio) stream."""
    trim, pts = ("trim", "setpts=PTS-STARTPTS") if stream == "v" else ("atrim", "asetpts=PTS-STARTPTS")
    cuts = [
        f"[0:{stream}]{trim}=start={a}{f':end={b}' if b is not None else ''},{pts}[p{i}]"
        for i, (a, b) in enumerate(parts)
    ]
    joined = "".join(f"[p{i}]" for i in range(len(parts)))
    kind = "v=1:a=0" if stream == "v" else "v=0:a=1"
    return ";".join(cuts) + f";{joined}concat=n={len(parts)}:{kind}[o]"


# --- sources -------------------------------------------------------------------------------------------------------
def make_sources(tmp: Path, quick: bool) -> dict[str, Path]:
    import audio_signals
    from image_signals import natural_like
    from PIL import Image

    Image.fromarray(natural_like(1080, 2400, seed=3)).save(tmp / "wide.png")
    Image.fromarray(natural_like(2400, 1400, seed=4)).save(tmp / "tall.png")
    music = audio_signals.music(12.0, 48000, seed=5).astype(np.float32)
    (tmp / "music.f32").write_bytes(music.tobytes())
    w, h = (640, 360) if quick else (1280, 720)
    out = {
        "pan": tmp / "pan.mp4",
        "vertical": tmp / "vertical.mp4",
        "music": tmp / "music.mp3",
        "noise": tmp / "noise.wav",
    }
    sound = ["-f", "f32le", "-ar", 48000, "-ac", 2, "-i", tmp / "music.f32"]
    ffmpeg(
        "-loop",
        1,
        "-framerate",
        30,
        "-i",
        tmp / "wide.png",
        *sound,
        "-vf",
        f"crop={w * 1.2:.0f}:{h * 1.2:.0f}:x='(in_w-out_w)*t/12':y='(in_h-out_h)/2+40*sin(t)',scale={w}:{h}",
        "-t",
        12,
        *H264,
        "-crf",
        20,
        *AAC,
        "-shortest",
        out["pan"],
    )
    ffmpeg(
        "-loop",
        1,
        "-framerate",
        30,
        "-i",
        tmp / "tall.png",
        "-vf",
        "crop=1080:1920:x='(in_w-out_w)/2+60*sin(t)':y='(in_h-out_h)*t/12',scale=720:1280",
        "-t",
        12,
        *H264,
        "-crf",
        20,
        out["vertical"],
    )
    song = audio_signals.music(30.0, 44100, seed=1).astype(np.float32)
    ffmpeg(
        "-f",
        "f32le",
        "-ar",
        44100,
        "-ac",
        2,
        "-i",
        "-",
        "-c:a",
        "libmp3lame",
        "-b:a",
        "192k",
        out["music"],
        data=song.tobytes(),
    )
    noise = np.repeat(audio_signals.noise(8.0, 44100, seed=3)[:, None], 2, axis=1)
    ffmpeg("-f", "f32le", "-ar", 44100, "-ac", 2, "-i", "-", "-c:a", "pcm_s16le", out["noise"], data=noise.tobytes())
    if not quick:
        out["ten_minutes"] = tmp / "ten.mp4"
        scenes = [tmp / f"scene{i}.png" for i in range(30)]
        for i, path in enumerate(scenes):
            Image.fromarray(natural_like(450, 1000, seed=100 + i)).save(path)
        listing = tmp / "scenes.txt"
        listing.write_text("".join(f"file '{p}'\nduration 20\n" for p in scenes) + f"file '{scenes[-1]}'\n")
        ffmpeg(
            "-f",
            "concat",
            "-safe",
            0,
            "-i",
            listing,
            "-vf",
            "fps=30,crop=800:450:x='(in_w-out_w)*mod(t,20)/20':y=0,scale=640:360",
            "-t",
            600,
            *H264,
            "-crf",
            23,
            out["ten_minutes"],
        )
    return out


# the transformations: name → (source kinds, ffmpeg arguments between input and output, output suffix)
VIDEO: dict[str, list[Any]] = {
    "unchanged": [],
    "re-encode CRF 28": [*H264, "-crf", 28, *AAC],
    "re-encode CRF 32": [*H264, "-crf", 32, *AAC],
    "scale to 480p, CRF 28": ["-vf", "scale=-2:480", *H264, "-crf", 28, *AAC],
    "scale to 240 wide, CRF 28": ["-vf", "scale=240:-2", *H264, "-crf", 28, *AAC],
    "first 5 s only": ["-t", 5, *H264, "-crf", 28, *AAC],
    "middle 6 s (3-9 s)": ["-ss", 3, "-t", 6, *H264, "-crf", 28, *AAC],
    "patch over 20% for 1 s": [
        "-vf",
        PATCH,
        *H264,
        "-crf",
        23,
        *AAC,
    ],
    "0.5 s inserted at 6 s": [
        "-filter_complex",
        spliced((0, 6), (9, 9.5), (6, None)),
        "-map",
        "[o]",
        "-map",
        "0:a?",
        *H264,
        "-crf",
        23,
        *AAC,
    ],
    "0.5 s deleted at 6 s": [
        "-filter_complex",
        spliced((0, 6), (6.5, None)),
        "-map",
        "[o]",
        "-map",
        "0:a?",
        *H264,
        "-crf",
        23,
        *AAC,
    ],
    "0.5 s replaced at 6 s": [
        "-filter_complex",
        spliced((0, 6), (9, 9.5), (6.5, None)),
        "-map",
        "[o]",
        "-map",
        "0:a?",
        *H264,
        "-crf",
        23,
        *AAC,
    ],
    "3 frames deleted at 6 s": [
        "-filter_complex",
        spliced((0, 6), (6.1, None)),
        "-map",
        "[o]",
        "-map",
        "0:a?",
        *H264,
        "-crf",
        23,
        *AAC,
    ],
    "byte flipped in frame data": "flip",
}
AUDIO: dict[str, list[Any] | str] = {
    "unchanged": [],
    "MP3 128k": ["-c:a", "libmp3lame", "-b:a", "128k"],
    "middle 10 s": ["-ss", 11.4, "-t", 10, "-c:a", "libmp3lame", "-b:a", "192k"],
    "1 s cut out at 10 s": [
        "-filter_complex",
        spliced((0, 11.4), (12.4, None), stream="a"),
        "-map",
        "[o]",
        "-c:a",
        "libmp3lame",
        "-b:a",
        "192k",
    ],
    "1 s spliced in at 10 s": [
        "-filter_complex",
        spliced((0, 11.4), (20, 21), (11.4, None), stream="a"),
        "-map",
        "[o]",
        "-c:a",
        "libmp3lame",
        "-b:a",
        "192k",
    ],
    "byte flipped in frame data": "flip",
}
NOISE: dict[str, list[Any] | str] = {
    "unchanged": [],
    "1 s of other noise spliced in (in place)": "noise-splice",
    "the same, then MP3 128k": "noise-splice-mp3",
}


def transform(src: Path, name: str, args: list[Any] | str, dst: Path) -> Path:
    if args == "flip":
        data = bytearray(src.read_bytes())
        start = data.index(b"mdat") + 8 if src.suffix == ".mp4" else len(data) // 3
        data[start + (len(data) - start) * 3 // 5] ^= 0xFF
        dst.write_bytes(bytes(data))
    elif isinstance(args, str) and args.startswith("noise-splice"):
        data = bytearray(src.read_bytes())
        at = data.index(b"data") + 8 + int((1.4 + 4.0) * 44100) * 4  # 4 s into the content, after the tone
        import audio_signals

        # the same kind of noise at the same level, another stretch of it: the band energies do not move
        other = np.repeat(audio_signals.noise(1.0, 44100, seed=9)[:, None], 2, axis=1)
        other = np.clip(np.rint(other * 32767), -32768, 32767).astype("<i2").tobytes()
        data[at : at + len(other)] = other
        dst.write_bytes(bytes(data))
        if args.endswith("mp3"):
            mp3 = dst.with_suffix(".mp3")
            ffmpeg("-i", dst, "-map_metadata", 0, "-c:a", "libmp3lame", "-b:a", "128k", mp3)
            return mp3
    elif not args:
        dst.write_bytes(src.read_bytes())
    else:
        extra = TAGS if dst.suffix == ".mp4" else ["-map_metadata", 0]
        ffmpeg("-i", src, *args, *extra, dst)
    return dst


# --- the worker: marks and verifies with whichever kzlabel is on its path ---------------------------------------------
def worker(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    import kzlabel
    from kzlabel.keys import Signer

    out = []
    lab = kzlabel.Labeler(Signer.load(jobs[0]["keys"]), owner="O", system="S")
    for job in jobs[1:]:
        if job["do"] == "mark":
            res = lab.mark(job["src"], job["dst"])
            out.append({"token": len(res.token), "alg": (res.label.binding or {}).get("alg")})
            continue
        lab.verify(job["warm"])
        c0, w0 = time.process_time(), time.perf_counter()
        try:
            rep = lab.verify(job["path"])
            meta = rep.layer("metadata")
            row = {"verdict": rep.verdict.value, "content": meta.data.get("content", meta.detail) if meta else ""}
        except kzlabel.errors.KzlabelError as exc:
            row = {"verdict": f"error: {exc}", "content": ""}
        row |= {"cpu": time.process_time() - c0, "wall": time.perf_counter() - w0}
        out.append(row)
    return out


def run_side(src_dir: Path | None, jobs: list[dict[str, Any]], tmp: Path) -> list[dict[str, Any]]:
    """Run ``jobs`` in a worker whose kzlabel is ``src_dir`` (None: this checkout)."""
    job_file = tmp / f"jobs-{time.monotonic_ns()}.json"
    job_file.write_text(json.dumps(jobs, default=str))
    env = dict(os.environ, PYTHONPATH=str(src_dir or ROOT / "src"))
    done = subprocess.run(
        [sys.executable, __file__, "--worker", str(job_file)], capture_output=True, text=True, env=env, check=True
    )
    return list(json.loads(done.stdout))


def short(row: dict[str, Any]) -> str:
    content = str(row.get("content", "")).split("; opening warning")[0].split("; persistent warning")[0]
    return f"{row['verdict']}: {content[:110]}" if content else row["verdict"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--before", default=BEFORE)
    parser.add_argument("--no-before", action="store_true")
    parser.add_argument("--worker")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(Path(args.worker).read_text()))))
        return
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        from kzlabel.keys import generate

        generate(tmp / "keys", organization="Bench")
        sources = make_sources(tmp, args.quick)
        sides: dict[str, Path | None] = {"after": None}
        if not args.no_before:
            before = tmp / "before"
            before.mkdir()
            archive = subprocess.run(
                ["git", "-C", str(ROOT), "archive", args.before, "src"], capture_output=True, check=True
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(before)], input=archive, check=True)
            sides = {"before": before / "src", "after": None}
        plan = [
            ("pan", VIDEO, [k for k in VIDEO if k != "scale to 240 wide, CRF 28"]),
            (
                "vertical",
                VIDEO,
                [
                    "unchanged",
                    "re-encode CRF 28",
                    "scale to 480p, CRF 28",
                    "scale to 240 wide, CRF 28",
                    "first 5 s only",
                ],
            ),
            ("music", AUDIO, list(AUDIO)),
            ("noise", NOISE, list(NOISE)),
        ]
        if "ten_minutes" in sources:
            plan.append(("ten_minutes", VIDEO, ["unchanged", "re-encode CRF 28", "first 5 s only"]))
        results: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
        sizes: dict[str, dict[str, Any]] = {}
        for side, src_dir in sides.items():
            work = tmp / f"work-{side}"
            work.mkdir()
            keys = {"keys": str(tmp / "keys")}
            marked = {kind: work / f"marked-{kind}{path.suffix}" for kind, path in sources.items()}
            marks = run_side(
                src_dir, [keys, *({"do": "mark", "src": str(sources[k]), "dst": str(marked[k])} for k in marked)], tmp
            )
            sizes[side] = dict(zip(marked, marks, strict=True))
            jobs: list[dict[str, Any]] = [keys]
            names: list[tuple[str, str]] = []
            for kind, table, cases in plan:
                for case in cases:
                    suffix = ".mp4" if marked[kind].suffix == ".mp4" else ".wav" if kind == "noise" else ".mp3"
                    dst = transform(marked[kind], case, table[case], work / f"{kind}-{len(names)}{suffix}")
                    jobs.append({"do": "verify", "path": str(dst), "warm": str(marked[kind])})
                    names.append((kind, case))
            results[side] = dict(zip(names, run_side(src_dir, jobs, tmp), strict=True))
        print(
            "| source | transformation | before: verdict, content | verify CPU s | after: verdict, content "
            "| verify CPU s |"
        )
        print("|---|---|---|---|---|---|")
        for (kind, case), after in results["after"].items():
            before_row = results.get("before", {}).get((kind, case))
            b = f"{short(before_row)} | {before_row['cpu']:.2f}" if before_row else "– | –"
            print(f"| {kind} | {case} | {b} | {short(after)} | {after['cpu']:.2f} |")
        print()
        print("| source | label bytes before (binding) | after (binding) |")
        print("|---|---|---|")
        for kind in sources:
            before_size = sizes.get("before", {}).get(kind)
            b = f"{before_size['token']} ({before_size['alg']})" if before_size else "–"
            print(f"| {kind} | {b} | {sizes['after'][kind]['token']} ({sizes['after'][kind]['alg']}) |")


if __name__ == "__main__":
    main()
