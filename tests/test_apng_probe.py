"""A labelled APNG is read by ffmpeg as an animation: its APNG probe walks the chunks in its first 2048-byte read and
gives up unless every chunk before the first IDAT lies within it (ffmpeg 5.1, libavformat/apngdec.c), and then the
PNG image pipe reads the file as one still picture. kzlabel puts the C2PA manifest (~6 kB) just before IEND, in a
slot it signs itself, and an XMP packet that would not fit there keeps the label's properties but not the signed label
(~4 kB), carried in a private chunk after the frames (docs/images.md, "Animated images")."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import c2pa
import encypher_c2pa
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageSequence

from kzlabel import Labeler, Status, Verdict
from kzlabel.containers import png
from kzlabel.errors import KzlabelError
from kzlabel.keys import Signer, TrustStore

ANIM = Path(__file__).resolve().parent.parent / "fixtures" / "animated" / "anim.png"
FRAMES = 5


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed (scripts/setup.sh installs it)")
    return path


def _ffprobe(path: Path) -> tuple[str, int]:
    """(codec, frames decoded) as ffprobe reads the file's one video stream."""
    out = subprocess.run(
        [_need("ffprobe"), "-v", "error", "-count_frames", "-show_entries", "stream=nb_read_frames,codec_name"]
        + ["-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    (stream,) = json.loads(out.stdout)["streams"]
    return stream["codec_name"], int(stream["nb_read_frames"])


def _animation(path: Path, mode: str, icc: bytes | None = None) -> Path:
    """A ``FRAMES``-frame 512×400 RGB APNG (a square moving over a gradient), or the bundled AVIF's frames as a
    paletted one."""
    y, x = np.mgrid[0:400, 0:512]
    base = np.stack([x % 256, y % 256, (x + y) // 4], axis=2).astype(np.uint8)
    frames: list[Image.Image] = []
    for i in range(FRAMES):
        im = Image.fromarray(base)
        ImageDraw.Draw(im).rectangle((20 + 30 * i, 60, 80 + 30 * i, 120), fill=(230, 40, 40))
        frames.append(im)
    if mode == "P":  # the bundled AVIF's frames (grain: a full palette, the mark kept) on one palette, dithered
        with Image.open(ANIM.with_name("anim.avif")) as im:
            frames = [frame.convert("RGB") for frame in ImageSequence.Iterator(im)]
        palette = frames[0].quantize(256)
        frames = [f.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG) for f in frames]
    extra = {"icc_profile": icc} if icc else {}
    frames[0].save(path, "PNG", save_all=True, append_images=frames[1:], duration=120, loop=0, **extra)
    return path


def _labeler(signer: Signer, trust: TrustStore) -> Labeler:
    return Labeler(signer, owner="Test Owner LLP", system="GenModel 2", trust=trust)


@pytest.fixture(scope="module")
def marked(tmp_path_factory: pytest.TempPathFactory, signer: Signer, trust: TrustStore) -> dict[str, Path]:
    """The bundled APNG and a generated RGB and paletted one, each marked with every layer."""
    tmp = tmp_path_factory.mktemp("apng")
    sources = {"anim": ANIM, "rgb": _animation(tmp / "rgb.png", "RGB"), "paletted": _animation(tmp / "p.png", "P")}
    out = {}
    for name, src in sources.items():
        dst = tmp / f"marked-{name}.png"
        res = _labeler(signer, trust).mark(src, dst)
        assert set(res.layers) == {"visible", "watermark", "metadata", "c2pa"}, res.skipped
        out[name] = dst
    return out


CASES = ["anim", "rgb", "paletted"]


@pytest.mark.parametrize("name", CASES)
def test_ffprobe_reads_the_labelled_apng_as_an_animation_with_every_frame(marked, name):
    src = ANIM if name == "anim" else marked[name].with_name({"rgb": "rgb.png", "paletted": "p.png"}[name])
    codec, frames = _ffprobe(src)
    assert codec == "apng" and frames > 1  # the unlabelled source, as a check on the check
    assert (b"PLTE" in {c.kind for c in png.chunks(marked[name].read_bytes())}) == (name == "paletted")
    assert _ffprobe(marked[name]) == ("apng", frames)


@pytest.mark.parametrize("name", CASES)
def test_the_manifest_is_last_and_the_signed_label_has_its_own_chunk(marked, name):
    data = marked[name].read_bytes()
    kinds = [c.kind for c in png.chunks(data)]
    assert kinds[-2:] == [png.C2PA, b"IEND"] and kinds.count(png.C2PA) == 1
    assert png.probe_fits(data)
    assert png.get_label(data)  # the XMP before IDAT would not fit with it
    assert b"kzlabel:Label" not in png.get_xmp(data)


@pytest.mark.parametrize("name", CASES)
def test_every_reader_accepts_the_labelled_apng(marked, name, trust):
    path = marked[name]
    report = Labeler(trust=trust).verify(path)
    assert report.verdict == Verdict.COMPLIANT, report.evidence
    meta = report.layer("metadata")
    assert meta is not None and meta.status == Status.TRUSTED and "PNG kzLb chunk" in meta.data["carriers"]
    settings = {"trust": {"trust_anchors": trust.pem()}, "verify": {"verify_trust": True}}
    with c2pa.Context.from_dict(settings) as ctx, open(path, "rb") as fh:
        reader = c2pa.Reader("image/png", fh, context=ctx)
        try:
            state = reader.get_validation_state()
            failures = (reader.get_validation_results() or {}).get("activeManifest", {}).get("failure") or []
        finally:
            reader.close()
    assert state == "Trusted" and not failures, failures
    ext = encypher_c2pa.verify(path.read_bytes(), "image/png", trust_pem=trust.pem(), no_default_trust=True)
    assert (ext["integrity"], ext["signature"], ext["hard_binding"]) == ("valid", "valid", "match"), ext
    out = subprocess.run(
        [_need("exiftool"), "-validate", "-warning", "-error", "-a", str(path)], capture_output=True, text=True
    ).stdout
    assert "Warning" not in out and "Error" not in out and ": OK" in out, out


def test_re_marking_a_labelled_apng_keeps_its_manifest_as_the_parent(marked, tmp_path, signer, trust):
    first = marked["rgb"]
    again = tmp_path / "again.png"
    res = _labeler(signer, trust).mark(first, again)
    assert "c2pa" in res.layers, res.skipped
    data = again.read_bytes()
    assert [c.kind for c in png.chunks(data)].count(png.C2PA) == 1
    with open(again, "rb") as fh:
        reader = c2pa.Reader("image/png", fh)
        try:
            store = json.loads(reader.json())
        finally:
            reader.close()
    active = store["manifests"][store["active_manifest"]]
    (parent,) = active["ingredients"]
    assert parent["relationship"] == "parentOf" and parent["active_manifest"] in store["manifests"]
    codes = {e["code"] for e in parent["validation_results"]["activeManifest"]["success"]}
    assert {"claimSignature.validated", "assertion.dataHash.match"} <= codes
    report = Labeler(trust=trust).verify(again)
    assert report.verdict == Verdict.COMPLIANT, report.evidence
    assert _ffprobe(again)[0] == "apng"


def test_a_flipped_byte_in_the_label_chunk_or_the_manifest_is_not_compliant(marked, tmp_path, trust):
    data = marked["rgb"].read_bytes()
    found = {c.kind: c for c in png.chunks(data)}
    for kind in (png.LABEL, png.C2PA):
        c = found[kind]
        bad = bytearray(data)
        bad[(c.start + c.end) // 2] ^= 0x04
        report = Labeler(trust=trust).verify(bytes(bad), name="flipped.png")
        assert report.verdict != Verdict.COMPLIANT, (kind, report.evidence)


def test_stripping_the_label_chunk_leaves_the_manifest_to_speak(marked, trust):
    """Without the label's own chunk the label is read from the manifest only (not the format's own carrier), and
    the manifest's hard binding, which covers every chunk but its own, says the container was edited: the pixels
    still match the signed label, so not tampered."""
    data = marked["rgb"].read_bytes()
    kept = [data[c.start : c.end] for c in png.chunks(data) if c.kind != png.LABEL]
    report = Labeler(trust=trust).verify(png.SIGNATURE + b"".join(kept), name="stripped.png")
    meta = report.layer("metadata")
    assert meta is not None and meta.data["carriers"] == ["c2pa:kz.kzlabel.label"], meta
    assert report.layer("c2pa").status == Status.UNBOUND and report.verdict != Verdict.TAMPERED, report.evidence


def test_an_apng_whose_header_cannot_fit_keeps_the_label_in_its_xmp(tmp_path, signer, trust):
    """A 3 kB ICC profile before IDAT: ffmpeg cannot probe it as an APNG whatever kzlabel does, so the XMP keeps
    the signed label (the layout of a still PNG's) and the file is labelled all the same."""
    icc = np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8).tobytes()  # stored deflated: random
    src = _animation(tmp_path / "icc.png", "RGB", icc=icc)
    dst = tmp_path / "marked.png"
    _labeler(signer, trust).mark(src, dst)
    data = dst.read_bytes()
    assert not png.probe_fits(data) and png.get_label(data) is None and b"kzlabel:Label" in png.get_xmp(data)
    assert Labeler(trust=trust).verify(dst).verdict == Verdict.COMPLIANT


def test_the_probe_budget_is_ffmpegs(tmp_path):
    """png.probe_fits says what ffmpeg does: an APNG whose IDAT header ends at byte 2048 is probed as one, a byte
    later it is read as a still PNG."""
    src = _animation(tmp_path / "src.png", "RGB").read_bytes()
    found = png.chunks(src)
    idat = next(i for i, c in enumerate(found) if c.kind == b"IDAT")
    head, rest = src[: found[idat].start], src[found[idat].start :]
    for pad, want in ((0, "apng"), (1, "png")):
        filler = png.chunk(b"tEXt", b"k\0" + b"x" * (png.PROBE - 8 - len(head) - 14 + pad))
        ihdr = found[0].end
        data = head[:ihdr] + filler + head[ihdr:] + rest  # text after IHDR, as a labelled file has its XMP
        assert png.probe_fits(data) == (want == "apng")
        path = tmp_path / f"pad{pad}.png"
        path.write_bytes(data)
        assert _ffprobe(path)[0] == want, pad


def _pixels(data: bytes) -> list[bytes] | None:
    """Every frame as Pillow composites it (None: it no longer decodes): the check independent of kzlabel's."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return [frame.convert("RGBA").tobytes() for frame in ImageSequence.Iterator(im)]
    except Exception:  # noqa: BLE001 - any decoder failure is "no longer decodes"
        return None


def test_byte_flips_over_every_chunk_are_reported_or_leave_the_frames_as_they_were(marked, trust):
    """One byte flipped in the middle of each chunk and at 24 seeded places: verify raises only kzlabel's errors,
    and says compliant only where every frame still decodes to the signed pixels."""
    data = marked["rgb"].read_bytes()
    frames = _pixels(data)
    rng = np.random.default_rng(7)
    spots = {(c.start + c.end) // 2 for c in png.chunks(data)} | {int(x) for x in rng.integers(8, len(data), 24)}
    lab = Labeler(trust=trust)
    for at in sorted(spots):
        bad = bytearray(data)
        bad[at] ^= 0x10
        try:
            report = lab.verify(bytes(bad), name="flipped.png")
        except KzlabelError:
            continue
        if report.verdict == Verdict.COMPLIANT:
            assert _pixels(bytes(bad)) == frames, (at, report.evidence)
