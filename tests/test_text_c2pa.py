"""C2PA manifests in text (C2PA 2.4 A.7-A.9): signed by kzlabel and validated by encypher-c2pa (an independent
verifier); carriers written by c2pa-text (an independent implementation of the three forms) read by kzlabel."""

from __future__ import annotations

import hashlib
import unicodedata

import c2pa_text
import encypher_c2pa
import pytest

from kzlabel.errors import SigningError, UnsupportedFormat
from kzlabel.keys import Signer, TrustStore
from kzlabel.layers import c2pa as c2pa_layer
from kzlabel.layers import c2pa_text as ct
from kzlabel.layers.c2pa_native import DataHash

TOKEN = "eyJhbGciOiJFZERTQSJ9.eyJ4IjoxfQ.c2ln"
DOCS = {
    # "e" + combining acute: not NFC, so the A.8 binding's normalisation matters
    "text/plain": "⚠ AI-generated | ИИ жасаған\nCafe\u0301 answer, line two.\n",
    "text/markdown": "---\ntitle: x\n---\n> ⚠ AI-generated\n\n# Title\n\nBody *text*.\n",
    "text/html": "<!doctype html>\n<html><head><title>x</title></head><body><p>answer</p></body></html>\n",
}


def _encypher(text: str, mime: str, trust: TrustStore) -> dict:
    return dict(
        encypher_c2pa.verify(text.encode(), mime, trust_pem=trust.pem(), no_default_trust=True, telemetry=False)
    )


@pytest.fixture(scope="module")
def marked(signer: Signer) -> dict[str, str]:
    return {mime: ct.sign(doc, mime, signer, label_claims={"token": TOKEN})[0] for mime, doc in DOCS.items()}


@pytest.mark.parametrize("mime", sorted(DOCS))
def test_ours_validate_in_encypher_and_in_kzlabel(marked: dict[str, str], trust: TrustStore, mime: str) -> None:
    out = marked[mime]
    rep = _encypher(out, mime, trust)
    assert (rep["integrity"], rep["signature"], rep["hard_binding"]) == ("valid", "valid", "match")
    assert rep["validation_state"] == "Trusted" and not rep["validation_results"]["failure"]
    ours = ct.read(out, trust)
    assert ours.state == "trusted" and "assertion.dataHash.match" in ours.codes
    assert ours.label_token == TOKEN and ours.actions[0] == "c2pa.created"
    assert ours.source_type == c2pa_layer.TRAINED_ALGORITHMIC_MEDIA_URI
    assert ours.carrier == {"form": ct.FORMS[mime]}
    original = unicodedata.normalize("NFC", DOCS[mime]) if mime == "text/plain" else DOCS[mime]
    assert ct.strip(out) == original  # the carrier is all that was added


def test_plain_carrier_is_invisible_and_at_the_end(marked: dict[str, str]) -> None:
    out = marked["text/plain"]
    visible = unicodedata.normalize("NFC", DOCS["text/plain"])
    assert out.startswith(visible)
    assert all(
        ch == "\ufeff" or 0xFE00 <= ord(ch) <= 0xFE0F or 0xE0100 <= ord(ch) <= 0xE01EF for ch in out[len(visible) :]
    )


@pytest.mark.parametrize("mime", sorted(DOCS))
def test_one_character_changed_is_a_mismatch(marked: dict[str, str], trust: TrustStore, mime: str) -> None:
    out = marked[mime]
    at = out.index("answer") if "answer" in out else out.index("Body")
    bad = out[:at] + "X" + out[at + 1 :]
    assert _encypher(bad, mime, trust)["hard_binding"] == "mismatch"
    rep = ct.read(bad, trust)
    assert rep.state == "invalid" and "assertion.dataHash.mismatch" in rep.codes


def test_other_trust_anchors_give_valid_not_trusted(marked: dict[str, str], other_trust: TrustStore) -> None:
    assert ct.read(marked["text/plain"], other_trust).state == "valid"
    assert ct.read(marked["text/plain"]).state in ("valid", "trusted")


