"""Art. 23(5): writing a rights-holder's training reservation into every carrier and reading it back."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from kzlabel import Labeler, Training, Verdict
from kzlabel.errors import KzlabelError, UnsupportedFormat
from kzlabel.label import USES
from kzlabel.rights.actions import check_tree, training_allowed, write_optout, write_well_known
from kzlabel.rights.vocab import TrainingPolicy, decide, signal_from_cawg, signal_from_plus, signal_from_tdmrep

DOCS = {
    "w.txt": b"A poem by a human.\nSecond line.\n",
    "w.md": b"---\ntitle: Essay\n---\n# Essay\n\nHuman words.\n",
    "w.html": b"<!DOCTYPE html>\n<html>\n<head>\n<title>t</title>\n</head>\n<body>\n<p>human</p>\n</body>\n</html>\n",
}
DENY = TrainingPolicy.from_lists(deny=["ai-training", "generative-training", "data-mining"])


@pytest.mark.parametrize("name", DOCS)
def test_deny_round_trip_text_formats(name):
    assert training_allowed(DOCS[name], name=name).status == Training.UNSPECIFIED
    out = write_optout(DOCS[name], policy=DENY, name=name)
    check = training_allowed(out, name=name)
    assert check.status == Training.NOT_ALLOWED and check.may_not_use
    assert check.uses["data_mining"] == Training.NOT_ALLOWED
    assert any("tdm-reservation" in s.carrier for s in check.signals)
    # writing again replaces, never stacks
    again = write_optout(out, policy=TrainingPolicy.from_lists(allow=["all"]), name=name)
    assert again.count(b"tdm-reservation") == 1
    assert training_allowed(again, name=name).status == Training.ALLOWED


def test_html_carries_tdmrep_meta_and_policy():
    policy = TrainingPolicy.from_lists(deny=["ai-training"], policy_url="https://example.kz/tdm-policy.json")
    out = write_optout(DOCS["w.html"], policy=policy, name="w.html").decode()
    assert '<meta name="tdm-reservation" content="1" data-kzlabel>' in out
    assert '<meta name="tdm-policy" content="https://example.kz/tdm-policy.json" data-kzlabel>' in out
    check = training_allowed(out.encode(), name="w.html")
    assert check.status == Training.CONSTRAINED  # reserved, but a licence policy is offered
    assert check.may_not_use


def test_users_own_tdm_meta_is_replaced_not_duplicated():
    src = DOCS["w.html"].replace(b"<title>", b'<meta name="tdm-reservation" content="0">\n<title>')
    assert training_allowed(src, name="w.html").status == Training.ALLOWED
    out = write_optout(src, policy=DENY, name="w.html")
    assert out.count(b'name="tdm-reservation"') == 1
    assert training_allowed(out, name="w.html").status == Training.NOT_ALLOWED


@pytest.mark.parametrize("name", DOCS)
def test_optout_on_labelled_text_keeps_label_valid(signer, trust, name):
    lab = Labeler(signer, owner="O", system="S", trust=trust)
    labelled = lab.mark(DOCS[name], name=name).data
    out = write_optout(labelled, policy=DENY, name=name)
    assert lab.verify(out, name=name).verdict == Verdict.COMPLIANT
    assert training_allowed(out, name=name).status == Training.NOT_ALLOWED
    remarked = lab.mark(out, name=name).data  # re-labelling keeps the rights-holder's reservation
    assert training_allowed(remarked, name=name).status == Training.NOT_ALLOWED


def test_label_training_field_is_a_signal(signer):
    lab = Labeler(signer, owner="O", system="S", training="notAllowed")
    out = lab.mark(b'{"a": 1}', name="x.json").data
    check = training_allowed(out, name="x.json")
    assert check.status == Training.NOT_ALLOWED
    assert [s.carrier for s in check.signals] == ["kzlabel label (JSON field ai_label)"]


def test_conflicting_signals_most_restrictive_wins():
    allow = signal_from_tdmrep("0", None, "HTML meta")
    plus = signal_from_plus("http://ns.useplus.org/ldf/vocab/DMI-PROHIBITED-GENAIMLTRAINING")
    check = decide([allow, plus], "ai_generative_training")
    assert check.status == Training.NOT_ALLOWED and check.conflicting
    assert decide([allow, plus], "ai_training").status == Training.ALLOWED
    cawg = signal_from_cawg({"cawg.ai_training": {"use": "constrained"}, "cawg.data_mining": {"use": "allowed"}})
    both = decide([allow, cawg], "ai_training")
    assert both.status == Training.CONSTRAINED and both.conflicting
    assert decide([], "data_mining").status == Training.UNSPECIFIED
    assert set(both.uses) == set(USES)


def test_policy_vocabularies():
    assert DENY.plus_data_mining().endswith("DMI-PROHIBITED")
    only_gen = TrainingPolicy.from_lists(deny=["generative-training"])
    assert only_gen.plus_data_mining().endswith("DMI-PROHIBITED-GENAIMLTRAINING")
    assert only_gen.cawg_entries() == {"cawg.ai_generative_training": {"use": "notAllowed"}}
    assert TrainingPolicy.from_lists(allow=["all"]).plus_data_mining().endswith("DMI-ALLOWED")
    with pytest.raises(KzlabelError, match="both"):
        TrainingPolicy.from_lists(deny=["ai-training"], allow=["training"])
    with pytest.raises(KzlabelError, match="unknown use"):
        TrainingPolicy.from_lists(deny=["cooking"])


def test_c2pa_training_mining_when_signed(signer, trust):
    buf = io.BytesIO()
    Image.new("RGB", (48, 48), (200, 30, 30)).save(buf, "PNG")
    from kzlabel.layers import c2pa as c2pa_layer

    out = c2pa_layer.sign(buf.getvalue(), "image/png", signer, label_claims=None, source_type=None,
                          training=DENY.cawg_entries())
    rep = c2pa_layer.read(out, "image/png", trust)
    assert rep.state == "trusted" and rep.actions == ["c2pa.opened"]
    assert rep.source_type is None  # a rights-holder's work is not claimed to be AI-made
    sig = signal_from_cawg(rep.training)
    assert sig and sig.uses["ai_training"] == Training.NOT_ALLOWED


def test_json_has_no_carrier_and_says_so():
    with pytest.raises(UnsupportedFormat, match="JSON"):
        write_optout(b'{"a": 1}', policy=DENY, name="x.json")


def test_in_place_and_tree_and_well_known(tmp_path):
    site = tmp_path / "site"
    (site / "blog").mkdir(parents=True)
    for name, data in DOCS.items():
        (site / "blog" / name).write_bytes(data)
    (site / "free.txt").write_bytes(b"free to use\n")
    (site / "blob.bin").write_bytes(bytes(range(256)) * 8)
    write_optout(site / "blog" / "w.html", policy=DENY, in_place=True)
    write_optout(site / "free.txt", policy=TrainingPolicy.from_lists(allow=["all"]), in_place=True)
    results = {p.relative_to(site).as_posix(): c for p, c in check_tree(site)}
    assert results["blog/w.html"].status == Training.NOT_ALLOWED
    assert results["free.txt"].status == Training.ALLOWED
    assert results["blog/w.txt"].status == Training.UNSPECIFIED
    assert isinstance(results["blob.bin"], KzlabelError)
    target = write_well_known(site)
    rules = json.loads(target.read_text())
    assert {"location": "/blog/w.html", "tdm-reservation": 1} in rules
    assert {"location": "/free.txt", "tdm-reservation": 0} in rules
    assert all(r["location"] != "/blog/w.txt" for r in rules)
    # a site-wide rule reserves files that say nothing themselves
    target.write_text(json.dumps([{"location": "/blog/*", "tdm-reservation": 1}]))
    results = {p.relative_to(site).as_posix(): c for p, c in check_tree(site)}
    assert results["blog/w.txt"].status == Training.NOT_ALLOWED
    assert isinstance(results["blob.bin"], KzlabelError)  # unsupported and outside every rule: reported as such
