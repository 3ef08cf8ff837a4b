"""What the content binding of audio, video and PDF labels costs: mark and verify CPU time with the binding (target)
beside the same run with each handler's ``bind`` / binding check reduced to what it did before (peer: the warning
record only, no digest, fingerprint or thumbnails), and the size of the signed label.

Run ``python benchmarks/bench_binding.py`` (``--quick`` for one repetition). Sources are generated: 30 s of the test
music as WAV and MP3 (44.1 kHz stereo), 4 s of ffmpeg's testsrc2 at 640×360/25 fps with a sine soundtrack as MP4,
and the bundled two-page report.pdf. CPU time (process_time) is the median of the repetitions.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "fixtures"))
import audio_signals  # noqa: E402

import kzlabel  # noqa: E402
from kzlabel import formats  # noqa: E402
from kzlabel.formats.base import LabelMatch  # noqa: E402
from kzlabel.keys import Signer, generate  # noqa: E402


def ffmpeg(*args: object, data: bytes | None = None) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *map(str, args)], input=data, check=True)


def sources(tmp: Path) -> dict[str, Path]:
    x = audio_signals.music(30.0, 44100, seed=1)
    raw = x.astype(np.float32).tobytes()
    out = {"wav": tmp / "a.wav", "mp3": tmp / "a.mp3", "mp4": tmp / "v.mp4", "pdf": ROOT / "fixtures/samples/report.pdf"}
    ffmpeg("-f", "f32le", "-ar", 44100, "-ac", 2, "-i", "-", "-c:a", "pcm_s16le", out["wav"], data=raw)
    ffmpeg("-f", "f32le", "-ar", 44100, "-ac", 2, "-i", "-", "-c:a", "libmp3lame", "-b:a", "192k", out["mp3"], data=raw)
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25", "-f", "lavfi", "-i", "sine=frequency=440", "-t", "4",
           "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", out["mp4"])
    return out


@contextmanager
def unbound(handler: Any):
    """The handler as before the binding: ``bind`` records the warning only, ``check_label`` compares nothing."""
    cls = type(handler)
    bind, check = cls.bind, cls.check_label

    def plain_bind(self: Any, doc: Any, out: Path) -> dict[str, Any]:
        fields = dict(bind(self, doc, out))
        fields.pop("binding", None)
        return fields

    def plain_check(self: Any, findings: Any, label: Any) -> LabelMatch:
        return check(self, findings, label.replace(binding=None))

    cls.bind, cls.check_label = plain_bind, plain_check  # type: ignore[method-assign]
    try:
        yield
    finally:
        cls.bind, cls.check_label = bind, check  # type: ignore[method-assign]


def timed(fn: Any, reps: int) -> tuple[float, Any]:
    runs, result = [], None
    for _ in range(reps):
        c0 = time.process_time()
        result = fn()
        runs.append(time.process_time() - c0)
    return statistics.median(runs), result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    reps = 1 if parser.parse_args().quick else 3
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        generate(tmp / "keys", organization="Bench")
        lab = kzlabel.Labeler(Signer.load(tmp / "keys"), owner="O", system="S")
        print("| format | mark CPU s, no binding | mark CPU s, bound | extra | verify CPU s, no binding | verify, bound "
              "| label bytes, no binding | bound |")
        print("|---|---|---|---|---|---|---|---|")
        for kind, src in sources(tmp).items():
            handler = formats.detect(kzlabel.io.Input(path=src))
            dst = tmp / f"out.{kind}"
            with unbound(handler):
                mark0, res0 = timed(lambda: lab.mark(src, dst), reps)
                verify0, _ = timed(lambda: lab.verify(dst), reps)
            mark1, res1 = timed(lambda: lab.mark(src, dst), reps)
            verify1, rep = timed(lambda: lab.verify(dst), reps)
            assert rep.verdict == kzlabel.Verdict.COMPLIANT, str(rep)
            extra = (mark1 - mark0) / mark0 * 100
            print(f"| {kind} | {mark0:.2f} | {mark1:.2f} | {extra:+.0f}% | {verify0:.2f} | {verify1:.2f} "
                  f"| {len(res0.token)} | {len(res1.token)} |")


if __name__ == "__main__":
    main()
