"""Data-hashed C2PA manifests kzlabel places itself (layers/c2pa_embed): a WAV (RIFF C2PA chunk), MP3 or FLAC (ID3
GEOB frame) is signed and read in a stream, its manifest validates in the c2pa Reader and in encypher-c2pa, exiftool
and ffprobe read the file without a warning, and the process's peak resident memory does not grow with the file (the
C2PA library held it whole: +2.9x its size)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import wave
from pathlib import Path

import encypher_c2pa
import numpy as np
import pytest

import kzlabel
from kzlabel import formats
from kzlabel.containers import riff
from kzlabel.io import Input, id3_end
from kzlabel.keys import Signer, TrustStore
from kzlabel.layers import c2pa as c2pa_layer
from kzlabel.layers import c2pa_embed

TOKEN = "eyJhbGciOiJFZERTQSJ9.eyJ4IjoxfQ.c2ln"
SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "samples"
WAV = formats.detect(Input(data=b"RIFF\0\0\0\0WAVEfmt ", name="x.wav"))
MP3 = formats.detect(Input(path=SAMPLES / "song.mp3"))
FLAC = formats.detect(Input(path=SAMPLES / "loop.flac"))
MIMES = {"wav": "audio/wav", "mp3": "audio/mpeg", "flac": "audio/flac"}


def _wav(path: Path, seconds: float, rate: int = 44100) -> Path:
    """A 16-bit stereo WAV of noise, written a second at a time (never held whole)."""
    rng = np.random.default_rng(5)
    second = rng.integers(-3000, 3000, (rate, 2), dtype=np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        for i in range(int(seconds)):
            w.writeframes(np.roll(second, i, axis=0).tobytes())
    return path


def _mp3(path: Path, copies: int) -> Path:
    """The sample MP3's ID3 tag and then its MPEG frames ``copies`` times (a long, playable MP3, made fast)."""
    data = (SAMPLES / "song.mp3").read_bytes()
    end = id3_end(data)
    with open(path, "wb") as fh:
        fh.write(data[:end])
        for _ in range(copies):
            fh.write(data[end:])
    return path


def _peak_rss_growth(fn) -> tuple[int, object]:
    """(bytes the process's peak RSS grew while ``fn`` ran, its result): VmHWM reset first (Linux clear_refs 5),
    so native allocations (the C2PA library's) count too, unlike tracemalloc."""

    def hwm() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM")

    def rss() -> int:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    Path("/proc/self/clear_refs").write_text("5")
    before = rss()
    result = fn()
    return hwm() - before, result


def _sign(src: Path, dst: Path, signer: Signer, handler=WAV) -> bytes:
    return c2pa_embed.sign(src, dst, handler.c2pa_reserve, signer, label_claims={"token": TOKEN}, title=src.name)


