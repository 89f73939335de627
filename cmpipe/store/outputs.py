"""What cmpipe may write and delete: ownership markers, safe removal, output checks.

The rule: cmpipe never destroys what it did not make.

* Every directory cmpipe creates as a whole (an image store, a training run directory, an
  inference results directory, a report directory, a reconstruction directory) is recognisable:
  the image store by its Zarr group attribute ``cmpipe_store_schema_version``; the others by a
  small JSON marker file :data:`MARKER_NAME` (``{"cmpipe_artifact": KIND, "version": 1}``) written
  with :func:`mark_directory` when the directory is first made.
* :func:`remove_owned` deletes a path only if it is an empty directory or an artefact of one of
  the expected kinds; anything else is refused with :class:`OutputError`, naming the path and what
  was found there. Nothing is removed then.
* :func:`check_output_file` and :func:`check_output_dir` check, before any work is done, that an
  output can be written: its directory is writable, an output file is not an existing directory
  (nor a directory an existing file), an existing output file is kept unless ``overwrite`` is given,
  and an output is never one of the command's inputs.

Every path may be an object-store URL (:mod:`cmpipe.store.location`): a directory is then a
prefix, the marker an object written in one PUT, and the writability check writes and deletes a
probe object (which also finds a missing bucket or missing credentials before any work).

Ray-free and light: the standard library (and fsspec for URLs).
"""

from __future__ import annotations

import fnmatch
import json
import os
import tempfile
import uuid
from collections.abc import Iterable
from pathlib import Path

from cmpipe.store.location import as_path, check_reachable, is_remote, remove_tree, write_text_atomic

__all__ = [
    "ARTIFACT_KINDS",
    "MARKER_NAME",
    "OutputError",
    "artifact_kind",
    "check_output_dir",
    "check_output_file",
    "check_removable",
    "claim_directory",
    "describe_contents",
    "mark_directory",
    "remove_owned",
    "same_path",
]

#: Name of the marker file cmpipe writes into each directory it makes as a whole.
MARKER_NAME = ".cmpipe-artifact.json"

#: Kinds of cmpipe artefacts: ``store`` (Zarr image store, marked by its group attributes), and
#: directories marked with :data:`MARKER_NAME`.
ARTIFACT_KINDS = ("store", "run", "results", "report", "comparison", "reconstructions", "pipeline", "fits")

MARKER_VERSION = 1


class OutputError(ValueError):
    """An output that cannot be written, or a path cmpipe refuses to delete or overwrite."""


def mark_directory(path: str | os.PathLike[str], kind: str) -> Path:
    """Create ``path`` (and parents) if needed and record that cmpipe owns it as ``kind``.

    An existing marker of another kind is refused: a directory is one kind of artefact.

    Parameters
    ----------
    path : str or path-like
        The directory.
    kind : str
        One of :data:`ARTIFACT_KINDS` other than ``"store"``.

    Returns
    -------
    Path
        The directory.

    Raises
    ------
    OutputError
        If ``path`` is a file, is not writable, or holds another kind's marker.
    """
    if kind not in ARTIFACT_KINDS or kind == "store":
        raise ValueError(f"unknown artefact kind {kind!r}")
    path = check_output_dir(path)
    found = artifact_kind(path)
    if found is not None and found != kind:
        raise OutputError(f"{path} is a cmpipe {found} directory, not a {kind} directory: use another path")
    if found is None:
        write_text_atomic(path / MARKER_NAME, json.dumps({"cmpipe_artifact": kind, "version": MARKER_VERSION}) + "\n")
    return path


def _zarr_store_kind(path: Path) -> str | None:
    meta = path / "zarr.json"
    if not meta.is_file():
        return None
    try:
        attrs = json.loads(meta.read_text(encoding="utf-8")).get("attributes", {})
    except (OSError, ValueError):
        return None
    if "cmpipe_store_schema_version" in attrs:
        return "store"
    if "cmpipe_posterior_schema_version" in attrs:
        return "posterior"
    return None


def artifact_kind(path: str | os.PathLike[str]) -> str | None:
    """The kind of cmpipe artefact at ``path``, or None if it is not one.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    str or None
        ``"store"`` for an image store (its Zarr attributes), ``"posterior"`` for a posterior
        store, the marker's kind for a marked directory, else None.
    """
    path = as_path(path)
    if not path.is_dir():
        return None
    kind = _zarr_store_kind(path)
    if kind is not None:
        return kind
    marker = path / MARKER_NAME
    if not marker.is_file():
        return None
    try:
        kind = json.loads(marker.read_text(encoding="utf-8")).get("cmpipe_artifact")
    except (OSError, ValueError, AttributeError):
        return None
    return kind if kind in ARTIFACT_KINDS else None


