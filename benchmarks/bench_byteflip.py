"""Byte flips in every marked sample: what verify reports, and whether a verdict that stayed had a reason to.

Each bundled sample (fixtures/samples/) is marked once with every layer; then ``--flips`` random single bytes are
flipped (XOR with a random non-zero byte, anywhere in the file), plus ``--runs`` runs of 2–64 bytes and ``--cuts``
truncations, and each damaged file is verified (with its sidecar manifest where the type takes one). Outcomes
(fixtures/flips.py): ``tampered``; ``typed_error`` (a kzlabel error: unusable input); ``weaker`` (a layer no longer
found: machine_readable_only, stripped, warning_only, unlabelled); ``same_content`` (the verdict stayed and the
content, decoded independently, is as it was: the flip hit bytes no binding covers); ``CHANGED`` (the verdict stayed
but the content changed or no longer decodes: a violation); ``foreign_exception`` (anything not a kzlabel error: a
bug, exit 3 in the CLI).

Run ``python benchmarks/bench_byteflip.py`` (``--quick``: 10 flips, 2 runs, 2 cuts per sample; ``--only photo.jpg,...``;
``--seed``; ``--hidden``: the C2PA manifest of each marked file hidden first, so a media file's content binding
answers alone). Prints one row per sample (``other verdicts``: the verdicts other than the sample's own among the
flips that did not give tampered or an error), where the flips that kept the verdict landed (a container's chunk,
box or segment, a PDF object, a text's line), then each violation and foreign exception with the flip behind it.
"""

from __future__ import annotations

import argparse
import io
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "fixtures"))
import flips  # noqa: E402

from kzlabel import Labeler, Signer, TrustStore  # noqa: E402
from kzlabel.containers import bmff, jpeg, png, riff  # noqa: E402
from kzlabel.errors import KzlabelError  # noqa: E402
from kzlabel.formats import detect, family  # noqa: E402
from kzlabel.io import Input, id3_end  # noqa: E402
from kzlabel.keys import generate  # noqa: E402

SAMPLES = sorted((ROOT / "fixtures" / "samples").iterdir())


C2PA_UUID = bytes.fromhex("d8fec3d61b0e483c92975828877ec481")  # the ISO-BMFF uuid box type of a C2PA manifest


def hide_manifest(format_id: str, data: bytes) -> bytes:
    """``data`` with its embedded C2PA manifest hidden from readers (what is left when a flip lands in the manifest's
    name as well, or a tool drops it): an ISO-BMFF ``uuid`` box renamed ``free``, WAV's ``C2PA`` chunk and an ID3
    ``GEOB`` frame renamed, a PDF's ``/C2PA_Manifest`` relationship (and kzlabel's manifest stream header) altered.
    Ogg and Matroska carry it in a sidecar: the caller leaves that out."""
    out = bytearray(data)
    if format_id in ("mp4", "mov", "m4a"):
        at = data.find(b"uuid" + C2PA_UUID)
        if at >= 0:
            out[at : at + 4] = b"free"
    elif format_id == "wav":
        for c in riff.chunks(data):
            if c.kind == b"C2PA":
                out[c.start : c.start + 4] = b"C2PX"
    elif format_id == "pdf":  # its file specification's relationship, and kzlabel's stream header (found by it too)
        for name in (b"/C2PA_Manifest", b"/Type/EmbeddedFile/Subtype/application#2Fc2pa"):
            at = data.rfind(name)
            if at >= 0:
                out[at + 4] ^= 0x01
    elif format_id in ("mp3", "flac"):
        end = id3_end(data[:16])
        at = data.find(b"GEOB", 0, end)
        while at >= 0:
            out[at : at + 4] = b"XEOB"
            at = data.find(b"GEOB", at + 4, end)
    return bytes(out)


def mark(lab: Labeler, sample: Path, hidden: bool = False) -> flips.Marked:
    res = lab.mark(sample)
    handler = detect(Input(path=sample))
    data, sidecar = res.data, res.c2pa_sidecar
    if hidden:
        data, sidecar = hide_manifest(handler.id, data), None
    report = lab.verify(data, name=sample.name, sidecar=sidecar)
    return flips.Marked.of(sample.name, handler.id, family(handler), data, sidecar, report)