def _independent(out: Path, mime: str, trust: TrustStore, seconds: float | None = None, probe: bool = True) -> None:
    """The c2pa Reader and encypher-c2pa validate the manifest (no failure, no warning); exiftool and ffprobe read
    the file without a warning (``probe=False``: not ffprobe, for a file whose audio this test made up)."""
    data = out.read_bytes()
    lib = c2pa_layer.read(io.BytesIO(data), mime, trust)
    assert lib.state == "trusted" and "assertion.dataHash.match" in lib.codes and lib.label_token == TOKEN
    enc = dict(encypher_c2pa.verify(data, mime, trust_pem=trust.pem(), no_default_trust=True, telemetry=False))
    assert (enc["integrity"], enc["signature"], enc["hard_binding"], enc["validation_state"]) == (
        "valid",
        "valid",
        "match",
        "Trusted",
    )
    assert not enc["validation_results"]["failure"]
    exif = subprocess.run(
        ["exiftool", "-j", "-a", "-G1", "-warning", "-error", str(out)], capture_output=True, text=True, check=True
    )
    assert json.loads(exif.stdout)[0].keys() <= {"SourceFile", "ExifTool:ExifToolVersion"}, exif.stdout
    if not probe:
        return
    ran = subprocess.run(
        ["ffprobe", "-v", "warning", "-show_format", "-of", "json", str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert ran.stderr == ""
    if seconds is not None:
        assert float(json.loads(ran.stdout)["format"]["duration"]) == pytest.approx(seconds, rel=0.01)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["wav", "mp3"])
def test_signed_and_read_in_a_stream_in_flat_memory(
    tmp_path: Path, signer: Signer, trust: TrustStore, kind: str
) -> None:
    """Tens of MB signed and read back: the peak RSS grows by well under a tenth of the file (the C2PA library's own
    embedding grew by ~3x the file, bench_sign_memory.py), and the result validates everywhere."""
    handler = WAV if kind == "wav" else MP3
    small = _wav(tmp_path / "small.wav", 2) if kind == "wav" else _mp3(tmp_path / "small.mp3", 1)
    big = _wav(tmp_path / "big.wav", 300) if kind == "wav" else _mp3(tmp_path / "big.mp3", 200)  # 53 MB, 39 MB
    _sign(small, tmp_path / f"warm.{kind}", signer, handler)  # the library and the signer ready beforehand
    out = tmp_path / f"out.{kind}"
    grown, store = _peak_rss_growth(lambda: _sign(big, out, signer, handler))
    size = out.stat().st_size
    assert size > 35e6 and grown < 0.1 * size, (grown, size)
    with open(out, "rb") as fh:
        slot = handler.c2pa_slot(fh)
        assert slot is not None
        grown, rep = _peak_rss_growth(lambda: c2pa_embed.read(fh, slot, trust))
    assert grown < 0.1 * size, (grown, size)
    assert rep.state == "trusted" and "assertion.dataHash.match" in rep.codes
    assert rep.label_token == TOKEN and rep.actions == ["c2pa.created"]
    assert out.read_bytes()[slot.at : slot.at + slot.size] == store
    if kind == "wav":  # the manifest's chunk is the last, its exclusion the whole chunk but the pad byte
        assert slot.exclusion[0] + slot.exclusion[1] + (slot.size & 1) == size
    # these load the whole file: after the measurement. ffprobe says of the repeated MP3 frames that the duration is
    # estimated (no Xing header for the whole): the MP3 sample's output is checked with ffprobe below
    _independent(out, MIMES[kind], trust, 300, probe=kind == "wav")


@pytest.mark.parametrize("kind", ["mp3", "flac"])
def test_id3_geob_slot_validates_and_reads_the_librarys_own(
    tmp_path: Path, signer: Signer, trust: TrustStore, kind: str
) -> None:
    """MP3 and FLAC carry the manifest in a leading ID3 tag's GEOB frame: kzlabel's (with padding, so exiftool does
    not warn as it does for the library's) validates everywhere, and the library's own is found and read."""
    handler, src = (MP3, SAMPLES / "song.mp3") if kind == "mp3" else (FLAC, SAMPLES / "loop.flac")
    out = tmp_path / f"out.{kind}"
    _sign(src, out, signer, handler)
    _independent(out, MIMES[kind], trust)
    again = tmp_path / f"again.{kind}"
    _sign(out, again, signer, handler)  # the old frame is replaced: one C2PA frame
    assert again.read_bytes().count(b"c2pa manifest store") == 1
    lib = tmp_path / f"lib.{kind}"
    lib.write_bytes(c2pa_layer.sign(src.read_bytes(), MIMES[kind], signer, label_claims={"token": TOKEN}))
    with open(lib, "rb") as fh:
        slot = handler.c2pa_slot(fh)
        assert slot is not None
        rep = c2pa_embed.read(fh, slot, trust)
    assert rep.state == "trusted" and rep.label_token == TOKEN
    with open(src, "rb") as fh:
        assert handler.c2pa_slot(fh) is None


def test_one_changed_sample_breaks_the_streamed_hash_as_the_library_sees_it(
    tmp_path: Path, signer: Signer, trust: TrustStore
) -> None:
    out = tmp_path / "out.wav"
    _sign(_wav(tmp_path / "in.wav", 3), out, signer)
    data = bytearray(out.read_bytes())
    data[5000] ^= 1  # one sample bit, outside the manifest's chunk
    bad = tmp_path / "bad.wav"
    bad.write_bytes(data)
    with open(bad, "rb") as fh:
        slot = WAV.c2pa_slot(fh)
        assert slot is not None
        ours = c2pa_embed.read(fh, slot, trust)
    lib = c2pa_layer.read(bytes(data), "audio/wav", trust)
    assert "assertion.dataHash.mismatch" in ours.codes and ours.state == "invalid"
    assert "assertion.dataHash.mismatch" in lib.codes and lib.state == "invalid"
    assert c2pa_layer.only_binding_broken(ours.codes)  # the signature itself still validates


def test_re_signing_replaces_the_chunk_and_a_wav_without_one_has_no_slot(tmp_path: Path, signer: Signer) -> None:
    src = _wav(tmp_path / "in.wav", 1)
    with open(src, "rb") as fh:
        assert WAV.c2pa_slot(fh) is None
    once, twice = tmp_path / "once.wav", tmp_path / "twice.wav"
    _sign(src, once, signer)
    _sign(once, twice, signer)  # a placeholder replaces the old chunk: one C2PA chunk, the file grows by nothing
    assert [c.kind for c in riff.chunks(twice.read_bytes())] == [c.kind for c in riff.chunks(once.read_bytes())]
    assert [c.kind for c in riff.chunks(twice.read_bytes())].count(b"C2PA") == 1
    assert abs(twice.stat().st_size - once.stat().st_size) < 64  # only the store's own size may differ a little
    assert c2pa_layer.read(twice.read_bytes(), "audio/wav").ok


def test_file_hash_skips_exactly_the_exclusions(tmp_path: Path) -> None:
    import hashlib

    data = os.urandom(3 * (1 << 20) + 17)
    excl = [(10, 5), (1 << 20, (1 << 20) + 3)]
    want = hashlib.sha256(data[:10] + data[15 : 1 << 20] + data[(2 << 20) + 3 :]).digest()
    assert c2pa_embed.file_hash(io.BytesIO(data), excl) == want
    assert c2pa_embed.file_hash(io.BytesIO(data), []) == hashlib.sha256(data).digest()


@pytest.mark.slow
def test_labeler_signs_a_wav_over_the_c2pa_limit_in_a_stream(tmp_path: Path, signer: Signer, trust: TrustStore) -> None:
    """The library's size limit no longer applies to WAV: signed and verified (read back) data-hashed."""
    src = _wav(tmp_path / "in.wav", 2)
    lab = kzlabel.Labeler(
        signer,
        owner="ACME LLP",
        system="Gen",
        trust=trust,
        limits=kzlabel.Limits(max_c2pa_bytes=1000),
        layers=["metadata", "c2pa"],
    )
    res = lab.mark(src, tmp_path / "out.wav")
    assert "c2pa" in res.layers and "c2pa" not in res.skipped
    report = lab.verify(tmp_path / "out.wav")
    line = report.layer("c2pa")
    assert line is not None and line.status == kzlabel.Status.TRUSTED
    assert c2pa_layer.read((tmp_path / "out.wav").read_bytes(), "audio/wav", trust).state == "trusted"


def test_a_manifest_the_slot_walker_cannot_see_is_still_read_by_the_library(
    tmp_path: Path, signer: Signer, trust: TrustStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Within the library's size limit a file whose slot kzlabel does not find (a tag layout its walker does not
    walk) is read by the C2PA library as before; above the limit the container's structure is taken at its word."""
    out = tmp_path / "lib.mp3"
    out.write_bytes(
        c2pa_layer.sign((SAMPLES / "song.mp3").read_bytes(), "audio/mpeg", signer, label_claims={"token": TOKEN})
    )
    monkeypatch.setattr(type(MP3), "c2pa_slot", lambda self, content: None)
    line = kzlabel.Labeler(trust=trust).verify(out).layer("c2pa")
    assert line is not None and line.status == kzlabel.Status.TRUSTED
    small = kzlabel.Labeler(trust=trust, limits=kzlabel.Limits(max_c2pa_bytes=1000))
    line = small.verify(out).layer("c2pa")
    assert line is not None and line.status == kzlabel.Status.ABSENT and "slot" in line.detail


@pytest.mark.slow
def test_re_marking_a_signed_wav_keeps_its_manifest_as_ingredient(
    tmp_path: Path, signer: Signer, trust: TrustStore
) -> None:
    """An input that carries a manifest in its slot keeps it as the parentOf ingredient, read from the slot (no
    library buffering), so the C2PA limit does not apply to it either (tests/test_c2pa_remark.py compares readers)."""
    first = tmp_path / "first.wav"
    lab = kzlabel.Labeler(signer, owner="ACME LLP", system="Gen", trust=trust, layers=["metadata", "c2pa"])
    lab.mark(_wav(tmp_path / "in.wav", 2), first)
    again = lab.mark(first, tmp_path / "again.wav")
    assert "c2pa" in again.layers
    line = lab.verify(tmp_path / "again.wav").layer("c2pa")
    assert line is not None and line.status == kzlabel.Status.TRUSTED
    assert line.data["actions"][0] == "c2pa.opened" and line.data["ingredients"][0]["has_manifest"]
    small = kzlabel.Labeler(
        signer,
        owner="ACME LLP",
        system="Gen",
        trust=trust,
        layers=["metadata", "c2pa"],
        limits=kzlabel.Limits(max_c2pa_bytes=1000),
    )
    over = small.mark(first, tmp_path / "over.wav")
    assert "c2pa" in over.layers and "c2pa" not in over.skipped
    line = small.verify(tmp_path / "over.wav").layer("c2pa")
    assert line is not None and line.status == kzlabel.Status.TRUSTED and line.data["actions"][0] == "c2pa.opened"


def test_a_truncated_manifest_chunk_is_reported_not_raised(tmp_path: Path, signer: Signer, trust: TrustStore) -> None:
    """A WAV cut inside its C2PA chunk has no slot to walk to: verify reports it (no manifest validates) rather
    than refusing the file."""
    out = tmp_path / "out.wav"
    _sign(_wav(tmp_path / "in.wav", 1), out, signer)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(out.read_bytes()[:-100])
    with open(cut, "rb") as fh, pytest.raises(kzlabel.errors.CorruptInput):
        WAV.c2pa_slot(fh)
    line = kzlabel.Labeler(trust=trust, layers=["c2pa"]).verify(cut).layer("c2pa")
    assert line is not None and line.status not in (kzlabel.Status.TRUSTED, kzlabel.Status.VALID)


PDF = formats.detect(Input(path=SAMPLES / "report.pdf"))


def _big_pdf(path: Path, mb: int) -> Path:
    """A one-page PDF whose content stream is ``mb`` MB of PDF whitespace (written a MB at a time), classic xref."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] /Contents 4 0 R >>",
    ]
    with open(path, "wb") as fh:
        fh.write(b"%PDF-1.4\n")
        offsets = []
        for n, body in enumerate(objects, 1):
            offsets.append(fh.tell())
            fh.write(b"%d 0 obj\n%s\nendobj\n" % (n, body))
        offsets.append(fh.tell())
        fh.write(b"4 0 obj\n<< /Length %d >>\nstream\n" % (mb << 20))
        for _ in range(mb):
            fh.write(b" " * (1 << 20))
        fh.write(b"\nendstream\nendobj\n")
        xref = fh.tell()
        fh.write(b"xref\n0 5\n0000000000 65535 f \n" + b"".join(b"%010d 00000 n \n" % o for o in offsets))
        fh.write(b"trailer\n<< /Size 5 /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % xref)
    return path


@pytest.mark.slow
def test_pdf_signed_in_an_incremental_update_in_flat_memory(tmp_path: Path, signer: Signer, trust: TrustStore) -> None:
    """A PDF gets the manifest as an embedded file in an incremental update after its own bytes (unchanged), signed
    and read in flat memory, valid in the c2pa Reader, encypher-c2pa and pypdf, no exiftool warning."""
    import pypdf

    small, big = _big_pdf(tmp_path / "small.pdf", 1), _big_pdf(tmp_path / "big.pdf", 40)
    _sign(small, tmp_path / "warm.pdf", signer, PDF)
    out = tmp_path / "out.pdf"
    grown, store = _peak_rss_growth(lambda: _sign(big, out, signer, PDF))
    size = out.stat().st_size
    assert size > 40e6 and grown < 0.1 * size, (grown, size)
    with open(out, "rb") as fh:
        slot = PDF.c2pa_slot(fh)
        assert slot is not None
        grown, rep = _peak_rss_growth(lambda: c2pa_embed.read(fh, slot, trust))
    assert grown < 0.1 * size and rep.state == "trusted" and rep.label_token == TOKEN
    with open(big, "rb") as a, open(out, "rb") as b:  # the original bytes first, untouched
        assert a.read(1 << 20) == b.read(1 << 20)
    assert len(pypdf.PdfReader(out).pages) == 1
    _independent(out, "application/pdf", trust, probe=False)


def test_pdf_slot_both_xref_kinds_and_the_librarys_own(tmp_path: Path, signer: Signer, trust: TrustStore) -> None:
    """The sample's classic cross-reference table gets a table in the update; kzlabel's own marked PDF (its updates
    use xref streams) gets a stream; re-signing replaces the old specification in /AF; the library's rewritten PDF
    is found and read."""
    import pypdf

    src = SAMPLES / "report.pdf"
    classic = tmp_path / "classic.pdf"
    _sign(src, classic, signer, PDF)
    assert (
        classic.read_bytes().startswith(src.read_bytes())
        and b"\nxref\n" in classic.read_bytes()[len(src.read_bytes()) :]
    )
    _independent(classic, "application/pdf", trust, probe=False)
    again = tmp_path / "again.pdf"
    _sign(classic, again, signer, PDF)
    af = pypdf.PdfReader(again).trailer["/Root"]["/AF"]
    assert len(af) == 1  # the earlier manifest's specification left out
    _independent(again, "application/pdf", trust, probe=False)
    lab = kzlabel.Labeler(
        signer, owner="ACME LLP", system="Gen", trust=trust, limits=kzlabel.Limits(max_c2pa_bytes=1000)
    )
    res = lab.mark(src, tmp_path / "marked.pdf")
    assert "c2pa" in res.layers
    tail = (tmp_path / "marked.pdf").read_bytes()[-2000:]
    assert b"/Type/XRef" in tail and lab.verify(tmp_path / "marked.pdf").verdict == kzlabel.Verdict.COMPLIANT
    data = (tmp_path / "marked.pdf").read_bytes()
    assert c2pa_layer.read(data, "application/pdf", trust).state == "trusted"
    enc = dict(
        encypher_c2pa.verify(data, "application/pdf", trust_pem=trust.pem(), no_default_trust=True, telemetry=False)
    )
    assert (enc["hard_binding"], enc["validation_state"]) == ("match", "Trusted") and not enc["validation_results"][
        "failure"
    ]
    lib = tmp_path / "lib.pdf"
    lib.write_bytes(c2pa_layer.sign(src.read_bytes(), "application/pdf", signer, label_claims={"token": TOKEN}))
    with open(lib, "rb") as fh:
        slot = PDF.c2pa_slot(fh)
        assert slot is not None and c2pa_embed.read(fh, slot, trust).state == "trusted"
