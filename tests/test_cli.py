"""The command line: keygen file modes, mark/verify exit codes, one-line errors without tracebacks."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from kzlabel.cli import main
from kzlabel.formats import detect
from kzlabel.io import Input

SAMPLES = Path(__file__).resolve().parent.parent / "fixtures" / "samples"
# marking audio and video (PyAV decode + re-encode) takes about a second per sample: those are in the slow set
MEDIA = ("audio/", "video/")
BY_COST = [pytest.param(p.name, marks=pytest.mark.slow if detect(Input(path=p)).mime.startswith(MEDIA) else ())
           for p in sorted(SAMPLES.iterdir())]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kzlabel.cli", *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def cli_keys(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("clikeys") / "keys"
    assert main(["keygen", str(d), "--org", "CLI Owner"]) == 0
    return d


def test_keygen_writes_private_key_0600_and_never_prints_it(tmp_path):
    d = tmp_path / "k"
    proc = run("keygen", str(d))
    assert proc.returncode == 0, proc.stderr
    key = d / "signing.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert (d / "chain.pem").read_text().count("BEGIN CERTIFICATE") == 2
    assert (d / "trust.pem").read_text().count("BEGIN CERTIFICATE") == 1
    secret = key.read_text()
    assert "PRIVATE KEY" in secret and "PRIVATE KEY" not in proc.stdout + proc.stderr
    body = "".join(secret.strip().splitlines()[1:-1])
    assert body[:20] not in proc.stdout + proc.stderr
    again = run("keygen", str(d))
    assert again.returncode == 2 and "exist" in again.stderr.lower()


@pytest.mark.parametrize("sample", BY_COST)
def test_mark_then_verify_sample(cli_keys, tmp_path, sample, capsys):
    dst = tmp_path / sample
    code = main(["mark", str(SAMPLES / sample), "-o", str(dst), "--key", str(cli_keys), "--system", "Gen",
                 "--owner", "ТОО Мысал", "--lang", "kk,en"])
    assert code == 0
    assert dst.exists() and dst.read_bytes() != (SAMPLES / sample).read_bytes()
    capsys.readouterr()
    assert main(["verify", str(dst), "--trust", str(cli_keys), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["verdict"] == "compliant" and report["trusted"] is True
    assert report["label"]["owner"] == "ТОО Мысал"
    assert [n["lang"] for n in report["label"]["notice"]] == ["kk", "en"]


def test_verify_exit_codes(cli_keys, tmp_path, capsys):
    plain = tmp_path / "plain.txt"
    plain.write_text("nothing here\n")
    assert main(["verify", str(plain)]) == 1
    assert "unlabelled" in capsys.readouterr().out
    labelled = tmp_path / "l.txt"
    assert main(["mark", str(plain), "-o", str(labelled), "--key", str(cli_keys), "--system", "S", "--owner", "O"]) == 0
    text = labelled.read_text().replace("nothing", "something")
    labelled.write_text(text)
    capsys.readouterr()
    assert main(["verify", str(labelled)]) == 1
    assert "tampered" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args,needle",
    [
        (["verify", "/nonexistent/file.txt"], "no such file"),
        (["mark", "SRC", "-o", "DST", "--key", "/nonexistent", "--system", "S", "--owner", "O"], "/nonexistent"),
        (["mark", "BIN", "-o", "DST", "--key", "KEYS", "--system", "S", "--owner", "O"], "unsupported format"),
        (["mark", "SRC", "--key", "KEYS", "--system", "S", "--owner", "O"], "-o"),
        (["verify"], "missing"),
    ],
)
def test_errors_are_one_line_exit_2_no_traceback(cli_keys, tmp_path, args, needle):
    src = tmp_path / "s.txt"
    src.write_text("x\n")
    binary = tmp_path / "b.txt"
    binary.write_bytes(os.urandom(4096) + b"\x00")
    subst = {"SRC": str(src), "DST": str(tmp_path / "d.txt"), "KEYS": str(cli_keys), "BIN": str(binary)}
    proc = run(*[subst.get(a, a) for a in args])
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert needle.lower() in proc.stderr.lower()
    assert not (tmp_path / "d.txt").exists()


def test_optout_training_check_and_dataset_commands(cli_keys, tmp_path, capsys):
    site = tmp_path / "site"
    site.mkdir()
    page = site / "p.html"
    page.write_text("<!DOCTYPE html><html><head></head><body>mine</body></html>\n")
    (site / "free.txt").write_text("free\n")
    assert main(["training-check", str(site)]) == 0
    assert main(["optout", str(page), "--deny", "ai-training,data-mining"]) == 0
    assert "tdm-reservation" in page.read_text()
    capsys.readouterr()
    assert main(["training-check", str(site), "--json"]) == 1
    lines = [json.loads(l) for l in capsys.readouterr().out.splitlines()]
    assert {l["source"].rsplit("/", 1)[1]: l["status"] for l in lines} == {"p.html": "notAllowed", "free.txt": "unspecified"}
    assert main(["optout", str(site), "--well-known"]) == 0
    assert json.loads((site / ".well-known" / "tdmrep.json").read_text())[0]["location"] == "/p.html"
    assert main(["dataset", str(site), "--producer", "P", "--license", "CC0-1.0", "--key", str(cli_keys)]) == 0
    assert main(["dataset", str(site), "--verify", "--trust", str(cli_keys)]) == 0
    (site / "free.txt").write_text("changed\n")
    capsys.readouterr()
    assert main(["dataset", str(site), "--verify", "--trust", str(cli_keys)]) == 1
    assert "changed: free.txt" in capsys.readouterr().out
    assert main(["optout", str(page), "--deny", "cooking"]) == 2


def test_batch_labels_a_folder_then_verifies_and_checks_training(cli_keys, tmp_path, capsys):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "a.md").write_text("# Title\n\nGenerated answer.\n", encoding="utf-8")
    (src / "b.txt").write_text("Generated story.\n", encoding="utf-8")
    out = tmp_path / "out"
    code = main(["batch", str(src), "-o", str(out), "--key", str(cli_keys), "--system", "S", "--owner", "O",
                 "--training", "not-allowed", "--no-progress", "--workers", "1"])
    assert code == 0
    assert (out / "sub" / "a.md").read_text(encoding="utf-8") != (src / "sub" / "a.md").read_text(encoding="utf-8")
    assert main(["batch", "--verify", str(out), "--trust", str(cli_keys), "--no-progress", "--workers", "1"]) == 0
    assert "compliant" in capsys.readouterr().out
    # every labelled file says "no training": the check lists them and exits 1
    assert main(["batch", "--training-check", str(out), "--no-progress", "--workers", "1"]) == 1
    assert main(["batch", "--verify", str(src), "--no-progress", "--workers", "1"]) == 1  # unlabelled originals
    assert main(["batch", str(src), "--no-progress"]) == 2  # labelling without -o/--key is a usage error
