"""Text formats end to end: mark → verify verdicts, tamper and notice-removal, bad input, originals untouched."""

from __future__ import annotations

import io
import json
import os
import re

import pytest
import yaml

import kzlabel
from kzlabel import Labeler, Label, Verdict
from kzlabel.errors import CorruptInput, KzlabelError, LimitExceeded, UnsupportedFormat
from kzlabel.io import Limits

KAZ = "Қазақ әліпбиі: ә ғ қ ң ө ұ ү һ і — Ә Ғ Қ Ң Ө Ұ Ү Һ І"

SAMPLES = {
    "a.txt": f"Hello world.\n{KAZ}\nЭто текст.\n",
    "a.md": f"# Title\n\nSome *markdown* text.\n\n{KAZ}\n",
    "fm.md": "---\ntitle: Report\ntags: [a, b]\n---\n# Heading\n\nBody text.\n",
    "a.html": f"<!DOCTYPE html>\n<html lang=\"kk\">\n<head>\n<title>T</title>\n</head>\n<body>\n<p>{KAZ}</p>\n</body>\n</html>\n",
    "a.json": json.dumps({"answer": f"{KAZ}", "n": 3, "nested": {"x": [1, 2.5, None]}}, ensure_ascii=False, indent=2),
    "crlf.txt": "line one\r\nline two\r\n",
    "crlf.md": "---\r\ntitle: x\r\n---\r\n# H\r\n\r\ntext\r\n",
}
FORMATS = {"a.txt": "text", "a.md": "markdown", "fm.md": "markdown", "a.html": "html", "a.json": "json",
           "crlf.txt": "text", "crlf.md": "markdown"}


@pytest.fixture
def labeler(signer, trust):
    return Labeler(signer, owner="ТОО Тест", system="GenModel", system_version="1.0", trust=trust)


def _mark(labeler, name, text):
    return labeler.mark(text.encode(), name=name).data


@pytest.mark.parametrize("name", SAMPLES)
def test_round_trip_compliant_and_trusted(labeler, name):
    out = _mark(labeler, name, SAMPLES[name])
    report = labeler.verify(out, name=name)
    assert report.format == FORMATS[name]
    assert report.verdict == Verdict.COMPLIANT, str(report)
    assert report.layer("metadata").status.value == "trusted"
    assert report.label.owner == "ТОО Тест"
    assert "ЖИ" in out.decode() and "ИИ" in out.decode() and "AI" in out.decode()


@pytest.mark.parametrize("name", SAMPLES)
def test_untrusted_signer_is_reported_as_such(signer, other_trust, name):
    lab = Labeler(signer, owner="X", system="Y", trust=other_trust)
    report = lab.verify(_mark(lab, name, SAMPLES[name]), name=name)
    assert report.layer("metadata").status.value == "untrusted"
    assert report.verdict == Verdict.COMPLIANT  # valid mark + warning; trust is reported separately
    assert not report.trusted


EDITS = {"a.txt": ("Hello", "Jello"), "a.md": ("Some", "Sone"), "fm.md": ("Body", "Bods"),
         "a.html": ("<p>", "<p class=x>"), "a.json": ('"n": 3', '"n": 4'), "crlf.txt": ("line two", "line 2"),
         "crlf.md": ("\r\ntext", "\r\ntexts")}


@pytest.mark.parametrize("name", SAMPLES)
def test_any_edit_of_the_text_is_tampered(labeler, name):
    out = _mark(labeler, name, SAMPLES[name]).decode()
    old, new = EDITS[name]
    assert out.count(old) == 1
    report = labeler.verify(out.replace(old, new).encode(), name=name)
    assert report.verdict == Verdict.TAMPERED, str(report)
    assert report.layer("metadata").status.value == "invalid"