def _pdf_objects(data: bytes) -> list[tuple[int, str]]:
    """(offset, kind) of every indirect object of a PDF, sorted: what a flip at an offset lands in."""
    import pypdf

    reader = pypdf.PdfReader(io.BytesIO(data), strict=False)
    out: list[tuple[int, str]] = []
    for gen, table in reader.xref.items():
        for num, offset in table.items():
            obj = reader.get_object(pypdf.generic.IndirectObject(num, gen, reader))
            kind = "object"
            if isinstance(obj, dict):
                if "/FontFile2" in obj or "/FontFile" in obj or "/FontFile3" in obj:
                    kind = "font descriptor"
                elif obj.get("/Type") in ("/Font", "/FontDescriptor"):
                    kind = "font"
                elif obj.get("/Subtype") == "/Image":
                    kind = "image XObject"
                elif obj.get("/Type") == "/Metadata":
                    kind = "XMP metadata"
                elif obj.get("/Type") == "/EmbeddedFile" or obj.get("/Subtype") == "/application#2Fc2pa":
                    kind = "C2PA manifest"
                elif obj.get("/Type") in ("/Page", "/Pages", "/Catalog"):
                    kind = str(obj["/Type"])[1:].lower()
                elif "/Length1" in obj:
                    kind = "font program"
                elif "/Length" in obj:
                    kind = "stream"
            out.append((offset, kind))
    return sorted(out)


_EBML_NAMES = {
    0x1A45DFA3: "EBML header",
    0x18538067: "Segment",
    0x114D9B74: "SeekHead",
    0x1549A966: "Info",
    0x1654AE6B: "Tracks",
    0x1F43B675: "Cluster",
    0x1C53BB6B: "Cues",
    0x1254C367: "Tags",
    0x1941A469: "Attachments",
    0x1043A770: "Chapters",
    0xEC: "Void",
    0xE7: "Timestamp",
    0xA3: "SimpleBlock",
    0xA0: "BlockGroup",
}


def _ebml_vint(data: bytes, pos: int, keep_marker: bool) -> tuple[int, int]:
    """(value, length) of the EBML variable-length integer at ``pos`` (an element id keeps its length marker)."""
    first = data[pos]
    length = next(i for i in range(8) if first & (0x80 >> i)) + 1
    value = first if keep_marker else first & (0xFF >> length)
    for b in data[pos + 1 : pos + length]:
        value = value << 8 | b
    return value, length


def _matroska(data: bytes, at: int) -> str:
    """The Matroska elements a flip at ``at`` lands in: a top-level one, then a Segment child, then a Cluster child
    (e.g. ``Segment/Cluster/SimpleBlock``); an element id or size field counts as the element's."""
    path: list[str] = []
    pos, end, depth = 0, len(data), 0
    while pos < end and depth < 3:
        ident, n = _ebml_vint(data, pos, True)
        size, m = _ebml_vint(data, pos + n, False)
        body = pos + n + m
        if pos <= at < min(body + size, end):
            path.append(_EBML_NAMES.get(ident, f"0x{ident:X}"))
            if at < body or ident not in (0x18538067, 0x1F43B675):
                break
            pos, end, depth = body, min(body + size, end), depth + 1
            continue
        pos = body + size
    return "/".join(path) or "-"


def region(marked: flips.Marked, at: int) -> str:
    """The part of the marked file a flip at ``at`` lands in: a container's chunk, box or segment, a PDF object's
    kind, a text's line (its first characters), or the ID3 tag of MP3/FLAC."""
    data = marked.data
    try:
        if marked.format == "pdf":
            objects = _pdf_objects(data)
            before = [kind for offset, kind in objects if offset <= at]
            return before[-1] if before and at < data.rfind(b"xref") else "xref/trailer"
        if marked.format == "png":
            return next((c.kind.decode() for c in png.chunks(data) if c.start <= at < c.end), "-")
        if marked.format in ("wav", "webp"):
            found = [c.kind.decode("latin-1") for c in riff.chunks(data) if c.start <= at < c.body + c.size + 1]
            return found[0] if found else "RIFF header"
        if marked.format == "jpeg":
            segs, scan = jpeg.segments(data)
            seg = next((f"FF{sg.marker:02X}" for sg in segs if sg.start <= at < sg.end), None)
            return seg or ("scan" if at >= scan else "-")
        if marked.format in ("mp4", "mov", "m4a", "avif", "heif"):
            return next(
                (b.kind.decode("latin-1") for b in bmff.boxes(data, 0, len(data)) if b.start <= at < b.end), "-"
            )
        if marked.format in ("mkv", "webm"):
            return _matroska(data, at)
        if marked.format in ("mp3", "flac"):
            return "ID3 tag" if at < id3_end(data[:16]) else "stream"
        if marked.family == "text":
            start = data.rfind(b"\n", 0, at) + 1
            return data[start : start + 24].decode("utf-8", "replace").strip() or "(blank line)"
    except Exception as exc:  # noqa: BLE001 - a label for the table only
        return f"? ({type(exc).__name__})"
    return "-"


