"""The signed label: canonical JSON, JWS round trips, tamper detection, trust, and the AIGC/IPTC mappings."""

from __future__ import annotations

import base64
import json
import re

import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kzlabel import IPTC_COMPOSITE, IPTC_TRAINED, Label, Signer, Training
from kzlabel.errors import KzlabelError
from kzlabel.keys import generate
from kzlabel.label import canonical_json, sign_label, verify_token

names = st.text(min_size=1, max_size=60).filter(lambda s: s.strip())
langs = st.lists(st.sampled_from(["kk", "ru", "en"]), min_size=1, max_size=3, unique=True)
SLOW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SLOW
@given(owner=names, system=names, version=st.text(max_size=20), languages=langs,
       training=st.sampled_from(list(Training)), real=st.booleans(),
       kind=st.sampled_from([IPTC_TRAINED, IPTC_COMPOSITE]))
def test_sign_verify_round_trip(signer, trust, owner, system, version, languages, training, real, kind):
    label = Label.create(owner=owner, system=system, system_version=version, languages=languages,
                         training=training, depicts_real_person=real, source_type=kind)
    check = verify_token(sign_label(label, signer), trust)
    assert check.status == "trusted"
    assert check.label == label
    assert check.label.languages == tuple(languages)


def test_label_json_is_canonical_and_stable():
    label = Label.create(owner="ТОО «Ақжол»", system="Gen", system_version="2.1")
    again = Label.from_dict(json.loads(label.to_json()))
    assert again == label
    assert again.to_json() == label.to_json() == canonical_json(json.loads(label.to_json()))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", label.created)
    assert re.fullmatch(r"[0-9a-f]{16}", label.content_id)
    assert label.content_id != Label.create(owner="a", system="b").content_id


def _flip(token: str, part: int, index: int) -> str:
    pieces = token.split(".")
    seg = pieces[part]
    index %= len(seg)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    repl = alphabet[(alphabet.index(seg[index]) + 1) % len(alphabet)]
    pieces[part] = seg[:index] + repl + seg[index + 1 :]
    return ".".join(pieces)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(part=st.sampled_from([0, 1, 2]), index=st.integers(min_value=0, max_value=10_000))
def test_any_flipped_character_is_invalid(signer, trust, part, index):
    token = sign_label(Label.create(owner="ACME", system="Gen"), signer)
    check = verify_token(_flip(token, part, index), trust)
    assert check.status == "invalid"
    assert not check.ok


def test_changed_field_with_resigned_payload_by_other_key_is_untrusted(signer, trust, other_keydir):
    label = Label.create(owner="ACME", system="Gen")
    forged = sign_label(label.replace(owner="Mallory"), Signer.load(other_keydir))
    check = verify_token(forged, trust)
    assert check.status == "untrusted"  # a valid signature, but not from a key the verifier trusts
    assert check.label.owner == "Mallory"
    assert verify_token(forged, None).status == "valid"


def test_payload_swap_between_tokens_is_invalid(signer, trust):
    a = sign_label(Label.create(owner="A", system="Gen"), signer).split(".")
    b = sign_label(Label.create(owner="B", system="Gen"), signer).split(".")
    assert verify_token(".".join([a[0], b[1], a[2]]), trust).status == "invalid"


def test_garbage_tokens_are_invalid_not_errors(trust):
    for junk in ["", "a.b", "a.b.c", "!!!.???.***", "e30.e30.e30", "x" * 5000]:
        assert verify_token(junk, trust).status == "invalid"


@pytest.mark.parametrize("alg,jws_alg", [("ed25519", "EdDSA"), ("es256", "ES256")])
def test_independent_jose_library_verifies(tmp_path, alg, jws_alg):
    generate(tmp_path, alg=alg)
    s = Signer.load(tmp_path)
    token = sign_label(Label.create(owner="ACME", system="Gen"), s)
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header["alg"] == jws_alg and header["typ"] == "kzlabel+json"
    public = s.chain[0].public_key()
    decoded = jwt.api_jws.PyJWS().decode_complete(token, key=public, algorithms=[jws_alg])
    assert json.loads(decoded["payload"])["owner"] == "ACME"
    with pytest.raises(jwt.exceptions.InvalidSignatureError):
        jwt.api_jws.PyJWS().decode_complete(_flip(token, 1, 5), key=public, algorithms=[jws_alg])


@given(owner=names)
def test_aigc_mapping_has_seven_fields_in_order_with_safe_values(owner):
    label = Label.create(owner=owner, system="Gen")
    aigc = label.aigc("a.b.c")
    assert list(aigc) == ["Label", "ContentProducer", "ProduceID", "ReservedCode1",
                          "ContentPropagator", "PropagateID", "ReservedCode2"]
    assert aigc["Label"] == "1" and aigc["ProduceID"] == label.content_id
    for value in aigc.values():
        assert re.fullmatch(r"[\x21-\x7e]*", value) and '"' not in value and "\\" not in value
    assert aigc["ContentProducer"]
    assert json.loads(label.aigc_json("a.b.c")) == aigc


def test_iptc_mapping():
    label = Label.create(owner="ACME", system="Gen", system_version="2.1", source_type=IPTC_COMPOSITE)
    assert label.iptc() == {
        "Iptc4xmpExt:DigitalSourceType": "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia",
        "Iptc4xmpExt:AISystemUsed": "Gen",
        "Iptc4xmpExt:AISystemVersionUsed": "2.1",
    }
    assert "изменён" in label.notice_text()  # AI edits get the "modified" wording


def test_label_requires_owner_system_and_known_languages():
    with pytest.raises(KzlabelError, match="owner"):
        Label.create(owner=" ", system="Gen")
    with pytest.raises(KzlabelError, match="system"):
        Label.create(owner="ACME", system="")
    with pytest.raises(KzlabelError, match="de"):
        Label.create(owner="ACME", system="Gen", languages=["de"])
    custom = Label.create(owner="ACME", system="Gen", languages=["de"], notices={"de": "KI-generiert"})
    assert custom.notice_text() == "KI-generiert"
