"""Batch labelling of folders and archives: outputs, metadata, hostile members, resume, verify, training, Dask."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import pickle
import random
import signal
import sqlite3
import stat
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from kzlabel import Limits, TrustStore
from kzlabel.batch import (
    BatchSummary,
    Refused,
    build_labeler,
    kind_of,
    portable_config,
    run_batch,
    safe_member_path,
    training_check,
    verify_batch,
)
from kzlabel.batch.model import FaultHooks

CFG = {"owner": "Test Owner LLP", "system": "TestGen", "system_version": "1.0"}
MiB = 1024 * 1024
OLD = 1_600_000_000  # a fixed past mtime (2020-09-13) so "kept" is distinguishable from "now"


def _png(color: tuple[int, int, int]) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (96, 96), color).save(buf, "PNG")
    return buf.getvalue()


def _jpeg(color: tuple[int, int, int]) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (96, 96), color).save(buf, "JPEG")
    return buf.getvalue()


def _files() -> dict[str, bytes]:
    return {
        "readme.md": b"# Title\n\nA short markdown paragraph produced by a model.\n",
        "notes/plain.txt": b"Plain text written by a generator, several words long.\n",
        "notes/deep/page.html": b"<!doctype html><html><head><title>t</title></head><body><p>Hello there</p></body></html>",
        "img/red.png": _png((200, 30, 30)),
        "img/green.jpg": _jpeg((30, 160, 60)),
        "data/blob.bin": bytes(range(256)) * 3,
    }


SUPPORTED = {"readme.md", "notes/plain.txt", "notes/deep/page.html", "img/red.png", "img/green.jpg"}


def _make_tree(root: Path) -> dict[str, bytes]:
    files = _files()
    for i, (rel, data) in enumerate(sorted(files.items())):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        os.chmod(p, 0o640 if i % 2 else 0o604)
        os.utime(p, (OLD + i, OLD + i))
    return files


def _hash_tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() + oct(p.stat().st_mode)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _report(path: str | None) -> list[dict]:
    assert path is not None
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def _make_zip(path: Path, files: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for i, (rel, data) in enumerate(sorted(files.items())):
            zi = zipfile.ZipInfo(rel, (2021, 3, 4, 5, 6, 8 + 2 * i))
            zi.create_system = 3
            zi.external_attr = (stat.S_IFREG | (0o640 if i % 2 else 0o600)) << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(zi, data)


def _make_tgz(path: Path, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tf:
        for i, (rel, data) in enumerate(sorted(files.items())):
            ti = tarfile.TarInfo(rel)
            ti.size = len(data)
            ti.mode = 0o640 if i % 2 else 0o600
            ti.mtime = OLD + 10 * i
            ti.uname, ti.gname = "alice", "staff"
            tf.addfile(ti, io.BytesIO(data))


# --------------------------------------------------------------------------------------------------------------------
def test_member_paths_and_kinds(tmp_path: Path) -> None:
    assert safe_member_path("a/./b//c.txt") == "a/b/c.txt"
    assert safe_member_path("dir\\x.txt") == "dir/x.txt"
    for bad in ("../evil.txt", "a/../../b", "/etc/passwd", "C:/x", "", "./"):
        with pytest.raises(Refused):
            safe_member_path(bad)
    assert kind_of("x.zip") == "zip" and kind_of("x.tar.gz") == "tgz" and kind_of("x.TGZ") == "tgz"
    assert kind_of("x.tar.zst") == "tzst" and kind_of("x.tar") == "tar" and kind_of("out") == "folder"
    z = tmp_path / "misnamed.dat"
    _make_zip(z, {"a.txt": b"hi"})
    assert kind_of(z, existing=True) == "zip"



def test_limits_reach_the_workers_whole() -> None:
    """The config a worker receives carries every Limits field (a copy of four of the five once turned
    max_c2pa_bytes=1 GiB back into 512 MiB in the workers); a dict of Limits fields is still accepted."""
    limits = Limits(max_c2pa_bytes=1 << 30, max_pixels=1234)
    config = portable_config({**CFG, "limits": limits})
    assert config["limits"] == limits
    shipped = pickle.loads(pickle.dumps(config))  # what crosses the pool's pipe
    assert shipped["limits"] == limits
    assert build_labeler(shipped, None).limits == limits
    assert build_labeler(config, None).limits.max_c2pa_bytes == 1 << 30
    from_dict = portable_config({**CFG, "limits": {"max_c2pa_bytes": 1 << 30}})
    assert build_labeler(pickle.loads(pickle.dumps(from_dict)), None).limits == Limits(max_c2pa_bytes=1 << 30)

def test_folder_to_folder(tmp_path: Path, keydir: Path, trust: TrustStore) -> None:
    src, dst = tmp_path / "src", tmp_path / "out"
    files = _make_tree(src)
    before = _hash_tree(src)
    summary = run_batch(src, dst, labeler_config=CFG, key_dir=keydir, workers=2)
    assert isinstance(summary, BatchSummary)
    assert summary.counts == {"labelled": 5, "copied-unsupported": 1}, summary.text()
    assert _hash_tree(src) == before  # originals untouched
    rows = {r["path"]: r for r in _report(summary.report_path)}
    assert set(rows) == set(files)
    for rel, data in files.items():
        out = dst / rel
        st_src, st_out = (src / rel).stat(), out.stat()
        assert int(st_out.st_mtime) == int(st_src.st_mtime)  # metadata kept
        assert stat.S_IMODE(st_out.st_mode) == stat.S_IMODE(st_src.st_mode)
        assert rows[rel]["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
        if rel in SUPPORTED:
            assert rows[rel]["status"] == "labelled" and rows[rel]["content_id"]
            assert out.read_bytes() != data
        else:
            assert rows[rel]["status"] == "copied-unsupported" and rows[rel]["reason"]
            assert out.read_bytes() == data  # byte-identical copy
    assert "labelled" in Path(summary.summary_path or "").read_text()

    v = verify_batch(dst, trust=trust, workers=1, report_path=tmp_path / "verify.jsonl")
    assert v.counts == {"compliant": 5, "unsupported": 1}, v.text()
    assert all(r["trusted"] for r in _report(v.report_path) if r["status"] == "compliant")
    u = verify_batch(src, trust=trust, workers=1)
    assert u.counts.get("unlabelled") == 5


def test_zip_to_zip_keeps_member_metadata(tmp_path: Path, keydir: Path) -> None:
    src, dst = tmp_path / "in.zip", tmp_path / "out.zip"
    files = _files()
    _make_zip(src, files)
    digest = hashlib.sha256(src.read_bytes()).digest()
    summary = run_batch(src, dst, labeler_config=CFG, key_dir=keydir, workers=1)
    assert summary.counts == {"labelled": 5, "copied-unsupported": 1}, summary.text()
    assert hashlib.sha256(src.read_bytes()).digest() == digest
    assert not Path(str(dst) + ".parts").exists()  # staging removed after assembly
    with zipfile.ZipFile(src) as zi, zipfile.ZipFile(dst) as zo:
        ins = {i.filename: i for i in zi.infolist()}
        outs = {i.filename: i for i in zo.infolist()}
        assert set(outs) == set(ins)
        assert [i.filename for i in zo.infolist()] == sorted(outs)  # deterministic order
        for name, i in ins.items():
            o = outs[name]
            assert o.date_time == i.date_time
            assert o.external_attr >> 16 == i.external_attr >> 16
        assert zo.read("data/blob.bin") == files["data/blob.bin"]
        assert zo.read("readme.md") != files["readme.md"]


def test_tgz_to_tgz_and_to_folder(tmp_path: Path, keydir: Path, trust: TrustStore) -> None:
    src, dst = tmp_path / "in.tar.gz", tmp_path / "out.tgz"
    files = _files()
    _make_tgz(src, files)
    summary = run_batch(src, dst, labeler_config=CFG, key_dir=keydir, workers=2)
    assert summary.counts == {"labelled": 5, "copied-unsupported": 1}, summary.text()
    with tarfile.open(src) as ti, tarfile.open(dst) as to:
        ins = {m.name: m for m in ti.getmembers()}
        outs = {m.name: m for m in to.getmembers()}
        assert set(outs) == set(ins)
        for name, m in ins.items():
            o = outs[name]
            assert (o.mode, int(o.mtime), o.uname, o.gname) == (m.mode, int(m.mtime), m.uname, m.gname)
        assert to.extractfile("data/blob.bin").read() == files["data/blob.bin"]  # type: ignore[union-attr]
    with gzip.open(dst) as fh:  # a valid gzip stream end to end
        fh.read()
    # archive -> folder: nesting and mtimes from the tar headers
    out = tmp_path / "unpacked"
    s2 = run_batch(src, out, labeler_config=CFG, key_dir=keydir, workers=1)
    assert s2.counts["labelled"] == 5
    assert (out / "notes/deep/page.html").is_file()
    with tarfile.open(src) as ti:
        for m in ti.getmembers():
            assert int((out / m.name).stat().st_mtime) == int(m.mtime)
    assert verify_batch(dst, trust=trust, workers=1).counts == {"compliant": 5, "unsupported": 1}
    # .tar.zst out and back in (streamed through zstandard)
    zst = tmp_path / "out.tar.zst"
    assert run_batch(src, zst, labeler_config=CFG, key_dir=keydir, workers=1).counts["labelled"] == 5
    assert zst.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"
    v = verify_batch(zst, trust=trust, workers=1)
    assert v.counts == {"compliant": 5, "unsupported": 1}, v.text()


def test_hostile_archives_are_refused(tmp_path: Path, keydir: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    bomb_zip = work / "hostile.zip"
    with zipfile.ZipFile(bomb_zip, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ok.txt", b"An ordinary text member, fine to label.\n")
        zf.writestr("../evil.txt", b"escape")
        zi = zipfile.ZipInfo("placeholder")
        zi.filename = "/etc/x"  # bypass ZipInfo's own normalisation, as a hostile tool would
        zf.writestr(zi, b"absolute")
        zf.writestr("bomb.bin", b"\0" * (50 * 1024 * 1024))
        link = zipfile.ZipInfo("link")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    dst = work / "out"
    s = run_batch(bomb_zip, dst, labeler_config=CFG, key_dir=keydir, workers=1, max_member_bytes=1024 * 1024)
    rows = {r["path"]: r for r in _report(s.report_path)}
    assert rows["ok.txt"]["status"] == "labelled"
    assert rows["../evil.txt"]["status"] == "refused" and "traversal" in rows["../evil.txt"]["reason"]
    assert rows["/etc/x"]["status"] == "refused" and "absolute" in rows["/etc/x"]["reason"]
    assert rows["bomb.bin"]["status"] == "refused" and "limit" in rows["bomb.bin"]["reason"]
    assert rows["link"]["status"] == "refused" and "symlink" in rows["link"]["reason"]
    assert sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*")) == ["ok.txt"]
    assert not (tmp_path / "evil.txt").exists() and not (work / "evil.txt").exists()
    assert {p for p, st, _ in s.problems if st == "refused"} == {"../evil.txt", "/etc/x", "bomb.bin", "link"}

    # the ratio check catches a bomb under the byte limit
    s2 = run_batch(bomb_zip, work / "out2", labeler_config=CFG, key_dir=keydir, workers=1, bomb_min_bytes=1024 * 1024)
    r2 = {r["path"]: r for r in _report(s2.report_path)}
    assert r2["bomb.bin"]["status"] == "refused" and "bomb" in r2["bomb.bin"]["reason"]

    evil_tar = work / "hostile.tar"
    with tarfile.open(evil_tar, "w") as tf:
        for name, data in (("fine.md", b"# ok\n\nfine text here\n"), ("../../up.txt", b"x"), ("/abs.txt", b"y")):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
        sym = tarfile.TarInfo("sym")
        sym.type, sym.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(sym)
        hard = tarfile.TarInfo("hard")
        hard.type, hard.linkname = tarfile.LNKTYPE, "fine.md"
        tf.addfile(hard)
        dev = tarfile.TarInfo("dev")
        dev.type = tarfile.CHRTYPE
        tf.addfile(dev)
    s3 = run_batch(evil_tar, work / "out3.tar", labeler_config=CFG, key_dir=keydir, workers=1)
    r3 = {r["path"]: r for r in _report(s3.report_path)}
    assert r3["fine.md"]["status"] == "labelled"
    for name in ("../../up.txt", "/abs.txt", "sym", "hard", "dev"):
        assert r3[name]["status"] == "refused", name
    with tarfile.open(work / "out3.tar") as tf:
        assert tf.getnames() == ["fine.md"]
    assert not (tmp_path / "up.txt").exists() and not Path("/abs.txt").exists()


def test_folder_symlinks_not_followed(tmp_path: Path, keydir: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret text outside the tree\n")
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("inside the tree, a text file\n")
    (src / "link.txt").symlink_to(outside / "secret.txt")
    (src / "linkdir").symlink_to(outside)
    s = run_batch(src, tmp_path / "out", labeler_config=CFG, key_dir=keydir, workers=1)
    rows = {r["path"]: r for r in _report(s.report_path)}
    assert rows["a.txt"]["status"] == "labelled"
    assert rows["link.txt"]["status"] == "refused" and "symlink" in rows["link.txt"]["reason"]
    assert rows["linkdir"]["status"] == "refused"
    assert not (tmp_path / "out" / "link.txt").exists() and not (tmp_path / "out" / "linkdir").exists()


def _run_killed(script: str) -> int:
    proc = subprocess.run([sys.executable, "-c", script], check=False, timeout=60)
    return proc.returncode


def _journal_rows(path: Path) -> dict[str, tuple[str, str | None]]:
    with sqlite3.connect(path) as db:
        return {p: (s, h) for p, s, h in db.execute("SELECT path, status, sha256 FROM members WHERE status != 'dir'")}


@pytest.mark.slow
def test_resume_after_crash_archive(tmp_path: Path, keydir: Path) -> None:
    src = tmp_path / "src"
    _make_tree(src)
    for i in range(6):
        (src / f"more/t{i}.txt").parent.mkdir(exist_ok=True)
        (src / f"more/t{i}.txt").write_text(f"Generated text number {i}, long enough to label.\n")
    before = _hash_tree(src)
    dst = tmp_path / "out.tar.gz"
    script = textwrap.dedent(
        f"""
        import os
        from kzlabel.batch import run_batch
        from kzlabel.batch.model import FaultHooks

        def crash(commits):
            if commits >= 4:
                os._exit(137)  # like kill -9 after the 4th journal commit: no cleanup, no reports

        run_batch({str(src)!r}, {str(dst)!r}, labeler_config={CFG!r}, key_dir={str(keydir)!r}, workers=1,
                  _hooks=FaultHooks(after_commit=crash))
        """
    )
    rc = _run_killed(script)
    assert rc == 137
    journal = Path(str(dst) + ".journal.sqlite")
    done = _journal_rows(journal)
    assert len(done) == 4 and not dst.exists()
    parts = Path(str(dst) + ".parts")
    staged = {p.name for p in parts.rglob("*") if p.is_file()}
    assert len(staged) >= 3  # labelled/copied members have staged outputs

    summary = run_batch(src, dst, labeler_config=CFG, key_dir=keydir, workers=2)
    assert summary.total == 12 and summary.resumed == 4, summary.text()
    assert summary.counts == {"labelled": 11, "copied-unsupported": 1}
    assert _hash_tree(src) == before
    with tarfile.open(dst) as tf:
        names = [m.name for m in tf.getmembers() if m.isfile()]
        assert len(names) == len(set(names)) == 12  # every member once
        got = {m.name: hashlib.sha256(tf.extractfile(m).read()).hexdigest() for m in tf.getmembers() if m.isfile()}  # type: ignore[union-attr]
    for path, (_status, sha) in done.items():
        assert got[path] == sha  # members done before the crash: the first run's outputs, reused
    rows = _report(summary.report_path)
    assert sum(1 for r in rows if r.get("resumed")) == 4
    assert all(got[r["path"]] == r["sha256"] for r in rows)

    # A finished run re-run is a no-op and leaves the archive byte-identical.
    first = dst.read_bytes()
    again = run_batch(src, dst, labeler_config=CFG, key_dir=keydir, workers=1)
    assert dst.read_bytes() == first and again.resumed == 12


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for d in Path("/proc").glob("[0-9]*"):
        try:
            if text.encode() in (d / "cmdline").read_bytes() and (d / "stat").read_text().split()[2] != "Z":
                found.append(int(d.name))
        except OSError:
            pass
    return found


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc to look for orphans")
def test_resume_after_sigkill_folder(tmp_path: Path, keydir: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(60):
        (src / f"d{i % 3}").mkdir(exist_ok=True)
        (src / f"d{i % 3}/f{i:02}.md").write_text(f"# Doc {i}\n\nGenerated markdown paragraph {i}.\n" * 20)
    dst = tmp_path / "out"
    journal = tmp_path / "j.sqlite"
    script = textwrap.dedent(
        f"""
        from kzlabel.batch import run_batch
        run_batch({str(src)!r}, {str(dst)!r}, labeler_config={CFG!r}, key_dir={str(keydir)!r}, workers=2,
                  journal={str(journal)!r})
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 30
    killed = False
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists():
            try:
                if len(_journal_rows(journal)) >= 1:
                    os.kill(proc.pid, signal.SIGKILL)
                    killed = True
                    break
            except sqlite3.Error:
                pass
        time.sleep(0.005)
    proc.wait(timeout=30)
    assert killed, "the run finished before it could be killed (60 files should take far longer than one poll)"
    done = _journal_rows(journal)
    assert 1 <= len(done) < 60
    # the pool workers die with their parent: no orphan keeps writing into DST (or hangs forever)
    deadline = time.monotonic() + 5
    while _processes_mentioning(str(journal)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _processes_mentioning(str(journal)) == []
    summary = run_batch(src, dst, labeler_config=CFG, key_dir=keydir, workers=2, journal=journal)
    assert summary.counts == {"labelled": 60} and summary.resumed >= len(done) - 1, summary.text()
    rows = _report(summary.report_path)
    assert len({r["path"] for r in rows}) == 60
    for r in rows:
        out = dst / r["path"]
        assert hashlib.sha256(out.read_bytes()).hexdigest() == r["sha256"]
    for path, (_s, sha) in done.items():
        assert hashlib.sha256((dst / path).read_bytes()).hexdigest() == sha


def test_training_check(tmp_path: Path, keydir: Path) -> None:
    src = tmp_path / "src"
    _make_tree(src)
    reserved = tmp_path / "reserved"
    for sub, training in (("notes", "notAllowed"), ("img", "allowed")):
        side = {k: tmp_path / f"{sub}.{k}" for k in ("journal", "report_path", "summary_path")}  # keep sidecars out
        run_batch(
            src / sub, reserved / sub, labeler_config={**CFG, "training": training}, key_dir=keydir, workers=1, **side
        )
    (reserved / "plain.md").write_text("# untouched\n\nno label here at all\n")
    s = training_check(reserved, workers=1, report_path=tmp_path / "t.jsonl")
    assert sorted(s.flagged) == ["notes/deep/page.html", "notes/plain.txt"], s.text()
    assert s.counts.get("notAllowed") == 2 and s.counts.get("allowed") == 2 and s.counts.get("unspecified") == 1
    assert "may not be used" in s.text()
    assert {r["path"] for r in _report(s.report_path)} >= set(s.flagged)


SITE_RULES = [
    {"location": "/reserved/*", "tdm-reservation": 1, "tdm-policy": "https://example.org/tdm-policy"},
    {"location": "/open/*", "tdm-reservation": 0},
]


def _site_files() -> dict[str, bytes]:
    """A site folder with a TDMRep declaration: one rule reserves /reserved/*, one frees /open/*."""
    return {
        "reserved/a.txt": b"Plain text with no statement of its own.\n",
        "reserved/blob.bin": bytes(range(256)),  # unsupported: the site rule alone decides
        "open/b.txt": b"The file itself reserves its rights.\ntdm-reservation: 1\n",  # conflicts with its rule
        "open/c.txt": b"Free text under a free rule.\n",
        "other.txt": b"No rule matches this path.\n",
        "z/data.jsonl": b'{"q": "a"}\n{"q": "b"}\n',
        ".well-known/tdmrep.json": json.dumps(SITE_RULES).encode(),
    }


def test_training_check_applies_tdmrep_json(tmp_path: Path) -> None:
    files = _site_files()
    folder = tmp_path / "site"
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    tgz = tmp_path / "site.tgz"  # the declaration is the last member: a streamed tar meets it after the others
    with tarfile.open(tgz, "w:gz") as tf:
        for rel in sorted(files, key=lambda r: r.startswith(".well-known")):
            ti = tarfile.TarInfo("./" + rel)
            ti.size = len(files[rel])
            tf.addfile(ti, io.BytesIO(files[rel]))
    reports = {}
    for src in (folder, tgz):
        s = training_check(src, workers=1, report_path=tmp_path / f"{src.name}.jsonl")
        rows = {r["path"]: r for r in _report(s.report_path)}
        reports[src.name] = {p: (r["status"], r["reason"]) for p, r in rows.items()}
        assert rows[".well-known/tdmrep.json"]["status"] == "tdmrep-site-rules"
        assert rows["reserved/a.txt"]["status"] == "constrained"  # reservation + policy URL
        assert rows["reserved/a.txt"]["signals"][0]["policy"] == "https://example.org/tdm-policy"
        assert rows["reserved/blob.bin"]["status"] == "constrained"
        assert "tdmrep.json alone" in rows["reserved/blob.bin"]["reason"]
        conflict = rows["open/b.txt"]
        assert conflict["status"] == "notAllowed"  # most restrictive wins over the rule's "allowed"
        carriers = {sig["carrier"] for sig in conflict["signals"]}
        assert carriers == {"text trailer tdm-reservation", "tdmrep.json /open/*"}
        assert "conflicting" in conflict["reason"] and "allowed" in conflict["reason"]
        assert "notAllowed" in conflict["reason"]
        assert rows["open/c.txt"]["status"] == "allowed"
        assert rows["other.txt"]["status"] == "unspecified"
        assert rows["z/data.jsonl"]["status"] == "unsupported" and "JSON Lines" in rows["z/data.jsonl"]["reason"]
        assert sorted(s.flagged) == ["open/b.txt", "reserved/a.txt", "reserved/blob.bin"], s.text()
    assert reports["site"] == reports["site.tgz"]

    (folder / ".well-known/tdmrep.json").write_text("[{not json")
    broken = training_check(folder, workers=1, report_path=tmp_path / "broken.jsonl")
    rows = {r["path"]: r for r in _report(broken.report_path)}
    declaration = rows[".well-known/tdmrep.json"]
    assert declaration["status"] == "failed" and "unreadable tdmrep.json" in declaration["reason"]
    assert rows["reserved/a.txt"]["status"] == "unspecified" and rows["open/b.txt"]["status"] == "notAllowed"
    assert not broken.ok


def test_duplicate_members_get_their_own_report_line(tmp_path: Path, keydir: Path, trust: TrustStore) -> None:
    src = tmp_path / "dup.zip"
    with zipfile.ZipFile(src, "w") as zf:
        zf.writestr("a.txt", b"The first member of this name, generated text.\n")
        with pytest.warns(UserWarning, match="Duplicate name"):
            zf.writestr("a.txt", b"A second member with the same name.\n")
    s = run_batch(src, tmp_path / "out", labeler_config=CFG, key_dir=keydir, workers=1)
    rows = {r["path"]: r["status"] for r in _report(s.report_path)}
    assert rows == {"a.txt": "labelled", "a.txt (duplicate)": "refused"}
    assert "first member" in (tmp_path / "out" / "a.txt").read_text()
    v = verify_batch(src, trust=trust, workers=1, report_path=tmp_path / "v.jsonl")
    assert {r["path"]: r["status"] for r in _report(v.report_path)} == {
        "a.txt": "unlabelled",
        "a.txt (duplicate)": "refused",
    }


def test_jsonl_member_is_copied_unchanged_with_reason(tmp_path: Path, keydir: Path) -> None:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    data = b'{"prompt": "hi", "answer": "hello"}\n{"prompt": "bye", "answer": "ciao"}\n'
    (src / "d/chat.jsonl").write_bytes(data)
    s = run_batch(src, tmp_path / "out", labeler_config=CFG, key_dir=keydir, workers=1)
    (row,) = _report(s.report_path)
    assert row["status"] == "copied-unsupported" and "JSON Lines" in row["reason"], row
    assert (tmp_path / "out/d/chat.jsonl").read_bytes() == data
    assert s.ok


def test_dask_local_matches_pool(tmp_path: Path, keydir: Path) -> None:
    from kzlabel.distributed import run_dask

    src = tmp_path / "src"
    _make_tree(src)
    pool = run_batch(src, tmp_path / "pool", labeler_config=CFG, key_dir=keydir, workers=1)
    for scheduler in ("sync", "threads"):
        d = run_dask(src, tmp_path / f"dask_{scheduler}", CFG, keydir, scheduler=scheduler)
        assert d.counts == pool.counts
        got = {r["path"]: r["status"] for r in _report(d.report_path)}
        assert got == {r["path"]: r["status"] for r in _report(pool.report_path)}
        assert int((tmp_path / f"dask_{scheduler}" / "img/red.png").stat().st_mtime) == int(
            (src / "img/red.png").stat().st_mtime
        )
    # folder -> archive: the batch's own staging and assembly
    z = run_dask(src, tmp_path / "dask.zip", CFG, keydir, scheduler="sync")
    assert z.counts == pool.counts
    with zipfile.ZipFile(tmp_path / "dask.zip") as zf:
        assert {i.filename for i in zf.infolist() if not i.is_dir()} == set(_files())
        assert zf.read("data/blob.bin") == _files()["data/blob.bin"]


@pytest.mark.slow
def test_dask_resumes_from_the_journal(tmp_path: Path, keydir: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "out"
    _make_tree(src)
    script = textwrap.dedent(
        f"""
        import os
        from kzlabel.batch.model import FaultHooks
        from kzlabel.distributed import run_dask

        def crash(commits):
            if commits >= 2:
                os._exit(137)  # like kill -9 after the 2nd journal commit

        run_dask({str(src)!r}, {str(dst)!r}, {CFG!r}, {str(keydir)!r}, scheduler="sync", npartitions=6,
                 _hooks=FaultHooks(after_commit=crash))
        """
    )
    assert _run_killed(script) == 137
    done = _journal_rows(Path(str(dst) + ".journal.sqlite"))
    assert len(done) == 2 and not Path(str(dst) + ".report.jsonl").exists()
    from kzlabel.distributed import run_dask

    summary = run_dask(src, dst, CFG, keydir, scheduler="sync")
    assert summary.counts == {"labelled": 5, "copied-unsupported": 1} and summary.resumed == 2, summary.text()
    rows = _report(summary.report_path)
    assert sorted(r["path"] for r in rows if r.get("resumed")) == sorted(done)
    for path, (_status, sha) in done.items():
        assert hashlib.sha256((dst / path).read_bytes()).hexdigest() == sha  # the first run's outputs, kept
    again = run_dask(src, dst, CFG, keydir, scheduler="sync")
    assert again.resumed == 6 and again.counts == summary.counts


def test_journal_of_another_batch_is_rejected(tmp_path: Path, keydir: Path) -> None:
    from kzlabel.errors import KzlabelError

    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("some generated words in a file\n")
    j = tmp_path / "j.sqlite"
    run_batch(src, tmp_path / "out", labeler_config=CFG, key_dir=keydir, workers=1, journal=j)
    with pytest.raises(KzlabelError, match="different batch"):
        run_batch(src, tmp_path / "out", labeler_config={**CFG, "owner": "Else"}, key_dir=keydir, workers=1, journal=j)


def _worker_dies_on_plain_txt(task: object) -> None:
    """Runs in the pool worker before each member (picklable: module level): a crashing C library, acted out."""
    if getattr(task, "path", None) == "notes/plain.txt":
        os._exit(70)


def test_worker_death_fails_only_its_member(tmp_path: Path, keydir: Path) -> None:
    src = tmp_path / "src"
    _make_tree(src)
    dies = FaultHooks(before_member=_worker_dies_on_plain_txt)
    s = run_batch(src, tmp_path / "out", labeler_config=CFG, key_dir=keydir, workers=2, _hooks=dies)
    assert s.counts == {"labelled": 4, "copied-unsupported": 1, "failed": 1}, s.text()
    assert s.problems[0][0] == "notes/plain.txt" and "died" in s.problems[0][2]
    assert not s.ok
    again = run_batch(src, tmp_path / "out", labeler_config=CFG, key_dir=keydir, workers=2)  # failed ones are retried
    assert again.counts == {"labelled": 5, "copied-unsupported": 1} and again.resumed == 5


def test_big_members_are_spilled_not_held(tmp_path: Path, keydir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kzlabel.batch import archives

    monkeypatch.setattr(archives, "SPILL_OVER", 100)  # the PNG, JPEG and .bin (> 100 bytes) go through temp files
    spilled: list[str] = []
    real = archives._read_member

    def spy(*args: object) -> tuple[bytes | None, str | None]:
        data, path = real(*args)  # type: ignore[arg-type]
        if path:
            spilled.append(path)
        return data, path

    monkeypatch.setattr(archives, "_read_member", spy)
    src, dst = tmp_path / "in.tgz", tmp_path / "out.zip"
    files = _files()
    _make_tgz(src, files)
    s = run_batch(src, dst, labeler_config=CFG, key_dir=keydir, workers=1)
    assert s.counts == {"labelled": 5, "copied-unsupported": 1}, s.text()
    with zipfile.ZipFile(dst) as zf:
        assert zf.read("data/blob.bin") == files["data/blob.bin"]
    assert len(spilled) == 3 and not any(Path(p).exists() for p in spilled)  # spilled, then removed
    assert not list(tmp_path.glob(".out.zip.spill.*"))  # the spill folder is removed at the end


def test_folder_output_gets_sidecar_manifests_and_drops_stale_ones(tmp_path: Path, keydir: Path) -> None:
    """Ogg cannot carry an embedded C2PA manifest: in a folder DST its sidecar goes beside it, and an old sidecar in
    SRC does not overwrite the new one; a sidecar next to an embeddable type (a PNG) is just another file."""
    import kzlabel

    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "anoisesrc=d=4:c=pink:a=0.2", "-ac", "2",
                    "-c:a", "libopus", "-b:a", "64k", str(src / "a/song.ogg")], check=True)
    (src / "a/song.ogg.c2pa").write_bytes(b"\x00\x00\x00\x20jumb" + bytes(range(256)))  # an old manifest
    (src / "pic.png").write_bytes(_png((10, 200, 30)))
    other = b"\x00\x00\x00\x20jumb" + bytes(range(255, -1, -1))  # someone else's manifest
    (src / "pic.png.c2pa").write_bytes(other)
    summary = run_batch(src, tmp_path / "out", labeler_config=CFG, key_dir=keydir, workers=1)
    rows = {r["path"]: r for r in _report(summary.report_path)}
    assert "c2pa" in rows["a/song.ogg"]["layers"] and "c2pa" not in rows["a/song.ogg"].get("skipped_layers", {})
    assert rows["a/song.ogg.c2pa"]["status"] == "refused" and "a/song.ogg" in rows["a/song.ogg.c2pa"]["reason"]
    assert rows["pic.png.c2pa"]["status"] == "copied-unsupported"
    assert (tmp_path / "out/pic.png.c2pa").read_bytes() == other
    report = kzlabel.verify(tmp_path / "out/a/song.ogg", trust=kzlabel.TrustStore.load([keydir]))
    assert report.layer("c2pa").status == kzlabel.Status.TRUSTED and summary.ok, str(report)


@pytest.mark.slow  # marks an Ogg (PyAV decode + encode)
def test_archive_output_gets_sidecar_members_and_drops_stale_ones(
    tmp_path: Path, keydir: Path, trust: TrustStore
) -> None:
    """An archive DST mirrors a folder DST: the Ogg's new sidecar manifest is the member ``X.c2pa`` right after it,
    the source's old ``X.c2pa`` is refused rather than copied too, a sidecar next to a PNG or with no owner is just
    another member; a run resumed after a crash still assembles the staged sidecar; verify reads it with its owner."""
    ogg = (Path(__file__).resolve().parent.parent / "fixtures" / "samples" / "podcast.ogg").read_bytes()
    old = b"\x00\x00\x00\x20jumb" + bytes(range(256))  # an old manifest
    other = b"\x00\x00\x00\x20jumb" + bytes(range(255, -1, -1))  # someone else's manifest
    src, dst = tmp_path / "in.zip", tmp_path / "out.tar.gz"
    with zipfile.ZipFile(src, "w") as zf:  # the source's own order: the old sidecar after other members
        for name, data in [("a/song.ogg", ogg), ("pic.png", _png((10, 200, 30))), ("a/song.ogg.c2pa", old),
                           ("pic.png.c2pa", other), ("lonely.ogg.c2pa", other)]:
            zf.writestr(name, data)

    class Crash(Exception):
        pass

    def crash(commits: int) -> None:
        if commits >= 1:
            raise Crash  # after the Ogg's commit: its part and its sidecar are staged, the archive is not made

    with pytest.raises(Crash):
        run_batch(src, dst, labeler_config=CFG, key_dir=keydir, workers=1, _hooks=FaultHooks(after_commit=crash))
    assert not dst.exists() and len(list(Path(f"{dst}.parts").rglob("*.c2pa"))) == 1
    summary = run_batch(src, dst, labeler_config=CFG, key_dir=keydir, workers=1)
    rows = {r["path"]: r for r in _report(summary.report_path)}
    assert rows["a/song.ogg"]["resumed"] and "c2pa" in rows["a/song.ogg"]["layers"]
    assert "c2pa" not in (rows["a/song.ogg"].get("skipped_layers") or {})
    assert rows["a/song.ogg.c2pa"]["status"] == "refused" and "a/song.ogg" in rows["a/song.ogg.c2pa"]["reason"]
    assert rows["pic.png.c2pa"]["status"] == rows["lonely.ogg.c2pa"]["status"] == "copied-unsupported"
    with tarfile.open(dst) as tf:
        names = [m.name for m in tf.getmembers()]
        side = tf.extractfile("a/song.ogg.c2pa").read()  # type: ignore[union-attr]
        assert tf.extractfile("pic.png.c2pa").read() == other  # type: ignore[union-attr]
        assert tf.getmember("a/song.ogg.c2pa").mode == tf.getmember("a/song.ogg").mode
    assert names.count("a/song.ogg.c2pa") == 1 and names.index("a/song.ogg.c2pa") == names.index("a/song.ogg") + 1
    assert side != old and len(side) > 1000
    v = verify_batch(dst, trust=trust, workers=1, report_path=tmp_path / "v.jsonl")
    assert v.counts == {"compliant": 2, "unsupported": 2}, v.text()  # pic.png.c2pa and lonely.ogg.c2pa: own members
    verified = {r["path"]: r for r in _report(v.report_path)}
    assert set(verified) == {"a/song.ogg", "pic.png", "pic.png.c2pa", "lonely.ogg.c2pa"}
    c2pa = next(e for e in verified["a/song.ogg"]["evidence"] if e["layer"] == "c2pa")
    assert c2pa["status"] == "trusted" and c2pa["data"]["sidecar"] == "song.ogg.c2pa", c2pa


def test_sidecar_pairing_holds_or_spills_in_one_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pairing behind ``batch --verify``: a sidecar met before its owner is held (spilled past the in-memory
    budget); an owner met first waits, its bytes spilled unless its sidecar is the very next member; a sidecar of a
    type that embeds its manifest, or with no owner, stays a member of its own."""
    from kzlabel.batch import sidecars
    from kzlabel.batch.model import Entry

    ogg = (Path(__file__).resolve().parent.parent / "fixtures" / "samples" / "podcast.ogg").read_bytes()
    png = _png((1, 2, 3))

    def entries(*names: str) -> list[Entry]:
        data = {"ogg": ogg, "png": png}
        return [Entry(n, "file", size=len(b), data=b) for n in names
                for b in [data.get(n.rsplit(".", 1)[-1], b"side of " + n.encode())]]

    spill = tmp_path / "spill"
    seen: list[Entry] = []

    def pairs(*names: str) -> dict[str, bytes | None]:
        out = {}
        for e, side in sidecars.pair_sidecars(entries(*names), spill):
            seen.append(e)
            out[e.path] = side
        return out

    # right after its owner: paired with nothing spilled
    assert pairs("a.ogg", "a.ogg.c2pa") == {"a.ogg": b"side of a.ogg.c2pa"}
    assert not spill.exists() and seen[-1].data == ogg
    # the owner first, other members in between: it waits in the spill folder
    got = pairs("a.ogg", "b.png", "a.ogg.c2pa", "b.png.c2pa")
    assert got == {"a.ogg": b"side of a.ogg.c2pa", "b.png": None, "b.png.c2pa": None}
    owner = next(e for e in seen if e.path == "a.ogg" and e.spilled)
    assert owner.data is None and Path(owner.src_file or "").read_bytes() == ogg
    # the sidecar first: held in memory, or spilled past the budget; an orphan is a member of its own
    monkeypatch.setattr(sidecars, "HELD_IN_MEMORY", 0)
    assert pairs("c.ogg.c2pa", "lone.ogg.c2pa", "c.ogg") == {
        "c.ogg": b"side of c.ogg.c2pa", "lone.ogg.c2pa": None
    }
    lone = seen[-1]
    assert lone.path == "lone.ogg.c2pa" and lone.spilled and lone.data is None
    assert len(list(spill.iterdir())) == 2  # the waiting owner and the orphan (the paired sidecar's copy is gone)


# --------------------------------------------------------------------------------------------------------------------
# Issue 21: archive permissions, one report line per duplicate, a refused member in a compressed tar skipped cheaply
_SPECIAL = stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX


def _data_filter_mode(mode: int, is_dir: bool) -> int:
    """What Python's tarfile ``data`` filter leaves of a mode (folders: theirs plus owner rwx, see safe_mode)."""
    info = tarfile.TarInfo("d" if is_dir else "f")
    info.type, info.mode = (tarfile.DIRTYPE if is_dir else tarfile.REGTYPE), mode
    filtered = tarfile.data_filter(info, "/tmp").mode  # type: ignore[attr-defined]
    return (mode & 0o755) | 0o700 if is_dir else filtered


def _make_moded(src: Path, kind: str, dirs: dict[str, int], files: dict[str, int]) -> None:
    """A source of ``kind`` (folder, zip, tar) with these folder and file modes; file bytes are unsupported (copied)."""
    if kind == "folder":
        for rel in sorted(files):
            p = src / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"\x00\x01 opaque " + rel.encode())
            os.chmod(p, files[rel])
        for rel in sorted(dirs, key=lambda d: -d.count("/")):
            (src / rel).mkdir(parents=True, exist_ok=True)
            os.chmod(src / rel, dirs[rel])
    elif kind == "zip":
        with zipfile.ZipFile(src, "w") as zf:
            for rel, mode in sorted(dirs.items()):
                zi = zipfile.ZipInfo(rel + "/")
                zi.create_system, zi.external_attr = 3, ((stat.S_IFDIR | mode) << 16) | 0x10
                zf.writestr(zi, b"")
            for rel, mode in sorted(files.items()):
                zi = zipfile.ZipInfo(rel)
                zi.create_system, zi.external_attr = 3, (stat.S_IFREG | mode) << 16
                zf.writestr(zi, b"\x00\x01 opaque " + rel.encode())
    else:
        with tarfile.open(src, "w:gz") as tf:
            for rel, mode in sorted(dirs.items()):
                ti = tarfile.TarInfo(rel)
                ti.type, ti.mode = tarfile.DIRTYPE, mode
                tf.addfile(ti)
            for rel, mode in sorted(files.items()):
                data = b"\x00\x01 opaque " + rel.encode()
                ti = tarfile.TarInfo(rel)
                ti.mode, ti.size = mode, len(data)
                tf.addfile(ti, io.BytesIO(data))


