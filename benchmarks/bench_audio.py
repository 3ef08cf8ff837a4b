"""Audio watermark benchmark: embed/detect speed (× realtime, one core) and robustness per attack.

Signals come from fixtures/audio_signals.py (synthetic music and speech, a fresh seed per trial), 10-second
excerpts after each attack, 64-bit random payloads. Attacks go through the real ffmpeg encoders.

    python benchmarks/bench_audio.py [--trials N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402
from scipy import signal  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
import audio_signals  # noqa: E402

from kzlabel.watermark import detect_audio, embed_audio  # noqa: E402


def codec(x: np.ndarray, sr: int, args: list[str], ext: str) -> np.ndarray:
    ch = 1 if x.ndim == 1 else x.shape[1]
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "a." + ext)
        subprocess.run(["ffmpeg", "-v", "error", "-f", "f32le", "-ar", str(sr), "-ac", str(ch), "-i", "-", *args, p], input=x.astype(np.float32).tobytes(), check=True)
        raw = subprocess.run(["ffmpeg", "-v", "error", "-i", p, "-f", "f32le", "-ac", str(ch), "-ar", str(sr), "-"], capture_output=True, check=True).stdout
    y = np.frombuffer(raw, np.float32)
    return y.reshape(-1, ch) if ch > 1 else y


def rs(x: np.ndarray, a: int, b: int) -> np.ndarray:
    from math import gcd

    g = gcd(a, b)
    return signal.resample_poly(x, b // g, a // g, axis=0).astype(np.float32)


ATTACKS = {
    "none": lambda x, sr: (x, sr),
    "mp3 128k": lambda x, sr: (codec(x, sr, ["-c:a", "libmp3lame", "-b:a", "128k"], "mp3"), sr),
    "aac 128k": lambda x, sr: (codec(x, sr, ["-c:a", "aac", "-b:a", "128k"], "m4a"), sr),
    "opus 96k (ogg)": lambda x, sr: (codec(x, sr, ["-c:a", "libopus", "-b:a", "96k"], "ogg"), sr),
    "resample 48 kHz": lambda x, sr: (rs(x, sr, 48000), 48000),
    "resample 16 kHz": lambda x, sr: (rs(x, sr, 16000), 16000),
    "mono downmix": lambda x, sr: (x.mean(axis=1) if x.ndim > 1 else x, sr),
    "gain +6 dB": lambda x, sr: (np.clip(2 * x, -1, 1), sr),
    "gain -6 dB": lambda x, sr: (0.5 * x, sr),
    "trim 10% start": lambda x, sr: (x[int(0.1 * len(x)) + 37 :], sr),
    "trim 10% end": lambda x, sr: (x[: int(0.9 * len(x))], sr),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=6)
    args = ap.parse_args()
    ok = {(k, a): 0 for k in ("music", "speech") for a in ATTACKS}
    snrs, t_embed, t_detect, secs_embed, secs_detect = [], 0.0, 0.0, 0.0, 0.0
    fp = 0
    for kind in ("music", "speech"):
        for seed in range(args.trials):
            sr = 44100 if kind == "music" else 16000
            x = audio_signals.music(11.3, sr, seed=100 + seed) if kind == "music" else audio_signals.speech(11.3, sr, seed=100 + seed)
            payload = np.random.default_rng(seed).bytes(8)
            t0 = time.perf_counter()
            y = embed_audio(x, sr, payload)
            t_embed += time.perf_counter() - t0
            secs_embed += len(x) / sr
            snrs.append(10 * np.log10(np.sum(x.astype(np.float64) ** 2) / np.sum((y - x).astype(np.float64) ** 2)))
            fp += detect_audio(x, sr).found
            for name, attack in ATTACKS.items():
                z, zsr = attack(y, sr)
                t0 = time.perf_counter()
                r = detect_audio(z, zsr)
                t_detect += time.perf_counter() - t0
                secs_detect += len(z) / zsr
                ok[(kind, name)] += bool(r.found and r.payload == payload)
    n = args.trials
    print(f"kzlabel audio watermark, {n} music (44.1 kHz stereo) + {n} speech (16 kHz mono) excerpts of 11.3 s")
    print(f"SNR dB: min {min(snrs):.1f}  median {np.median(snrs):.1f}   false positives on the unmarked originals: {fp}/{2 * n}")
    print(f"embed  {secs_embed / t_embed:7.0f}× realtime (one core)")
    print(f"detect {secs_detect / t_detect:7.0f}× realtime (one core; at most {20} s of each file is analysed)")
    print(f"\n{'attack':<18}{'music':>10}{'speech':>10}")
    for name in ATTACKS:
        print(f"{name:<18}{ok[('music', name)]:>7}/{n}{ok[('speech', name)]:>7}/{n}")


if __name__ == "__main__":
    main()
