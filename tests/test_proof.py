"""Proof before claim: mark reports a layer as applied only when the written output reads it back with verify's own
code; anything else is skipped with what the read-back saw, and the C2PA manifest does not claim an unproven mark."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kzlabel import Labeler, Registry, formats
from kzlabel.cli import main
from kzlabel.layers import c2pa as c2pa_layer


def _png() -> bytes:
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:256, 0:320]
    rgb = np.dstack([x % 256, y % 256, (x * 3 + y) % 256]) + rng.integers(0, 24, (256, 320, 3))
    buf = io.BytesIO()
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB").save(buf, format="PNG")
    return buf.getvalue()


def _noop(*args: object, **kwargs: object) -> None:
    """A layer step that silently does nothing: the claim it would have made must not survive the read-back."""


@pytest.fixture
def png_handler() -> type:
    return type(formats.get("png"))


def test_all_layers_proven_on_an_ordinary_image(signer) -> None:
    result = Labeler(signer, owner="O", system="S").mark(_png(), name="x.png")
    assert set(result.layers) == {"visible", "watermark", "metadata", "c2pa"}
    assert not result.skipped


def test_a_watermark_that_does_not_read_back_is_skipped_and_not_claimed(
    signer, png_handler, monkeypatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(png_handler, "embed_watermark", _noop)
    registry = Registry(tmp_path / "reg.sqlite")
    result = Labeler(signer, owner="O", system="S", registry=registry).mark(_png(), tmp_path / "out.png")
    assert "watermark" not in result.layers
    assert result.skipped["watermark"].startswith("not proven on the written output: absent")
    assert "c2pa" in result.layers  # signed again, without the watermark claim
    rep = c2pa_layer.read((tmp_path / "out.png").read_bytes(), "image/png")
    assert rep.state == "valid" and rep.soft_binding is None and "c2pa.watermarked" not in rep.actions
    assert registry.lookup(result.label.content_id) is None  # nothing to recover a label from


def test_a_warning_or_label_that_does_not_read_back_is_skipped(signer, png_handler, monkeypatch) -> None:
    monkeypatch.setattr(png_handler, "draw_warning", _noop)
    result = Labeler(signer, owner="O", system="S", layers=["visible", "metadata"]).mark(_png(), name="x.png")
    assert result.layers == ("metadata",)
    assert "not proven" in result.skipped["visible"]
    monkeypatch.setattr(png_handler, "write_metadata", _noop)
    result = Labeler(signer, owner="O", system="S", layers=["metadata"]).mark(_png(), name="x.png")
    assert result.layers == ()
    assert "not proven" in result.skipped["metadata"]


def test_cli_fails_when_an_asked_layer_is_not_proven(keydir, png_handler, monkeypatch, tmp_path, capsys) -> None:
    src = tmp_path / "in.png"
    src.write_bytes(_png())
    args = ["mark", str(src), "--key", str(keydir), "--system", "S", "--owner", "O"]
    assert main([*args, "-o", str(tmp_path / "a.png"), "--layers", "watermark,metadata"]) == 0
    monkeypatch.setattr(png_handler, "embed_watermark", _noop)
    assert main([*args, "-o", str(tmp_path / "b.png"), "--layers", "watermark,metadata"]) == 1
    assert "not applied: watermark" in capsys.readouterr().err
    assert main([*args, "-o", str(tmp_path / "c.png")]) == 0  # not asked for by name: reported, not failed
    assert "skipped watermark: not proven" in capsys.readouterr().out
