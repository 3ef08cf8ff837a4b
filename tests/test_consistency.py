"""Every carrier of one file tells the same story: unsigned AI-content fields that contradict the signed label beside
them are evidence `inconsistent`, and the file is not compliant."""

from __future__ import annotations

import json
import re

import pytest

from kzlabel import Labeler, Verdict
from kzlabel.label import contradicting_fields

HTML = b"<!DOCTYPE html>\n<html>\n<head>\n<title>t</title>\n</head>\n<body>\n<p>generated words</p>\n</body>\n</html>\n"
MD = b"# Report\n\nSome *markdown* text written by a model.\n"
JSON = b'{"answer": "generated words"}\n'


@pytest.fixture(scope="module")
def labeler(signer, trust) -> Labeler:
    return Labeler(signer, owner="O", system="S", trust=trust)


def _edit(data: bytes, pattern: str, replacement: str) -> bytes:
    text, count = re.subn(pattern, replacement, data.decode("utf-8"), count=1)
    assert count == 1, pattern
    return text.encode("utf-8")


@pytest.mark.parametrize(
    ("name", "source", "pattern", "replacement"),
    [
        ("x.html", HTML, r'name="ai-generated" content="true"', 'name="ai-generated" content="false"'),
        (
            "x.html",
            HTML,
            r'(name="digital-source-type" content=")[^"]+',
            r"\g<1>http://cv.iptc.org/newscodes/"
            r"digitalsourcetype/digitalCapture",
        ),
        (
            "x.md",
            MD,
            r"digital_source_type: \S+",
            "digital_source_type: http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture",
        ),
        ("x.json", JSON, r'"Label":"1"', '"Label":"0"'),
    ],
    ids=["html-ai-generated-false", "html-digital-capture", "markdown-digital-capture", "json-aigc-label-0"],
)
def test_contradicting_unsigned_fields_are_inconsistent(labeler, name, source, pattern, replacement) -> None:
    marked = labeler.mark(source, name=name).data
    assert labeler.verify(marked, name=name).verdict == Verdict.COMPLIANT
    report = labeler.verify(_edit(marked, pattern, replacement), name=name)
    assert report.layer("metadata").status.value == "inconsistent", str(report)
    assert report.verdict == Verdict.TAMPERED


def test_field_comparison_reads_every_carrier_spelling(labeler) -> None:
    label = labeler.new_label()
    agree = {
        "Iptc4xmpExt:DigitalSourceType": label.source_type,
        "ai-generated": "true",
        "TC260:AIGC": json.dumps({"Label": "1"}),
        "AIGC": {"AIGC": {"Label": "1"}},
    }
    assert contradicting_fields(label, agree) == []
    disagree = {
        "digital_source_type": "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture",
        "ai_generated": False,
        "aigc": '{"Label":"0"}',
    }
    assert len(contradicting_fields(label, disagree)) == 3
