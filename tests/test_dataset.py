"""Art. 27(5): the signed Croissant manifest of a data library; any added, removed or changed file is detected."""

from __future__ import annotations

import json

import pytest

from kzlabel.dataset import MANIFEST_NAME, verify_manifest, write_manifest
from kzlabel.errors import KzlabelError
from kzlabel.rights.actions import write_optout
from kzlabel.rights.vocab import TrainingPolicy


@pytest.fixture
def library(tmp_path):
    root = tmp_path / "lib"
    (root / "texts").mkdir(parents=True)
    (root / "texts" / "a.txt").write_text("бірінші мәтін\n", encoding="utf-8")
    (root / "texts" / "b.html").write_text("<!DOCTYPE html><html><head></head><body>b</body></html>\n")
    (root / "data.bin").write_bytes(bytes(range(256)))
    write_optout(root / "texts" / "b.html", policy=TrainingPolicy.from_lists(deny=["ai-training"]), in_place=True)
    return root


def test_manifest_is_croissant_with_producer_hashes_and_permissions(library, signer, trust):
    path = write_manifest(library, producer="ТОО Деректер", license="CC-BY-4.0", purpose="LLM fine-tuning",
                          signer=signer)
    assert path == library / MANIFEST_NAME
    m = json.loads(path.read_text())
    assert m["@type"] == "sc:Dataset" and m["conformsTo"] == "http://mlcommons.org/croissant/1.0"
    assert m["creator"]["name"] == m["kz:producer"] == "ТОО Деректер"
    files = {f["@id"]: f for f in m["distribution"]}
    assert set(files) == {"texts/a.txt", "texts/b.html", "data.bin"}
    assert all(f["@type"] == "cr:FileObject" and len(f["sha256"]) == 64 for f in files.values())
    assert files["texts/b.html"]["kz:training"]["ai_training"] == "notAllowed"
    assert files["texts/a.txt"]["kz:training"]["ai_training"] == "unspecified"
    assert m["kz:notAllowedForTraining"] == ["texts/b.html"]
    check = verify_manifest(library, trust=trust)
    assert check.ok and check.signature == "trusted"


@pytest.mark.parametrize("change", ["add", "remove", "modify"])
def test_any_file_change_is_detected(library, signer, trust, change):
    write_manifest(library, producer="P", license="CC0-1.0", signer=signer)
    if change == "add":
        (library / "texts" / "new.txt").write_text("x")
    elif change == "remove":
        (library / "data.bin").unlink()
    else:
        (library / "texts" / "a.txt").write_text("өзгертілген\n", encoding="utf-8")
    check = verify_manifest(library, trust=trust)
    assert not check.ok and check.signature == "trusted"
    assert (check.added, check.removed, check.changed) == {
        "add": (["texts/new.txt"], [], []), "remove": ([], ["data.bin"], []), "modify": ([], [], ["texts/a.txt"])
    }[change]


def test_edited_manifest_breaks_signature(library, signer, trust, other_trust):
    path = write_manifest(library, producer="P", license="CC0-1.0", signer=signer)
    m = json.loads(path.read_text())
    assert verify_manifest(library, trust=other_trust).signature == "untrusted"
    m["kz:producer"] = "Mallory"
    path.write_text(json.dumps(m))
    assert verify_manifest(library, trust=trust).signature == "invalid"
    del m["kz:signature"]
    path.write_text(json.dumps(m))
    check = verify_manifest(library, trust=trust)
    assert check.signature == "absent" and not check.ok


def test_bad_inputs(tmp_path):
    with pytest.raises(KzlabelError, match="not a folder"):
        write_manifest(tmp_path / "missing", producer="P", license="L")
    with pytest.raises(KzlabelError, match="producer"):
        write_manifest(tmp_path, producer=" ", license="L")
    with pytest.raises(KzlabelError, match="no dataset manifest"):
        verify_manifest(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(KzlabelError, match="unreadable"):
        verify_manifest(tmp_path)