@pytest.mark.parametrize("name", SAMPLES)
def test_notice_removed_is_machine_readable_only(labeler, name):
    out = _mark(labeler, name, SAMPLES[name]).decode()
    if FORMATS[name] == "json":
        obj = json.loads(out)
        del obj["ai_label"]["notice"]
        stripped = json.dumps(obj, ensure_ascii=False)
    elif FORMATS[name] == "html":
        stripped = re.sub(r"<div data-kzlabel=\"warning\".*?</div>", "", out, flags=re.S)
    else:
        stripped = "".join(l for l in out.splitlines(keepends=True) if "⚠" not in l)
    assert stripped != out
    report = labeler.verify(stripped.encode(), name=name)
    assert report.verdict == Verdict.MACHINE_READABLE_ONLY, str(report)
    assert report.layer("visible").status.value == "absent"


@pytest.mark.parametrize("name", SAMPLES)
def test_unlabelled_input(labeler, name):
    report = labeler.verify(SAMPLES[name].encode(), name=name)
    assert report.verdict == Verdict.UNLABELLED
    assert report.label is None


@pytest.mark.parametrize("name", SAMPLES)
def test_marking_twice_replaces_not_stacks(labeler, name):
    once = _mark(labeler, name, SAMPLES[name])
    twice = _mark(labeler, name, once.decode()).decode()
    assert twice.count("Бұл мазмұнды") == 1
    assert len(re.findall(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", twice)) == 1
    assert labeler.verify(twice.encode(), name=name).verdict == Verdict.COMPLIANT


def test_plain_text_layout_and_end_position(signer, trust):
    lab = Labeler(signer, owner="O", system="S", trust=trust)
    out = lab.mark(b"body\n", name="x.txt").data.decode()
    lines = out.splitlines()
    assert lines[0].startswith("⚠ ") and lines[1] == "body" and lines[2].startswith("kzlabel: eyJ")
    end = Labeler(signer, owner="O", system="S", trust=trust, position="end")
    lines = end.mark(b"body", name="x.txt").data.decode().splitlines()
    assert lines[0] == "body" and lines[1].startswith("⚠ ") and lines[2].startswith("kzlabel: ")
    assert end.verify("\n".join(lines).encode(), name="x.txt").verdict == Verdict.COMPLIANT


def test_crlf_is_kept(labeler):
    out = _mark(labeler, "crlf.txt", SAMPLES["crlf.txt"])
    assert b"\n" not in out.replace(b"\r\n", b"")


def test_markdown_front_matter_merged(labeler):
    out = _mark(labeler, "fm.md", SAMPLES["fm.md"]).decode()
    fm = yaml.safe_load(out.split("---\n")[1])
    assert fm["title"] == "Report" and fm["tags"] == ["a", "b"]
    assert fm["kzlabel"].startswith("eyJ") and fm["ai_generated"] is True
    assert fm["digital_source_type"].endswith("trainedAlgorithmicMedia")
    assert json.loads(fm["aigc"])["Label"] == "1"
    body = out.split("---\n", 2)[2]
    assert body.startswith("> ⚠ ")


def test_html_rest_is_byte_identical_and_has_meta(signer, trust):
    lab = Labeler(signer, owner="O", system="S", trust=trust, training="notAllowed")
    src = SAMPLES["a.html"]
    out = lab.mark(src.encode(), name="a.html").data.decode()
    assert re.search(r'<meta name="tdm-reservation" content="1" data-kzlabel>', out)
    assert re.search(r'<meta name="kzlabel" content="eyJ', out)
    assert re.search(r'<body>\n<div data-kzlabel="warning"', out)
    restored = re.sub(r"\n<meta [^>]*data-kzlabel>", "", out)
    restored = re.sub(r"\n<div data-kzlabel=\"warning\".*?</div>", "", restored, flags=re.S)
    assert restored == src


def test_json_field_and_rest_kept(labeler):
    src = SAMPLES["a.json"]
    out = _mark(labeler, "a.json", src).decode()
    obj = json.loads(out)
    assert set(obj) == {"ai_label", "answer", "n", "nested"}
    field = obj["ai_label"]
    assert field["notice"]["kk"].startswith("Бұл") and field["kzlabel"].startswith("eyJ")
    assert list(field["AIGC"]) == ["Label", "ContentProducer", "ProduceID", "ReservedCode1",
                                   "ContentPropagator", "PropagateID", "ReservedCode2"]
    assert out.endswith(src[src.index('"answer"'):])  # everything after our field is the original text


@pytest.mark.parametrize("name,data", [("e.json", b"{}"), ("e.html", b"<html><body></body></html>")])
def test_empty_documents(labeler, name, data):
    out = labeler.mark(data, name=name).data
    assert labeler.verify(out, name=name).verdict == Verdict.COMPLIANT


@pytest.mark.parametrize("name", ["e.txt", "e.md", "e.json", "e.html", "e.png", None])
def test_an_empty_file_is_refused_whatever_its_name(labeler, name):
    """A 0-byte file holds no content to label (a 0-byte .json was once marked as plain text) and no label to find."""
    for run in (labeler.mark, labeler.verify):
        with pytest.raises(CorruptInput, match="empty file"):
            run(b"", name=name)


def test_huge_line(labeler):
    text = ("ә" * 2_000_000 + "\n").encode()
    out = labeler.mark(text, name="big.txt").data
    assert labeler.verify(out, name="big.txt").verdict == Verdict.COMPLIANT
    assert labeler.verify(out.replace("әәә".encode(), "әәа".encode(), 1), name="big.txt").verdict == Verdict.TAMPERED


@pytest.mark.parametrize(
    "data,name,error",
    [
        (bytes(range(256)) * 20, "x.txt", UnsupportedFormat),
        (b"caf\xe9 au lait\n", "x.txt", CorruptInput),
        (b"<!DOCTYPE html><html><body><p>cut here</p><di", "x.html", CorruptInput),
        (b"<!DOCTYPE html><html><body><p>no end", "x.html", CorruptInput),
        (b'{"a": 1,', "x.json", CorruptInput),
        (b'{"a": [1, 2}', None, CorruptInput),
        (b"---\nkey: [unclosed\n---\n# x\n", "x.md", CorruptInput),
        (b"", "x.png", CorruptInput),
    ],
)
def test_bad_input_raises_typed_errors(labeler, data, name, error):
    with pytest.raises(error) as info:
        labeler.mark(data, name=name)
    assert isinstance(info.value, KzlabelError) and str(info.value)
    with pytest.raises(error):
        labeler.verify(data, name=name)


def test_text_limit(signer):
    lab = Labeler(signer, owner="O", system="S", limits=Limits(max_text_bytes=1000))
    with pytest.raises(LimitExceeded):
        lab.mark(b"a" * 2000, name="x.txt")


def test_original_untouched_and_atomic_output(labeler, tmp_path):
    src = tmp_path / "in.md"
    src.write_text(SAMPLES["a.md"], encoding="utf-8")
    before = (src.read_bytes(), src.stat().st_mtime_ns)
    dst = tmp_path / "out.md"
    result = labeler.mark(src, dst)
    assert (src.read_bytes(), src.stat().st_mtime_ns) == before
    assert dst.read_bytes() == result.data
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".kztmp")] == []
    with pytest.raises(KzlabelError, match="in_place"):
        labeler.mark(src, src)


