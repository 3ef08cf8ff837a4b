"""Strings in, strings out (kzlabel.mark_text / verify_text / TextStream) and the text carriers through the Labeler:
C2PA 2.4 text manifests in place of (or beside) kzlabel's own carrier, checked by encypher-c2pa as well."""

from __future__ import annotations

import encypher_c2pa
import pytest

import kzlabel
from kzlabel import Labeler, Signer, TrustStore
from kzlabel.errors import KzlabelError
from kzlabel.layers import c2pa_text

ANSWER = "Here is the answer you asked for.\n\nIt has two paragraphs, and a café.\n"
ANSWERS = {
    "plain": ANSWER,
    "markdown": "# Answer\n\nSome **bold** text and a [link](https://example.org).\n",
    "html": "<!doctype html>\n<html><head><title>A</title></head><body><p>answer</p></body></html>\n",
    "json": '{"answer": "forty-two"}\n',
}
MIMES = {"plain": "text/plain", "markdown": "text/markdown", "html": "text/html"}


def _mark(signer: Signer, fmt: str = "plain", **kw: object) -> str:
    return kzlabel.mark_text(ANSWERS[fmt], format=fmt, signer=signer, system="Chat 1", owner="ACME LLP", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", sorted(MIMES))
def test_mark_text_carries_a_c2pa_manifest_and_no_trailer(signer: Signer, trust: TrustStore, fmt: str) -> None:
    out = _mark(signer, fmt)
    assert "kzlabel: eyJ" not in out and 'name="kzlabel"' not in out  # c2pa is the strings default carrier
    assert "⚠" in out  # the notice stays
    rep = kzlabel.verify_text(out, format=fmt, trust=trust)  # type: ignore[arg-type]
    assert rep.verdict.value == "compliant"
    lines = {e.layer: e for e in rep.evidence}
    assert lines["c2pa"].status.value == "trusted" and lines["metadata"].status.value == "trusted"
    ext = encypher_c2pa.verify(out.encode(), MIMES[fmt], trust_pem=trust.pem(), no_default_trust=True, telemetry=False)
    assert (ext["integrity"], ext["signature"], ext["hard_binding"]) == ("valid", "valid", "match")
    assert ext["validation_state"] == "Trusted"


def test_json_keeps_its_field(signer: Signer, trust: TrustStore) -> None:
    out = _mark(signer, "json")
    assert '"ai_label"' in out and not c2pa_text.find(out)
    assert kzlabel.verify_text(out, format="json", trust=trust).verdict.value == "compliant"


def test_one_character_changed_is_tampered(signer: Signer, trust: TrustStore) -> None:
    out = _mark(signer)
    bad = out.replace("answer", "answeR", 1)
    rep = kzlabel.verify_text(bad, trust=trust)
    assert rep.verdict.value == "tampered"
    assert {e.layer: e.status.value for e in rep.evidence}["c2pa"] == "invalid"


def test_wrapper_removed_leaves_the_notice(signer: Signer, trust: TrustStore) -> None:
    out = _mark(signer)
    rep = kzlabel.verify_text(c2pa_text.strip(out), trust=trust)
    assert rep.verdict.value == "warning_only"


def test_both_carriers_and_kzlabel_only(signer: Signer, trust: TrustStore) -> None:
    both = _mark(signer, text_carrier="both")
    assert "kzlabel: eyJ" in both and c2pa_text.find(both)
    # the C2PA wrapper gone, the trailer still labels the text
    assert kzlabel.verify_text(c2pa_text.strip(both), trust=trust).verdict.value == "compliant"
    own = _mark(signer, text_carrier="kzlabel")
    assert "kzlabel: eyJ" in own and not c2pa_text.find(own)


def test_file_default_is_kzlabel_and_says_so(signer: Signer) -> None:
    result = Labeler(signer, system="S", owner="O").mark(ANSWER.encode(), name="a.txt")
    assert "c2pa" not in result.layers and "text_carrier" in result.skipped["c2pa"]
    with pytest.raises(KzlabelError, match="text_carrier"):
        Labeler(signer, system="S", owner="O", text_carrier="nope")  # type: ignore[arg-type]


def test_wrong_format_is_an_error(signer: Signer) -> None:
    with pytest.raises(KzlabelError, match="json"):
        kzlabel.mark_text("just words", format="json", signer=signer, system="S", owner="O")
    with pytest.raises(KzlabelError, match="format must be"):
        kzlabel.mark_text("x", format="rtf", signer=signer, system="S", owner="O")  # type: ignore[arg-type]


def test_pasted_into_a_longer_document(signer: Signer, trust: TrustStore) -> None:
    """The label covers the pasted answer only: verify reports on that span and adds a c2pa:span line saying so."""
    out = _mark(signer)
    before = "My own intro.\n"
    rep = kzlabel.verify_text(before + out + "\nMy own closing.\n", trust=trust)
    lines = {e.layer: e for e in rep.evidence}
    assert rep.verdict.value == "compliant" and lines["c2pa"].status.value == "trusted"
    start = len(before.encode())
    assert lines["c2pa:span"].data["span"] == [start, start + len(c2pa_text.strip(out).encode())]
    # the pasted answer itself edited: tampered, as when it stands alone
    edited = before + out.replace("two paragraphs", "2 paragraphs")
    assert kzlabel.verify_text(edited, trust=trust).verdict.value == "tampered"


def test_stream_notice_first_carrier_last(signer: Signer, trust: TrustStore) -> None:
    stream = kzlabel.TextStream(signer=signer, system="Chat 1", owner="ACME LLP")
    sent = [stream.start()]
    assert sent[0].startswith("⚠")
    for token in ["Here ", "is ", "a ", "streamed ", "answer.\n"]:
        sent.append(stream.feed(token))
    sent.append(stream.close())
    text = "".join(sent)
    assert text.startswith(sent[0] + "Here is a streamed answer.\n")
    rep = kzlabel.verify_text(text, trust=trust)
    assert rep.verdict.value == "compliant"
    with pytest.raises(KzlabelError):
        stream.feed("late")


def test_cli_text_carrier(tmp_path, keydir, capsys) -> None:  # type: ignore[no-untyped-def]
    from kzlabel.cli import main

    src = tmp_path / "answer.txt"
    src.write_text(ANSWER)
    args = ["--key", str(keydir), "--system", "Chat 1", "--owner", "ACME LLP"]
    assert main(["mark", str(src), "-o", str(tmp_path / "out.txt"), "--text-carrier", "c2pa", *args]) == 0
    out = (tmp_path / "out.txt").read_text()
    assert c2pa_text.find(out) and "kzlabel: eyJ" not in out
    assert main(["verify", str(tmp_path / "out.txt"), "--trust", str(keydir)]) == 0
    code = main(["mark", str(src), "-o", str(tmp_path / "bad.txt"), "--text-carrier", "xml", *args])
    err = capsys.readouterr().err
    assert code not in (0, 3) and "text-carrier" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad.txt").exists()


@pytest.mark.parametrize("carrier", ["c2pa", "both"])
def test_markdown_front_matter_holds_the_c2pa_block(signer: Signer, trust: TrustStore, carrier: str) -> None:
    """A Markdown answer with front matter (or the one kzlabel's carrier adds) carries the A.9 block in it."""
    doc = "---\ntitle: Answer\n---\n" + ANSWERS["markdown"]
    out = kzlabel.mark_text(
        doc, format="markdown", signer=signer, system="Chat 1", owner="ACME LLP", text_carrier=carrier
    )  # type: ignore[arg-type]
    assert out.startswith("---\n# " + c2pa_text.BEGIN) and out.count(c2pa_text.BEGIN) == 1
    rep = kzlabel.verify_text(out, format="markdown", trust=trust)
    assert rep.verdict.value == "compliant" and rep.layer("c2pa").status.value == "trusted"
    ext = encypher_c2pa.verify(
        out.encode(), "text/markdown", trust_pem=trust.pem(), no_default_trust=True, telemetry=False
    )
    assert (ext["integrity"], ext["signature"], ext["hard_binding"]) == ("valid", "valid", "match")


def test_html_link_reference_is_reported_found_not_verified(trust: TrustStore) -> None:
    link = '<link rel="c2pa-manifest" href="https://example.org/m.c2pa">'
    html = ANSWERS["html"].replace("</head>", link + "</head>")
    rep = kzlabel.verify_text(html, format="html", trust=trust)
    line = rep.layer("c2pa")
    assert (
        line.status.value == "found" and "https://example.org/m.c2pa" in line.detail and "not verified" in line.detail
    )
    assert rep.verdict.value == "unlabelled"  # a reference nobody checked earns nothing
