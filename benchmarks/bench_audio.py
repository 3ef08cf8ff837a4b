"""Audio watermark benchmark: embed/detect speed (× realtime, one core), robustness per attack, false positives.

Signals come from fixtures/audio_signals.py (synthetic music and speech, a fresh seed per trial), 11.3-second
excerpts after each attack, 64-bit random payloads. Attacks go through the real ffmpeg encoders. Speed is given
as CPU time of this single-threaded process (stable on a shared machine) and as wall time.

The false-positive run detects, for ``--fp-seconds`` of wall time, on 10-second unmarked excerpts (music,
speech, noise; fresh seeds, random offsets) with a random key each, plus marked excerpts probed with a wrong key;
none may be found, and the smallest p-value shows the margin to the 1e-6 threshold.

    python benchmarks/bench_audio.py [--trials N] [--fp-seconds S] [--kinds speech] [--attacks vorbis,noise]
                                     [--seed 100]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # one core, before numpy loads BLAS
    os.environ.setdefault(_var, "1")
import numpy as np  # noqa: E402 - after the thread settings and the path
from scipy import signal  # noqa: E402 - after the thread settings and the path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
import audio_signals  # noqa: E402 - after the thread settings and the path
import tts  # noqa: E402 - after the thread settings and the path

from kzlabel.errors import CapacityError  # noqa: E402 - after the thread settings and the path
from kzlabel.survival.transforms.audio import RECIPES  # noqa: E402 - after the thread settings and the path
from kzlabel.watermark import detect_audio, embed_audio  # noqa: E402 - after the thread settings and the path
from kzlabel.watermark.audio import MAX_DETECT_SECONDS  # noqa: E402 - after the thread settings and the path
from kzlabel.watermark.core import P_THRESHOLD  # noqa: E402 - after the thread settings and the path


def codec(x: np.ndarray, sr: int, args: list[str], ext: str) -> np.ndarray:
    ch = 1 if x.ndim == 1 else x.shape[1]
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "a." + ext)
        subprocess.run(
            ["ffmpeg", "-v", "error", "-f", "f32le", "-ar", str(sr), "-ac", str(ch), "-i", "-", *args, p],
            input=x.astype(np.float32).tobytes(),
            check=True,
        )
        raw = subprocess.run(
            ["ffmpeg", "-v", "error", "-i", p, "-f", "f32le", "-ac", str(ch), "-ar", str(sr), "-"],
            capture_output=True,
            check=True,
        ).stdout
    y = np.frombuffer(raw, np.float32)
    return y.reshape(-1, ch) if ch > 1 else y


def rs(x: np.ndarray, a: int, b: int) -> np.ndarray:
    from math import gcd

    g = gcd(a, b)
    return signal.resample_poly(x, b // g, a // g, axis=0).astype(np.float32)


def white_noise(x: np.ndarray, snr_db: float) -> np.ndarray:
    """White Gaussian noise at ``snr_db`` under the excerpt's mean power (seeded by the excerpt: reproducible)."""
    rng = np.random.default_rng(len(x))
    noise = rng.standard_normal(x.shape).astype(np.float32)
    return x + noise * np.float32(np.sqrt(np.mean(x.astype(np.float64) ** 2) * 10 ** (-snr_db / 10)))


def vorbis_at(x: np.ndarray, sr: int, rate: int) -> tuple[np.ndarray, int]:
    """Resample to ``rate``, then Ogg Vorbis q3 (libvorbis picks its tuning by sample rate)."""
    return codec(rs(x, sr, rate), rate, ["-c:a", "libvorbis", "-q:a", "3"], "ogg"), rate


def echo(x: np.ndarray, sr: int, delay_s: float = 0.08, gain: float = 0.5) -> np.ndarray:
    d = int(delay_s * sr)
    y = x.copy()
    y[d:] += gain * x[:-d]
    return y / (1 + gain)


