"""One writer per run directory: ``probsae train``, ``probsae sweep`` (each member) and ``probsae eval`` hold an
exclusive lock on ``<run dir>/.probsae.lock`` for as long as they write there (docs/INTEGRITY.md, "One writer").

The lock is ``fcntl.flock(LOCK_EX | LOCK_NB)`` on that file. The kernel releases it when the
holding process ends, however it ends (kill -9 included), so a lock left by a killed process is
never mistaken for a live one and no pid guessing is needed: the next run simply gets it. The
file records the holder (pid, host, start time, command) only to name it in the refusal of a
second process. Where the file system has no ``flock`` (it answers ENOLCK/EOPNOTSUPP) or there is
no ``fcntl`` (Windows), the record itself is the lock: it is taken over when the pid it names no
longer runs on this host (or names another host's process that did not renew it: there is no
way to tell, so the record is honoured).

Releasing removes the file (while still holding the lock), and with it the directories that
acquiring created and that stayed empty, so a start that fails before writing anything leaves
no folder behind. Because the file can vanish between another process's ``open`` and its
``flock``, a lock is only taken on the file that is still at the path (same inode).
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import os
import socket
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from ..errors import RunInUseError
from ..io import ensure_dir, io_error, pid_alive
from ..progress import note

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".probsae.lock"
"""Name of the lock file inside a run directory (hidden; removed when the lock is released)."""

_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.ENOSYS}


def _read_holder(fd: int) -> dict:
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
        holder = json.loads(text) if text.strip() else {}
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def describe_holder(holder: dict) -> str:
    """'pid 123 on host h, started 2026-01-01T00:00:00Z: probsae train …' (what is known of it)."""
    if not holder:
        return "another process (it recorded nothing about itself yet)"
    text = f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}"
    if holder.get("started"):
        text += f", started {holder['started']}"
    command = str(holder.get("command") or "")
    if command:
        text += f": {command[:200]}" + ("…" if len(command) > 200 else "")
    return text


class RunDirLock:
    """The lock of one run directory, held from ``acquire`` until ``release``."""

    def __init__(self, run_dir: str | os.PathLike, command: str | None = None):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self.command = command
        self._fd: int | None = None
        self._created: list[Path] = []  # directories acquire created, outermost first

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "RunDirLock":
        """Take the lock (creating the directory if needed), or raise ``RunInUseError`` naming the
        process that holds it; nothing is written into the directory then."""
        if self._fd is not None:
            return self
        missing = []
        p = self.run_dir.absolute()
        while not p.exists() and p != p.parent:
            missing.append(p)
            p = p.parent
        ensure_dir(self.run_dir, "run directory")
        self._created = [d for d in reversed(missing) if d.is_dir()]
        try:
            for _ in range(10):
                fd = self._open()
                try:
                    previous = self._lock(fd)
                except BaseException:
                    os.close(fd)
                    raise
                if self._still_at_path(fd):
                    break
                os.close(fd)  # the holder released (and removed) the file between our open and flock
            else:
                raise RunInUseError(f"cannot lock {self.run_dir}: its lock file keeps being replaced")
            self._fd = fd
            self._record(previous)
        except BaseException:
            if self._fd is not None:
                self.release()
            self._remove_created()
            raise
        return self

    def release(self) -> None:
        """Remove the lock file and give the lock up; remove the directories ``acquire`` created
        if nothing was written into them."""
        if self._fd is None:
            return
        try:
            os.unlink(self.path)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None
        self._remove_created()

    def __enter__(self) -> "RunDirLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    # ---- pieces -------------------------------------------------------------------------------
    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise io_error("create the lock file", self.path, e) from e

    def _refuse(self, holder: dict) -> RunInUseError:
        return RunInUseError(f"{self.run_dir} is in use by another probsae process ({describe_holder(holder)}); "
                             "wait for it to finish or use another --out")

    def _lock(self, fd: int) -> dict:
        """flock the file (or, without flock, check its record); returns the earlier record."""
        previous = _read_holder(fd)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return _read_holder(fd) or previous
            except BlockingIOError:
                raise self._refuse(_read_holder(fd) or previous) from None
            except OSError as e:
                if e.errno not in _NO_FLOCK:
                    raise io_error("lock", self.path, e) from e
        # no flock here: the record is the lock
        pid, host = previous.get("pid"), previous.get("host")
        if isinstance(pid, int) and pid != os.getpid():
            if host != socket.gethostname() or pid_alive(pid):
                raise self._refuse(previous)
        return previous

    def _still_at_path(self, fd: int) -> bool:
        try:
            return os.fstat(fd).st_ino == os.stat(self.path).st_ino
        except FileNotFoundError:
            return False
        except OSError as e:
            raise io_error("check the lock file", self.path, e) from e

    def _record(self, previous: dict) -> None:
        """Write who holds the lock into the locked file (in place: replacing the file would move
        the lock's inode away from the path)."""
        if previous.get("pid") not in (None, os.getpid()):
            note(f"{self.run_dir} was locked by {describe_holder(previous)}, which no longer holds the lock "
                "(it was killed or crashed); taking it over")
        holder = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                  "command": self.command}
        data = json.dumps(holder).encode()
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, data, 0)
        except OSError as e:
            raise io_error("write the lock file", self.path, e) from e

    def _remove_created(self) -> None:
        for d in reversed(self._created):
            try:
                d.rmdir()  # only when empty
            except OSError:
                break
        self._created = []


@contextmanager
def locked_run_dirs(run_dirs: Sequence[str | os.PathLike], command: str | None = None) -> Iterator[list[RunDirLock]]:
    """Hold the locks of all ``run_dirs`` (a comma-list grid locks each member directory) for the
    ``with`` block; a directory in use raises ``RunInUseError`` after giving back those already taken."""
    with ExitStack() as stack:
        yield [stack.enter_context(RunDirLock(d, command)) for d in run_dirs]