def _output_modes(dst: Path) -> dict[str, tuple[int, bool]]:
    """path -> (permission bits, is a folder) of every entry of a folder, zip or tar output."""
    if dst.is_dir():
        return {p.relative_to(dst).as_posix(): (stat.S_IMODE(p.stat().st_mode), p.is_dir()) for p in dst.rglob("*")}
    if zipfile.is_zipfile(dst):
        with zipfile.ZipFile(dst) as zf:
            return {
                i.filename.rstrip("/"): (stat.S_IMODE(i.external_attr >> 16), i.is_dir()) for i in zf.infolist()
            }
    with tarfile.open(dst) as tf:
        return {m.name: (m.mode, m.isdir()) for m in tf.getmembers()}


def test_setuid_member_and_open_folder_come_out_as_the_data_filter_leaves_them(tmp_path: Path, keydir: Path) -> None:
    """The issue's case: a tar member 04777 was written as -rwsrwxrwx and a folder entry 0777 stayed 0777."""
    src = tmp_path / "in.tar.gz"
    _make_moded(src, "tar", {"d": 0o777}, {"d/run.bin": 0o4777, "d/sticky.bin": 0o1666, "d/group.bin": 0o2775})
    for out in ("out", "out.zip", "out.tgz"):
        s = run_batch(src, tmp_path / out, labeler_config=CFG, key_dir=keydir, workers=1)
        assert s.counts == {"copied-unsupported": 3}, s.text()
        modes = _output_modes(tmp_path / out)
        assert modes["d"] == (0o755, True) and modes["d/run.bin"] == (0o755, False), (out, modes)
        assert modes["d/sticky.bin"] == (0o644, False) and modes["d/group.bin"] == (0o755, False), (out, modes)


