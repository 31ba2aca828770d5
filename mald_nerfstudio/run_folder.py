"""The run folder ``ns-train`` writes: claimed before any work, by one run at a time, and left as it was when refused.

:class:`RunFolderClaim` is what :class:`~mald_nerfstudio.trainer.MaldTrainer` does before it sets anything up:

* it creates the run folder (``OUTPUT/EXPERIMENT/METHOD/TIMESTAMP``); a read-only or full output folder is named in
  one paragraph here, before the data is read;
* it takes the folder's lock file, ``ns-train.lock``, which records the process id, host and start time of the run
  writing the folder. A second run with the same ``--timestamp`` is refused while that process lives. A run that
  crashed or was killed keeps no lock: its process is gone, so the next run takes the lock over (and says so). A
  lock written on another host cannot be checked from here; the paragraph names the file to delete;
* when the run is refused later in its set-up (bad input, a foreign checkpoint), :meth:`RunFolderClaim.abandon`
  removes what this run created, so a refused run leaves no folder behind; a folder that existed before (a resumed
  run) keeps everything but the lock.
"""

from __future__ import annotations

import atexit
import errno
import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from nerfstudio.utils.rich_utils import CONSOLE

from mald_nerfstudio.errors import MaldInputError

LOCK_NAME = "ns-train.lock"
"""The lock file in a run folder, present while a run writes it."""


def _process_start_time(pid: int) -> Optional[str]:
    """When process ``pid`` started (clock ticks since boot, Linux only): tells a live run from a reused id."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except OSError:  # pragma: no cover - e.g. Windows without such a process
        return False
    return True


def _this_process() -> Dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(), "process_start": _process_start_time(os.getpid()),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv)}


def _write_error(folder: Path, err: OSError) -> MaldInputError:
    full = err.errno in (errno.ENOSPC, errno.EDQUOT)
    reason = "the disk is full" if full else (err.strerror or str(err))
    return MaldInputError(
        f"ns-train cannot write its run folder here ({reason}; errno {errno.errorcode.get(err.errno or 0, '?')}), "
        "so nothing was trained",
        folder,
        "free space on that disk" if full else "make the folder writable or pass another --output-dir",
    )


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


class RunFolderClaim:
    """One run's hold on its run folder: created and locked by :meth:`claim`, given up by :meth:`release`."""

    def __init__(self, folder: Path, created: List[Path], lock: Path, owner: Dict[str, Any]) -> None:
        self.folder = folder
        """The run folder."""
        self.created = created
        """Folders this run created, outermost first (removed, while empty, when the run is refused)."""
        self.lock = lock
        """The lock file."""
        self.owner = owner
        """What the lock file holds: this process."""
        atexit.register(self.release)

    @classmethod
    def claim(cls, folder: Path) -> "RunFolderClaim":
        """Create ``folder`` (and its parents) and take its lock; a paragraph when it cannot be written or another
        live run holds it."""
        folder = Path(folder)
        created, probe = [], folder
        while not probe.exists() and probe != probe.parent:
            created.insert(0, probe)
            probe = probe.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise _write_error(_nearest_existing(folder), err) from None
        claim = cls(folder, created, folder / LOCK_NAME, _this_process())
        try:
            claim._take_lock()
        except BaseException:
            claim.abandon()
            raise
        return claim

    def _take_lock(self) -> None:
        for _ in range(3):
            try:
                handle = os.open(self.lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                self._check_holder()  # raises while a live run holds it; otherwise removes the stale lock
                continue
            except OSError as err:
                raise _write_error(self.folder, err) from None
            try:
                os.write(handle, (json.dumps(self.owner, indent=1) + "\n").encode())
            except OSError as err:
                os.close(handle)
                self.lock.unlink(missing_ok=True)
                raise _write_error(self.folder, err) from None
            os.close(handle)
            if self._holder() == self.owner:  # two runs that both found a stale lock: the later write wins
                return
        self._check_holder()
        raise MaldInputError("another run took this run folder's lock at the same moment", self.folder,
                             "start this run again once that one has finished, or pass another --timestamp")

    def _holder(self) -> Optional[Dict[str, Any]]:
        try:
            return json.loads(self.lock.read_text())
        except (OSError, ValueError):
            return None

    def _check_holder(self) -> None:
        """Raise the paragraph when a live run holds the lock; remove a lock left by a run that is gone."""
        holder = self._holder()
        for _ in range(10):  # empty or unreadable: another run writing it right now, or killed while it did
            if holder is not None or not self.lock.exists():
                break
            time.sleep(0.2)
            holder = self._holder()
        if holder is None:
            self.lock.unlink(missing_ok=True)
            return
        pid, host = int(holder.get("pid", -1)), str(holder.get("host", "?"))
        here = host == self.owner["host"]
        if here and pid == self.owner["pid"]:  # this very process (a second trainer in one Python session)
            self.lock.unlink(missing_ok=True)
            return
        if here:
            start = _process_start_time(pid)
            gone = not _process_alive(pid) or (
                start is not None and holder.get("process_start") is not None and start != holder["process_start"]
            )
            if gone:
                CONSOLE.print(
                    f"Taking over {self.lock}: the run that left it (process {pid}, started {holder.get('started')}) "
                    "is no longer running.",
                    soft_wrap=True, markup=False, highlight=False,
                )
                self.lock.unlink(missing_ok=True)
                return
            raise MaldInputError(
                f"another ns-train is writing into this run folder (process {pid} on this machine, started "
                f"{holder.get('started')}: {holder.get('command', '?')}); two runs in one folder would overwrite "
                f"each other's checkpoints (its lock file is {LOCK_NAME} here, and a run that crashed or was killed "
                "does not keep it)",
                self.folder,
                "wait for that run to finish or stop it, or pass another --timestamp (or none) to start a separate run",
            )
        raise MaldInputError(
            f"a run on host {host} (process {pid}, started {holder.get('started')}) holds this run folder's lock "
            f"{LOCK_NAME}, and whether it still runs cannot be checked from this machine",
            self.folder,
            f"if that run is no longer running, delete {self.lock}; otherwise pass another --timestamp",
        )

    def release(self) -> None:
        """Remove the lock file if it is still this run's."""
        if self._holder() == self.owner:
            self.lock.unlink(missing_ok=True)
        atexit.unregister(self.release)

    def abandon(self) -> None:
        """Undo the claim of a refused run: release the lock and remove the folders this run created."""
        self.release()
        if self.folder in self.created:
            shutil.rmtree(self.folder, ignore_errors=True)
        for parent in reversed(self.created[:-1]):  # only while empty: another run may have started beside it
            try:
                parent.rmdir()
            except OSError:
                break

    def check_free_space(self, needed_bytes: int) -> None:
        """A paragraph when the folder's disk cannot hold one checkpoint of ``needed_bytes``."""
        free = shutil.disk_usage(self.folder).free
        if free < needed_bytes:
            raise MaldInputError(
                f"the disk holding this run folder has {free / 2**20:.1f} MB free and one checkpoint of this run "
                f"takes at least {needed_bytes / 2**20:.1f} MB, so the run could not save its training (nothing "
                "was trained)",
                self.folder,
                "free space on that disk or pass another --output-dir",
            )