def test_pasted_into_a_longer_text_reports_the_signed_span(marked: dict[str, str], trust: TrustStore) -> None:
    out = marked["text/plain"]
    before, after = "Someone's own intro.\n", "\nTheir own closing words."
    rep = ct.read(before + out + after, trust)
    assert rep.state == "trusted"
    signed = unicodedata.normalize("NFC", DOCS["text/plain"]).encode()
    assert rep.carrier is not None
    assert rep.carrier["signed_span"] == [len(before.encode()), len(before.encode()) + len(signed)]
    # the span itself edited: no longer the signed text
    assert ct.read(before + out.replace("two", "2"), trust).state == "invalid"


def test_absent_multiple_and_undecodable(marked: dict[str, str], trust: TrustStore) -> None:
    assert ct.read("plain words", trust).state == "absent"
    assert ct.read(marked["text/plain"] + marked["text/plain"], trust).codes == ["manifest.text.multipleManifests"]
    broken = "x\ufeff" + "\ufe00" * 20
    assert ct.read(broken, trust).codes == ["manifest.unreadable"]


def test_resigning_replaces_the_carrier(signer: Signer, marked: dict[str, str], trust: TrustStore) -> None:
    again, _ = ct.sign(marked["text/markdown"], "text/markdown", signer, label_claims={"token": TOKEN})
    assert again.count(ct.BEGIN) == 1 and ct.read(again, trust).state == "trusted"


def test_errors(signer: Signer) -> None:
    with pytest.raises(UnsupportedFormat):
        ct.sign("{}", "application/json", signer, label_claims=None)
    with pytest.raises(SigningError, match="</head>"):
        ct.sign("<p>no head</p>", "text/html", signer, label_claims=None)


def _store_for(signer: Signer, data: bytes, exclusion: tuple[int, int]) -> bytes:
    """A store bound to ``data`` with the one exclusion an independent embedder chose."""
    return c2pa_layer.sign_data_hashed(
        signer,
        lambda size: DataHash(hashlib.sha256(data).digest(), [exclusion]),
        label_claims={"token": TOKEN},
    )


def _size(signer: Signer) -> int:
    return len(
        c2pa_layer.sign_data_hashed(signer, lambda n: DataHash(b"\0" * 32, [(0, n)]), label_claims={"token": TOKEN})
    )


def test_we_read_carriers_written_by_c2pa_text(signer: Signer, trust: TrustStore) -> None:
    size = _size(signer)  # the same definition gives the same store size: the exclusion is known before signing
    # A.8: c2pa-text's padded wrapper
    text = unicodedata.normalize("NFC", DOCS["text/plain"])
    width = c2pa_text.worst_case_wrapper_byte_length(size)
    store = _store_for(signer, text.encode(), (len(text.encode()), width))
    assert ct.read(text + c2pa_text.encode_wrapper_padded(store, width), trust).state == "trusted"
    # A.9: c2pa-text's comment block at the end, the exclusion it reports
    md = DOCS["text/markdown"]
    ref = c2pa_text.encode_data_uri(b"\0" * size)
    probe = c2pa_text.embed_structured(md, ref, "<!--", "-->", placement=c2pa_text.Placement.END)
    store = _store_for(signer, md.encode(), (probe.exclusion_start, probe.exclusion_length))
    done = c2pa_text.embed_structured(md, c2pa_text.encode_data_uri(store), "<!--", "-->", c2pa_text.Placement.END)
    assert ct.read(done.text, trust).state == "trusted"
    # A.7: c2pa-text's inline script
    html = DOCS["text/html"]
    probe_html = c2pa_text.embed_html_inline(html, b"\0" * size)
    rest = probe_html.html.encode()
    s, n = probe_html.exclusion_start, probe_html.exclusion_length
    store = _store_for(signer, rest[:s] + rest[s + n :], (s, n))
    assert ct.read(c2pa_text.embed_html_inline(html, store).html, trust).state == "trusted"


@pytest.mark.parametrize("mime", sorted(DOCS))
def test_c2pa_text_extracts_our_store(marked: dict[str, str], mime: str) -> None:
    out = marked[mime]
    store = ct.find(out)[0].store
    if mime == "text/plain":
        theirs, clean = c2pa_text.extract_manifest(out)
        assert theirs == store and clean == unicodedata.normalize("NFC", DOCS[mime])
    elif mime == "text/markdown":
        assert c2pa_text.extract_structured(out).manifest == store
    else:
        extracted = c2pa_text.extract_html(out)
        assert extracted is not None and extracted.manifest == store


