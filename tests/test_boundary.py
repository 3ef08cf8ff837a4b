"""The error boundary: input problems are kzlabel errors naming the file and format; a bug in kzlabel stays a bug
(exit 3, HTTP 500 with a JSON body), never disguised as "corrupt input"."""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from kzlabel import Labeler, TrustStore, formats
from kzlabel.cli import main
from kzlabel.errors import CorruptInput, KzlabelError, SigningError
from kzlabel.io import Spool, check_destination, temp_beside, write_atomic
from kzlabel.layers import c2pa as c2pa_layer
from kzlabel.server import create_app


def _png() -> bytes:
    y, x = np.mgrid[0:128, 0:160]
    buf = io.BytesIO()
    Image.fromarray(np.dstack([x, y, (x ^ y) % 256]).astype(np.uint8), "RGB").save(buf, format="PNG")
    return buf.getvalue()


def _bug(*args: object, **kwargs: object) -> None:
    raise AttributeError("'NoneType' object has no attribute 'frobnicate'")


@pytest.fixture
def png_bug_on_inspect(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(type(formats.get("png")), "inspect", _bug)


def test_a_bug_while_verifying_is_not_reported_as_corrupt_input(png_bug_on_inspect: None) -> None:
    with pytest.raises(AttributeError, match="frobnicate"):
        Labeler().verify(_png(), name="x.png")


def test_a_bug_while_marking_propagates_and_leaves_no_output(signer, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(type(formats.get("png")), "embed_watermark", _bug)
    src = tmp_path / "in.png"
    src.write_bytes(_png())
    dst = tmp_path / "out.png"
    with pytest.raises(AttributeError):
        Labeler(signer, owner="O", system="S").mark(src, dst)
    assert not dst.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]  # no temp file left behind


def test_handler_errors_get_the_file_and_format(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise CorruptInput("bad chunk")

    monkeypatch.setattr(type(formats.get("png")), "inspect", broken)
    with pytest.raises(CorruptInput) as info:
        Labeler().verify(_png(), name="x.png")
    assert (info.value.source, info.value.format) == ("x.png", "png")


def test_cli_exits_3_on_a_bug_and_2_on_bad_input(png_bug_on_inspect: None, tmp_path: Path, capsys) -> None:
    path = tmp_path / "x.png"
    path.write_bytes(_png())
    assert main(["verify", str(path)]) == 3
    err = capsys.readouterr().err
    assert err.startswith("kzlabel: internal error: AttributeError") and err.count("\n") == 1
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 40)  # a broken JPEG: the input's fault
    assert main(["verify", str(tmp_path / "bad.jpg")]) == 2


def test_service_answers_500_json_on_a_bug(png_bug_on_inspect: None, trust: TrustStore) -> None:
    with TestClient(create_app(trust=trust), raise_server_exceptions=False) as client:
        r = client.post("/verify", params={"name": "x.png"}, content=_png())
    assert r.status_code == 500
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["error"] == "internal_error" and "Traceback" not in r.text and "frobnicate" not in r.text


def test_c2pa_library_errors_become_signing_errors_with_the_cause(signer, monkeypatch: pytest.MonkeyPatch) -> None:
    c2pa = c2pa_layer._need()

    class FailingBuilder:
        get_supported_mime_types = c2pa.Builder.get_supported_mime_types

        def __init__(self, *args: object, **kwargs: object) -> None:
            raise c2pa.C2paError("Other: embedding error")

    monkeypatch.setattr(c2pa, "Builder", FailingBuilder)
    with pytest.raises(SigningError) as info:
        c2pa_layer.sign(_png(), "image/png", signer, label_claims=None)
    assert isinstance(info.value.__cause__, c2pa.C2paError)


def test_other_errors_inside_the_c2pa_layer_are_not_disguised(signer, monkeypatch: pytest.MonkeyPatch) -> None:
    c2pa = c2pa_layer._need()

    class BuggyBuilder:
        get_supported_mime_types = c2pa.Builder.get_supported_mime_types

        def __init__(self, *args: object, **kwargs: object) -> None:
            raise TypeError("definition must be a dict")

    monkeypatch.setattr(c2pa, "Builder", BuggyBuilder)
    with pytest.raises(TypeError):
        c2pa_layer.sign(_png(), "image/png", signer, label_claims=None)
    assert not issubclass(TypeError, KzlabelError)


def test_cli_json_errors_say_internal_error_and_exit_3(png_bug_on_inspect: None, tmp_path: Path, capsys) -> None:
    path = tmp_path / "x.png"
    path.write_bytes(_png())
    assert main(["verify", str(path), "--json"]) == 3
    out = capsys.readouterr().out
    body = json.loads(out)
    assert body["error"] == "internal_error" and body["reason"].startswith("AttributeError")


def test_a_missing_or_unwritable_output_folder_is_a_kzlabel_error(signer, tmp_path: Path, monkeypatch) -> None:
    src = tmp_path / "in.txt"
    src.write_text("A generated story.\n")
    labeler = Labeler(signer, owner="O", system="S")
    with pytest.raises(KzlabelError, match="output folder .* does not exist") as info:
        labeler.mark(src, tmp_path / "missing" / "out.txt")
    assert info.value.source == str(tmp_path / "missing" / "out.txt")
    with pytest.raises(KzlabelError, match="is a folder"):
        labeler.mark(src, tmp_path)
    # the atomic write itself translates the same problems (e.g. a folder removed or made read-only meanwhile)
    with pytest.raises(KzlabelError, match="does not exist"):
        write_atomic(tmp_path / "gone" / "x.bin", b"x")
    with pytest.raises(KzlabelError, match="does not exist"):
        Spool(tmp_path / "gone" / "x.bin").new()

    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    with pytest.raises(KzlabelError, match="cannot write into") as info:
        temp_beside(tmp_path / "x.bin")
    assert info.value.source == str(tmp_path / "x.bin")
    monkeypatch.setattr(os, "access", lambda *a, **k: False)  # a read-only folder, as non-root users see one
    with pytest.raises(KzlabelError, match="cannot write into"):
        check_destination(tmp_path / "x.bin")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt"]  # nothing written anywhere