def plan(size: int, rng: random.Random, n_flips: int, n_runs: int, n_cuts: int) -> list[flips.Flip]:
    out = [flips.Flip(rng.randrange(size), rng.randrange(1, 256)) for _ in range(n_flips)]
    for _ in range(n_runs):
        length = rng.randint(2, 64)
        out.append(flips.Flip(rng.randrange(max(size - length, 1)), rng.randrange(1, 256), length))
    out += [flips.Flip(rng.randrange(1, size), truncate=True) for _ in range(n_cuts)]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flips", type=int, default=100)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--cuts", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--only", default="")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--errors", action="store_true", help="also list the typed errors' messages per sample")
    ap.add_argument(
        "--hidden",
        action="store_true",
        help="hide each marked file's C2PA manifest first (media: the content binding alone; sidecars left out)",
    )
    args = ap.parse_args()
    if args.quick:
        args.flips, args.runs, args.cuts = 10, 2, 2
    only = set(filter(None, args.only.split(",")))
    keys = Path(tempfile.mkdtemp(prefix="kzflip-keys-"))
    generate(keys, organization="Bench Owner LLP")
    lab = Labeler(Signer.load(keys), owner="Bench Owner LLP", system="GenModel 2", trust=TrustStore.load([keys]))
    rng = random.Random(args.seed)
    header = "| sample | flips | " + " | ".join(flips.OUTCOMES) + " | other verdicts | ms/verify |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    notes: list[str] = []
    wheres: dict[str, str] = {}
    raised: dict[str, str] = {}
    totals: Counter[str] = Counter()
    for sample in SAMPLES:
        if only and sample.name not in only:
            continue
        marked = mark(lab, sample, args.hidden)
        counts: Counter[str] = Counter()
        weaker: Counter[str] = Counter()
        kept: Counter[str] = Counter()  # where the flips that kept the verdict landed
        errors: Counter[str] = Counter()
        spent = 0.0

        def verify(data: bytes, marked: flips.Marked = marked) -> object:
            return lab.verify(data, name=marked.name, sidecar=marked.sidecar)

        for flip in plan(len(marked.data), rng, args.flips, args.runs, args.cuts):
            t0 = time.perf_counter()
            kind, detail = flips.outcome(marked, flips.apply(marked.data, flip), verify, KzlabelError)
            spent += time.perf_counter() - t0
            counts[kind] += 1
            if kind in ("weaker", "same_content", "same_body") and detail != marked.verdict:
                weaker[detail] += 1
            if kind in ("same_content", "same_body") and not flip.truncate:
                kept[f"{region(marked, flip.at)}{' (warning)' if kind == 'same_body' else ''}"] += 1
            if kind == "typed_error":
                errors[detail.split(":", 2)[0] + ": " + detail.split(": ", 1)[-1].split(" (")[0][:90]] += 1
            if kind in ("CHANGED", "foreign_exception"):
                notes.append(f"{sample.name} {flip.describe()} [{region(marked, flip.at)}]: {kind}: {detail}")
        n = sum(counts.values())
        totals.update(counts)
        row = " | ".join(str(counts[k]) for k in flips.OUTCOMES)
        weak = ", ".join(f"{v} {k}" for k, v in sorted(weaker.items())) or "-"
        print(f"| {sample.name} | {n} | {row} | {weak} | {1000 * spent / n:.0f} |", flush=True)
        if kept:
            wheres[sample.name] = ", ".join(f"{k} {v}" for k, v in kept.most_common())
        if args.errors and errors:
            raised[sample.name] = "; ".join(f"{v}× {k}" for k, v in errors.most_common(4))
    print(f"| all | {sum(totals.values())} | " + " | ".join(str(totals[k]) for k in flips.OUTCOMES) + " | | |")
    print("\nWhere the flips that kept the verdict landed:")
    for name, where in wheres.items():
        print(f"- {name}: {where}")
    if raised:
        print("\nThe most frequent typed errors:")
    for name, what in raised.items():
        print(f"- {name}: {what}")
    if notes:
        print("\nViolations and foreign exceptions:")
    for line in notes:
        print(line)


if __name__ == "__main__":
    main()
