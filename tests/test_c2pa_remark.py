"""Re-marking a WAV, MP3, FLAC or PDF that already carries a manifest in its slot, in a stream: the previous manifest
becomes the new one's parentOf ingredient from its store alone (layers/c2pa.parent_from_store), with the validation
results kzlabel measured over the input, so the C2PA library never loads the asset and Limits.max_c2pa_bytes no
longer applies. Both readers (the c2pa Reader, encypher-c2pa) see what they see in the library's buffered re-mark."""

from __future__ import annotations

import io
import json
import os
import wave
from pathlib import Path

import c2pa
import encypher_c2pa
import numpy as np
import pytest

import kzlabel
from kzlabel import formats
from kzlabel.io import Input
from kzlabel.keys import Signer, TrustStore
from kzlabel.layers import c2pa as c2pa_layer
from kzlabel.layers import c2pa_embed

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "samples"
CASES = {
    "wav": ("voice.wav", "audio/wav"),
    "mp3": ("song.mp3", "audio/mpeg"),
    "flac": ("loop.flac", "audio/flac"),
    "pdf": ("report.pdf", "application/pdf"),
}
TINY = kzlabel.Limits(max_c2pa_bytes=1000)  # every sample is larger: the C2PA library would not be given it
DEFAULT = kzlabel.Limits()


def _labeler(signer: Signer, trust: TrustStore, limits: kzlabel.Limits = DEFAULT, **kw) -> kzlabel.Labeler:
    return kzlabel.Labeler(signer, owner="ACME LLP", system="Gen", trust=trust, limits=limits, **kw)


def _reader(path: Path, mime: str, trust: TrustStore) -> tuple[str, dict, dict]:
    """(validation state, the store's JSON, the validation results) as the c2pa Reader sees the file."""
    with c2pa.Context.from_dict({"trust": {"trust_anchors": trust.pem()}, "verify": {"verify_trust": True}}) as ctx:
        reader = c2pa.Reader(mime, io.BytesIO(path.read_bytes()), context=ctx)
        try:
            return reader.get_validation_state(), json.loads(reader.json()), reader.get_validation_results()
        finally:
            reader.close()