_MODES = st.integers(0, 0o7777)


@pytest.mark.parametrize("src_kind", ["folder", "zip", "tar"])
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(dir_modes=st.lists(_MODES, min_size=2, max_size=2), file_modes=st.lists(_MODES, min_size=3, max_size=3))
def test_output_modes_never_grant_more_than_the_data_filter(
    tmp_path_factory: pytest.TempPathFactory, keydir: Path, src_kind: str, dir_modes: list[int], file_modes: list[int]
) -> None:
    """Any source modes, setuid/setgid/sticky included, through a folder, zip or tar SRC into a folder, zip or tar
    DST: every output entry has exactly the data filter's mode (no special bits, no group/other write)."""
    tmp = tmp_path_factory.mktemp("modes")
    if src_kind == "folder":  # the source folder must stay walkable (and, for the test's own clean-up, writable)
        dir_modes = [m | 0o700 for m in dir_modes]
    dirs = {"a": dir_modes[0], "a/b": dir_modes[1]}
    files = {"top.bin": file_modes[0], "a/x.bin": file_modes[1], "a/b/y.bin": file_modes[2]}
    src = tmp / ("src" if src_kind == "folder" else f"src.{'zip' if src_kind == 'zip' else 'tgz'}")
    _make_moded(src, src_kind, dirs, files)
    for out in ("out", "out.zip", "out.tar"):
        s = run_batch(src, tmp / out, labeler_config=CFG, key_dir=keydir, workers=1)
        assert s.counts == {"copied-unsupported": 3}, s.text()
        modes = _output_modes(tmp / out)
        for rel, (mode, is_dir) in modes.items():
            assert not mode & (_SPECIAL | 0o022), (out, rel, oct(mode))
        expected = {rel: (_data_filter_mode(m, True), True) for rel, m in dirs.items()}
        expected |= {rel: (_data_filter_mode(m, False), False) for rel, m in files.items()}
        assert modes == expected, (out, {k: oct(v[0]) for k, v in modes.items()})