def test_failed_mark_leaves_no_output(labeler, tmp_path):
    src = tmp_path / "bad.html"
    src.write_bytes(b"<!DOCTYPE html><html><body><p>cut")
    dst = tmp_path / "out.html"
    with pytest.raises(CorruptInput):
        labeler.mark(src, dst)
    assert list(tmp_path.iterdir()) == [src]


def test_in_place_is_atomic_replace(labeler, tmp_path):
    src = tmp_path / "doc.txt"
    src.write_text("hello\n")
    os.chmod(src, 0o640)
    labeler.mark(src, in_place=True)
    assert src.read_text().splitlines()[1] == "hello"
    assert src.stat().st_mode & 0o777 == 0o640
    assert labeler.verify(src).verdict == Verdict.COMPLIANT


def test_path_bytes_and_file_object_give_identical_output(labeler, tmp_path):
    src = tmp_path / "s.md"
    src.write_text(SAMPLES["a.md"], encoding="utf-8")
    label = Label.create(owner="O", system="S")
    a = labeler.mark(src, label=label).data
    b = labeler.mark(src.read_bytes(), name="s.md", label=label).data
    with open(src, "rb") as fh:
        c = labeler.mark(fh, label=label).data
    assert a == b == c


def test_module_level_api(signer, trust, tmp_path):
    out = kzlabel.mark(b"plain words\n", signer=signer, system="S", owner="O", name="x.txt")
    assert isinstance(out, bytes)
    dst = tmp_path / "y.txt"
    result = kzlabel.mark(io.BytesIO(b"words\n"), dst, signer=signer, system="S", owner="O", name="y.txt")
    assert result.dst == str(dst) and "visible" in result.layers and "metadata" in result.layers
    assert kzlabel.verify(dst, trust=trust).verdict.value == "compliant"
    assert kzlabel.verify(out, name="x.txt").verdict == Verdict.COMPLIANT
    assert kzlabel.verify(out, name="x.txt").layer("metadata").status.value == "valid"