# rows marked * are kzlabel stress's own transformations (kzlabel.survival.transforms.audio), run through PyAV with
# the very recipe `kzlabel stress` uses; the other codec rows go through the ffmpeg command line
STRESS = {f"{name} *": recipe.attack for name, (_, recipe) in RECIPES.items()}
ATTACKS = {
    "none": lambda x, sr: (x, sr),
    **STRESS,
    "aac 128k": lambda x, sr: (codec(x, sr, ["-c:a", "aac", "-b:a", "128k"], "m4a"), sr),
    "opus 96k (ogg)": lambda x, sr: (codec(x, sr, ["-c:a", "libopus", "-b:a", "96k"], "ogg"), sr),
    "vorbis q3 (ogg)": lambda x, sr: (codec(x, sr, ["-c:a", "libvorbis", "-q:a", "3"], "ogg"), sr),
    "vorbis q3 @16k": lambda x, sr: vorbis_at(x, sr, 16000),
    "vorbis q3 @22.05k": lambda x, sr: vorbis_at(x, sr, 22050),
    "vorbis q3 @44.1k": lambda x, sr: vorbis_at(x, sr, 44100),
    "mp3 64k": lambda x, sr: (codec(x, sr, ["-c:a", "libmp3lame", "-b:a", "64k"], "mp3"), sr),
    "aac 64k": lambda x, sr: (codec(x, sr, ["-c:a", "aac", "-b:a", "64k"], "m4a"), sr),
    "resample 48 kHz": lambda x, sr: (rs(x, sr, 48000), 48000),
    "resample 16 kHz": lambda x, sr: (rs(x, sr, 16000), 16000),
    "resample 44.1 kHz": lambda x, sr: (rs(x, sr, 44100), 44100),
    "mono downmix": lambda x, sr: (x.mean(axis=1) if x.ndim > 1 else x, sr),
    "gain +6 dB": lambda x, sr: (np.clip(2 * x, -1, 1), sr),
    "gain -6 dB": lambda x, sr: (0.5 * x, sr),
    "trim 10% start": lambda x, sr: (x[int(0.1 * len(x)) + 37 :], sr),
    "trim 10% end": lambda x, sr: (x[: int(0.9 * len(x))], sr),
    "white noise 50 dB": lambda x, sr: (white_noise(x, 50), sr),
    "white noise 40 dB": lambda x, sr: (white_noise(x, 40), sr),
    "white noise 30 dB": lambda x, sr: (white_noise(x, 30), sr),
    "white noise 20 dB": lambda x, sr: (white_noise(x, 20), sr),
    "low-pass 3.4 kHz": lambda x, sr: (
        signal.sosfiltfilt(signal.butter(8, 3400, fs=sr, output="sos"), x, axis=0).astype(np.float32),
        sr,
    ),
    "echo 80 ms": lambda x, sr: (echo(x, sr), sr),
}


def false_positives(budget_s: float) -> tuple[int, int, int, int, float]:
    """(unmarked trials, found, wrong-key trials, found, min p-value) within ``budget_s`` seconds of wall time."""
    rng = np.random.default_rng(2024)
    kinds = [("music", 44100), ("speech", 16000), ("noise", 44100)]
    n = found = n_wrong = found_wrong = 0
    p_min = 1.0
    t_end = time.perf_counter() + budget_s
    seed = 1000
    while time.perf_counter() < t_end:
        kind, sr = kinds[seed % len(kinds)]
        long = getattr(audio_signals, kind)(40.0, sr, seed=seed)  # one long signal, several excerpts from it
        wrong_key = seed % 4 == 3  # every 4th signal is marked, then probed with other keys
        seed += 1
        if wrong_key:
            long = embed_audio(long, sr, rng.bytes(8), key=rng.bytes(16))
        for _ in range(8):
            at = int(rng.integers(0, len(long) - 10 * sr))
            r = detect_audio(long[at : at + 10 * sr], sr, key=rng.bytes(16))
            p_min = min(p_min, r.p_value)
            if wrong_key:
                n_wrong += 1
                found_wrong += r.found
            else:
                n += 1
                found += r.found
    return n, found, n_wrong, found_wrong, p_min