def test_every_duplicate_member_gets_its_own_report_line(tmp_path: Path, keydir: Path, trust: TrustStore) -> None:
    """Three members of one name plus seven others: ten members, ten lines (the third once shared the second's
    ``PATH (duplicate)`` line, so ten members gave nine); a folder entry repeating a file's name is refused too."""
    src = tmp_path / "dup.zip"
    with zipfile.ZipFile(src, "w") as zf, pytest.warns(UserWarning, match="Duplicate name"):
        for i in range(3):
            zf.writestr("a.txt", f"Member number {i} of this name, generated text.\n".encode())
        for i in range(7):
            zf.writestr(f"other{i}.bin", b"\x00opaque")
    s = run_batch(src, tmp_path / "out", labeler_config=CFG, key_dir=keydir, workers=1)
    rows = {r["path"]: r for r in _report(s.report_path)}
    assert len(rows) == s.total == 10, sorted(rows)
    assert rows["a.txt"]["status"] == "labelled" and "number 0" in (tmp_path / "out" / "a.txt").read_text()
    for dup in ("a.txt (duplicate)", "a.txt (duplicate 3)"):
        assert (rows[dup]["status"], rows[dup]["reason"]) == ("refused", "duplicate member name")
    v = verify_batch(src, trust=trust, workers=1, report_path=tmp_path / "v.jsonl")
    assert len(_report(v.report_path)) == v.total == 10

    tgz = tmp_path / "clash.tgz"
    with tarfile.open(tgz, "w:gz") as tf:
        for name, kind in (("x", tarfile.REGTYPE), ("x", tarfile.DIRTYPE), ("x (duplicate)", tarfile.REGTYPE)):
            ti = tarfile.TarInfo(name)
            ti.type = kind
            tf.addfile(ti, io.BytesIO(b""))
    s = run_batch(tgz, tmp_path / "clash", labeler_config=CFG, key_dir=keydir, workers=1)
    rows = {r["path"]: r["status"] for r in _report(s.report_path)}
    assert s.total == 3 and rows["x (duplicate)"] == rows["x (duplicate) (duplicate)"] == "refused", rows


