"""Image labelling speed: kzlabel mark/verify against the tools people use today, in the same run.

    python benchmarks/bench_image.py [--count 20] [--size 1600x1200]

Peers, each doing only its own part of the job on the same files:
* c2pa-python alone: ``Builder.sign`` of a minimal ``c2pa.created`` manifest with the same certificate chain, and
  ``Reader`` + validation for verify;
* exiftool: writing ``XMP-iptcExt:DigitalSourceType`` (one process per file, as pipelines call it;
  and one ``-stay_open``-free batch call over the whole folder), and reading them back.
kzlabel is timed with every layer (visible, watermark, re-encode at the source quality, XMP/EXIF, C2PA) and with the
metadata layers only (the same work as exiftool + c2pa-python together). Images: textured synthetic "photos"
(smoothed noise, edges, grain) saved as JPEG q90. Ratios are peer time / kzlabel time (> 1: kzlabel faster).
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from kzlabel import Labeler, Signer, TrustStore
from kzlabel.keys import generate
from kzlabel.layers import c2pa as c2pa_layer


def photo(seed: int, w: int, h: int) -> bytes:
    rng = np.random.default_rng(seed)
    base = ndimage.gaussian_filter(rng.random((h // 4, w // 4, 3)) * 255, (2, 2, 0))
    big = np.asarray(Image.fromarray(base.astype(np.uint8)).resize((w, h), Image.Resampling.BICUBIC), np.float32)
    edges = (np.indices((h, w)).sum(axis=0) // (50 + seed % 30) % 2 * 35)[..., None]
    img = np.clip(big + edges + rng.normal(0, 5, (h, w, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def per_file(fn, files: list[Path]) -> float:
    start = time.perf_counter()
    for f in files:
        fn(f)
    return (time.perf_counter() - start) / len(files)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=20)
    ap.add_argument("--size", default="1600x1200")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    import c2pa

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        generate(d / "keys")
        signer = Signer.load(d / "keys")
        trust = TrustStore.load([d / "keys"])
        src = d / "src"
        src.mkdir()
        files = []
        for i in range(args.count):
            f = src / f"img{i:03d}.jpg"
            f.write_bytes(photo(i, w, h))
            files.append(f)
        for sub in ("all", "meta", "c2pa", "exif"):
            (d / sub).mkdir()

        full = Labeler(signer, owner="Bench", system="Bench", trust=trust)
        meta = Labeler(signer, owner="Bench", system="Bench", trust=trust, layers=["metadata", "c2pa"])
        full.mark(files[0], d / "warm.jpg")  # imports, font, caches
        t_full = per_file(lambda f: full.mark(f, d / "all" / f.name), files)
        t_meta = per_file(lambda f: meta.mark(f, d / "meta" / f.name), files)

        manifest = json.dumps({
            "claim_generator_info": [{"name": "bench", "version": "1"}],
            "assertions": [{"label": "c2pa.actions.v2", "data": {"actions": [{
                "action": "c2pa.created",
                "digitalSourceType": "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"}]}}],
        })
        c2pa_signer = signer.c2pa_signer()

        def c2pa_sign(f: Path) -> None:
            with c2pa.Builder(manifest) as builder, open(f, "rb") as fin, open(d / "c2pa" / f.name, "wb") as fout:
                builder.sign(c2pa_signer, "image/jpeg", fin, fout)

        t_c2pa = per_file(c2pa_sign, files)
        exif_args = ["-XMP-iptcExt:DigitalSourceType=http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"]

        def exif_write(f: Path) -> None:
            subprocess.run(["exiftool", "-q", *exif_args, "-o", str(d / "exif" / f.name), str(f)], check=True)

        t_exif = per_file(exif_write, files)
        start = time.perf_counter()
        subprocess.run(["exiftool", "-q", *exif_args, "-o", str(d / "exifbatch") + "/", str(src)], check=True)
        t_exif_batch = (time.perf_counter() - start) / len(files)

        marked = sorted((d / "all").iterdir())
        t_verify = per_file(lambda f: full.verify(f), marked)
        t_reader = per_file(lambda f: c2pa_layer.read(f.read_bytes(), "image/jpeg", trust), sorted((d / "c2pa").iterdir()))
        t_exif_read = per_file(lambda f: subprocess.run(["exiftool", "-j", "-XMP-iptcExt:all", str(f)], check=True,
                                                        capture_output=True), sorted((d / "exif").iterdir()))
        shutil.rmtree(d / "all")

    mp = w * h / 1e6
    print(f"{args.count} JPEG images {w}×{h} ({mp:.2f} MP), ms per image on this machine\n")
    print("| task | tool | ms/image | ratio peer/kzlabel |")
    print("|---|---|---|---|")
    rows = [
        ("mark, all four layers", "kzlabel", t_full, None),
        ("mark, metadata + C2PA", "kzlabel", t_meta, None),
        ("sign a C2PA manifest", "c2pa-python alone", t_c2pa, t_meta),
        ("write IPTC XMP", "exiftool, one process per file", t_exif, t_meta),
        ("write IPTC XMP", "exiftool, one call for the folder", t_exif_batch, t_meta),
        ("verify: C2PA + XMP + label JWS + watermark search + warning region", "kzlabel", t_verify, None),
        ("read + validate C2PA", "c2pa-python Reader alone", t_reader, t_verify),
        ("read IPTC XMP", "exiftool, one process per file", t_exif_read, t_verify),
    ]
    for task, tool, t, ref in rows:
        ratio = f"{t / ref:.2f}" if ref else "—"
        print(f"| {task} | {tool} | {t * 1000:.1f} | {ratio} |")
    print(f"\nkzlabel mark, all layers: {t_full * 1000 / mp:.1f} ms per megapixel")


if __name__ == "__main__":
    main()
