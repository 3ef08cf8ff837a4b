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


# --- trust in the exit code (issue 16, item 4) ---------------------------------------------------------------------
@pytest.mark.parametrize("sample", ["story.txt", "drawing.png"])  # metadata only; C2PA + metadata
def test_verify_with_trust_exits_1_when_no_signed_layer_is_trusted(cli_keys, other_keydir, tmp_path, sample, capsys):
    dst = tmp_path / sample
    assert main(["mark", str(SAMPLES / sample), "-o", str(dst), "--key", str(cli_keys), "--system", "S",
                 "--owner", "O"]) == 0
    capsys.readouterr()
    assert main(["verify", str(dst), "--trust", str(other_keydir)]) == 1  # signed by A, anchors B
    out = capsys.readouterr().out
    assert out.splitlines()[0].endswith(": compliant")  # the verdict stays what the layers earn
    assert "untrusted" in out and out.splitlines()[-1].startswith("not accepted: ")
    assert "--allow-untrusted" in out.splitlines()[-1]
    assert main(["verify", str(dst), "--trust", str(other_keydir), "--allow-untrusted"]) == 0
    assert main(["verify", str(dst), "--trust", str(cli_keys)]) == 0  # trusted
    assert main(["verify", str(dst)]) == 0  # no anchors given: as before
    capsys.readouterr()
    assert main(["verify", str(dst), "--trust", str(other_keydir), "--json"]) == 1
    captured = capsys.readouterr()
    report = json.loads(captured.out)  # stdout stays pure JSON; the one-line reason goes to stderr
    assert report["verdict"] == "compliant" and report["trusted"] is False
    assert report["trust_checked"] is True and report["accepted"] is False
    assert "not under the given trust anchors" in report["why_not_accepted"]
    assert captured.err.startswith("not accepted: ") and captured.err.count("\n") == 1
    assert main(["verify", str(dst), "--trust", str(other_keydir), "--json", "--allow-untrusted"]) == 0
    assert json.loads(capsys.readouterr().out)["accepted"] is True
    assert main(["verify", str(dst), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["trust_checked"] is False and report["accepted"] is True and report["why_not_accepted"] is None


def test_batch_verify_with_trust_does_not_accept_untrusted_members(cli_keys, other_keydir, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.txt").write_text("Generated story.\n", encoding="utf-8")
    (src / "b.md").write_text("# Generated\n\nanswer\n", encoding="utf-8")
    out = tmp_path / "out"
    assert main(["batch", str(src), "-o", str(out), "--key", str(cli_keys), "--system", "S", "--owner", "O",
                 "--no-progress", "--workers", "1"]) == 0
    common = ["batch", "--verify", str(out), "--no-progress", "--workers", "1"]
    assert main([*common, "--trust", str(cli_keys)]) == 0
    capsys.readouterr()
    report = tmp_path / "v.jsonl"
    assert main([*common, "--trust", str(other_keydir), "--report", str(report)]) == 1
    text = capsys.readouterr().out
    assert "compliant but signed outside the trust anchors (2, not accepted)" in text
    rows = [json.loads(line) for line in report.read_text().splitlines()]
    assert {r["status"] for r in rows} == {"compliant"}
    assert all(r["trust_checked"] and r["accepted"] is False and r["why_not_accepted"] for r in rows)
    assert main([*common, "--trust", str(other_keydir), "--allow-untrusted", "--report", str(report)]) == 0
    assert all(json.loads(line)["accepted"] for line in report.read_text().splitlines())
    assert main(common) == 0  # no anchors: as before


# --- errors (issue 16, item 6) -------------------------------------------------------------------------------------
def _no_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KZLABEL_")}
    env.update(extra)
    return env


@pytest.mark.parametrize(
    "args,needle",
    [
        (["mark", "SRC", "-o", "/nonexistent/dir/x.txt", "--key", "KEYS", "--system", "S", "--owner", "O"],
         "/nonexistent/dir"),
        (["mark", "SRC", "-o", "TMP", "--key", "KEYS", "--system", "S", "--owner", "O"], "is a folder"),
        (["mark", "SRC", "-o", "DST", "--system", "S", "--owner", "O"], "--key"),
        (["mark", "SRC", "-o", "DST", "--key", "KEYS", "--system", "S", "--owner", "O", "--kind", "x"], "--kind"),
        (["verify", "SRC", "--no-such-option"], "--no-such-option"),
        (["no-such-command"], "no-such-command"),
    ],
)
def test_every_cli_error_is_one_line_exit_2(cli_keys, tmp_path, args, needle):
    src = tmp_path / "s.txt"
    src.write_text("x\n")
    subst = {"SRC": str(src), "DST": str(tmp_path / "d.txt"), "KEYS": str(cli_keys), "TMP": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "kzlabel.cli", *[subst.get(a, a) for a in args]],
                          capture_output=True, text=True, timeout=120, env=_no_env())
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stderr.startswith("kzlabel: error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert needle.lower() in proc.stderr.lower() and "Traceback" not in proc.stderr
    assert proc.stdout == "" and not (tmp_path / "d.txt").exists()


def test_a_missing_output_folder_is_found_before_any_work(cli_keys, tmp_path, capsys):
    blob = tmp_path / "b.bin"
    blob.write_bytes(os.urandom(4096) + b"\x00")  # unsupported: the folder is checked before the format
    assert main(["mark", str(blob), "-o", str(tmp_path / "no" / "x.bin"), "--key", str(cli_keys), "--system", "S",
                 "--owner", "O"]) == 2
    assert "output folder" in capsys.readouterr().err


def test_help_names_usage_options_and_commands():
    proc = run("mark", "--help")
    assert proc.returncode == 0 and "Usage: kzlabel mark" in proc.stdout and "--key" in proc.stdout
    assert "KZLABEL_KEY" in proc.stdout  # options that fall back to the environment say which variable
    assert proc.stderr == ""
    bare = run()
    assert bare.returncode == 2 and "Usage: kzlabel" in bare.stdout + bare.stderr and "Commands" in bare.stdout
    assert all(name in bare.stdout for name in ("keygen", "mark", "verify", "batch", "serve", "training-check"))


def test_help_never_echoes_a_value_taken_from_the_environment():
    env = {**_no_env(), "KZLABEL_PASSWORD": "pdf-secret-4711", "KZLABEL_OWNER": "Owner LLP"}
    proc = subprocess.run([sys.executable, "-m", "kzlabel.cli", "mark", "--help"], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0 and "KZLABEL_PASSWORD" in proc.stdout
    assert "pdf-secret-4711" not in proc.stdout and "Owner LLP" not in proc.stdout


def test_options_fall_back_to_their_environment_variables(cli_keys, tmp_path):
    src = tmp_path / "s.txt"
    src.write_text("An answer.\n")
    env = {**_no_env(), "KZLABEL_KEY": str(cli_keys), "KZLABEL_SYSTEM": "EnvSys", "KZLABEL_OWNER": "Env Owner"}
    proc = subprocess.run([sys.executable, "-m", "kzlabel.cli", "mark", str(src), "-o", str(tmp_path / "d.txt"),
                           "--json"], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    label = json.loads(proc.stdout)["label"]
    assert label["system"] == "EnvSys" and label["owner"] == "Env Owner"


@pytest.mark.parametrize(
    "args,kind,needle",
    [
        (["verify", "/nonexistent/file.txt", "--json"], "KzlabelError", "no such file"),
        (["verify", "BIN", "--json"], "unsupported_format", "unsupported format"),
        (["verify", "--json"], "usage_error", "missing argument"),
        (["mark", "SRC", "-o", "/nonexistent/dir/x.txt", "--key", "KEYS", "--system", "S", "--owner", "O", "--json"],
         "KzlabelError", "/nonexistent/dir"),
        (["mark", "SRC", "--key", "KEYS", "--system", "S", "--owner", "O", "--json"], "usage_error", "-o"),
        (["mark", "SRC", "-o", "DST", "--system", "S", "--owner", "O", "--json"], "usage_error", "--key"),
        (["training-check", "BIN", "--json", "--trust", "/nonexistent"], "KeyFileError", "/nonexistent"),
    ],
)
def test_json_errors_are_json_on_stdout(cli_keys, tmp_path, args, kind, needle):
    src = tmp_path / "s.txt"
    src.write_text("x\n")
    binary = tmp_path / "b.bin"
    binary.write_bytes(os.urandom(4096) + b"\x00")
    subst = {"SRC": str(src), "DST": str(tmp_path / "d.txt"), "KEYS": str(cli_keys), "BIN": str(binary)}
    proc = subprocess.run([sys.executable, "-m", "kzlabel.cli", *[subst.get(a, a) for a in args]],
                          capture_output=True, text=True, timeout=120, env=_no_env())
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    body = json.loads(proc.stdout)  # the whole of stdout is one JSON object, the service's error shape
    assert set(body) == {"error", "reason"} and body["error"] == kind
    assert needle.lower() in body["reason"].lower()
    assert proc.stderr.startswith("kzlabel: error: ") and proc.stderr.count("\n") == 1


@pytest.mark.slow  # marks an Ogg (PyAV decode + encode)
def test_batch_verify_reads_sidecars_as_companions_of_their_files(cli_keys, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    (src / "podcast.ogg").write_bytes((SAMPLES / "podcast.ogg").read_bytes())
    (src / "story.txt").write_bytes((SAMPLES / "story.txt").read_bytes())
    out = tmp_path / "out"
    assert main(["batch", str(src), "-o", str(out), "--key", str(cli_keys), "--system", "S", "--owner", "O",
                 "--no-progress", "--workers", "1"]) == 0
    assert (out / "podcast.ogg.c2pa").is_file()  # Ogg cannot embed a manifest: it lies beside the file
    report = tmp_path / "v.jsonl"
    capsys.readouterr()
    assert main(["batch", "--verify", str(out), "--trust", str(cli_keys), "--no-progress", "--workers", "1",
                 "--report", str(report)]) == 0, capsys.readouterr().out
    rows = {r["path"]: r for r in map(json.loads, report.read_text().splitlines())}
    assert set(rows) == {"podcast.ogg", "story.txt"}  # the sidecar is no member of its own
    assert rows["podcast.ogg"]["status"] == "compliant" and rows["podcast.ogg"]["accepted"] is True
    c2pa = next(e for e in rows["podcast.ogg"]["evidence"] if e["layer"] == "c2pa")
    assert c2pa["status"] == "trusted" and c2pa["data"]["sidecar"] == "podcast.ogg.c2pa"
    # the training checks walk the folder the same way: no line for the sidecar
    training = tmp_path / "t.jsonl"
    main(["batch", "--training-check", str(out), "--no-progress", "--workers", "1", "--report", str(training)])
    assert {json.loads(line)["path"] for line in training.read_text().splitlines()} == {"podcast.ogg", "story.txt"}
    capsys.readouterr()
    main(["training-check", str(out), "--json"])
    names = {Path(json.loads(line)["source"]).name for line in capsys.readouterr().out.splitlines()}
    assert names == {"podcast.ogg", "story.txt"}


def _archive_names(path: Path) -> list[str]:
    import tarfile
    import zipfile

    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as zf:
            return [i.filename for i in zf.infolist() if not i.is_dir()]
    with tarfile.open(path) as tf:
        return [m.name for m in tf.getmembers() if m.isfile()]


def _verify_archive_rows(path: Path, keys: Path, tmp_path: Path, capsys) -> dict[str, dict]:
    """``kzlabel batch --verify ARCHIVE --trust KEYS``: exit 0, and its report lines by member path."""
    report = tmp_path / f"{path.name}.verify.jsonl"
    capsys.readouterr()
    assert main(["batch", "--verify", str(path), "--trust", str(keys), "--no-progress", "--workers", "1",
                 "--report", str(report)]) == 0, capsys.readouterr().out
    return {r["path"]: r for r in map(json.loads, report.read_text().splitlines())}


def _assert_ogg_verified_with_its_sidecar(rows: dict[str, dict]) -> None:
    assert set(rows) == {"podcast.ogg", "story.txt"}  # the sidecar is no member of its own
    for row in rows.values():
        assert row["status"] == "compliant" and row["accepted"] is True, row
    c2pa = next(e for e in rows["podcast.ogg"]["evidence"] if e["layer"] == "c2pa")
    assert c2pa["status"] == "trusted" and c2pa["data"]["sidecar"] == "podcast.ogg.c2pa", c2pa


@pytest.mark.slow  # marks an Ogg (PyAV decode + encode)
@pytest.mark.parametrize("suffix", [".zip", ".tar.gz"])
def test_batch_archive_output_keeps_sidecars_and_verify_reads_them(cli_keys, tmp_path, capsys, suffix):
    """An archive DST gets the Ogg's sidecar manifest as the member right after it (a folder DST gets the file
    beside it), and ``batch --verify`` / ``--training-check`` of that archive read it with its owner."""
    src = tmp_path / "in"
    src.mkdir()
    (src / "podcast.ogg").write_bytes((SAMPLES / "podcast.ogg").read_bytes())
    (src / "story.txt").write_bytes((SAMPLES / "story.txt").read_bytes())
    out = tmp_path / f"out{suffix}"
    assert main(["batch", str(src), "-o", str(out), "--key", str(cli_keys), "--system", "S", "--owner", "O",
                 "--no-progress", "--workers", "1"]) == 0
    names = _archive_names(out)
    assert names == ["podcast.ogg", "podcast.ogg.c2pa", "story.txt"]  # the sidecar right after its owner
    marked = {r["path"]: r for r in map(json.loads, Path(f"{out}.report.jsonl").read_text().splitlines())}
    assert set(marked) == {"podcast.ogg", "story.txt"}
    assert "c2pa" in marked["podcast.ogg"]["layers"], marked["podcast.ogg"]
    assert "c2pa" not in (marked["podcast.ogg"].get("skipped_layers") or {})
    _assert_ogg_verified_with_its_sidecar(_verify_archive_rows(out, cli_keys, tmp_path, capsys))
    training = tmp_path / "t.jsonl"
    main(["batch", "--training-check", str(out), "--no-progress", "--workers", "1", "--report", str(training)])
    assert {json.loads(line)["path"] for line in training.read_text().splitlines()} == {"podcast.ogg", "story.txt"}


@pytest.mark.slow  # marks an Ogg (PyAV decode + encode)
@pytest.mark.parametrize("order", [("podcast.ogg.c2pa", "story.txt", "podcast.ogg"),
                                   ("podcast.ogg", "story.txt", "podcast.ogg.c2pa")])
def test_batch_verify_pairs_archive_sidecars_in_any_order(cli_keys, tmp_path, capsys, order):
    """A streamed archive may list the sidecar before its owner (held until the owner comes) or after it with other
    members in between (the owner waits, spilled, until its sidecar comes): either way it is verified with it."""
    import io
    import tarfile
    import zipfile

    src = tmp_path / "in"
    src.mkdir()
    (src / "podcast.ogg").write_bytes((SAMPLES / "podcast.ogg").read_bytes())
    (src / "story.txt").write_bytes((SAMPLES / "story.txt").read_bytes())
    folder = tmp_path / "out"
    assert main(["batch", str(src), "-o", str(folder), "--key", str(cli_keys), "--system", "S", "--owner", "O",
                 "--no-progress", "--workers", "1"]) == 0
    as_zip, as_tar = tmp_path / "shuffled.zip", tmp_path / "shuffled.tar"
    with zipfile.ZipFile(as_zip, "w") as zf, tarfile.open(as_tar, "w") as tf:
        for name in order:
            data = (folder / name).read_bytes()
            zf.writestr(name, data)
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    assert _archive_names(as_zip) == _archive_names(as_tar) == list(order)
    for archive in (as_zip, as_tar):
        _assert_ogg_verified_with_its_sidecar(_verify_archive_rows(archive, cli_keys, tmp_path, capsys))
        training = tmp_path / "t.jsonl"
        main(["batch", "--training-check", str(archive), "--no-progress", "--workers", "1",
              "--report", str(training)])
        assert {json.loads(line)["path"] for line in training.read_text().splitlines()} == {"podcast.ogg",
                                                                                            "story.txt"}
