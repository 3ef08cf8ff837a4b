"""Byte flips in every format's marked sample (issue 21): verify raises a kzlabel error, or says ``tampered``, or keeps
a verdict that claims the label binds the content only where the content, decoded independently, is as it was
(fixtures/flips.py has the decoders and the outcomes; benchmarks/bench_byteflip.py the wide sweep and its figures).
Never an exception outside kzlabel.errors: the CLI would show that as an internal error (exit 3)."""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kzlabel import Labeler, Verdict
from kzlabel.errors import KzlabelError
from kzlabel.formats import detect, family
from kzlabel.io import Input

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
import flips  # noqa: E402

SAMPLES = sorted((Path(__file__).resolve().parents[1] / "fixtures" / "samples").iterdir())

# Formats whose flips can still change the content under an unchanged verdict: kept out of the property until the gap
# is closed (measured by benchmarks/bench_byteflip.py; docs/label-format.md, "What a changed byte can leave unchanged").
# Not skipped: not run, so the list is the record of what the property does not yet hold for. Empty since kz-video-2
# binds every frame (MP4, MOV, MKV and WebM were here: their label bound 8 sampled frames).
PENDING: dict[str, str] = {}


def _format(sample: Path) -> str:
    return detect(Input(path=sample)).id


CHECKED = [p for p in SAMPLES if _format(p) not in PENDING]
# examples per sample (quick run, slow run): an audio sample takes 0.2-0.5 s a flip (verify decodes it whole, and so
# does the independent check), text, PDF and WebP milliseconds to 0.1 s
EXAMPLES = {"audio": (2, 20), "video": (2, 20)}
CHEAP = (12, 100)


@pytest.fixture(scope="session")
def marked(signer, trust) -> Callable[[Path], flips.Marked]:
    """Each sample marked once per test session with the session's keys, as verify sees it."""
    lab = Labeler(signer, owner="Test Owner LLP", system="GenModel 2", trust=trust)
    cache: dict[str, flips.Marked] = {}

    def get(sample: Path) -> flips.Marked:
        if sample.name not in cache:
            res = lab.mark(sample)
            handler = detect(Input(path=sample))
            report = lab.verify(res.data, name=sample.name, sidecar=res.c2pa_sidecar)
            assert report.verdict == Verdict.COMPLIANT, str(report)
            cache[sample.name] = flips.Marked.of(
                sample.name, handler.id, family(handler), res.data, res.c2pa_sidecar, report
            )
        return cache[sample.name]

    return get


def _flip() -> st.SearchStrategy[tuple[float, int, int, bool]]:
    """(where as a fraction of the file, XOR byte, length, truncate): mostly single bytes, some runs and cuts."""
    where = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)
    xor = st.integers(1, 255)
    single = st.tuples(where, xor, st.just(1), st.just(False))
    run = st.tuples(where, xor, st.integers(2, 64), st.just(False))
    cut = st.tuples(where, st.just(0), st.just(0), st.just(True))
    return st.one_of(single, single, single, run, cut)


def _check(lab: Labeler, m: flips.Marked, where: float, xor: int, length: int, truncate: bool) -> None:
    at = int(where * len(m.data))
    flip = flips.Flip(max(at, 1), truncate=True) if truncate else flips.Flip(at, xor, length)
    kind, detail = flips.outcome(
        m, flips.apply(m.data, flip), lambda d: lab.verify(d, name=m.name, sidecar=m.sidecar), KzlabelError, catch=False
    )
    assert kind != "CHANGED", f"{m.name}, {flip.describe()}: {detail}"


def test_every_pending_format_has_a_sample() -> None:
    """A format leaves the property only by name, with its gap; a name no sample has would be a stale exemption."""
    assert set(PENDING) <= {_format(p) for p in SAMPLES}, "PENDING names a format no sample has: drop it"


def _sample(name: str) -> Path:
    return next(p for p in SAMPLES if p.name == name)


def _edited(m: flips.Marked, old: bytes, new: bytes) -> tuple[str, str]:
    assert m.data.count(old) >= 1, old
    return flips.content_digests(m.format, m.family, m.data.replace(old, new, 1), m.warning)


@pytest.mark.parametrize(
    "name,content_edit,carrier_edit",
    [
        ("story.txt", (b"smith", b"smyth"), None),
        ("answer.md", (b"largest city", b"largest town"), (b"ai_generated: true", b"ai_generated: True")),
        (
            "page.html",
            (b"+12", b"+13"),
            (b'name="aigc" content="{&quot;Label', b'name="aigc" content="{&quot;Lbel'),
        ),
        ("response.json", (b'"model": "demo"', b'"model": "dema"'), (b'"AIGC":{"Label"', b'"AIGC":{"Lbel"')),
    ],
)
def test_the_independent_text_check_sees_the_text_and_not_the_carrier(name, content_edit, carrier_edit, marked):
    """The property is only as strong as its content check: a changed character of the text changes the digest, an
    unsigned carrier field of kzlabel's does not."""
    m = marked(_sample(name))
    assert _edited(m, *content_edit) != m.content
    if carrier_edit:
        assert _edited(m, *carrier_edit) == m.content