def excerpt_lengths(kinds: list[str], trials: int, seed0: int) -> None:
    """How long an excerpt must be: 30 s of each signal marked whole, then excerpts of several lengths cut at random
    places (not tile-aligned) detected on their own."""
    lengths = (2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)
    found = {(k, n): 0 for k in kinds for n in lengths}
    for kind in kinds:
        sr = 44100 if kind == "music" else 16000
        for seed in range(seed0, seed0 + trials):
            x = getattr(audio_signals, kind)(30, sr, seed=seed)
            rng = np.random.default_rng(seed)
            payload = rng.bytes(8)
            y = embed_audio(x, sr, payload)
            for n in lengths:
                at = int(rng.integers(0, len(y) - int(n * sr)))
                r = detect_audio(y[at : at + int(n * sr)], sr)
                found[kind, n] += bool(r.found and r.payload == payload)
    print(f"excerpt length (s), found out of {trials} (30-s signals marked whole, seeds {seed0}–{seed0 + trials - 1})")
    print("length  " + "  ".join(f"{k:>7}" for k in kinds))
    for n in lengths:
        print(f"{n:6.1f}  " + "  ".join(f"{found[k, n]:>5}/{trials}" for k in kinds))


TTS_RATES = (16000, 22050, 24000, 44100, 48000)
TTS_ATTACKS = ("none", "mp3-128k *", "aac 128k")
TTS_BANDS = (("6–8.9 s", 8.95), ("9–12.5 s", 12.5), ("12.6–20 s", 20.0), ("20.5–30 s", 30.0))


def tts_lengths(step: float, fine: float) -> list[float]:
    """6–30 s every ``step``, and every ``fine`` from 9 to 12.5 s (the 10-s boundary of the first report)."""
    coarse = np.arange(6.0, 30.0 + 1e-9, step)
    dense = np.arange(9.0, 12.5 + 1e-9, fine)
    return sorted({round(float(v), 2) for v in (*coarse, *dense)})