def test_report_forms(labeler):
    out = _mark(labeler, "a.txt", SAMPLES["a.txt"])
    report = labeler.verify(out, name="a.txt")
    data = json.loads(report.to_json())
    assert data["verdict"] == "compliant" and data["label"]["owner"] == "ТОО Тест"
    assert {e["layer"] for e in data["evidence"]} == {"metadata", "visible"}
    text = str(report)
    assert "compliant" in text and "metadata" in text and "trusted" in text


JSONL_OBJECTS = b'{"prompt": "a", "answer": "b"}\n{"prompt": "c", "answer": "d"}\n'


@pytest.mark.parametrize(
    "data",
    [
        JSONL_OBJECTS,
        b'[1, "x"]\n[2, "y"]\n',  # records that are arrays: plain text would otherwise claim (and break) them
        b'{"long": "' + b"z" * 6000 + b'"}\n{"long": "w"}\n',  # first record longer than the sniffed header
        b"\xef\xbb\xbf" + JSONL_OBJECTS.replace(b"\n", b"\r\n") + b"\r\n",  # BOM, CRLF, trailing blank line
    ],
    ids=["objects", "arrays", "long-first-record", "bom-crlf"],
)
def test_json_lines_is_refused_as_unsupported_not_broken(labeler, data):
    for name in ("d.jsonl", None):
        with pytest.raises(UnsupportedFormat, match="JSON Lines") as info:
            labeler.mark(data, name=name)
        assert info.value.format == "json"
        with pytest.raises(UnsupportedFormat, match="JSON Lines"):
            labeler.verify(data, name=name)


def test_json_sniffing_claims_arrays_but_not_bracketed_text(labeler):
    from kzlabel.formats import detect
    from kzlabel.io import Input

    for array in (b"[1, 2, 3]\n", b'[\n  {"a": 1}\n]\n'):
        assert detect(Input(array, "x.txt")).id == "json"
        with pytest.raises(UnsupportedFormat, match="top level is not an object"):
            labeler.mark(array, name="x.json")
    log = b"[INFO] started\n[INFO] done\n"
    assert detect(Input(log, "run.log")).id == "text"
    assert labeler.verify(_mark(labeler, "run.log", log.decode()), name="run.log").verdict == Verdict.COMPLIANT
    # a JSON object followed by something that is not a JSON Lines record stays a corrupt JSON document
    with pytest.raises(CorruptInput, match="Extra data"):
        labeler.mark(b'{"a": 1}\nnot json\n', name="x.json")


def test_html_with_a_bare_ampersand_hash_is_read_whole(signer, trust):
    """The stdlib parser holds back everything after a "&#" that starts no character reference until close(): such a
    page is complete HTML, not a truncated one."""
    page = b"<html><head><title>t</title></head><body><p>a &#xyz; b</p></body></html>\n"
    lab = Labeler(signer, owner="O", system="S", trust=trust)
    marked = lab.mark(page, name="x.html").data
    assert lab.verify(marked, name="x.html").verdict == Verdict.COMPLIANT
    assert b"a &#xyz; b" in marked
