"""Audio, video and PDF labels bind the content a person hears, sees or reads (docs/label-format.md, "Audio, video and
PDF binding"): one test per row of the table there. Hiding or removing the C2PA manifest and then editing the content
is tampered in every format; a container edit or a benign re-encode of unchanged content keeps the verdict the other
layers earn; a labelled file that no longer decodes is tampered, not an input error. Also the text case of a label
moved out of its carrier."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pypdf
import pytest

from kzlabel import Labeler, TrustStore, Verdict
from kzlabel.fingerprint import SoundPrint, match_sound, sound_print
from kzlabel.io import id3_end

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
import audio_signals  # noqa: E402

AUDIO = {  # ext → ffmpeg encoder arguments
    "wav": ["-c:a", "pcm_s16le"],
    "mp3": ["-c:a", "libmp3lame", "-b:a", "192k"],
    "flac": ["-c:a", "flac"],
    "m4a": ["-c:a", "aac", "-b:a", "160k"],
    "ogg": ["-c:a", "libopus", "-b:a", "96k"],
}
VIDEO = {  # ext → (video encoder arguments, audio encoder arguments)
    "mp4": (["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"], ["-c:a", "aac"]),
    "mov": (["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"], ["-c:a", "aac"]),
    "mkv": (["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"], ["-c:a", "libopus"]),
    "webm": (["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8"], ["-c:a", "libopus"]),
}
SIDECAR = {"ogg", "mkv", "webm"}  # manifests the C2PA library cannot embed: a sidecar file beside the output
MUTE = ["-af", "volume=enable='between(t,4,5)':volume=0"]  # one second of the content muted
PATCH = ["-vf", "drawbox=x=iw*0.4:y=ih*0.2:w=iw*0.25:h=ih*0.3:color=red:t=fill"]  # a patch painted over the picture


def ffmpeg(*args: object, data: bytes | None = None) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *map(str, args)], input=data, check=True, timeout=300)


@pytest.fixture(scope="module")
def labeler(signer, trust: TrustStore) -> Labeler:
    return Labeler(signer, owner="O", system="S", trust=trust)


def _audio(tmp: Path, ext: str, seconds: float = 9.0) -> Path:
    x = audio_signals.music(seconds, 44100, seed=5)
    src = tmp / f"src.{ext}"
    ffmpeg("-f", "f32le", "-ar", 44100, "-ac", 2, "-i", "-", *AUDIO[ext], src, data=x.astype(np.float32).tobytes())
    return src


def _video(tmp: Path, ext: str) -> Path:
    vargs, aargs = VIDEO[ext]
    src = tmp / f"src.{ext}"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=480x272:rate=25", "-f", "lavfi", "-i",
           "sine=frequency=440:sample_rate=48000", "-t", "2.4", *vargs, *aargs, "-shortest", src)
    return src


def _pdf() -> bytes:
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=(595, 842), pageCompression=0)
    for page in (1, 2):
        c.setFont("Helvetica", 14)
        c.drawString(72, 720, f"Body text of page {page}")
        c.rect(72, 500, 200, 100, fill=1)
        c.showPage()
    c.save()
    return buf.getvalue()


def _mark(labeler: Labeler, src: Path, tmp: Path) -> Path:
    dst = tmp / f"marked{src.suffix}"
    result = labeler.mark(src, dst)
    assert {"metadata", "c2pa"} <= set(result.layers), result.skipped
    assert result.label.binding is not None
    return dst


def _hide_manifest(path: Path) -> None:
    """Make the C2PA manifest unfindable by flipping one byte of its box / chunk / frame id (or, for a sidecar, by
    deleting it)."""
    sidecar = Path(str(path) + ".c2pa")
    if sidecar.exists():
        sidecar.unlink()
        return
    data = bytearray(path.read_bytes())
    ext = path.suffix[1:]
    if ext == "wav":
        at = data.index(b"C2PA")
    elif ext in ("mp3", "flac"):
        at = data.index(b"GEOB", 0, id3_end(bytes(data[:10])) or len(data))
    elif ext == "pdf":  # two changes: its relationship name, and its stream's header (kzlabel finds it by that too)
        head = data.index(b"/Type/EmbeddedFile/Subtype/application#2Fc2pa")
        data[head + 3] ^= 0x01
        at = data.index(b"/C2PA_Manifest") + 1
    else:  # ISO-BMFF: the uuid box holding the manifest
        at = data.rindex(b"uuid", 0, data.index(b"manifest\x00"))
    data[at + 3] ^= 0x01
    path.write_bytes(bytes(data))


def _copy_mp4_tags(src: Path, dst: Path) -> None:
    """Carry an M4A's iTunes tags over, as an editor that keeps the file's tags would."""
    from mutagen.mp4 import MP4

    before, after = MP4(src), MP4(dst)
    if after.tags is None:
        after.add_tags()
    for key, value in (before.tags or {}).items():
        after.tags[key] = value
    after.save()


def _edit_audio(path: Path, out: Path) -> None:
    """One second of the content muted, the tags kept; the audio re-encoded (the manifest, if any, is gone)."""
    ext = path.suffix[1:]
    if ext == "wav":  # in place: the samples of the data chunk, every other chunk as it was
        data = bytearray(path.read_bytes())
        at = data.index(b"data") + 8
        start = at + 4 * 44100 * 4  # 4 s into the file, 16-bit stereo
        data[start : start + 4 * 44100] = bytes(4 * 44100)
        out.write_bytes(bytes(data))
        return
    if ext == "mp3":  # the ID3 tag kept byte for byte, the MPEG frames replaced by the edited audio
        tag = path.read_bytes()[: id3_end(path.read_bytes())]
        frames = out.with_suffix(".frames.mp3")
        ffmpeg("-i", path, *MUTE, "-map_metadata", "-1", "-id3v2_version", "0", "-write_xing", "0",
               *AUDIO["mp3"], frames)
        out.write_bytes(tag + frames.read_bytes())
        return
    ffmpeg("-i", path, *MUTE, "-map_metadata", "0", *AUDIO[ext], out)
    if ext == "m4a":
        _copy_mp4_tags(path, out)


def _edit_video(path: Path, out: Path) -> None:
    """A patch painted over the picture, the container tags kept (the embedded manifest is gone)."""
    ext = path.suffix[1:]
    vargs, _ = VIDEO[ext]
    flags = ["-movflags", "use_metadata_tags"] if ext in ("mp4", "mov") else []
    ffmpeg("-i", path, *PATCH, *vargs, "-c:a", "copy", "-map_metadata", "0", *flags, out)


def _edit_pdf(data: bytes) -> bytes:
    edited = data.replace(b"Body text of page 2", b"Body text of page 9")
    assert edited != data
    return edited


# --- the binding itself ------------------------------------------------------------------------------------------------
def test_the_sound_fingerprint_takes_re_encodes_cuts_and_level_but_not_an_edit() -> None:
    x = audio_signals.music(8.0, 44100, seed=2)

    def printed(y: np.ndarray, rate: int = 44100) -> np.ndarray:
        p = SoundPrint(rate, y.shape[1])
        for i in range(0, len(y), 30_000):  # fed in blocks, as decoders hand them over
            p.add(y[i : i + 30_000])
        return p.powers()

    signer = SoundPrint(44100, 2)
    signer.add(x)
    signed = sound_print(signer, 0.0, len(x) / 44100)
    rng = np.random.default_rng(0)
    assert match_sound(printed(x), signed, 0.0, 0.0).detail == "the same sound, re-encoded since signing"
    noisy = x + rng.normal(0, 1e-3, x.shape).astype(np.float32)  # coding noise ~ -60 dB
    assert match_sound(printed(noisy), signed, 0.0, 0.0).same is True
    softer = match_sound(printed(x * 0.7), signed, 0.0, 0.0)  # loudness normalisation
    assert softer.same is True and "level changed by -3.1 dB" in softer.detail
    cut = match_sound(printed(x[int(1.5 * 44100) :]), signed, 0.0, 0.0)  # the opening cut off
    assert cut.same is True and "excerpt" in cut.detail
    muted = x.copy()
    muted[4 * 44100 : int(4.5 * 44100)] = 0
    changed = match_sound(printed(muted), signed, 0.0, 0.0)
    assert changed.same is False and "changed" in changed.detail
    appended = np.concatenate([x, x[: 3 * 44100]])
    assert match_sound(printed(appended), signed, 0.0, 0.0).same is False
    shortened = match_sound(printed(x[: 6 * 44100]), signed, 0.0, 0.0)  # the end cut off: content removed
    assert shortened.same is False and "missing" in shortened.detail


def test_an_audio_label_binds_its_samples_exactly(labeler: Labeler, tmp_path: Path) -> None:
    dst = _mark(labeler, _audio(tmp_path, "wav"), tmp_path)
    report = labeler.verify(dst)
    assert report.verdict == Verdict.COMPLIANT, str(report)
    binding = report.label.binding
    assert binding["alg"] == "kz-audio-2" and binding["sound"]["alg"] == "kz-sound-1"
    assert binding["start_s"] == pytest.approx(1.4)  # the tone at the start is the notice, outside the body
    assert report.layer("metadata").data["content"] == "samples exactly as signed"


# --- manifest hidden or removed, then the content edited: tampered in every format ---------------------------------------
@pytest.mark.parametrize("ext", [pytest.param(e, marks=() if e in ("wav", "mp3") else pytest.mark.slow) for e in AUDIO])
def test_audio_manifest_hidden_then_edited_is_tampered(labeler: Labeler, ext: str, tmp_path: Path) -> None:
    dst = _mark(labeler, _audio(tmp_path, ext), tmp_path)
    _hide_manifest(dst)
    hidden = labeler.verify(dst)
    assert hidden.layer("c2pa").status.value == "absent", str(hidden)
    assert hidden.verdict == Verdict.COMPLIANT, str(hidden)  # hiding alone changes nothing a listener hears
    edited = tmp_path / f"edited.{ext}"
    _edit_audio(dst, edited)
    report = labeler.verify(edited)
    assert report.layer("c2pa").status.value == "absent", str(report)
    assert report.layer("metadata").status.value == "invalid", str(report)
    assert re.search(r"(sound|samples) changed since signing", report.layer("metadata").detail)
    assert report.verdict == Verdict.TAMPERED


@pytest.mark.slow
@pytest.mark.parametrize("ext", list(VIDEO))
def test_video_manifest_hidden_then_edited_is_tampered(labeler: Labeler, ext: str, tmp_path: Path) -> None:
    dst = _mark(labeler, _video(tmp_path, ext), tmp_path)
    _hide_manifest(dst)
    hidden = labeler.verify(dst)
    assert hidden.layer("c2pa").status.value == "absent" and hidden.verdict == Verdict.COMPLIANT, str(hidden)
    edited = tmp_path / f"edited.{ext}"
    _edit_video(dst, edited)
    report = labeler.verify(edited)
    assert report.layer("metadata").status.value == "invalid", str(report)
    assert "picture changed since signing" in report.layer("metadata").detail
    assert report.verdict == Verdict.TAMPERED


def test_pdf_manifest_hidden_then_edited_is_tampered(labeler: Labeler, tmp_path: Path) -> None:
    src = tmp_path / "src.pdf"
    src.write_bytes(_pdf())
    dst = _mark(labeler, src, tmp_path)
    _hide_manifest(dst)
    hidden = labeler.verify(dst)
    assert hidden.layer("c2pa").status.value == "absent" and hidden.verdict == Verdict.COMPLIANT, str(hidden)
    report = labeler.verify(_edit_pdf(dst.read_bytes()), name="x.pdf")
    assert report.layer("metadata").status.value == "invalid", str(report)
    assert "page 2 changed since signing" in report.layer("metadata").detail
    assert report.verdict == Verdict.TAMPERED


# --- exiftool -all=: a container edit, the content intact -----------------------------------------------------------------
@pytest.mark.parametrize("kind", ["m4a", "mp4", "pdf"])
def test_exiftool_stripping_is_a_container_edit(labeler: Labeler, kind: str, tmp_path: Path) -> None:
    exiftool = shutil.which("exiftool")
    assert exiftool, "exiftool is installed by scripts/setup.sh"
    if kind == "pdf":
        src = tmp_path / "src.pdf"
        src.write_bytes(_pdf())
    else:
        src = _audio(tmp_path, kind) if kind == "m4a" else _video(tmp_path, kind)
    dst = _mark(labeler, src, tmp_path)
    subprocess.run([exiftool, "-q", "-q", "-overwrite_original", "-all=", str(dst)], check=True, timeout=60)
    report = labeler.verify(dst)
    assert report.layer("c2pa").status.value == "unbound", str(report)
    assert "hard binding no longer matches" in report.layer("c2pa").detail
    assert report.verdict == Verdict.COMPLIANT


# --- a benign re-encode / re-save of unchanged content -----------------------------------------------------------------
def test_an_mp3_re_encode_with_tags_kept_is_not_tampering(labeler: Labeler, tmp_path: Path) -> None:
    dst = _mark(labeler, _audio(tmp_path, "mp3"), tmp_path)
    again = tmp_path / "again.mp3"
    ffmpeg("-i", dst, "-map_metadata", "0", "-c:a", "libmp3lame", "-b:a", "128k", again)
    report = labeler.verify(again)
    assert report.verdict == Verdict.COMPLIANT, str(report)
    assert report.layer("metadata").data["content"] == "the same sound, re-encoded since signing"


@pytest.mark.slow
def test_a_video_re_encode_with_tags_kept_is_not_tampering(labeler: Labeler, tmp_path: Path) -> None:
    dst = _mark(labeler, _video(tmp_path, "webm"), tmp_path)
    again = tmp_path / "again.webm"
    ffmpeg("-i", dst, "-map_metadata", "0", "-c:v", "libvpx-vp9", "-crf", "36", "-b:v", "0", "-deadline", "realtime",
           "-cpu-used", "8", "-c:a", "libopus", "-b:a", "64k", again)
    report = labeler.verify(again)
    assert report.verdict == Verdict.COMPLIANT, str(report)
    assert "re-encoded since signing, the same frames" in report.layer("metadata").data["content"]
    assert "soundtrack: the same sound" in report.layer("metadata").data["content"]


def test_a_pdf_rewritten_by_another_writer_is_not_tampering(labeler: Labeler, tmp_path: Path) -> None:
    src = tmp_path / "src.pdf"
    src.write_bytes(_pdf())
    dst = _mark(labeler, src, tmp_path)
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(dst))  # every object renumbered, streams recompressed
    for page in writer.pages:
        page.compress_content_streams(level=1)
    buf = io.BytesIO()
    writer.write(buf)
    assert buf.getvalue() != dst.read_bytes()
    report = labeler.verify(buf.getvalue(), name="x.pdf")
    assert report.verdict == Verdict.COMPLIANT, str(report)
    assert report.layer("c2pa").status.value == "unbound"
    assert report.layer("metadata").data["content"].startswith("page content exactly as signed")


# --- a content edit, every other byte kept -------------------------------------------------------------------------------
def test_a_wav_sample_edit_is_tampering(labeler: Labeler, tmp_path: Path) -> None:
    dst = _mark(labeler, _audio(tmp_path, "wav"), tmp_path)
    edited = tmp_path / "edited.wav"
    _edit_audio(dst, edited)
    report = labeler.verify(edited)
    assert report.layer("c2pa").status.value == "invalid"
    assert report.layer("metadata").status.value == "invalid"
    assert report.verdict == Verdict.TAMPERED


@pytest.mark.slow
def test_a_webm_picture_edit_beside_its_sidecar_is_tampering(labeler: Labeler, tmp_path: Path) -> None:
    dst = _mark(labeler, _video(tmp_path, "webm"), tmp_path)
    edited = tmp_path / "marked.edited.webm"
    _edit_video(dst, edited)
    shutil.copy(str(dst) + ".c2pa", str(edited) + ".c2pa")
    report = labeler.verify(edited)
    assert report.layer("c2pa").status.value == "invalid", str(report)
    assert report.layer("metadata").status.value == "invalid"
    assert report.verdict == Verdict.TAMPERED


def test_a_pdf_page_edit_is_tampering(labeler: Labeler, tmp_path: Path) -> None:
    src = tmp_path / "src.pdf"
    src.write_bytes(_pdf())
    dst = _mark(labeler, src, tmp_path)
    report = labeler.verify(_edit_pdf(dst.read_bytes()), name="x.pdf")
    assert report.layer("c2pa").status.value == "invalid"
    assert "page 2 changed since signing" in report.layer("metadata").detail
    assert report.verdict == Verdict.TAMPERED


# --- damaged containers that still show their label ------------------------------------------------------------------------
@pytest.mark.parametrize("ext", ["wav", "mp3"])
def test_labelled_audio_that_no_longer_decodes_is_tampered_not_an_input_error(
    labeler: Labeler, ext: str, tmp_path: Path
) -> None:
    dst = _mark(labeler, _audio(tmp_path, ext), tmp_path)
    data = bytearray(dst.read_bytes())
    if ext == "wav":  # the format chunk's codec id made unknown
        at = data.index(b"fmt ") + 8
        data[at : at + 2] = b"\x99\x99"
    else:  # every MPEG frame after the ID3 tag overwritten
        end = id3_end(bytes(data))
        data[end:] = bytes(len(data) - end)
    report = labeler.verify(bytes(data), name=f"x.{ext}")
    assert report.verdict == Verdict.TAMPERED, str(report)
    assert "no longer decodes" in report.layer("metadata").detail


# --- text: the label moved out of its carrier ------------------------------------------------------------------------------
HTML = b"<!DOCTYPE html>\n<html>\n<head>\n<title>t</title>\n</head>\n<body>\n<p>generated words</p>\n</body>\n</html>\n"
MD = b"# Report\n\nSome *markdown* text written by a model.\n"
JSON = b'{"answer": "generated words"}\n'


@pytest.mark.parametrize(
    ("name", "source", "pattern", "renamed", "before", "after"),
    [
        ("x.html", HTML, 'name="kzlabel"', 'name="kzlabelx"', "generated words", "edited words"),
        ("x.md", MD, "\nkzlabel:", "\nkzlabelx:", "written by a model", "written by a person"),
        ("x.json", JSON, '"kzlabel":', '"kzlabelx":', "generated words", "edited words"),
        ("x.json", JSON, '"ai_label":', '"ai_labelx":', "generated words", "edited words"),
    ],
    ids=["html-meta-name", "markdown-key", "json-field", "json-object"],
)
def test_a_label_under_a_renamed_key_still_binds_the_text(labeler, name, source, pattern, renamed, before, after):
    marked = labeler.mark(source, name=name).data.decode("utf-8")
    moved = marked.replace(pattern, renamed, 1)
    assert moved != marked
    report = labeler.verify(moved.encode(), name=name)
    assert report.verdict == Verdict.COMPLIANT, str(report)  # the same text, its label under another name
    assert "not kzlabel's" in report.layer("metadata").data["carrier"]
    edited = labeler.verify(moved.replace(before, after).encode(), name=name)
    assert edited.layer("metadata").status.value == "invalid", str(edited)
    assert edited.verdict == Verdict.TAMPERED


def test_a_token_in_an_element_that_is_not_a_meta_is_not_a_label(labeler) -> None:
    """One flipped byte turns ``<meta name=`` into ``<meta!name=`` (an element named ``meta!name="kzlabel"`` to any
    HTML parser, not a <meta>), or eats a quote (the token becomes an attribute's name, not the content): the token
    is not read as a label (a byte-flip sweep found it was)."""
    marked = labeler.mark(HTML, name="x.html").data.decode("utf-8")
    assert labeler.verify(marked.encode(), name="x.html").label is not None
    for old, broken in [
        ('<meta name="kzlabel"', '<meta!name="kzlabel"'),
        ('<meta name="kzlabel"', '<metax name="kzlabel"'),
        ('name="kzlabel" content="', 'name="kzlabel# content="'),  # the token is now an attribute's name
    ]:
        moved = marked.replace(old, broken, 1)
        assert moved != marked
        report = labeler.verify(moved.replace("generated words", "edited words").encode(), name="x.html")
        assert report.label is None and report.layer("metadata").status.value == "found", str(report)


def test_a_quoted_token_in_the_text_is_content_not_a_label(labeler) -> None:
    other = labeler.mark(MD, name="x.md").data.decode("utf-8")
    token = re.search(r"^kzlabel: (\S+)$", other, re.M).group(1)
    quoting = f"# Notes\n\nAn example label: `{token}`\n".encode()
    assert labeler.verify(quoting, name="notes.md").verdict == Verdict.UNLABELLED