def _tgz_of(path: Path, members: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w:gz", compresslevel=1) as tf:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))


def test_a_refused_member_in_a_tgz_is_skipped_but_a_bomb_stops_at_the_ratio(tmp_path: Path, keydir: Path) -> None:
    """A member over the size limit is never read into memory; skipping it in a compressed stream means inflating it,
    and that inflation counts towards the archive's expansion: 64 MiB of zeros (a 5 GiB one cost 13.8 s of CPU to
    skip) stops once past ``bomb_min_bytes`` and ``max_total_ratio`` times the compressed bytes, while an incompressible one is skipped and the next member read."""
    text = b"Plain text after the big member, written by a generator.\n"
    bomb = tmp_path / "bomb.tgz"
    _tgz_of(bomb, [("zeros.bin", bytes(64 * MiB)), ("after.txt", text)])
    s = run_batch(bomb, tmp_path / "out", labeler_config=CFG, key_dir=keydir, workers=1,
                  max_member_bytes=MiB, bomb_min_bytes=MiB, max_total_ratio=20.0)
    rows = {r["path"]: r for r in _report(s.report_path)}
    assert rows["zeros.bin"]["status"] == "refused" and "over the 1048576-byte limit" in rows["zeros.bin"]["reason"]
    assert s.aborted and "decompression bomb" in s.aborted, s.text()
    inflated = int(s.aborted.split("(")[1].split(" bytes")[0])
    assert MiB < inflated < 4 * MiB, s.aborted  # 20x the 65 KB file (gzip reads it in one go), not 64 MiB

    noise = tmp_path / "noise.tgz"
    _tgz_of(noise, [("video.bin", os.urandom(2 * MiB)), ("after.txt", text)])
    s = run_batch(noise, tmp_path / "out2", labeler_config=CFG, key_dir=keydir, workers=1,
                  max_member_bytes=256 * 1024, bomb_min_bytes=64 * 1024)
    rows = {r["path"]: r["status"] for r in _report(s.report_path)}
    assert rows == {"video.bin": "refused", "after.txt": "labelled"} and s.aborted is None, s.text()
    plain = tmp_path / "plain.tar"  # uncompressed: the skip is a seek
    plain.write_bytes(gzip.decompress(noise.read_bytes()))
    s = run_batch(plain, tmp_path / "out3.tar", labeler_config=CFG, key_dir=keydir, workers=1,
                  max_member_bytes=256 * 1024, bomb_min_bytes=64 * 1024)
    rows = {r["path"]: r["status"] for r in _report(s.report_path)}
    assert rows == {"video.bin": "refused", "after.txt": "labelled"} and s.aborted is None, s.text()
    with tarfile.open(tmp_path / "out3.tar") as tf:
        assert tf.getnames() == ["after.txt"]


def test_a_big_incompressible_first_tar_member_is_no_bomb(tmp_path: Path, keydir: Path) -> None:
    """The expansion is measured on the bytes inflated, not on a declared size against the little read so far (a
    first member of 4 MiB of noise read as 4x after the first 1 MiB of the file, and the run stopped as a bomb)."""
    src = tmp_path / "noise.tgz"
    _tgz_of(src, [("noise.bin", os.urandom(4 * MiB)), ("after.txt", b"Generated text after the noise.\n")])
    s = run_batch(src, tmp_path / "out", labeler_config=CFG, key_dir=keydir, workers=1,
                  max_total_ratio=2.0, bomb_min_bytes=64 * 1024)
    assert s.aborted is None and s.counts == {"copied-unsupported": 1, "labelled": 1}, s.text()
    s = run_batch(src, tmp_path / "out2", labeler_config=CFG, key_dir=keydir, workers=1,
                  max_total_ratio=0.5, bomb_min_bytes=64 * 1024)  # the guard still measures: 1x is past 0.5x
    assert s.aborted and "decompression bomb" in s.aborted, s.text()


def _archive_bytes(kind: str) -> bytes:
    noise = random.Random(21).randbytes(3000)  # fixed, so the examples below hit the same bytes every time
    members = {"a.txt": b"Generated text, a few words long.\n" * 20, "b/c.bin": noise, "d.md": b"# T\n" * 50}
    buf = io.BytesIO()
    if kind == "zip":
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in members.items():
                zf.writestr(name, data)
        return buf.getvalue()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in members.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    if kind == "tgz":
        return gzip.compress(buf.getvalue())
    import zstandard

    return zstandard.ZstdCompressor().compress(buf.getvalue())


@pytest.mark.parametrize("kind", ["zip", "tgz", "tzst"])
@settings(max_examples=60, deadline=None)
@example(cut=1.0, flips=[(0.0353, 82)])  # zip: corrupt deflate data in a member (zlib.error)
@example(cut=1.0, flips=[(3170.5 / 3340, 255)])  # zip: "version needed" 25.5 in the central directory
@given(cut=st.floats(0.0, 1.0), flips=st.lists(st.tuples(st.floats(0.0, 1.0, exclude_max=True), st.integers(0, 255)),
                                               max_size=4))
def test_a_damaged_archive_source_gives_refusals_or_a_kzlabel_error(kind: str, cut: float, flips: list) -> None:
    """A truncated or byte-flipped zip, .tar.gz or .tar.zst is read as far as it can be; what cannot is a refusal,
    an abort, or a kzlabel error (a truncated .tar.gz once raised EOFError, a garbage one tarfile.ReadError)."""
    from kzlabel.batch.archives import iter_entries
    from kzlabel.batch.model import Safety
    from kzlabel.errors import KzlabelError

    data = bytearray(_archive_bytes(kind))
    for where, value in flips:
        data[int(where * len(data))] = value
    head = {"zip": b"PK\x03\x04", "tgz": b"\x1f\x8b", "tzst": b"\x28\xb5\x2f\xfd"}[kind]
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / {"zip": "x.zip", "tgz": "x.tgz", "tzst": "x.tar.zst"}[kind]
        src.write_bytes(head + bytes(data[len(head) : max(len(head), int(cut * len(data)))]))
        try:
            list(iter_entries(src, Safety(), abort=[]))
        except KzlabelError:
            pass
