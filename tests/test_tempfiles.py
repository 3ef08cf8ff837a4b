"""Temp files: every one kzlabel makes names the process that made it, and a later run sweeps those of killed runs
(``kill -9`` cannot clean up after itself) from each folder it writes temp files to, never a live run's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import kzlabel
from kzlabel import io as kio
from kzlabel.io import sweep_stale_temps, temp_beside, temp_dir


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_only_leftovers_of_processes_that_are_gone_are_swept(tmp_path: Path) -> None:
    dead, alive = _dead_pid(), os.getppid()
    stale_file = tmp_path / f".photo.jpg.kz{dead}.a1b2c3d4.kztmp"
    stale_dir = tmp_path / f".kzlabel-spill.kz{dead}.x9y8.kztmp"
    live = tmp_path / f".photo.jpg.kz{alive}.e5f6g7h8.kztmp"  # another run, still working
    user = tmp_path / ".notes.kztmp"  # not kzlabel's pattern: never touched
    stale_file.write_bytes(b"")
    stale_dir.mkdir()
    (stale_dir / "member").write_bytes(b"x" * 10)
    live.write_bytes(b"")
    user.write_bytes(b"mine")
    assert sorted(sweep_stale_temps(tmp_path)) == sorted([stale_file, stale_dir])
    assert live.exists() and user.read_bytes() == b"mine"
    assert not stale_file.exists() and not stale_dir.exists()


def test_new_temp_names_carry_this_process_and_survive_the_sweep(tmp_path: Path) -> None:
    made = [temp_beside(tmp_path / "out.png"), temp_dir("spill", tmp_path)]
    assert all(f".kz{os.getpid()}." in p.name and p.name.endswith(".kztmp") for p in made)
    sweep_stale_temps(tmp_path)
    assert all(p.exists() for p in made)


def test_a_run_after_kill_9_sweeps_the_temp_files_the_killed_run_left(tmp_path: Path, keydir: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A mark without a destination spools in the system temp folder; a run killed mid-write leaves its spool there,
    and the next mark (any process) removes it before writing its own."""
    script = (
        "import os, signal; from pathlib import Path; from kzlabel.io import Spool; "
        "p = Spool(None).new(); p.write_bytes(b'half'); print(p, flush=True); os.kill(os.getpid(), signal.SIGKILL)"
    )
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    left = Path(proc.stdout.strip())
    assert left.parent == tmp_path and left.exists()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(kio, "_RAM_FOLDER", tmp_path / "no-such-ram-folder")  # a small output spools on disk too
    marked = kzlabel.mark(b"An answer.\n", signer=kzlabel.Signer.load(keydir), system="S", owner="O", name="a.txt")
    assert b"kzlabel: " in marked  # the mark itself ran
    assert not left.exists() and list(tmp_path.iterdir()) == []  # the leftover swept, its own spool removed


def test_batch_sweeps_killed_runs_leftovers_in_dst_and_leaves_other_files(tmp_path: Path, keydir: Path) -> None:
    """A folder DST is swept with the same rule as every other folder kzlabel writes to: a dead run's temp files go,
    a user's file that merely ends in ``.kztmp`` stays, and outputs and the report get the umask's mode, not the
    0600 of their temp files."""
    from kzlabel.batch import run_batch

    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "a.md").write_text("# A\n\nGenerated text.\n")
    (src / "b.bin").write_bytes(b"\x00unsupported")
    (dst / "sub").mkdir(parents=True)
    dead = _dead_pid()
    stale = dst / "sub" / f".a.md.kz{dead}.q1w2e3.kztmp"
    user = dst / ".notes.kztmp"
    stale.write_bytes(b"half")
    user.write_bytes(b"mine")
    old = os.umask(0o022)
    try:
        summary = run_batch(src, dst, labeler_config={"owner": "O", "system": "S"}, key_dir=keydir, workers=1)
    finally:
        os.umask(old)
    assert summary.counts.get("labelled") == 1, summary.text()
    assert not stale.exists() and user.read_bytes() == b"mine"
    assert [p.name for p in dst.rglob("*.kztmp")] == [".notes.kztmp"]
    for out in (dst / "b.bin", Path(summary.report_path or "")):
        assert out.is_file() and out.stat().st_mode & 0o777 == 0o644, out


def test_a_small_output_returned_as_bytes_spools_in_ram(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Small outputs returned as bytes (a chat answer) pass through RAM (/dev/shm) instead of the disk; outputs
    with a destination path still spool beside it, and without a RAM folder everything spools on disk."""
    ram = tmp_path / "shm"
    ram.mkdir()
    monkeypatch.setattr(kio, "_RAM_FOLDER", ram)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    small = kio.Spool(None, small=True)
    path = small.new()
    assert path.parent == ram
    assert kio.Spool(None).new().parent == tmp_path / "tmp"  # not small: a 2 GB output stays off RAM
    assert kio.Spool(tmp_path / "out.txt", small=True).new().parent == tmp_path  # beside its destination
    small.close()
    assert not path.exists()
    monkeypatch.setattr(kio, "_RAM_FREE_MIN", 1 << 62)  # a RAM folder nearly full (a container's small /dev/shm)
    assert kio.Spool(None, small=True).new().parent == tmp_path / "tmp"
    monkeypatch.setattr(kio, "_RAM_FOLDER", tmp_path / "missing")
    assert kio.Spool(None, small=True).new().parent == tmp_path / "tmp"
