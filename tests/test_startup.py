"""Cold start: a command loads only the libraries its file needs (issue 15, item 6).

Each check runs the CLI in a fresh interpreter and lists ``sys.modules`` afterwards: in this process the other tests
have long since imported everything.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SAMPLES = Path(__file__).resolve().parent.parent / "fixtures" / "samples"

# every media library kzlabel uses; --help and keygen need none of them
MEDIA = ("numpy", "PIL", "cv2", "scipy", "av", "c2pa", "mutagen", "pypdf", "reportlab", "pillow_heif")

_PROBE = """
import json, sys
from kzlabel.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def loaded_after(*args: str) -> tuple[int, set[str]]:
    """The exit code of ``kzlabel ARGS`` run in a fresh interpreter, and every module it had imported by the end."""
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result["code"], set(result["modules"])


def present(modules: set[str], names: tuple[str, ...]) -> list[str]:
    """Which of ``names`` (packages or dotted submodules) were imported."""
    return [n for n in names if n in modules]


def test_help_imports_no_media_library() -> None:
    code, modules = loaded_after("--help")
    assert code == 0
    assert present(modules, MEDIA) == []


def test_keygen_imports_no_media_library(tmp_path: Path) -> None:
    code, modules = loaded_after("keygen", str(tmp_path / "keys"))
    assert code == 0
    assert (tmp_path / "keys" / "signing.key").exists()
    assert present(modules, MEDIA) == []


@pytest.mark.parametrize("sample", ["story.txt", "answer.md"])
def test_verifying_text_loads_no_av_video_or_pdf_library(sample: str) -> None:
    code, modules = loaded_after("verify", str(SAMPLES / sample))
    assert code in (0, 1)  # unlabelled text: verified, not compliant
    assert present(modules, ("av", "cv2", "scipy.signal", "reportlab")) == []


def test_verifying_a_marked_jpeg_loads_no_audio_library(tmp_path: Path, keydir: Path) -> None:
    from kzlabel.cli import main

    marked = tmp_path / "photo.jpg"
    args = ["--key", str(keydir), "--system", "Startup Test", "--owner", "Test Owner LLP"]
    assert main(["mark", str(SAMPLES / "photo.jpg"), "-o", str(marked), *args]) == 0
    code, modules = loaded_after("verify", str(marked))
    assert code == 0  # compliant: every layer, the watermark included, was read
    assert present(modules, ("av", "scipy", "mutagen", "pypdf", "reportlab")) == []  # the image detector: numpy+cv2
    # JPEG magic is owned by the image family alone: no other family's handlers are imported to score it
    others = ("kzlabel.formats.text", "kzlabel.formats.audio", "kzlabel.formats.video", "kzlabel.formats.pdf")
    assert present(modules, others) == []


def test_the_command_line_loads_no_cli_framework() -> None:
    code, modules = loaded_after("--help")
    assert code == 0
    assert present(modules, ("typer", "click", "pydantic", "rich")) == []  # argparse: a few ms, not ~70
