"""Report acceptance: with trust anchors given, a compliant verdict is accepted only when a signed layer is trusted
(issue 16, item 4); without anchors, compliant is accepted as before."""

from __future__ import annotations

import pytest

import kzlabel
from kzlabel import Evidence, Report, Status, TrustStore, Verdict
from kzlabel.errors import KzlabelError

WARNED = Evidence("visible", Status.FOUND, "perceptible warning present")


def _report(*statuses: tuple[str, Status], trust_checked: bool) -> Report:
    evidence = [Evidence(layer, status, "") for layer, status in statuses] + [WARNED]
    return Report("x.png", "png", evidence, trust_checked=trust_checked)


def test_untrusted_signed_layers_are_compliant_but_not_accepted() -> None:
    rep = _report(("c2pa", Status.UNTRUSTED), ("metadata", Status.UNTRUSTED), trust_checked=True)
    assert rep.verdict == Verdict.COMPLIANT and not rep.trusted
    assert not rep.accepted and not rep.passes() and rep.passes(allow_untrusted=True)
    assert "not under the given trust anchors" in (rep.rejection() or "")
    with pytest.raises(KzlabelError, match="untrusted"):
        rep.raise_for_unlabelled()
    assert rep.raise_for_unlabelled(allow_untrusted=True) is rep
    d = rep.to_dict()
    assert (d["verdict"], d["trusted"], d["trust_checked"], d["accepted"]) == ("compliant", False, True, False)
    assert d["why_not_accepted"] == rep.rejection()
    assert rep.to_dict(allow_untrusted=True)["accepted"] is True
    assert '"accepted": true' in rep.to_json(allow_untrusted=True)


def test_one_trusted_signed_layer_is_enough() -> None:
    rep = _report(("c2pa", Status.UNTRUSTED), ("metadata", Status.TRUSTED), trust_checked=True)
    assert rep.accepted and rep.rejection() is None and rep.raise_for_unlabelled() is rep


def test_only_unsigned_fields_under_trust_anchors_are_not_accepted() -> None:
    rep = _report(("c2pa", Status.ABSENT), ("metadata", Status.FOUND), trust_checked=True)
    assert rep.verdict == Verdict.COMPLIANT and not rep.accepted
    assert "no signed layer chains" in (rep.rejection() or "")


def test_without_trust_anchors_compliant_is_accepted_as_before() -> None:
    rep = _report(("c2pa", Status.VALID), ("metadata", Status.VALID), trust_checked=False)
    assert rep.accepted and rep.raise_for_unlabelled() is rep
    d = rep.to_dict()
    assert d["trust_checked"] is False and d["accepted"] is True and d["why_not_accepted"] is None


def test_not_compliant_is_never_accepted_and_keeps_its_message() -> None:
    rep = _report(("c2pa", Status.INVALID), ("metadata", Status.TRUSTED), trust_checked=True)
    assert rep.verdict == Verdict.TAMPERED
    assert not rep.passes(allow_untrusted=True)
    with pytest.raises(KzlabelError, match="not compliant: tampered"):
        rep.raise_for_unlabelled(allow_untrusted=True)


def test_verify_sets_trust_checked_from_the_anchors(signer, trust: TrustStore, other_trust: TrustStore) -> None:
    marked = kzlabel.mark(b"A generated answer.\n", signer=signer, system="S", owner="O", name="a.txt")
    other = kzlabel.verify(marked, trust=other_trust, name="a.txt")
    assert other.verdict == Verdict.COMPLIANT and other.trust_checked and not other.accepted
    assert other.passes(allow_untrusted=True)
    with pytest.raises(KzlabelError, match="untrusted"):
        other.raise_for_unlabelled()
    mine = kzlabel.verify(marked, trust=trust, name="a.txt")
    assert mine.trust_checked and mine.trusted and mine.accepted
    for anchorless in (None, TrustStore()):
        rep = kzlabel.verify(marked, trust=anchorless, name="a.txt")
        assert not rep.trust_checked and rep.accepted and rep.layer("metadata").status == Status.VALID