def describe_contents(path: str | os.PathLike[str], limit: int = 3) -> str:
    """A short description of what is at ``path``, for error messages (``"a file"``,
    ``"a directory with 2 entries (paper.tex, data.csv)"``)."""
    path = as_path(path)
    if path.is_symlink():
        return "a symbolic link"
    if path.is_file():
        return "a file"
    if not path.is_dir():
        return "something that is neither a file nor a directory"
    try:
        names = sorted(p.name for p in path.iterdir())
    except OSError as exc:
        return f"a directory that cannot be listed ({exc.strerror})"
    shown = ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")
    return f"a directory with {len(names)} entries ({shown})"


def check_removable(path: str | os.PathLike[str], kinds: Iterable[str], what: str = "output") -> Path:
    """Check, without deleting anything, that :func:`remove_owned` may delete ``path``.

    Parameters
    ----------
    path : str or path-like
    kinds : iterable of str
        The artefact kinds the caller may delete (:func:`artifact_kind`).
    what : str
        How the caller names the path in messages (``"--store"``).

    Returns
    -------
    Path

    Raises
    ------
    OutputError
        If ``path`` exists and is not an empty directory nor an artefact of one of ``kinds``.
    """
    path = as_path(path)
    if not path.exists() and not path.is_symlink():
        return path
    kinds = tuple(kinds)
    if path.is_dir() and not path.is_symlink():
        if not any(path.iterdir()):
            return path
        kind = artifact_kind(path)
        if kind in kinds:
            return path
        if kind is not None:
            raise OutputError(
                f"{what} {path} is a cmpipe {kind}, not a {' or '.join(kinds)}: refusing to delete it"
            )
    raise OutputError(
        f"{what} {path} is {describe_contents(path)} that cmpipe did not make: refusing to delete it; "
        "choose another path or remove it yourself"
    )


def _matches(name: str, names: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in names)


def claim_directory(
    path: str | os.PathLike[str], kind: str, *, names: Iterable[str], what: str = "output directory",
    shared: bool = False, create: bool = True,
) -> Path:
    """Check, before any work, that cmpipe may write its ``kind`` outputs into directory ``path``.

    * A new or empty directory is created and marked (:func:`mark_directory`).
    * A directory marked ``kind`` is cmpipe's: its files may be rewritten (a rerun, a resume).
    * Another cmpipe artefact is refused.
    * An unmarked directory holding only entries named like cmpipe's (``names``: a directory made
      before markers existed) is marked and accepted.
    * An unmarked directory holding other entries is refused, unless ``shared`` and none of its
      entries is named like an output (then it is used, left unmarked: cmpipe never claims it).

    Parameters
    ----------
    path : str or path-like
    kind : str
        One of :data:`ARTIFACT_KINDS` other than ``"store"``.
    names : iterable of str
        Every entry cmpipe writes directly in ``path`` (``fnmatch`` patterns, e.g. ``"fig*.png"``).
    what : str
        How the caller names the path in messages (``"--out"``).
    shared : bool
        Whether ``path`` may also hold the user's files (an output directory such as ``run.out``).
    create : bool
        Create and mark the directory; False: only check (nothing is written), as a command does
        before its inputs are checked.

    Returns
    -------
    Path

    Raises
    ------
    OutputError
        If ``path`` is a file or not writable, another kind of artefact, or holds entries cmpipe did
        not write (named, as is any of them cmpipe would overwrite).
    """
    names = (*names, MARKER_NAME)
    path = check_output_dir(path, what=what, create=create)
    if not path.exists():  # not created (``create`` false), or a new prefix on an object store
        return mark_directory(path, kind) if create and is_remote(path) else path
    found = artifact_kind(path)
    if found == kind:
        return path
    if found is not None:
        raise OutputError(f"{what} {path} is a cmpipe {found}, not a {kind} directory: use another path")
    entries = sorted(p.name for p in path.iterdir())
    foreign = [n for n in entries if not _matches(n, names)]
    clashes = [n for n in entries if _matches(n, names)]
    if not foreign:
        return mark_directory(path, kind) if create else path
    if shared and not clashes:
        return path
    if clashes:
        raise OutputError(
            f"{what} {path} already holds {', '.join(clashes[:3])} but is not a directory cmpipe made "
            f"(it also holds {', '.join(foreign[:3])}): refusing to overwrite; choose a new or empty directory"
        )
    raise OutputError(
        f"{what} {path} holds files cmpipe did not write ({', '.join(foreign[:3])}"
        f"{', ...' if len(foreign) > 3 else ''}): choose a new or empty directory"
    )


