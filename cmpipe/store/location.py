"""Where data lives: a local path or an object-store URL (``s3://``, ``gs://``, ``az://``, ...).

Every path cmpipe takes may be a URL. :func:`as_path` turns what the user gave into a local
:class:`pathlib.Path` (a plain path, or a ``file://`` URL) or a :class:`upath.UPath` (any other
fsspec URL); both have the ``pathlib`` interface (``/``, ``name``, ``exists``, ``open``,
``iterdir``, ...), so code below the stages treats them alike. Local paths behave exactly as
before. Credentials are never stored by cmpipe: each filesystem takes them from its standard
environment and configuration (for S3: ``AWS_ACCESS_KEY_ID``/``AWS_PROFILE``/instance roles, and
``AWS_ENDPOINT_URL`` for an S3-compatible server).

The guarantees cmpipe gives on disk rest, on object stores, on these properties (held by S3 since
December 2020, GCS and Azure Blob):

* **one object is written whole or not at all** (a PUT is atomic): what is a write to a temporary
  name and a ``rename`` on disk (:func:`write_bytes_atomic`) is a single PUT of the final object;
  no rename is ever used on an object store (there it is a copy and a delete, not atomic);
* **listings and reads after a completed write are consistent** (strong read-after-write and
  list-after-write consistency): completion flags and parts written after the data are seen
  only after the data;
* **a directory is a prefix**: it exists once an object exists under it; an "empty directory" is
  a prefix with no objects.

Which objects a run writes, and in what order, is documented where they are written
(:mod:`cmpipe.store.zarr_store` for the image store's creation marker).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any, TypeAlias

__all__ = [
    "AnyPath",
    "LocationError",
    "arrow_filesystem",
    "as_path",
    "check_reachable",
    "is_remote",
    "is_url",
    "remove_tree",
    "save_figure",
    "write_bytes_atomic",
    "write_text_atomic",
    "zarr_store",
]

#: A local path or an fsspec URL path (``upath.UPath``).
AnyPath: TypeAlias = Any

#: Extras that install each object store's fsspec filesystem (``pip install cmpipe[s3]``).
EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure", "abfss": "azure"}


class LocationError(ValueError):
    """A path or URL cmpipe cannot use: unknown scheme, missing filesystem package, missing bucket
    or credentials. The message names the URL."""


def is_url(path: object) -> bool:
    """Whether ``path`` is written as a URL (``scheme://...``), not a local path."""
    if _is_upath(path):
        return True
    return isinstance(path, str) and "://" in path and not path.startswith("file://")


def _is_upath(path: object) -> bool:
    upath = sys.modules.get("upath")
    return upath is not None and isinstance(path, upath.UPath) and not isinstance(path, Path)


def is_remote(path: object) -> bool:
    """Whether ``path`` (already :func:`as_path`'d or not) is on an object store, not local disk."""
    return _is_upath(path) or is_url(path)


def as_path(path: str | os.PathLike[str] | AnyPath) -> AnyPath:
    """The :class:`pathlib.Path` of a local path (``file://`` URLs included), or the
    :class:`upath.UPath` of an object-store URL.

    Raises
    ------
    LocationError
        If the URL's scheme is unknown to fsspec, or its filesystem package is not installed
        (the message names the URL and the extra to install).
    """
    if _is_upath(path) or isinstance(path, Path):
        return path
    text = os.fspath(path)
    if text.startswith("file://"):
        return Path(text[len("file://"):])
    if "://" not in text:
        return Path(text)
    from upath import UPath

    scheme = text.split("://", 1)[0]
    try:
        upath = UPath(text)
        upath.fs  # noqa: B018  (instantiating the filesystem finds a missing package now)
    except ImportError as exc:
        extra = EXTRAS.get(scheme)
        hint = f"pip install 'cmpipe[{extra}]'" if extra else "install its fsspec filesystem package"
        raise LocationError(f"{text}: the {scheme}:// filesystem is not installed ({hint}): {exc}") from None
    except ValueError as exc:
        raise LocationError(f"{text}: unknown URL scheme {scheme!r} ({exc})") from None
    return upath


def _bucket(path: AnyPath) -> str:
    return str(path.path).split("/", 1)[0]


def check_reachable(path: AnyPath, what: str = "path") -> None:
    """Check, before any work, that an object-store URL's bucket exists and the credentials in the
    environment may list it. Local paths: nothing to check here.

    Raises
    ------
    LocationError
        Naming ``what`` and the URL: no such bucket, no credentials, access denied, or the endpoint
        unreachable.
    """
    if not is_remote(path):
        return
    fs, bucket = path.fs, _bucket(path)
    try:
        fs.ls(bucket, refresh=True)
    except FileNotFoundError:
        raise LocationError(f"{what} {path}: the bucket {bucket!r} does not exist (create it first)") from None
    except PermissionError as exc:
        raise LocationError(f"{what} {path}: access to bucket {bucket!r} denied ({exc})") from None
    except Exception as exc:  # noqa: BLE001  (botocore's NoCredentialsError, connection errors, ...)
        raise LocationError(
            f"{what} {path}: cannot reach bucket {bucket!r} ({type(exc).__name__}: {exc}); check the "
            "filesystem's credentials and endpoint in the environment (for S3: AWS_ACCESS_KEY_ID, "
            "AWS_SECRET_ACCESS_KEY or AWS_PROFILE, and AWS_ENDPOINT_URL for an S3-compatible server)"
        ) from None


def write_bytes_atomic(path: AnyPath, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old object or the whole new one: a
    temporary file renamed into place on disk, a single PUT on an object store."""
    if is_remote(path):
        path.write_bytes(data)
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_text_atomic(path: AnyPath, text: str) -> None:
    """:func:`write_bytes_atomic` of UTF-8 ``text``."""
    write_bytes_atomic(path, text.encode("utf-8"))


def remove_tree(path: AnyPath) -> None:
    """Delete the directory ``path`` and everything under it (every object under the prefix)."""
    if is_remote(path):
        if path.exists():
            path.fs.rm(path.path, recursive=True)
        return
    shutil.rmtree(path)


def zarr_store(path: AnyPath, read_only: bool = False) -> Any:
    """What ``zarr.open_group(store=...)`` takes for ``path``: the local path as a string, or a
    ``zarr.storage.FsspecStore`` on the URL's filesystem (its credentials from the environment)."""
    if not is_remote(path):
        return str(path)
    from zarr.storage import FsspecStore

    return FsspecStore.from_url(str(path), storage_options=dict(path.storage_options), read_only=read_only)


def arrow_filesystem(path: AnyPath) -> tuple[Any, str]:
    """``(pyarrow filesystem, path on it)`` for ``path``, as Ray Train's ``storage_filesystem`` and
    ``storage_path`` take them. Object stores go through the same fsspec filesystem as every other
    cmpipe read and write (one place for credentials and endpoints)."""
    import pyarrow.fs as pafs

    if not is_remote(path):
        return pafs.LocalFileSystem(), str(Path(path).absolute())
    return pafs.PyFileSystem(pafs.FSSpecHandler(path.fs)), str(path.path)


def save_figure(fig: Any, path: AnyPath, **savefig_kwargs: Any) -> None:
    """``fig.savefig`` to ``path`` (a matplotlib figure; the format from the suffix), written whole:
    a temporary file renamed into place locally, one PUT on an object store."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format=path.suffix.lstrip(".") or "png", **savefig_kwargs)
    write_bytes_atomic(path, buffer.getvalue())
