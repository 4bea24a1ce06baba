"""Writes that a crash cannot leave half done: write to a staging place beside the destination,
make it durable, then rename it into place.

:func:`atomic_path` does this for one file, :func:`staged_dir` for a folder (a checkpoint, a
gallery index version, a dataset). Both fsync what they wrote before the rename and the folder
holding the destination after it, so once they return the new contents survive a power loss,
not only a killed process; a caller that deletes older data afterwards can rely on that.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import pathlib
import shutil
import tempfile
import uuid
from collections.abc import Iterator


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def fsync_file(path: str | os.PathLike) -> None:
    """Flush a written file's data to the disk (a rename alone does not)."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a folder's entries, so that a rename into or out of it survives a power loss."""
    with contextlib.suppress(OSError):  # not every file system lets a folder be fsynced
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_tree(root: pathlib.Path) -> None:
    """Every file and folder below ``root`` and ``root`` itself, folders after their contents."""
    for folder, _, files in os.walk(root, topdown=False):
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                fsync_file(path)
        fsync_dir(folder)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[pathlib.Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename.

    The temporary file lives in the same folder so the rename is atomic on POSIX, and keeps the
    destination's suffix because some writers (Keras, OpenCV) choose the format from it.
    On any exception the temporary file is removed and ``path`` is untouched.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{''.join(path.suffixes)}",
                               dir=path.parent)
    os.close(fd)
    tmp_path = pathlib.Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; outputs get the usual permissions
    try:
        yield tmp_path
        fsync_file(tmp_path)
        os.replace(tmp_path, path)
        fsync_dir(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def staged_dir(final: str | os.PathLike, *, replace: bool = False,
               prefix: str | None = None) -> Iterator[pathlib.Path]:
    """Yield an empty staging folder beside ``final``; on success it becomes ``final``.

    On leaving the block every file and folder in it is fsynced, it is renamed to ``final`` and
    the parent folder is fsynced. On any exception the staging folder is removed and ``final``
    is untouched.

    ``replace`` says what the caller wants when ``final`` already exists: False (a name that
    must be new, such as an immutable version) raises FileExistsError and keeps the existing
    one; True moves an existing folder aside, renames the new one in and then deletes the old
    one, putting it back if the rename fails (anything else at ``final`` is still refused). A
    kill between those two renames leaves neither at ``final`` (both are kept under the staging
    prefix), so a caller whose readers must always find one should point them at new names.

    ``prefix`` names the staging folder (a random part follows) and the moved-aside one
    (``prefix + "old-"``), so that the caller can recognise and delete what a killed write
    leaves behind; by default ``.<final's name>.tmp-``. The folder is made with ``mkdir``,
    unlike ``mkdtemp``, so it gets the usual permissions (the umask's) rather than 0700.
    """
    final = pathlib.Path(final)
    parent = final.parent
    prefix = f".{final.name}.tmp-" if prefix is None else prefix
    parent.mkdir(parents=True, exist_ok=True)
    staging = parent / f"{prefix}{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        yield staging
        _fsync_tree(staging)
        aside = None
        if replace and final.is_dir():
            aside = parent / f"{prefix}old-{uuid.uuid4().hex}"
            os.rename(final, aside)
        try:
            _rename_into_place(staging, final)
        except BaseException:
            if aside is not None:
                os.rename(aside, final)
            raise
        fsync_dir(parent)  # the new one is in place for good before the old one goes
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # already gone when it was renamed


def _rename_into_place(staging: pathlib.Path, final: pathlib.Path) -> None:
    """Rename ``staging`` to ``final``, which must not exist (POSIX would let a folder silently
    replace an empty one). A step of its own so that tests can make it fail."""
    if final.exists() or final.is_symlink():
        raise FileExistsError(errno.EEXIST, "already exists, not replacing it", str(final))
    os.rename(staging, final)


@contextlib.contextmanager
def exclusive_update(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``PATH.lock`` for a read-modify-write of ``path``: two
    processes updating the same file take turns instead of one overwriting the other's change.
    Waits as long as the other holder takes (such updates are short)."""
    lock = pathlib.Path(f"{os.fspath(path)}.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock

