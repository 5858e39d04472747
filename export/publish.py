"""Publishing a model version under a TF Serving model base path, atomically.

`exports/<name>/` is the model base path; each integer-named subfolder is a
version. An export is written into `exports/<name>/.tmp-<version>-<random>`
(TF Serving ignores folders whose names are not integers) and renamed to
`exports/<name>/<version>` only once it is complete and verified, so TF
Serving never loads half a version. A failure removes the temporary folder.
"""

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from export.errors import ExportError


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


@contextlib.contextmanager
def staged_version(model_base, version, force=False):
    """Yields a temporary folder for version `version`; renames it into place when the block succeeds.

    On any exception the temporary folder is removed and nothing is published.
    With `force`, an existing version folder is replaced: it is moved aside,
    the new one renamed in, and the old one deleted.

    Example:
    >>> with staged_version("exports/cnn", 3) as folder:
    ...     write_everything(folder)   # exports/cnn/.tmp-3-abcd
    >>> # now exports/cnn/3
    """
    model_base = Path(model_base)
    model_base.mkdir(parents=True, exist_ok=True)
    target = model_base / str(version)
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=model_base))
    try:
        yield staging
        _publish(staging, target, force)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _publish(staging, target, force):
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
    retired = Path(tempfile.mkdtemp(prefix=f".old-{target.name}-", dir=target.parent))
    retired.rmdir()
    os.rename(target, retired)
    os.rename(staging, target)
    shutil.rmtree(retired, ignore_errors=True)