def _summary(path: Path, mime: str, trust: TrustStore) -> dict:
    """What both readers say of a re-marked file, without what differs between any two signings (ids, hashes,
    times): the validation state, the actions, the parent ingredient and the codes of its validation results."""
    state, store, results = _reader(path, mime, trust)
    active = store["manifests"][store["active_manifest"]]
    (ingredient,) = active["ingredients"]
    actions = [
        a["action"] for x in active["assertions"] if x["label"] == "c2pa.actions.v2" for a in x["data"]["actions"]
    ]
    codes = {
        kind: sorted(e["code"] for e in ingredient["validation_results"]["activeManifest"][kind])
        for kind in ("success", "informational", "failure")
    }
    enc = dict(
        encypher_c2pa.verify(path.read_bytes(), mime, trust_pem=trust.pem(), no_default_trust=True, telemetry=False)
    )
    enc_manifest = enc["manifest_report"]["manifests"][enc["manifest_report"]["active_manifest"]]
    (enc_ingredient,) = [a["data"] for a in enc_manifest["assertions"] if a["label"].startswith("c2pa.ingredient")]
    return {
        "state": state,
        "failures": results["activeManifest"]["failure"],
        "ingredient_deltas": [
            sorted(e["code"] for e in d["validationDeltas"]["success"]) + d["validationDeltas"]["failure"]
            for d in results.get("ingredientDeltas") or []
        ],
        "actions": actions,
        "title": ingredient["title"],
        "format": ingredient["format"],
        "relationship": ingredient["relationship"],
        "parent_kept": ingredient["active_manifest"] in store["manifests"],
        "parent_codes": codes,
        "encypher": (enc["integrity"], enc["signature"], enc["hard_binding"], enc["validation_state"]),
        "encypher_failures": enc["validation_results"]["failure"],
        "encypher_ingredient": (
            enc_ingredient["relationship"],
            enc_ingredient["dc:title"],
            enc_ingredient["dc:format"],
        ),
    }


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(CASES))
def test_re_mark_keeps_the_manifest_from_its_slot_as_the_library_does(
    tmp_path: Path, signer: Signer, trust: TrustStore, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A marked file marked again under a C2PA limit far below its size: signed all the same (in a stream), the
    first manifest is the parentOf ingredient, verify says compliant and trusted, and both readers report what they
    report for the C2PA library's own re-mark of the same file (the buffered path, the handler's slot switched off)."""
    name, mime = CASES[kind]
    first, streamed, buffered = tmp_path / f"first.{kind}", tmp_path / f"streamed.{kind}", tmp_path / f"lib.{kind}"
    _labeler(signer, trust).mark(SAMPLES / name, first)
    first_label = _reader(first, mime, trust)[1]["active_manifest"]
    tiny = _labeler(signer, trust, TINY)
    res = tiny.mark(first, streamed)
    assert "c2pa" in res.layers and "c2pa" not in res.skipped, res.skipped
    report = tiny.verify(streamed)
    line = report.layer("c2pa")
    assert report.verdict == kzlabel.Verdict.COMPLIANT, str(report)
    assert line is not None and line.status == kzlabel.Status.TRUSTED
    assert line.data["actions"][:2] == ["c2pa.opened", "c2pa.edited"] and line.data["ingredients"][0]["has_manifest"]
    ours = _summary(streamed, mime, trust)
    assert _reader(streamed, mime, trust)[1]["manifests"][first_label]  # the previous manifest is in the new store
    assert ours["state"] == "Trusted" and ours["failures"] == [] and ours["parent_kept"]
    assert ours["relationship"] == "parentOf" and ours["title"] == first.name and ours["format"] == mime
    assert "assertion.dataHash.match" in ours["parent_codes"]["success"]
    assert ours["encypher"] == ("valid", "valid", "match", "Trusted") and ours["encypher_failures"] == []

    handler = type(formats.detect(Input(path=first)))
    monkeypatch.setattr(handler, "c2pa_streamed", False)  # the library keeps the parent from the whole asset
    _labeler(signer, trust).mark(first, buffered)
    monkeypatch.undo()
    assert _summary(buffered, mime, trust) == ours


def test_a_marked_wav_re_marked_under_a_tiny_limit_keeps_its_manifest(
    tmp_path: Path, signer: Signer, trust: TrustStore
) -> None:
    """The quick form (no watermark, no tone): the size limit no longer skips the C2PA layer of a re-mark, and the new
    manifest's parent is the first one, with its hard binding as kzlabel measured it over the input."""
    lab = _labeler(signer, trust, TINY, layers=["metadata", "c2pa"])
    first, again = tmp_path / "first.wav", tmp_path / "again.wav"
    lab.mark(SAMPLES / "voice.wav", first)
    res = lab.mark(first, again)
    assert "c2pa" in res.layers, res.skipped
    first_rep = c2pa_layer.read(first.read_bytes(), "audio/wav", trust)
    rep = c2pa_layer.read(again.read_bytes(), "audio/wav", trust)
    assert rep.state == "trusted" and rep.actions[:2] == ["c2pa.opened", "c2pa.edited"]
    (parent,) = rep.ingredients
    assert parent["relationship"] == "parentOf" and parent["active_manifest"] == first_rep.manifest_id
    codes = {e["code"] for e in parent["validation_results"]["activeManifest"]["success"]}
    assert {"claimSignature.validated", "assertion.dataHash.match"} <= codes
    assert rep.label_token != first_rep.label_token  # the new label, not the old manifest's


