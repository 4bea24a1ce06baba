"""A folder of immutable versions and a pointer to the live one: how a gallery index is stored.

Layout::

    FOLDER/
      CURRENT              names the live version, e.g. "v000003"
      v000003/             one complete version: the caller's files, and a manifest of the
                           caller's in which each file has a record of its size and SHA-256
                           (:func:`file_record`, checked by :func:`check_file`)
      media/               files every version may refer to, named by their content
                           (:data:`SHARED_FOLDER`; the caller's, see reid.index.media)

Saving is atomic: a version folder is never changed once written. :func:`publish` writes a
complete new version into a staging folder (``.tmp-<random>``), fsyncs it and renames it into
place under a new version name (:func:`reid.utils.io.staged_dir`), and only then swaps
``CURRENT`` (itself written to a temporary file, fsynced and renamed). A crash or kill at any
moment before that last rename leaves ``CURRENT`` naming the previous version, whose files are
untouched; after it, the new version is complete. Older versions and the leftovers of
interrupted saves are deleted after the swap. :func:`load_live` reads the version ``CURRENT``
names and tries again if a writer committed a newer one and deleted it meanwhile.

One writer at a time: :func:`writer_lock` holds an exclusive ``flock`` on ``FOLDER/LOCK``, and a
writer that reads the live version, changes it and publishes holds it across all three, so a
second writer waits (with a message) and then starts from the first one's version instead of
overwriting it. The kernel drops the lock when its process dies, however it dies, so a killed
writer leaves nothing to clean up; the file itself stays. Readers take no lock: they only ever
see complete versions. (``flock`` is local to one machine: on a network file system two hosts
can still write at once.)

The shared folder's files are written before the version that refers to them, by a writer that
may not hold the writer lock yet (indexing a video takes long; the lock is taken for its
commit). Such a writer holds :func:`writing_shared`, a shared ``flock`` of the shared folder's
own. :func:`prune_shared`, called under the writer lock with the names the live version refers
to, deletes every other file when no writer holds that: the files of writers that failed or
were killed are removed by the next one to commit, never a file a version or a writer at work
needs. (A reader still answering from an older version may miss the pictures of entries removed
since: a missing picture, never a wrong one.)

The gallery index (:mod:`reid.index.gallery`) is the one thing stored this way, so the messages
speak of a gallery index; what the files in a version are and how they agree with each other
is the gallery's business, not this module's.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pathlib
import re
import shutil
import time
from collections.abc import Callable, Collection, Iterator
from typing import Any, TypeVar

from reid.index.errors import CorruptIndexError, GalleryError
from reid.utils.io import atomic_write_text, file_sha256, staged_dir

CURRENT_FILE = "CURRENT"
LOCK_FILE = "LOCK"
#: Files shared by every version (a gallery's pictures cut from footage): written before the
#: version that first refers to them, named by their content, never changed; those no live
#: version refers to are pruned (:func:`prune_shared`).
SHARED_FOLDER = "media"
#: In the shared folder: held shared by writers preparing files there (:func:`writing_shared`),
#: exclusively while :func:`prune_shared` deletes.
SHARED_LOCK_FILE = ".writers"
#: How long a writer waits for another one to finish before giving up, in seconds.
DEFAULT_LOCK_TIMEOUT = 600.0
_LOCK_POLL = 0.1
_VERSION = re.compile(r"^v(\d{6,})$")
_TMP_PREFIX = ".tmp-"
_POINTER_TMP_PREFIX = f".{CURRENT_FILE}."  # what atomic_write_text leaves of a killed swap
_LOAD_ATTEMPTS = 3

T = TypeVar("T")


def is_versioned_folder(folder: str | os.PathLike) -> bool:
    """True when ``folder`` has a ``CURRENT`` pointer (its versions may still be damaged)."""
    return (pathlib.Path(folder) / CURRENT_FILE).is_file()


def check_writable_folder(folder: pathlib.Path) -> None:
    """Refuse to write an index into a file, or into a folder holding anything else (a typo
    such as ``--index photos/`` must not litter or later clean up someone's folder)."""
    if folder.exists() and not folder.is_dir():
        raise GalleryError(f"{folder}: exists and is not a folder")
    if folder.is_dir():
        others = sorted(p.name for p in folder.iterdir() if not _is_entry(p.name))
        if others:
            shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
            raise GalleryError(f"{folder}: folder is not a gallery index and is not empty "
                               f"(holds {shown})")


@contextlib.contextmanager
def writer_lock(folder: pathlib.Path, timeout: float = DEFAULT_LOCK_TIMEOUT,
                log: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the folder's writer lock, waiting up to ``timeout`` seconds for another writer.

    A folder the lock had to create is removed again if the holder left nothing else in it
    (a build that failed early leaves no trace).
    """
    check_writable_folder(folder)
    created = not folder.exists()
    path = folder / LOCK_FILE
    deadline = time.monotonic() + timeout
    waiting = False
    while True:
        try:
            folder.mkdir(parents=True, exist_ok=True)  # again if a failed first build removed it
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise GalleryError(f"{path}: cannot open the writer lock ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
            os.close(fd)
            if time.monotonic() >= deadline:
                raise GalleryError(f"{folder}: another process is writing this index "
                                   f"({holder}); gave up after waiting {timeout:g} s",
                                   field="lock_timeout") from None
            if not waiting and log is not None:
                log(f"{folder}: waiting for another process to finish writing ({holder})")
            waiting = True
            time.sleep(_LOCK_POLL)
            continue
        if _same_file(fd, path):
            break
        os.close(fd)  # locked a lock file its holder removed on leaving: take the new one
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
                  .encode(), 0)
        yield
    finally:
        if created and [p.name for p in folder.iterdir()] == [LOCK_FILE]:
            with contextlib.suppress(OSError):
                path.unlink()  # still locked: a waiter sees the file is gone and retries
                folder.rmdir()
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def writing_shared(folder: pathlib.Path) -> Iterator[None]:
    """Hold while writing files into the shared folder that no published version refers to yet
    (see the module docstring): :func:`prune_shared` deletes nothing meanwhile. Waits only while
    a prune runs."""
    shared = folder / SHARED_FOLDER
    lock = shared / SHARED_LOCK_FILE
    while True:
        try:
            shared.mkdir(parents=True, exist_ok=True)  # again if a prune removed it
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise GalleryError(f"{lock}: cannot open the shared folder's lock "
                               f"({exc.strerror})") from None
        fcntl.flock(fd, fcntl.LOCK_SH)
        if _same_file(fd, lock):
            break
        os.close(fd)  # a prune removed the folder while this waited: take the new one
    try:
        yield
    finally:
        os.close(fd)


def prune_shared(folder: pathlib.Path, keep: Collection[str]) -> int | None:
    """Delete the files of the shared folder whose names (relative, ``/``-separated) are not in
    ``keep``; returns how many, or None when a writer is preparing files there
    (:func:`writing_shared`) and nothing was deleted. The caller holds :func:`writer_lock` and
    ``keep`` names every file the live version refers to. A folder left empty is removed."""
    shared = folder / SHARED_FOLDER
    lock = shared / SHARED_LOCK_FILE
    if not shared.is_dir():
        return 0
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        removed = 0
        for root, dirs, files in os.walk(shared, topdown=False):
            here = pathlib.Path(root)
            for name in files:
                path = here / name
                if path == lock or path.relative_to(shared).as_posix() in keep:
                    continue
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed += 1
            if here != shared:
                with contextlib.suppress(OSError):
                    here.rmdir()  # only when empty
        if [p.name for p in shared.iterdir()] == [SHARED_LOCK_FILE]:
            with contextlib.suppress(OSError):
                lock.unlink()  # still locked: a waiting writer sees it is gone and retries
                shared.rmdir()
        return removed
    finally:
        os.close(fd)


def _same_file(fd: int, path: pathlib.Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def publish(folder: pathlib.Path, write: Callable[[pathlib.Path, str], None],
            locked: bool = False, overwrite: bool = False) -> pathlib.Path:
    """Make a new version the live one: ``write(staging, version)`` fills an empty staging
    folder with the files of version ``version``; returns the version's folder.

    ``locked`` says the caller holds :func:`writer_lock` (as it must from reading the version
    it changed); otherwise the lock is taken for the write alone. ``overwrite`` lets the new
    version replace versions whose pointer is lost (:func:`check_pointer`).
    """
    if not locked:
        with writer_lock(folder):
            return publish(folder, write, locked=True, overwrite=overwrite)
    check_writable_folder(folder)
    if not overwrite:
        check_pointer(folder)
    version = _next_version(folder)
    final = folder / version
    with staged_dir(final, prefix=_TMP_PREFIX) as staging:
        write(staging, version)
    try:
        _swap_pointer(folder, version)  # the commit point
    except BaseException:
        if _read_pointer_text(folder) != version:
            shutil.rmtree(final, ignore_errors=True)
        raise
    _remove_stale(folder, keep=version)
    return final


def check_pointer(folder: pathlib.Path) -> None:
    """Refuse a folder whose versions have lost their ``CURRENT`` (or whose ``CURRENT`` is
    garbage): publishing there would delete them. Names the newest version to restore."""
    if not folder.is_dir() or _read_pointer_valid(folder):
        return
    versions = sorted(_versions(folder))
    if not versions:
        return
    newest = versions[-1]
    raise GalleryError(
        f"{folder}: {CURRENT_FILE} is missing or damaged but the folder holds "
        f"{len(versions)} version(s); the newest is {newest}: restore it with "
        f"`echo {newest} > {folder / CURRENT_FILE}` (then check it with tools/query.py), "
        f"or overwrite the index to replace them", field="overwrite")


def load_live(folder: pathlib.Path, read: Callable[[pathlib.Path], T]) -> T:
    """``read(version_folder)`` of the live version; errors name the folder or the pointer.

    ``read`` raises CorruptIndexError for a damaged version; when ``CURRENT`` has moved on
    meanwhile (a writer committed and deleted the version being read) it is called again.
    """
    if not folder.exists():
        raise GalleryError(f"{folder}: gallery index folder not found")
    if not folder.is_dir():
        raise GalleryError(f"{folder}: not a folder (expected a gallery index folder)")
    for attempt in range(_LOAD_ATTEMPTS):
        version = _read_pointer(folder)
        vdir = folder / version
        try:
            if not vdir.is_dir():
                raise CorruptIndexError(f"{vdir}: version folder named by "
                                        f"{folder / CURRENT_FILE} is missing")
            return read(vdir)
        except CorruptIndexError:
            if attempt + 1 < _LOAD_ATTEMPTS and _read_pointer_text(folder) != version:
                continue
            raise
    raise AssertionError("unreachable")


def file_record(path: pathlib.Path) -> dict[str, Any]:
    """What a manifest records of a file of a version, for :func:`check_file`."""
    return {"bytes": path.stat().st_size, "sha256": file_sha256(path)}


def check_file(path: pathlib.Path, record: Any, verify: bool, manifest: pathlib.Path) -> None:
    """Raise CorruptIndexError unless ``path`` matches its ``record`` in ``manifest``: the size
    always (cheap, catches truncation), the SHA-256 when ``verify`` (reads every byte)."""
    if not path.is_file():
        raise CorruptIndexError(f"{path}: file missing")
    try:
        size, digest = int(record["bytes"]), str(record["sha256"])
    except (KeyError, TypeError, ValueError):
        raise CorruptIndexError(f"{manifest}: bad record for {path.name}") from None
    actual = path.stat().st_size
    if actual != size:
        raise CorruptIndexError(f"{path}: {actual} bytes, the manifest says {size} "
                                f"(truncated or replaced)")
    if verify and file_sha256(path) != digest:
        raise CorruptIndexError(f"{path}: contents do not match the manifest's SHA-256 (corrupt)")


def _swap_pointer(folder: pathlib.Path, version: str) -> None:
    """The commit point, a step of its own so that tests can make it fail. Durable when it
    returns (atomic_write_text fsyncs the folder), so that :func:`_remove_stale` never deletes
    a version the pointer could still name after a power loss."""
    atomic_write_text(folder / CURRENT_FILE, version + "\n")


def _is_entry(name: str) -> bool:
    return (name in (CURRENT_FILE, LOCK_FILE, SHARED_FOLDER) or _VERSION.match(name) is not None
            or name.startswith(_TMP_PREFIX) or name.startswith(_POINTER_TMP_PREFIX))


def _versions(folder: pathlib.Path) -> list[str]:
    return [p.name for p in folder.iterdir() if _VERSION.match(p.name)]


def _next_version(folder: pathlib.Path) -> str:
    numbers = [int(_VERSION.match(name).group(1)) for name in _versions(folder)]
    current = _read_pointer_text(folder)
    if current and _VERSION.match(current):
        numbers.append(int(_VERSION.match(current).group(1)))
    return f"v{max(numbers, default=0) + 1:06d}"


def _remove_stale(folder: pathlib.Path, keep: str) -> None:
    """Delete superseded versions and leftovers of interrupted saves (best effort)."""
    for path in folder.iterdir():
        if path.name == keep:
            continue
        if _VERSION.match(path.name) or path.name.startswith(_TMP_PREFIX):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
        elif path.name.startswith(_POINTER_TMP_PREFIX):
            with contextlib.suppress(OSError):
                path.unlink()


def live_version(folder: str | os.PathLike) -> str | None:
    """The name of the live version (what ``CURRENT`` says), or None: one small read, so a
    long-running reader can ask on every request whether a writer published a newer one."""
    return _read_pointer_text(pathlib.Path(folder))


def live_identity(folder: str | os.PathLike) -> tuple[str, int, int, int] | None:
    """The live version's name and its folder's device, inode and change time, or None when
    nothing is live: a reader that compares these notices a folder deleted and built again,
    whose versions start again at v000001 (a new folder may reuse the old one's inode, never
    its change time too). One small read and one stat."""
    folder = pathlib.Path(folder)
    version = _read_pointer_text(folder)
    if version is None:
        return None
    try:
        st = os.stat(folder / version)
    except OSError:
        return version, -1, -1, -1
    return version, st.st_dev, st.st_ino, st.st_ctime_ns


def _read_pointer_text(folder: pathlib.Path) -> str | None:
    try:
        return (folder / CURRENT_FILE).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None


def _read_pointer_valid(folder: pathlib.Path) -> bool:
    text = _read_pointer_text(folder)
    return text is not None and _VERSION.match(text) is not None


def _read_pointer(folder: pathlib.Path) -> str:
    pointer = folder / CURRENT_FILE
    if not pointer.exists():
        check_pointer(folder)  # versions without their pointer: say which one to restore
        raise GalleryError(f"{folder}: not a gallery index ({CURRENT_FILE} file missing; build "
                           f"one with tools/build_index.py)")
    text = _read_pointer_text(folder)
    if text is None or not _VERSION.match(text):
        raise CorruptIndexError(f"{pointer}: expected a version name such as v000001, "
                                f"got {text!r}")
    return text
