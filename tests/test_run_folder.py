"""A run folder is written by one run at a time, and a crashed run does not keep it locked (run_folder.py).

The end-to-end case (two ``ns-train`` with one ``--timestamp``, the first then killed) is in test_cli_refusals.py.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from mald_nerfstudio.errors import MaldInputError
from mald_nerfstudio.run_folder import LOCK_NAME, RunFolderClaim, _process_start_time


def _lock_of(proc: subprocess.Popen, host: str = "") -> dict:
    return {"pid": proc.pid, "host": host or socket.gethostname(), "process_start": _process_start_time(proc.pid),
            "started": "2024-01-01 00:00:00", "command": "ns-train mald-nerf-tiny --timestamp run"}


def test_a_live_run_keeps_the_folder_and_a_killed_one_leaves_it_to_the_next(tmp_path, capsys):
    folder = tmp_path / "out" / "scene" / "mald-nerf-tiny" / "run"
    folder.mkdir(parents=True)
    (folder / "config.yml").write_text("the first run's\n")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (folder / LOCK_NAME).write_text(json.dumps(_lock_of(other)))
        with pytest.raises(MaldInputError) as info:
            RunFolderClaim.claim(folder)
        message = " ".join(str(info.value).split())
        assert message.startswith(f"{folder}: another ns-train is writing into this run folder (process {other.pid} "
                                  "on this machine")
        assert "a run that crashed or was killed does not keep it" in message and "--timestamp" in message
        assert json.loads((folder / LOCK_NAME).read_text())["pid"] == other.pid  # the live run's lock is kept
        assert sorted(p.name for p in folder.iterdir()) == ["config.yml", LOCK_NAME]
    finally:
        other.kill()
        other.wait()

    claim = RunFolderClaim.claim(folder)  # the process is gone: its lock is stale
    assert f"Taking over {folder / LOCK_NAME}: the run that left it (process {other.pid}" in " ".join(
        capsys.readouterr().out.split())
    assert json.loads((folder / LOCK_NAME).read_text())["pid"] == claim.owner["pid"]
    claim.release()
    assert sorted(p.name for p in folder.iterdir()) == ["config.yml"]


def test_a_lock_from_another_host_is_refused_with_the_file_to_delete(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    (folder / LOCK_NAME).write_text(json.dumps(_lock_of(proc, host="render-node-7")))
    with pytest.raises(MaldInputError) as info:
        RunFolderClaim.claim(folder)
    message = " ".join(str(info.value).split())
    assert "a run on host render-node-7" in message and f"delete {folder / LOCK_NAME}" in message


def test_a_refused_run_removes_only_the_folders_it_created(tmp_path):
    (tmp_path / "out" / "scene" / "other-method").mkdir(parents=True)
    folder = tmp_path / "out" / "scene" / "mald-nerf-tiny" / "run"
    claim = RunFolderClaim.claim(folder)
    assert (folder / LOCK_NAME).is_file()
    (folder / "events.out.tfevents").write_text("")  # what the set-up may have written before the refusal
    claim.abandon()
    assert sorted(p.name for p in (tmp_path / "out" / "scene").iterdir()) == ["other-method"]

    claim = RunFolderClaim.claim(folder)  # again, and another run starts beside it in the folder it created
    (folder.parent / "another-timestamp").mkdir()
    claim.abandon()
    assert sorted(p.name for p in folder.parent.iterdir()) == ["another-timestamp"]