def tts_speech(voices: list[tuple[str, int]], rates: list[int], lengths: list[float], attacks: list[str]) -> int:
    """Real TTS speech (eSpeak NG, fixtures/tts.py): every voice × speaking rate × sample rate × length is marked
    whole (a clip cut from its paragraph's start for every other length, from a seeded random place otherwise),
    attacked, and detected whole; a case counts when the exact payload comes back. A clip refused by embed_audio
    (CapacityError: the read-back of short content failed) counts as lost. Each clip is also detected unmarked (a
    false positive would count). Prints the rates per attack by voice, sample rate, length band and length, every
    lost case, and returns the number lost."""
    lost: list[str] = []
    ok: dict[tuple[str, str], list[int]] = {}
    cpu = time.process_time()
    snrs = []
    fp, p_min = 0, 1.0  # the unmarked clips, detected with the default key
    for lang, wpm in voices:
        for sr in rates:
            for i, length in enumerate(lengths):
                rng = np.random.default_rng(zlib.crc32(f"{lang} {wpm} {sr} {length}".encode()))
                start = 0.0 if i % 2 == 0 else float(rng.uniform(0, tts.seconds(lang, wpm) - length - 0.1))
                x = tts.speech(length, sr, lang, wpm, start=start)
                payload = rng.bytes(8)
                case = f"{lang} {wpm} wpm {sr} Hz {length:5.2f} s from {start:4.1f} s"
                clean = detect_audio(x, sr)
                fp += clean.found
                p_min = min(p_min, clean.p_value)
                try:
                    y = embed_audio(x, sr, payload)
                except CapacityError:
                    y = None
                else:
                    e_x, e_r = np.sum(x.astype(np.float64) ** 2), np.sum((y - x).astype(np.float64) ** 2)
                    snrs.append(10 * np.log10(e_x / e_r))
                band = next(b for b, top in TTS_BANDS if length <= top)
                for name in attacks:
                    good = False
                    if y is not None:
                        z, zsr = ATTACKS[name](y, sr)
                        r = detect_audio(z, zsr)
                        good = bool(r.found and r.payload == payload)
                    for k in (f"{lang} {wpm} wpm", f"{sr} Hz", band, "all", f"{length:g} s"):
                        ok.setdefault((k, name), [0, 0])
                        ok[k, name][0] += good
                        ok[k, name][1] += 1
                    if not good:
                        lost.append(f"{case}: {name}" + (" (embed refused)" if y is None else ""))
    cpu = time.process_time() - cpu
    voice_list = ", ".join(f"{lang} {wpm} wpm" for lang, wpm in voices)
    print(
        f"TTS speech (eSpeak NG; voices {voice_list}; {len(lengths)} lengths {lengths[0]:g}–{lengths[-1]:g} s;"
        f" rates {', '.join(str(r) for r in rates)} Hz), exact payload found:"
    )
    print(f"SNR dB: min {min(snrs, default=np.nan):.1f}  median {np.median(snrs):.1f}   CPU {cpu:.0f} s (this process)")
    n_clips = len(voices) * len(rates) * len(lengths)
    print(f"unmarked clips found: {fp}/{n_clips} (smallest p-value {p_min:.2g}, threshold {P_THRESHOLD:g})")
    by_length = [f"{n:g} s" for n in lengths]
    keys = [k for k in dict.fromkeys(k for k, _ in ok) if k not in (*by_length, *(b for b, _ in TTS_BANDS), "all")]
    keys += [b for b, _ in TTS_BANDS if (b, attacks[0]) in ok] + ["all"]

    def row(k: str) -> str:
        cells = (f"{ok[k, a][0]}/{ok[k, a][1]} {100 * ok[k, a][0] / ok[k, a][1]:5.1f}%" for a in attacks)
        return f"{k:<16}" + "".join(f"{c:>18}" for c in cells)

    print(f"{'':<16}" + "".join(f"{a:>18}" for a in attacks))
    print("\n".join(row(k) for k in keys))
    print(f"per length (all voices × rates):\n{'':<16}" + "".join(f"{a:>18}" for a in attacks))
    print("\n".join(row(k) for k in by_length))
    for line in lost:
        print("  lost:", line)
    return len(lost)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--kinds", default="music,speech", help="signal classes to run (comma-separated)")
    ap.add_argument("--attacks", default="", help="only the attacks whose name contains one of these (comma-separated)")
    ap.add_argument("--seed", type=int, default=100, help="first signal seed")
    ap.add_argument("--fp-seconds", type=float, default=90.0, help="wall time for the false-positive run (0: skip)")
    ap.add_argument("--excerpts", action="store_true", help="only the excerpt-length table")
    ap.add_argument("--tts", action="store_true", help="only the TTS speech run (eSpeak NG voices, lengths, rates)")
    ap.add_argument("--voices", default="kk:130,kk:175,ru:130,ru:175,en:130,en:175", help="TTS voices lang:wpm")
    ap.add_argument("--rates", default=",".join(str(r) for r in TTS_RATES), help="TTS sample rates")
    ap.add_argument("--step", type=float, default=0.5, help="TTS length step from 6 to 30 s")
    ap.add_argument("--fine", type=float, default=0.1, help="TTS length step from 9 to 12.5 s")
    args = ap.parse_args()
    kinds = args.kinds.split(",")
    if args.tts:
        voices = [(v.split(":")[0], int(v.split(":")[1])) for v in args.voices.split(",")]
        tts_attacks = [a for a in TTS_ATTACKS if not args.attacks or any(b in a for b in args.attacks.split(","))]
        tts_speech(voices, [int(r) for r in args.rates.split(",")], tts_lengths(args.step, args.fine), tts_attacks)
        if args.fp_seconds > 0:
            print_false_positives(args.fp_seconds)
        return
    if args.excerpts:
        excerpt_lengths(kinds, args.trials, args.seed)
        return
    attacks = {k: f for k, f in ATTACKS.items() if not args.attacks or any(a in k for a in args.attacks.split(","))}
    ok = {(k, a): 0 for k in ("music", "speech") for a in attacks}
    snrs, secs_embed, secs_detect = [], 0.0, 0.0
    cpu = {"embed": 0.0, "detect": 0.0}
    wall = {"embed": 0.0, "detect": 0.0}
    fp = 0
    for kind in kinds:
        for seed in range(args.seed, args.seed + args.trials):
            sr = 44100 if kind == "music" else 16000
            x = (
                audio_signals.music(11.3, sr, seed=seed)
                if kind == "music"
                else audio_signals.speech(11.3, sr, seed=seed)
            )
            payload = np.random.default_rng(seed).bytes(8)
            c0, w0 = time.process_time(), time.perf_counter()
            y = embed_audio(x, sr, payload)
            cpu["embed"] += time.process_time() - c0
            wall["embed"] += time.perf_counter() - w0
            secs_embed += len(x) / sr
            snrs.append(10 * np.log10(np.sum(x.astype(np.float64) ** 2) / np.sum((y - x).astype(np.float64) ** 2)))
            fp += detect_audio(x, sr).found
            for name, attack in attacks.items():
                z, zsr = attack(y, sr)
                c0, w0 = time.process_time(), time.perf_counter()
                r = detect_audio(z, zsr)
                cpu["detect"] += time.process_time() - c0
                wall["detect"] += time.perf_counter() - w0
                secs_detect += len(z) / zsr
                ok[(kind, name)] += bool(r.found and r.payload == payload)
    n = args.trials
    classes = {"music": "music (44.1 kHz stereo)", "speech": "speech (16 kHz mono)"}
    print(
        f"kzlabel audio watermark, {' + '.join(f'{n} {classes[k]}' for k in kinds)} excerpts of 11.3 s"
        f" (seeds {args.seed}–{args.seed + n - 1})"
    )
    snr = f"SNR dB: min {min(snrs):.1f}  median {np.median(snrs):.1f}"
    print(f"{snr}   false positives on the unmarked originals: {fp}/{len(snrs)}")
    speed = secs_embed / cpu["embed"], secs_embed / wall["embed"]
    print(f"embed  {speed[0]:7.0f}× realtime CPU time, one thread ({speed[1]:.0f}× wall)")
    speed = secs_detect / cpu["detect"], secs_detect / wall["detect"]
    print(
        f"detect {speed[0]:7.0f}× realtime CPU time, one thread ({speed[1]:.0f}× wall;"
        f" at most {MAX_DETECT_SECONDS:.0f} s of each file is analysed)"
    )
    print(f"\n{'attack':<20}{'music':>10}{'speech':>10}")
    for name in attacks:
        cols = "".join(f"{ok[(k, name)]:>7}/{n}" if k in kinds else f"{'—':>10}" for k in ("music", "speech"))
        print(f"{name:<20}{cols}")
    print("* kzlabel stress's own transformations (kzlabel.survival.transforms.audio)")
    if args.fp_seconds > 0:
        print_false_positives(args.fp_seconds)


def print_false_positives(budget_s: float) -> None:
    t0 = time.perf_counter()
    n_fp, found, n_wrong, found_wrong, p_min = false_positives(budget_s)
    print(
        f"\nfalse positives ({time.perf_counter() - t0:.0f} s; 10 s excerpts of music/speech/noise, a random key each):"
    )
    print(
        f"  unmarked: {found}/{n_fp} found   marked, wrong key: {found_wrong}/{n_wrong} found   min p-value {p_min:.2g}"
        f" (threshold {P_THRESHOLD:g})"
    )


if __name__ == "__main__":
    main()
