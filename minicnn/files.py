"""Writing files so that a crash never leaves a broken one: every file minicnn writes goes through here.

    with atomic_write("run/metrics.json", "w") as f:
        json.dump(metrics, f)

The bytes go to a temporary file beside the target (``<name>.<12 hex digits>.tmp``, in the
same folder, so the rename cannot cross file systems). Only when they are all written and
on disk (fsync) is the temporary renamed over the target (os.replace: atomic on POSIX and
Windows), and then the folder is synced too, so that the rename itself survives a power
cut. A reader sees the old file or the new one, never half of one; an exception removes
the temporary.

A process killed mid-write (kill -9, the OOM killer, a power cut) cannot remove its
temporary. The next write to the same target does: it removes every ``<name>.<hex>.tmp``
beside it that belongs to this user and that no live writer holds. A writer holds an
exclusive lock (flock) on its temporary from creating it until the rename, and the kernel
drops the lock when the process dies, so "nobody holds the lock" is exactly "its writer is
gone": a slow save in another process is never touched. (On Windows, where there is no
flock, an open file cannot be deleted: the removal of a live writer's file fails and it is
left alone.) The temporary gets the permissions any new file gets (0666 less the umask, as
open() gives), not the owner-only mode of tempfile.mkstemp.

FileLock keeps a second process out of a folder that one is writing (train's --out): the same
flock, on a lock file, held for the whole run and dropped by the kernel when the holder dies.
"""

import contextlib
import os
import re
import secrets
import time

try:
    import fcntl
except ImportError:       # Windows
    fcntl = None


def _temporary_name(path):
    return os.path.join(os.path.dirname(os.path.abspath(path)), f"{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")


def _create_locked_temporary(path):
    """A new file beside ``path`` with a unique name, locked by this process: (descriptor, name)."""
    while True:
        tmp = _temporary_name(path)
        try:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        except FileExistsError:
            continue
        if fcntl is None:
            return fd, tmp
        fcntl.flock(fd, fcntl.LOCK_EX)   # waits if a cleaner took it between open and here ...
        if os.fstat(fd).st_nlink > 0:
            return fd, tmp
        os.close(fd)                     # ... and then it was removed as stale: take another name


def remove_stale_temporaries(path):
    """Remove the temporaries of ``path`` left by writers that died mid-write (see the module
    docstring): files named ``<name>.<12 hex digits>.tmp`` beside it, regular files owned by
    this user, whose lock no live process holds. Returns the names removed."""
    folder, name = os.path.dirname(os.path.abspath(path)), os.path.basename(path)
    pattern = re.compile(re.escape(name) + r"\.[0-9a-f]{12}\.tmp")
    try:
        candidates = [entry for entry in os.scandir(folder) if pattern.fullmatch(entry.name)]
    except FileNotFoundError:
        return []
    removed = []
    for entry in candidates:
        try:
            info = entry.stat(follow_symlinks=False)
            if not entry.is_file(follow_symlinks=False) or (hasattr(os, "getuid") and info.st_uid != os.getuid()):
                continue
            if fcntl is None:
                os.remove(entry.path)              # fails while its writer has it open
                removed.append(entry.path)
                continue
            fd = os.open(entry.path, os.O_RDWR | os.O_NOFOLLOW)
        except OSError:                            # gone already, or held open (Windows)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:                            # a live writer holds it
            os.close(fd)
            continue
        try:
            if os.path.samestat(os.fstat(fd), os.stat(entry.path, follow_symlinks=False)):
                os.remove(entry.path)
                removed.append(entry.path)
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


def _sync_folder(folder):
    """Make a rename in ``folder`` durable (POSIX; Windows cannot open a folder, nor needs to)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path, mode="wb"):
    """Open a temporary file for writing (mode "wb", or "w" for UTF-8 text); when the block
    ends without an exception, sync it, rename it over ``path`` and sync the folder. Creates
    the folder if needed and first removes the stale temporaries of ``path``."""
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write: mode must be 'wb' or 'w', got {mode!r}")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = _create_locked_temporary(path)
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())   # the bytes are on disk before the name points at them
            if fcntl is not None:
                os.replace(tmp, path)   # renamed while still locked: no cleaner can take it before
        if fcntl is None:
            os.replace(tmp, path)       # Windows renames only a closed file
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _sync_folder(folder)


def save_figure(fig, path, **savefig_options):
    """fig.savefig(path, ...) through atomic_write; the format comes from the name (.png, .svg, .pdf)."""
    kind = os.path.splitext(os.fspath(path))[1].lower().lstrip(".") or "png"
    with atomic_write(path) as f:
        fig.savefig(f, format=kind, **savefig_options)


# ------------------------------------------------------------------ one writer per folder
class LockHeld(OSError):
    """Another live process holds the lock; ``holder`` is what it wrote in the lock file
    ("pid 1234, started 2026-12-02 17:06:11"), or None if it had not written it yet."""

    def __init__(self, path, holder):
        self.path, self.holder = os.fspath(path), holder
        super().__init__(f"{self.path} is held by {holder or 'a process that is just starting'}")


class FileLock:
    """An exclusive lock on the file ``path``, held by this process from acquire() to release(),
    like a pid file that cannot go stale: the lock is the kernel's (flock), which drops it when the
    process ends in any way, kill -9 included. A lock file left by a killed process is therefore
    taken over by the next one; only a live holder makes acquire() raise LockHeld.

    The holder writes "pid N, started <local time>" into the file for the error message of the
    next one, and removes the file on release (while still holding the lock; acquire() checks that
    the file it locked is still the one at ``path``, so a removal never lets two processes in).
    Windows has no flock: there acquire() takes nothing and release() does nothing."""

    def __init__(self, path):
        self.path, self.fd = os.fspath(path), None

    def acquire(self):
        if fcntl is None:
            return self
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise LockHeld(self.path, _lock_holder_text(self.path)) from None
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path, follow_symlinks=False))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)     # its holder removed it as we opened it: lock the file now at the path
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        self.fd = fd
        return self

    def release(self):
        if self.fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)
        os.close(self.fd)    # closing drops the lock
        self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _lock_holder_text(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(200).strip() or None
    except OSError:
        return None