def test_a_parent_whose_content_changed_is_kept_with_the_mismatch_recorded(
    tmp_path: Path, signer: Signer, trust: TrustStore
) -> None:
    """An input whose samples changed after signing: its manifest is still kept as the parent, its validation
    results saying the hash no longer matches (as the library records it), and the new manifest is valid."""
    lab = _labeler(signer, trust, TINY, layers=["metadata", "c2pa"])
    first = tmp_path / "first.wav"
    lab.mark(SAMPLES / "voice.wav", first)
    data = bytearray(first.read_bytes())
    data[4000] ^= 1  # one sample bit, outside the manifest's chunk
    edited = tmp_path / "edited.wav"
    edited.write_bytes(data)
    lab.mark(edited, tmp_path / "again.wav")
    rep = c2pa_layer.read((tmp_path / "again.wav").read_bytes(), "audio/wav", trust)
    assert rep.state == "trusted"
    (parent,) = rep.ingredients
    failures = [e["code"] for e in parent["validation_results"]["activeManifest"]["failure"]]
    assert "assertion.dataHash.mismatch" in failures and parent["active_manifest"]


def test_a_damaged_store_in_the_slot_is_recorded_without_it(tmp_path: Path, signer: Signer, trust: TrustStore) -> None:
    """A store that does not parse: the parent ingredient says why it could not be kept, and the file is signed."""
    lab = _labeler(signer, trust, TINY, layers=["metadata", "c2pa"])
    first = tmp_path / "first.wav"
    lab.mark(SAMPLES / "voice.wav", first)
    data = bytearray(first.read_bytes())
    at = data.rindex(b"C2PA") + 8
    data[at : at + 64] = bytes(64)  # the store's first boxes zeroed: no JUMBF
    broken = tmp_path / "broken.wav"
    broken.write_bytes(data)
    res = lab.mark(broken, tmp_path / "again.wav")
    assert "c2pa" in res.layers, res.skipped
    rep = c2pa_layer.read((tmp_path / "again.wav").read_bytes(), "audio/wav", trust)
    (parent,) = rep.ingredients
    assert rep.state == "trusted" and "damaged" in parent.get("description", "") and not parent.get("active_manifest")


def _peak_rss_growth(fn) -> tuple[int, object]:
    """(bytes the process's peak RSS grew while ``fn`` ran, its result), native allocations included (VmHWM reset)."""

    def hwm() -> int:
        line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmHWM:"))
        return int(line.split()[1]) * 1024

    Path("/proc/self/clear_refs").write_text("5")
    before = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    result = fn()
    return hwm() - before, result


@pytest.mark.slow
def test_re_signing_a_long_wav_keeps_the_parent_in_flat_memory(
    tmp_path: Path, signer: Signer, trust: TrustStore
) -> None:
    """A 53 MB marked WAV signed again with its manifest as the parent: the peak RSS grows by well under a tenth of
    the file (the library, given the asset, grew by ~2x the file: bench_sign_memory.py --remark)."""
    rate, seconds = 44100, 300
    second = np.random.default_rng(5).integers(-3000, 3000, (rate, 2), dtype=np.int16)
    src = tmp_path / "in.wav"
    with wave.open(str(src), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        for i in range(seconds):
            w.writeframes(np.roll(second, i, axis=0).tobytes())
    handler = formats.detect(Input(path=src))
    first, again = tmp_path / "first.wav", tmp_path / "again.wav"
    c2pa_embed.sign(src, first, handler.c2pa_reserve, signer, label_claims={"token": "a.b.c"}, title="first.wav")
    c2pa_embed.sign(src, tmp_path / "warm.wav", handler.c2pa_reserve, signer, label_claims=None)  # library warm

    def resign() -> bytes:
        with open(first, "rb") as fh:
            slot = handler.c2pa_slot(fh)
            assert slot is not None
            parent = c2pa_embed.parent(fh, slot)
        return c2pa_embed.sign(first, again, handler.c2pa_reserve, signer, label_claims=None, parent=parent)

    grown, _ = _peak_rss_growth(resign)
    size = again.stat().st_size
    assert size > 50e6 and grown < 0.1 * size, (grown, size)
    rep = c2pa_layer.read(again.read_bytes(), "audio/wav", trust)
    assert rep.state == "trusted" and rep.actions[0] == "c2pa.opened" and rep.ingredients[0]["active_manifest"]
