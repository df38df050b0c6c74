"""The output folder of an ``adam-tx`` run: locked, and written without surprises.

- One run at a time: a lock file (``.adam_tx.lock``, holding the owner's pid)
  is held with ``flock`` for the whole run, so a second run into the same
  folder is refused, and a run killed outright leaves no stale lock behind.
- ``--overwrite`` replaces only the files the command itself writes (its
  ``owned`` names); anything else in the folder is left alone.
- Nothing is written through a symlink: streamed files are created with
  ``O_EXCL | O_NOFOLLOW``, the others are written to a temporary file in the
  folder and renamed over the name (a rename replaces a planted symlink itself,
  never the file it points to).
- Every failure to create, lock or write the folder is an :class:`OutDirError`
  with a one-line message.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import secrets
from collections.abc import Callable, Iterator
from typing import IO, Any

try:
    import fcntl
except ImportError:  # not POSIX: the lock file's existence is the lock
    fcntl = None  # type: ignore[assignment]

LOCK = ".adam_tx.lock"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class OutDirError(Exception):
    """The output folder cannot be used; the message is one line."""


def _why(err: OSError) -> str:
    return err.strerror or type(err).__name__


class RunDir:
    """The locked output folder ``path``, where the command writes ``owned``.

    Use as a context manager; the lock is released (and its file removed) on
    exit, whatever the exit.
    """

    def __init__(
        self, path: pathlib.Path, owned: tuple[str, ...], overwrite: bool
    ) -> None:
        self.path = pathlib.Path(path)
        self.owned = owned
        self._lock_fd: int | None = None
        if self.path.exists() and not self.path.is_dir():
            raise OutDirError(f"--out {self.path} exists and is not a folder")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutDirError(f"cannot create --out {self.path}: {_why(err)}") from None
        self._lock()
        try:
            self._prepare(overwrite)
        except BaseException:
            self.close()
            raise

    def _lock(self) -> None:
        lock = self.path / LOCK
        while True:
            flags = os.O_RDWR | os.O_CREAT | _NOFOLLOW | (0 if fcntl else os.O_EXCL)
            try:
                fd = os.open(lock, flags, 0o666)
            except FileExistsError:
                raise OutDirError(self._in_use(lock)) from None
            except OSError as err:
                raise OutDirError(
                    f"cannot write in --out {self.path}: {_why(err)}"
                ) from None
            if fcntl is None:
                break
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise OutDirError(self._in_use(lock)) from None
            # The previous owner may have removed the file between our open and
            # our flock: then we hold a lock on a file nobody else will see.
            try:
                same = os.path.samestat(os.fstat(fd), os.lstat(lock))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def _in_use(self, lock: pathlib.Path) -> str:
        try:
            pid = lock.read_text().strip() or "unknown"
        except OSError:
            pid = "unknown"
        return (
            f"--out {self.path} is in use by another adam-tx run (pid {pid}); "
            "wait for it to finish or choose another --out"
        )

    def _prepare(self, overwrite: bool) -> None:
        others = sorted(p.name for p in self.path.iterdir() if p.name != LOCK)
        if others and not overwrite:
            raise OutDirError(
                f"--out {self.path} is not empty (add --overwrite to replace "
                "the files adam-tx writes there, or choose another --out)"
            )
        for name in self.owned:
            entry = self.path / name
            if entry.is_symlink() or entry.is_file():
                entry.unlink()  # a symlink itself, never its target
            elif entry.exists():
                raise OutDirError(
                    f"--out {self.path}: {name} is not a file; adam-tx will not "
                    "replace it"
                )

    def file(self, name: str) -> pathlib.Path:
        return self.path / name

    def open_stream(self, name: str) -> IO[str]:
        """A new text file ``name`` (line buffered), for rows written as they come."""
        self._check_owned(name)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW
        try:
            fd = os.open(self.path / name, flags, 0o666)
        except OSError as err:
            raise OutDirError(f"cannot write {self.path / name}: {_why(err)}") from None
        return os.fdopen(fd, "w", buffering=1)

    def write_with(self, name: str, write: Callable[[str], Any]) -> pathlib.Path:
        """Call ``write(tmp_path)``, then rename the result to ``name``."""
        self._check_owned(name)
        # A new file of ours (O_EXCL), with the usual permissions (umask).
        tmp = self.path / f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        tmp = tmp.with_name(tmp.name + pathlib.Path(name).suffix)
        try:
            os.close(
                os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o666)
            )
        except OSError as err:
            raise OutDirError(f"cannot write in {self.path}: {_why(err)}") from None
        try:
            write(str(tmp))
            os.replace(tmp, self.path / name)
        except OSError as err:
            raise OutDirError(f"cannot write {self.path / name}: {_why(err)}") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return self.path / name

    def write_text(self, name: str, text: str) -> pathlib.Path:
        return self.write_with(name, lambda tmp: pathlib.Path(tmp).write_text(text))

    def _check_owned(self, name: str) -> None:
        if name not in self.owned:
            raise ValueError(
                f"{name!r} is not one of this command's files {self.owned}"
            )

    def close(self) -> None:
        """Remove the lock file, then release the lock."""
        if self._lock_fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path / LOCK)
        os.close(self._lock_fd)
        self._lock_fd = None

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def sigint_ignored() -> Iterator[None]:
    """Ignore Ctrl-C while the summary of a run is written (it takes a moment,
    and a second Ctrl-C must not leave a half-written folder)."""
    import signal

    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: signals are not ours to change
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