def remove_owned(path: str | os.PathLike[str], kinds: Iterable[str], what: str = "output") -> bool:
    """Delete ``path`` if it is an empty directory or a cmpipe artefact of one of ``kinds``.

    Parameters
    ----------
    path : str or path-like
    kinds : iterable of str
        The artefact kinds this caller may delete (:func:`artifact_kind`).
    what : str
        How the caller names the path in messages (``"--store"``).

    Returns
    -------
    bool
        True if something was removed, False if ``path`` did not exist.

    Raises
    ------
    OutputError
        If ``path`` is anything else (a file, a symbolic link, a directory cmpipe did not make or
        of another kind); nothing is removed.
    """
    path = check_removable(path, kinds, what=what)
    if not path.exists():
        return False
    if any(path.iterdir()):
        remove_tree(path)
    elif not is_remote(path):
        path.rmdir()
    return True


def same_path(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether ``a`` and ``b`` name the same file (after resolving links), existing or not."""
    pa, pb = as_path(a), as_path(b)
    if is_remote(pa) or is_remote(pb):
        return str(pa).rstrip("/") == str(pb).rstrip("/")
    try:
        if pa.exists() and pb.exists():
            return os.path.samefile(pa, pb)
    except OSError:
        pass
    return pa.resolve() == pb.resolve()


def _check_writable_dir(directory: Path, what: str) -> None:
    """``directory`` (existing) accepts new files: tried with a temporary file (an object on an
    object store), removed at once."""
    if is_remote(directory):
        probe = directory / f".cmpipe-write-test-{uuid.uuid4().hex}"
        try:
            probe.write_bytes(b"")
            probe.unlink()
        except Exception as exc:  # noqa: BLE001  (each filesystem raises its own errors)
            raise OutputError(f"{what} {directory} is not writable ({type(exc).__name__}: {exc})") from None
        return
    try:
        fd, name = tempfile.mkstemp(prefix=".cmpipe-write-test-", dir=directory)
    except OSError as exc:
        raise OutputError(f"{what} {directory} is not writable ({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(name)


def _existing_parent(path: Path) -> Path:
    if is_remote(path):
        return as_path(f"{path.protocol}://{str(path.path).split('/', 1)[0]}/")
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    return parent


def check_output_dir(path: str | os.PathLike[str], what: str = "output directory", create: bool = True) -> Path:
    """Check (and by default create) an output directory before any work is done.

    Parameters
    ----------
    path : str or path-like
    what : str
        How the caller names the path in messages (``"--out"``).
    create : bool
        Create ``path`` and its parents if missing.

    Returns
    -------
    Path

    Raises
    ------
    OutputError
        If ``path`` is an existing file, or it (or the nearest existing parent) is not writable.
    """
    path = as_path(path)
    check_reachable(path, what)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{what} {path} is {describe_contents(path)}, not a directory")
    if not path.exists():
        parent = _existing_parent(path)
        if not parent.is_dir():
            raise OutputError(f"{what} {path}: {parent} is {describe_contents(parent)}, not a directory")
        _check_writable_dir(parent, what)
        if not create:
            return path
        if is_remote(path):
            return path  # a prefix: it exists once something is written under it
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{what} {path} cannot be created ({exc.strerror or exc})") from None
    _check_writable_dir(path, what)
    return path


def check_output_file(
    path: str | os.PathLike[str], *, overwrite: bool = False, inputs: Iterable[str | os.PathLike[str]] = (),
    what: str = "output file",
) -> Path:
    """Check an output file before any work is done; creates its directory if missing.

    Parameters
    ----------
    path : str or path-like
    overwrite : bool
        Whether an existing file at ``path`` may be replaced.
    inputs : iterable of path-like
        The command's inputs: ``path`` must be none of them, whatever ``overwrite`` says.
    what : str
        How the caller names the path in messages (``"--recon"``).

    Returns
    -------
    Path

    Raises
    ------
    OutputError
        If ``path`` is one of ``inputs``, an existing directory, an existing file without
        ``overwrite``, or its directory is not writable.
    """
    path = as_path(path)
    for source in inputs:
        if same_path(path, source):
            raise OutputError(f"{what} {path} is also an input ({source}): an output never replaces an input")
    if path.is_dir():
        raise OutputError(f"{what} {path} is {describe_contents(path)}, not a file")
    if path.exists() and not overwrite:
        raise OutputError(f"{what} {path} exists: pass --overwrite to replace it, or choose another path")
    check_output_dir(path.absolute().parent, what=f"directory of {what}")
    return path
