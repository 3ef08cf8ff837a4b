"""Checks every registered handler must pass, over every bundled sample: detection by content, round trip,
identical output from path/bytes/file object, and only kzlabel errors out of truncated or garbled input."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kzlabel
from kzlabel import Label, Labeler, Verdict
from kzlabel.errors import KzlabelError
from kzlabel.formats import candidates, detect, handlers
from kzlabel.io import Input

SAMPLES = sorted((Path(__file__).resolve().parent.parent / "fixtures" / "samples").iterdir())


def test_public_api_is_exactly_all():
    public = {n for n in dir(kzlabel) if not n.startswith("_")} - {"annotations"}
    submodules = {"keys", "label", "pipeline", "registry", "report", "formats", "layers", "watermark", "cli", "rights",
                  "io", "media_av", "media_rate", "batch", "server", "distributed", "dataset", "containers", "fingerprint", "picture",
                  "recovery", "survival", "chat"}
    imported_for_typing = {"overload", "os", "IO"}
    assert set(kzlabel.__all__) - {"__version__"} == public - submodules - imported_for_typing
    assert kzlabel.__all__ == sorted(kzlabel.__all__)


def test_handler_ids_unique_and_text_handlers_present():
    ids = [h.id for h in handlers()]
    assert len(ids) == len(set(ids))
    assert {"text", "markdown", "html", "json"} <= set(ids)


def test_every_registered_format_has_a_sample():
    """The checks below run over the bundled samples, so a format registered without one would go unchecked."""
    by_content: dict[str, list[str]] = {}
    for sample in SAMPLES:
        data = sample.read_bytes()
        handler = detect(Input(data))  # no name at all: the content alone decides
        assert handler is detect(Input(data, sample.name)), f"{sample.name}: its name and its content disagree"
        by_content.setdefault(handler.id, []).append(sample.name)
    missing = [h.id for h in handlers() if h.id not in by_content]
    assert not missing, f"no sample in fixtures/samples/ is detected as {missing} (add one: fixtures/make_samples.py)"


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_detection_among_one_family_gives_the_full_contests_answer(sample):
    """detect() scores decisive magic (JPEG, PNG, GIF, TIFF, PDF) among one family only: it must pick what a contest
    among every registered handler picks, for the sample as it is and for the sample under a misleading name."""
    data = sample.read_bytes()
    for name in (sample.name, "upload.txt", None):
        inp = Input(data, name)
        best = max(handlers(), key=lambda h: h.score(inp.header, inp.name))  # max keeps the first of equals
        assert detect(inp) is best, f"{sample.name} as {name}"
        narrowed = candidates(inp.header)
        assert best in narrowed and [h for h in handlers() if h in narrowed] == narrowed  # same order as the contest


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_detection_by_content_not_name(sample):
    data = sample.read_bytes()
    by_name = detect(Input(data, sample.name))
    assert sample.suffix in by_name.extensions
    # A misleading name never makes a binary handler claim text, nor a text handler claim binary content.
    misnamed = detect(Input(data, "upload.png"))
    assert misnamed.is_text == by_name.is_text


# Audio and video samples go through PyAV (decode, re-encode): seconds per sample and check where the others take
# milliseconds, so those checks are in the slow set; the quick subset runs them over the images, text and PDF.
MEDIA = ("audio/", "video/")
BY_COST = [pytest.param(p, id=p.name, marks=pytest.mark.slow if detect(Input(path=p)).mime.startswith(MEDIA) else ())
           for p in SAMPLES]


@pytest.mark.parametrize("sample", BY_COST)
def test_path_bytes_fileobj_identical_and_compliant(sample, signer, trust):
    # C2PA manifests carry fresh UUIDs by design, so byte equality is checked without that layer
    lab = Labeler(signer, owner="O", system="S", trust=trust, layers=["visible", "watermark", "metadata"])
    label = Label.create(owner="O", system="S")
    a = lab.mark(sample, label=label).data
    b = lab.mark(sample.read_bytes(), name=sample.name, label=label).data
    with open(sample, "rb") as fh:
        c = lab.mark(io.BytesIO(fh.read()), name=sample.name, label=label).data
    assert a == b == c
    assert lab.verify(a, name=sample.name).verdict == Verdict.COMPLIANT
    full = Labeler(signer, owner="O", system="S", trust=trust)
    marked = full.mark(sample).data
    assert full.verify(marked, name=sample.name).verdict == Verdict.COMPLIANT
    # a labelled file is still detected as what it was (a FLAC behind the ID3 tag its C2PA manifest lives in)
    assert detect(Input(marked)).id == detect(Input(path=sample)).id


@pytest.mark.parametrize("sample", BY_COST)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.floats(min_value=0.0, max_value=1.0), junk=st.binary(max_size=16))
def test_truncated_or_garbled_input_raises_only_kzlabel_errors(sample, signer, cut, junk):
    data = sample.read_bytes()
    broken = data[: int(len(data) * cut)] + junk
    lab = Labeler(signer, owner="O", system="S")
    for call in (lambda: lab.mark(broken, name=sample.name), lambda: lab.verify(broken, name=sample.name)):
        try:
            call()
        except KzlabelError:
            pass


_MARKED: dict[str, bytes] = {}


@pytest.mark.parametrize("sample", BY_COST)
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flips=st.lists(st.tuples(st.floats(min_value=0.0, max_value=1.0, exclude_max=True), st.integers(0, 255)),
                      min_size=1, max_size=24))
def test_byte_flips_in_a_marked_file_raise_only_kzlabel_errors(sample, signer, flips):
    # A damaged upload is the input's fault: verify reports it or raises a kzlabel error, never a dependency's
    # exception (which the CLI would show as an internal error, exit 3)
    lab = Labeler(signer, owner="O", system="S")
    if sample.name not in _MARKED:
        _MARKED[sample.name] = lab.mark(sample, name=sample.name).data
    damaged = bytearray(_MARKED[sample.name])
    for where, value in flips:
        damaged[int(where * len(damaged))] = value
    try:
        lab.verify(bytes(damaged), name=sample.name)
    except KzlabelError:
        pass
