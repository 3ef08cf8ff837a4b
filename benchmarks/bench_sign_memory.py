"""Peak memory of the C2PA step on a long WAV or a large PDF: the C2PA library's embedding (before) against kzlabel's
data-hashed slot, signed and read in a stream (after, layers/c2pa_embed).

    python benchmarks/bench_sign_memory.py [--hours 3] [--quick] [--dir /tmp]
    python benchmarks/bench_sign_memory.py --pdf-mb 200 [--quick]
    python benchmarks/bench_sign_memory.py --remark [--hours 1.7 | --pdf-mb 200] [--quick]

With ``--pdf-mb`` the file is a PDF of that many MB instead (pages of 1 MB noise images, written a page at a time),
and two more steps run: the whole ``kzlabel.mark`` (every layer: stamp, XMP, C2PA) with the manifest placed by the
C2PA library (``mark-library``: the handler's streamed slot switched off in that child, which is what main did) and
streamed (``mark-streamed``), then ``verify`` of the streamed output. ``--quick`` makes it 20 MB.

A 16-bit 44.1 kHz stereo WAV (3 hours: 1.9 GB) is written to disk a second at a time (never held), then each step
runs in a fresh child process so its peak resident set size (``ru_maxrss``) is its own: signing the file with the
library (``c2pa.Builder.sign`` over file streams, as kzlabel did) and with the slot, and reading each result back
(the library's Reader, and the slot's streamed read). The child also reports the RSS right after importing kzlabel
and c2pa (the floor every run pays). ``--quick`` uses 6 minutes. Files are removed at the end; the signing key is
generated for the run and never printed.

With ``--remark`` the file is first signed (streamed) and that marked file is then signed again, keeping its manifest
as the parentOf ingredient: by the C2PA library from the whole asset (``resign-library``, what kzlabel did within
Limits.max_c2pa_bytes and skipped above it) and from the store in its slot, its hash checked in a stream
(``resign-streamed``); each output is read back by both readers. For a PDF the whole ``kzlabel.mark`` of the marked
file runs too (library / streamed) and ``verify`` of the result.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

TOKEN = "eyJhbGciOiJFZERTQSJ9.eyJ4IjoxfQ.c2ln"


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def make_wav(path: Path, seconds: int, rate: int = 44100) -> None:
    import numpy as np

    rng = np.random.default_rng(1)
    block = rng.integers(-3000, 3000, (10 * rate, 2), dtype=np.int16)  # 10 s of noise, shifted for each use
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        for i in range(0, seconds, 10):
            w.writeframes(np.roll(block, i * 7, axis=0)[: min(10, seconds - i) * rate].tobytes())


def make_pdf(path: Path, mb: int) -> None:
    """A PDF of ``mb`` pages, each drawing a 1 MB RGB noise image (uncompressed, so the size is the page count),
    classic cross-reference table; written a page at a time (never held)."""
    import numpy as np

    rng = np.random.default_rng(1)
    side = 591  # 591 x 591 x 3 bytes = 1.0 MB
    noise = rng.integers(0, 256, side * side * 3 + 4096, dtype=np.uint8).tobytes()
    offsets: list[int] = []
    with open(path, "wb") as fh:

        def obj(body: bytes) -> None:
            offsets.append(fh.tell())
            fh.write(b"%d 0 obj\n%s\nendobj\n" % (len(offsets), body))

        fh.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
        kids = " ".join(f"{3 + 3 * i} 0 R" for i in range(mb)).encode()
        obj(b"<< /Type /Catalog /Pages 2 0 R >>")
        obj(b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, mb))
        for i in range(mb):
            n = 3 + 3 * i
            obj(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents %d 0 R "
                b"/Resources << /XObject << /Im0 %d 0 R >> >> >>" % (n + 1, n + 2))  # fmt: skip
            draw = b"q 500 0 0 500 48 171 cm /Im0 Do Q\nBT /F1 12 Tf ET"
            obj(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(draw), draw))
            data = noise[i * 4 % 4096 :][: side * side * 3]
            head = b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceRGB " % (side, side)
            obj(head + b"/BitsPerComponent 8 /Length %d >>\nstream\n" % len(data) + data + b"\nendstream")
        xref = fh.tell()
        fh.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(offsets) + 1))
        fh.write(b"".join(b"%010d 00000 n \n" % o for o in offsets))
        fh.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(offsets) + 1, xref))


def child(args: argparse.Namespace) -> None:
    import c2pa  # noqa: F401 - the import floor counts the native library

    import kzlabel
    from kzlabel import formats
    from kzlabel.io import Input
    from kzlabel.keys import Signer, TrustStore
    from kzlabel.layers import c2pa as c2pa_layer
    from kzlabel.layers import c2pa_embed

    floor = rss_mb()
    signer, trust = Signer.load(args.keys), TrustStore.load([args.keys])
    handler = formats.detect(Input(path=Path(args.src)))
    mime = handler.mime
    start = time.perf_counter()
    out: dict = {}
    if args.child == "sign-library":
        with open(args.src, "rb") as src, open(args.dst, "w+b") as dst:
            c2pa_layer.sign(src, mime, signer, label_claims={"token": TOKEN}, dest=dst)
    elif args.child == "sign-streamed":
        c2pa_embed.sign(Path(args.src), Path(args.dst), handler.c2pa_reserve, signer, label_claims={"token": TOKEN})
    elif args.child == "resign-library":  # the parent kept from the whole asset
        with open(args.src, "rb") as src, open(args.src, "rb") as parent, open(args.dst, "w+b") as dst:
            c2pa_layer.sign(src, mime, signer, label_claims={"token": TOKEN}, parent=parent, dest=dst)
    elif args.child == "resign-streamed":  # the parent kept from the store in its slot, its hash checked streamed
        with open(args.src, "rb") as src:
            slot = handler.c2pa_slot(src)
            assert slot is not None, "the marked file has no manifest slot"
            parent = c2pa_embed.parent(src, slot)
        out["parent"] = "kept" if parent.store is not None else parent.damaged
        reserve = handler.c2pa_reserve
        c2pa_embed.sign(Path(args.src), Path(args.dst), reserve, signer, label_claims={"token": TOKEN}, parent=parent)
    elif args.child == "read-library":
        with open(args.src, "rb") as src:
            out["state"] = c2pa_layer.read(src, mime, trust).state
    elif args.child == "read-streamed":
        with open(args.src, "rb") as src:
            slot = handler.c2pa_slot(src)
            out["state"] = c2pa_embed.read(src, slot, trust).state if slot else "absent"
    elif args.child.startswith("mark-"):
        if args.child == "mark-library":  # the C2PA library places the manifest, as before the streamed slot
            type(handler).c2pa_streamed = False
        lab = kzlabel.Labeler(signer, owner="Bench LLP", system="Gen 1", trust=trust)
        res = lab.mark(Path(args.src), Path(args.dst))
        out["state"] = ",".join(res.layers) + (f" (skipped: {', '.join(res.skipped)})" if res.skipped else "")
    else:  # verify
        out["state"] = kzlabel.Labeler(trust=trust).verify(Path(args.src)).verdict.value
    out |= {"wall": time.perf_counter() - start, "peak_mb": rss_mb(), "floor_mb": floor}
    print(json.dumps(out))


def run_child(*args: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(f"child {args[:2]} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hours", type=float, default=3.0)
    ap.add_argument("--quick", action="store_true", help="6 minutes instead of --hours")
    ap.add_argument("--dir", default=tempfile.gettempdir(), help="where the WAVs go (needs ~3x the WAV size free)")
    ap.add_argument(
        "--child",
        choices=(
            "sign-library", "sign-streamed", "read-library", "read-streamed", "mark-library", "mark-streamed", "verify",
            "resign-library", "resign-streamed",
        ),
        help=argparse.SUPPRESS,
    )  # fmt: skip
    ap.add_argument("--pdf-mb", type=int, default=0, help="a PDF of this many MB instead of the WAV")
    ap.add_argument("--remark", action="store_true", help="sign an already signed file again (parent ingredient)")
    ap.add_argument("--src", help=argparse.SUPPRESS)
    ap.add_argument("--dst", help=argparse.SUPPRESS)
    ap.add_argument("--keys", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return

    from kzlabel.keys import generate

    seconds = int((0.1 if args.quick else args.hours) * 3600)
    work = Path(tempfile.mkdtemp(prefix="kzlabel-signmem-", dir=args.dir))
    try:
        generate(work / "keys", organization="Bench LLP")
        keys = ["--keys", str(work / "keys")]
        pdf_mb = (20 if args.quick else args.pdf_mb) if args.pdf_mb else 0
        src = work / ("large.pdf" if pdf_mb else "long.wav")
        ext = src.suffix
        t0 = time.perf_counter()
        if pdf_mb:
            make_pdf(src, pdf_mb)
        else:
            make_wav(src, seconds)
        mb = src.stat().st_size / 1e6
        took = time.perf_counter() - t0
        what = (
            f"PDF of {pdf_mb} pages (a 1 MB image each)"
            if pdf_mb
            else f"{seconds / 3600:g} h WAV, 44.1 kHz stereo 16-bit"
        )
        print(f"{what}: {mb:.0f} MB (written in {took:.0f} s)")
        sign = "sign"
        if args.remark:  # the source is the marked file: every step below re-marks it
            first = work / f"first{ext}"
            run_child("--child", "sign-streamed", "--src", str(src), "--dst", str(first), *keys)
            src.unlink()
            src, sign = first, "resign"
            print(f"re-marking it: {src.stat().st_size / 1e6:.0f} MB, signed once (streamed) before")
        print("| step | before: C2PA library | after: kzlabel slot, streamed | verdict after |")
        print("|---|---|---|---|")
        rows = {}
        for how in ("library", "streamed"):
            dst = work / f"signed-{how}{ext}"
            rows[f"sign-{how}"] = run_child("--child", f"{sign}-{how}", "--src", str(src), "--dst", str(dst), *keys)
            rows[f"read-{how}"] = run_child("--child", f"read-{how}", "--src", str(dst), *keys)
            # the other reader on the same output: each signature validates in both
            other = "library" if how == "streamed" else "streamed"
            rows[f"cross-{how}"] = run_child("--child", f"read-{other}", "--src", str(dst), *keys)
            dst.unlink()
        for step in ("sign", "read"):
            b, a = rows[f"{step}-library"], rows[f"{step}-streamed"]
            verdict, name = a.get("state", ""), sign if step == "sign" else step
            print(
                f"| {name} | {b['peak_mb']:.0f} MB peak RSS, {b['wall']:.1f} s | {a['peak_mb']:.0f} MB, "
                f"{a['wall']:.1f} s | {verdict} |"
            )
        if pdf_mb:  # the whole mark, every layer, with the manifest placed by the library and streamed
            for how in ("library", "streamed"):
                dst = work / f"marked-{how}{ext}"
                rows[f"mark-{how}"] = run_child("--child", f"mark-{how}", "--src", str(src), "--dst", str(dst), *keys)
                if how == "streamed":
                    rows["verify"] = run_child("--child", "verify", "--src", str(dst), *keys)
                dst.unlink()
            b, a = rows["mark-library"], rows["mark-streamed"]
            print(
                f"| mark (all layers) | {b['peak_mb']:.0f} MB peak RSS, {b['wall']:.1f} s ({b['state']}) | "
                f"{a['peak_mb']:.0f} MB, {a['wall']:.1f} s ({a['state']}) | |"
            )
            v = rows["verify"]
            print(f"| verify (marked, streamed) | | {v['peak_mb']:.0f} MB, {v['wall']:.1f} s | {v['state']} |")
        floor = rows["sign-streamed"]["floor_mb"]
        lib_on_ours, ours_on_lib = rows["cross-streamed"]["state"], rows["cross-library"]["state"]
        print(
            f"(import floor {floor:.0f} MB; the library's reader on the streamed output: {lib_on_ours}, "
            f"the streamed reader on the library's: {ours_on_lib})"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