def test_the_independent_media_checks_see_samples_pixels_and_pages(marked) -> None:
    from PIL import Image
    from pypdf import PdfReader, PdfWriter
    from pypdf.generic import ContentStream

    from kzlabel.containers import riff

    wav = marked(_sample("voice.wav"))
    data = next(c for c in riff.chunks(wav.data) if c.kind == b"data")
    body_sample = data.body + data.size // 2 // 2 * 2 + 1
    tone_sample = data.body + 101  # 50 samples in: the notice tone, not the bound body
    for at, body_changes in ((body_sample, True), (tone_sample, False)):
        whole, body = flips.content_digests(wav.format, wav.family, flips.apply(wav.data, flips.Flip(at)), wav.warning)
        assert whole != wav.content[0] and (body != wav.content[1]) is body_changes

    webp = marked(_sample("poster.webp"))
    im = Image.open(io.BytesIO(webp.data)).convert("RGBA")
    for change, differs in ((False, False), (True, True)):  # re-encoded losslessly: other bytes, the same pixels
        if change:
            im.putpixel((im.width // 2, im.height // 3), (1, 2, 3, 255))
        buf = io.BytesIO()
        im.save(buf, format="WEBP", lossless=True)
        assert (flips.content_digests("webp", "image", buf.getvalue(), webp.warning) != webp.content) is differs

    pdf = marked(_sample("report.pdf"))
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf.data)))
    writer.add_metadata({"/Title": "renamed"})  # not page content
    same, drawn = io.BytesIO(), io.BytesIO()
    writer.write(same)
    page = writer.pages[-1]
    ops = ContentStream(page.get_contents(), writer)
    ops.set_data(ops.get_data() + b"\n0 0 1 rg 10 10 20 20 re f\n")  # a blue square drawn on the last page
    page.replace_contents(ops)
    writer.write(drawn)
    assert flips.content_digests("pdf", "pdf", same.getvalue(), {}) == pdf.content
    assert flips.content_digests("pdf", "pdf", drawn.getvalue(), {}) != pdf.content


