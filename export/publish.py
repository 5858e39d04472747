"""Publishing a model version under a TF Serving model base path, atomically and readable by any user.

`exports/<name>/` is the model base path; each integer-named subfolder is a
version. An export is written into `exports/<name>/.tmp-<version>-<pid>-<random>`
(TF Serving ignores folders whose names are not integers) and renamed to
`exports/<name>/<version>` only once it is complete and verified, so TF
Serving never loads half a version. A failure removes the temporary folder;
a killed export cannot, so the next export of the model removes the staging
folders of exporters on this host that are no longer running.

Permissions: `tempfile.mkdtemp` makes the staging folder 0700, and a TF
Serving container usually runs as another (non-root) user, which could then
not read the version. Before the rename every folder of the version is set to
0755 and every file to 0644, whatever the umask.

Replacing a version (`--force`) must not leave a moment where the version is
missing or half old, half new: a reader (TF Serving polling the base path)
would unload the model. The replacement is swapped in with one
`renameat2(RENAME_EXCHANGE)` call (Linux 3.15+, through ctypes), which
exchanges the two folder names atomically; the old version then sits under
the temporary name and is deleted. Why not a symlink swap: TF Serving, gsutil
and object stores treat a symlinked version differently from a folder, and the
layout would change for every export, not only forced ones. Where the kernel
or file system has no exchange (macOS, some network file systems), the old
way remains: the old folder is renamed aside, then the new one in, which
leaves a window of two renames; a log line says so.
"""

import contextlib
import ctypes
import errno
import os
import re
import shutil
import stat
import sys
import tempfile
from pathlib import Path

from export.errors import ExportError
from kerasdl.rundir import process_running

# A staging folder's name: `.tmp-<version>-<pid of the exporter>-<random>`.
_STAGING_NAME = re.compile(r"^\.tmp-\d+-(\d+)-")


def existing_versions(model_base):
    """Returns the sorted integer versions under `model_base` (non-integer names are ignored)."""
    model_base = Path(model_base)
    if not model_base.is_dir():
        return []
    return sorted(int(entry.name) for entry in model_base.iterdir() if entry.is_dir() and entry.name.isdigit())


def choose_version(model_base, version=None, force=False):
    """Returns the version to write: `version` when given, else one more than the newest.

    Raises:
        ExportError: `version` exists and `force` is False, or `version` is not a positive integer.

    Example:
    >>> choose_version("exports/cnn")  # with exports/cnn/1 and exports/cnn/2 present
    3
    """
    if version is None:
        versions = existing_versions(model_base)
        return (versions[-1] + 1) if versions else 1
    version = int(version)
    if version < 1:
        raise ExportError(f"--version must be a positive integer (TF Serving versions are), got {version}")
    if (Path(model_base) / str(version)).exists() and not force:
        raise ExportError(
            f"{Path(model_base) / str(version)} already exists; pass --force to replace it or omit --version for the next one"
        )
    return version


# What a published version gives everyone: a server running as another user reads it, nobody else writes it.
FOLDER_MODE = 0o755
FILE_MODE = 0o644
# renameat2's flag that swaps two existing names (linux/fs.h).
RENAME_EXCHANGE = 1 << 1
# renameat2's system call number, for a C library without the wrapper (glibc < 2.28).
SYSCALL_RENAMEAT2 = {"x86_64": 316, "aarch64": 276}
AT_FDCWD = -100


@contextlib.contextmanager
def staged_version(model_base, version, force=False, log=print):
    """Yields a temporary folder for version `version`; publishes it (0755/0644) when the block succeeds.

    On any exception the temporary folder is removed and nothing is published.
    With `force`, an existing version folder is replaced by an atomic exchange
    of the two names (see the module docstring), so a reader always sees a
    complete version.

    Args:
        model_base: the TF Serving model base path (`exports/<name>`).
        version: the integer version.
        force: replace an existing version.
        log: where the line about a non-atomic replacement goes.

    Example:
    >>> with staged_version("exports/cnn", 3) as folder:
    ...     write_everything(folder)   # exports/cnn/.tmp-3-abcd
    >>> # now exports/cnn/3
    """
    model_base = Path(model_base)
    _make_readable_folders(model_base)
    remove_abandoned_staging(model_base)
    target = model_base / str(version)
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{version}-{os.getpid()}-", dir=model_base))
    try:
        yield staging
        make_readable(staging)
        _publish(staging, target, force, log)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def remove_abandoned_staging(model_base):
    """Removes `.tmp-<version>-<pid>-*` staging folders whose exporter (a process on this host) has ended.

    A killed export leaves its staging folder behind (invisible to TF Serving, but a
    version's worth of disk). A folder whose process still runs is another export at work
    and is kept; so are names without a process id.

    Returns:
        The names removed.

    Example:
    >>> remove_abandoned_staging("exports/cnn")
    ['.tmp-3-41077-k2j9x1']
    """
    removed = []
    for path in sorted(Path(model_base).glob(".tmp-*")):
        match = _STAGING_NAME.match(path.name)
        if match is None or not path.is_dir() or process_running(int(match.group(1))):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path.name)
    return removed



def make_readable(folder):
    """Sets every folder under `folder` (itself included) to 0755 and every file to 0644; links are left alone."""
    folder = Path(folder)
    os.chmod(folder, FOLDER_MODE)
    for root, folders, files in os.walk(folder):
        for name in folders:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, FOLDER_MODE)
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, FILE_MODE)


def exchange_paths(first, second):
    """Swaps the names of two existing paths atomically with `renameat2(RENAME_EXCHANGE)`.

    Returns:
        True when swapped; False where the C library, kernel or file system has no exchange.

    Raises:
        OSError: the exchange exists but failed for another reason (a missing path, permissions).
    """
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)  # the process's own C library
    source, destination = os.fsencode(first), os.fsencode(second)
    if hasattr(libc, "renameat2"):
        result = libc.renameat2(AT_FDCWD, source, AT_FDCWD, destination, RENAME_EXCHANGE)
    elif os.uname().machine in SYSCALL_RENAMEAT2:
        syscall = libc.syscall
        syscall.restype = ctypes.c_long
        result = syscall(SYSCALL_RENAMEAT2[os.uname().machine], AT_FDCWD, source, AT_FDCWD, destination, RENAME_EXCHANGE)
    else:
        return False
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), os.fspath(first))


def _make_readable_folders(model_base):
    # The base folders this export creates get 0755 as well (the umask may say 0700).
    missing = []
    for folder in [model_base, *model_base.parents]:
        if folder.exists():
            break
        missing.append(folder)
    model_base.mkdir(parents=True, exist_ok=True)
    for folder in missing:
        os.chmod(folder, FOLDER_MODE)


def _publish(staging, target, force, log):
    if not target.exists():
        try:
            # os.rename onto a missing name is atomic on POSIX; a concurrent
            # export that took the name first makes it fail instead of merging.
            os.rename(staging, target)
            return
        except OSError:
            if not target.exists():
                raise
    if not force:
        raise ExportError(f"{target} already exists; pass --force to replace it")
    if stat.S_ISDIR(os.lstat(target).st_mode) and exchange_paths(staging, target):
        # The old version now lives under the staging name; the block's cleanup is not run on success.
        shutil.rmtree(staging, ignore_errors=True)
        return
    log(f"warning: this file system cannot exchange two folders atomically; {target} is missing for a moment while it is replaced")
    retired = Path(tempfile.mkdtemp(prefix=f".old-{target.name}-", dir=target.parent))
    retired.rmdir()
    os.rename(target, retired)
    os.rename(staging, target)
    shutil.rmtree(retired, ignore_errors=True)