def test_wrapper_round_trips_every_byte_and_matches_c2pa_text() -> None:
    store = bytes(range(256)) * 3
    ours = ct.encode_wrapper(store)
    assert len(ours.encode()) == ct.wrapper_size(len(store)) == c2pa_text.worst_case_wrapper_byte_length(len(store))
    assert ct.decode_wrapper(ours) == store
    assert ours.startswith(c2pa_text.encode_wrapper(store))  # the same encoding, then padding
    assert c2pa_text.extract_manifest("x" + ours)[0] == store


FRONT = "---\ntitle: Answer\ntags: [ai]\n---\n# Heading\n\nBody text.\n"


@pytest.mark.parametrize("doc", [FRONT, FRONT.replace("\n", "\r\n"), "+++\ntitle = 'x'\n+++\nBody\n"])
def test_markdown_with_front_matter_gets_the_block_in_it(signer: Signer, trust: TrustStore, doc: str) -> None:
    """A.9: with front matter the block goes in it (a comment line right after the opening fence, so the front matter
    stays valid YAML/TOML); it validates in encypher-c2pa, c2pa-text finds it and stripping it gives the text back."""
    import yaml

    out, store = ct.sign(doc, "text/markdown", signer, label_claims={"token": TOKEN})
    fence, rest = out.split("\n", 1)
    assert rest.startswith("# " + ct.BEGIN) and fence.rstrip("\r") in ("---", "+++")
    assert ct.strip(out) == doc
    if doc.startswith("---"):
        lines = out.splitlines()
        assert yaml.safe_load("\n".join(lines[1 : lines.index("---", 1)])) == {"title": "Answer", "tags": ["ai"]}
    rep = _encypher(out, "text/markdown", trust)
    assert (rep["integrity"], rep["signature"], rep["hard_binding"]) == ("valid", "valid", "match")
    assert rep["validation_state"] == "Trusted" and not rep["validation_results"]["failure"]
    assert ct.read(out, trust).state == "trusted"
    assert c2pa_text.extract_structured(out).manifest == store
    assert ct.read(out.replace("Body", "body"), trust).state == "invalid"  # the text under the block is bound
    assert ct.read(out.replace("title", "Title"), trust).state == "invalid"  # and the rest of the front matter


def test_we_read_the_multi_line_front_matter_block_of_other_writers(signer: Signer, trust: TrustStore) -> None:
    """The spec's multi-line block (BEGIN, the reference, END on their own lines) inside front matter, as c2pa-text
    builds it, excluded as its line(s) plus the line break after them."""
    size = _size(signer)
    block = c2pa_text.build_manifest_block_multiline(c2pa_text.encode_data_uri(b"\0" * size))
    fence = "---\n"
    start = len(fence)
    store = _store_for(signer, FRONT.encode(), (start, len(block) + 1))
    done = fence + c2pa_text.build_manifest_block_multiline(c2pa_text.encode_data_uri(store)) + "\n" + FRONT[start:]
    rep = ct.read(done, trust)
    assert rep.state == "trusted" and rep.label_token == TOKEN
    assert ct.strip(done) == FRONT


def test_a_manifest_referenced_by_url_is_found_not_fetched(trust: TrustStore) -> None:
    """A.7 <link rel="c2pa-manifest"> and an A.9 block with a URL: reported as found at that URL, not verified (kzlabel
    does not fetch it), and never as a broken manifest."""
    url = "https://example.org/manifests/answer.c2pa"
    html = "<html><head><title>x</title>" + c2pa_text.build_html_link(url) + "</head><body>hi</body></html>"
    md = "Body\n<!-- " + ct.BEGIN + " " + url + " " + ct.END + " -->"
    for text, form in ((html, "html"), (md, "structured")):
        rep = ct.read(text, trust)
        assert (rep.present, rep.state, rep.ok) == (True, "referenced", False)
        assert rep.carrier == {"form": form, "reference": url} and url in rep.detail and "not verified" in rep.detail
    assert ct.strip(html) == "<html><head><title>x</title></head><body>hi</body></html>"
    assert ct.find('<link rel="stylesheet" href="a.css">') == []