def _property(lab: Labeler, m: flips.Marked, examples: int) -> None:
    @settings(max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(change=_flip())
    def holds(change: tuple[float, int, int, bool]) -> None:
        _check(lab, m, *change)

    holds()


@pytest.mark.parametrize("sample", CHECKED, ids=lambda p: p.name)
def test_a_flip_is_reported_or_leaves_the_content_as_it_was(sample, marked, trust) -> None:
    m = marked(sample)
    _property(Labeler(trust=trust), m, EXAMPLES.get(m.family, CHEAP)[0])


@pytest.mark.slow
@pytest.mark.parametrize("sample", CHECKED, ids=lambda p: p.name)
def test_many_flips_are_reported_or_leave_the_content_as_it_was(sample, marked, trust) -> None:
    m = marked(sample)
    _property(Labeler(trust=trust), m, EXAMPLES.get(m.family, CHEAP)[1])


# --- the flips the sweep found passing as compliant, and the rule that now catches them -------------------------------
def test_a_flipped_sample_in_a_wav_is_located_by_its_segment(marked, trust) -> None:
    """One PCM sample's high byte flipped in the body of a marked WAV: a click the band-energy fingerprint cannot
    see. Every other audible segment still decodes exactly as signed, so no re-encode made this file: the segment
    digests (kz-audio-2) locate the change, whatever the C2PA manifest says."""
    from kzlabel.containers import riff

    m = marked(SAMPLES[[p.name for p in SAMPLES].index("voice.wav")])
    data_chunk = next(c for c in riff.chunks(m.data) if c.kind == b"data")
    at = data_chunk.body + data_chunk.size // 2 // 2 * 2 + 1  # the high byte of a 16-bit sample mid-body
    report = Labeler(trust=trust).verify(flips.apply(m.data, flips.Flip(at, 0x40)), name=m.name)
    assert "(1 of " in report.layer("metadata").data["content"], str(report)
    assert "so this is no re-encode" in report.layer("metadata").data["content"]
    assert report.verdict == Verdict.TAMPERED


def test_a_flipped_sample_in_every_segment_of_a_wav_with_its_manifest_is_tampered(marked, trust) -> None:
    """A low byte flipped every 2,000 bytes of a marked WAV's samples: no segment decodes exactly as signed (as after
    a re-encode), and the clicks are far below what the band-energy fingerprint sees ("the same sound, re-encoded").
    The C2PA manifest is still there, its hash broken: no re-encoder wrote this file (they drop the manifest), so
    close-to-signed content is content changed in place, not a container edit."""
    from kzlabel.containers import riff

    m = marked(SAMPLES[[p.name for p in SAMPLES].index("voice.wav")])
    data_chunk = next(c for c in riff.chunks(m.data) if c.kind == b"data")
    damaged = m.data
    for at in range(data_chunk.body, data_chunk.body + data_chunk.size - 1, 2000):  # even: a sample's low byte
        damaged = flips.apply(damaged, flips.Flip(at, 0x40))
    report = Labeler(trust=trust).verify(damaged, name=m.name)
    assert report.layer("metadata").data["content"] == "the same sound, re-encoded since signing"
    assert report.layer("c2pa").status.value == "invalid", str(report)
    assert "changed in place" in report.layer("c2pa").detail
    assert report.verdict == Verdict.TAMPERED


def test_a_cut_ogg_with_its_sidecar_manifest_is_tampered(marked, trust) -> None:
    """The last Ogg page cut off drops under half a second at the end, which the fingerprint takes as "an excerpt";
    the sidecar manifest's hash says the bytes changed, so the cut is reported."""
    m = marked(SAMPLES[[p.name for p in SAMPLES].index("podcast.ogg")])
    cut = m.data[: m.data.rfind(b"OggS")]  # everything but the last page
    report = Labeler(trust=trust).verify(cut, name=m.name, sidecar=m.sidecar)
    content = report.layer("metadata").data["content"]
    assert "an excerpt 0.0–" in content and "of sound (exactly as signed up to there)" in content, content
    assert report.layer("metadata").data["excerpt"]["start_s"] == 0.0
    assert report.verdict == Verdict.TAMPERED, str(report)


def test_a_container_edit_over_exact_samples_stays_unbound(marked, trust) -> None:
    """The other side of the rule: bytes outside the content changed (a tag value), the samples exactly as signed:
    the manifest's hash is broken, the verdict stays (a container edit)."""
    m = marked(SAMPLES[[p.name for p in SAMPLES].index("voice.wav")])
    at = m.data.find(b"GenModel 2")  # the AISystemUsed tag: unsigned, outside the samples
    assert at > 0
    report = Labeler(trust=trust).verify(flips.apply(m.data, flips.Flip(at, 0x01)), name=m.name)
    assert report.layer("metadata").data["content"] == "samples exactly as signed"
    assert report.layer("c2pa").status.value == "unbound", str(report)
    assert report.verdict == Verdict.COMPLIANT


def test_a_flipped_codec_delay_in_a_matroska_header_is_not_an_exact_match(marked, trust) -> None:
    """The Opus track's CodecDelay (Matroska element 0x56AA) changed: every packet as signed, but the decoder skips
    another number of priming samples, so the soundtrack decodes to other samples. The sweep found this passing as
    "coded data unchanged"; the packets digest now takes each stream's decoding setup and each packet's timing and
    side data, so it is a close match only — under the sidecar manifest whose hash broke, tampered."""
    m = marked(_sample("trailer.mkv"))
    at = m.data.find(b"\x56\xaa\x83")  # CodecDelay, a 3-byte value
    assert at > 0
    damaged = flips.apply(m.data, flips.Flip(at + 4, 0xC0))
    lab = Labeler(trust=trust)
    report = lab.verify(damaged, name=m.name, sidecar=m.sidecar)
    content = report.layer("metadata").data["content"]
    assert "frames exactly as signed (the coded video is unchanged)" in content, content
    assert "soundtrack exactly as signed" not in content, content
    assert report.verdict == Verdict.TAMPERED, str(report)
    assert lab.verify(m.data, name=m.name, sidecar=m.sidecar).verdict == Verdict.COMPLIANT


@pytest.mark.slow
def test_a_track_added_beside_the_signed_ones_is_not_an_exact_match(marked, trust, tmp_path) -> None:
    """A remux that adds a second copy of the soundtrack: every signed frame and sample is there, but the file offers
    a player other streams, so the match is not exact — with the sidecar manifest (its hash broken) tampered; without
    it the label's verdict stands and the evidence names the streams."""
    import subprocess

    m = marked(_sample("trailer.mkv"))
    src, out = tmp_path / "in.mkv", tmp_path / "out.mkv"
    src.write_bytes(m.data)
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", src, "-map", "0:v", "-map", "0:a", "-map", "0:a", "-c", "copy",
         "-map_metadata", "0", out],
        check=True,
    )  # fmt: skip
    lab = Labeler(trust=trust)
    with_sidecar = lab.verify(out.read_bytes(), name=m.name, sidecar=m.sidecar)
    assert with_sidecar.verdict == Verdict.TAMPERED, str(with_sidecar)
    alone = lab.verify(out.read_bytes(), name=m.name)
    content = alone.layer("metadata").data["content"]
    assert "the streams differ from the signed ones (video:h264 audio:opus audio:opus" in content, content
    assert alone.verdict == Verdict.COMPLIANT, str(alone)
