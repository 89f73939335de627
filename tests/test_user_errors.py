"""Issue 14: nothing a user owns is ever destroyed, and every user error is one line.

Each CLI case runs ``cmpipe.cli.main`` in this process and checks the contract: exit status 2,
stderr exactly one line ``cmpipe: error: ...`` naming the path (or halo), and every file that
existed before byte-identical afterwards (:func:`snapshot`). The rules themselves
(:mod:`cmpipe.store.outputs`) are tested directly on real directories, files and links.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from cmpipe.cli import main
from cmpipe.store.outputs import (
    MARKER_NAME,
    OutputError,
    artifact_kind,
    check_output_dir,
    check_output_file,
    claim_directory,
    mark_directory,
    remove_owned,
    same_path,
)

#: One analytic halo, one 16 x 16 image: a complete store in about a second.
TINY_STORE = ["source.kind=analytic", "source.analytic_log10_m200m_msun_h=[14.0]", "source.analytic_pair_mass_msun_h=1e11",
              "maps.npix=16", "maps.pixel_mpc=0.4", "maps.depth_mpc=6.4", "generate.images_per_0p1dex=1",
              "generate.max_rotations_per_halo=1", "generate.axes_per_rotation=1", "sph.num_threads=1",
              "run.log_level=WARNING"]


def _set(overrides: list[str]) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


def snapshot(root: Path) -> dict[str, bytes | None]:
    """``{relative path: bytes}`` of every file under ``root`` (None for a directory, the target
    for a link)."""
    out: dict[str, bytes | None] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = os.readlink(path).encode()
        elif path.is_dir():
            out[rel] = None
        else:
            out[rel] = path.read_bytes()
    return out


def unchanged(before: dict[str, bytes | None], root: Path) -> bool:
    """Every entry of ``before`` is still under ``root``, byte-identical (new entries allowed)."""
    after = snapshot(root)
    return all(rel in after and after[rel] == data for rel, data in before.items())


def one_line_error(capsys, *names: str) -> str:
    """The error line, after checking there is exactly one and that it names each of ``names``."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("cmpipe: error: "), err
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    return lines[0]


def _user_dir(root: Path) -> Path:
    """A directory of the user's: a paper and its data."""
    paper = root / "paper"
    paper.mkdir()
    (paper / "paper.tex").write_text("\\documentclass{article}\n")
    (paper / "data.csv").write_text("m,y\n1,2\n")
    return paper


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("store") / "images.zarr"
    assert main(["generate", "--serial", "--store", str(store), *_set(TINY_STORE)]) == 0
    return store


# ------------------------------------------------------------------------------ generate --store


def test_generate_overwrite_refuses_a_directory_of_the_users(tmp_path, capsys):
    paper = _user_dir(tmp_path)
    before = snapshot(tmp_path)
    status = main(["generate", "--serial", "--overwrite", "--store", str(paper), *_set(TINY_STORE)])
    assert status == 2
    line = one_line_error(capsys, paper)
    assert "refusing to delete" in line and "paper.tex" in line
    assert snapshot(tmp_path) == before


def test_generate_without_overwrite_refuses_a_directory_of_the_users(tmp_path, capsys):
    paper = _user_dir(tmp_path)
    before = snapshot(tmp_path)
    assert main(["generate", "--serial", "--store", str(paper), *_set(TINY_STORE)]) == 2
    assert "not a cmpipe image store" in one_line_error(capsys, paper)
    assert snapshot(tmp_path) == before


def test_generate_overwrite_replaces_a_store(tmp_path, tiny_store, capsys):
    """A cmpipe store is deleted and made again by --overwrite (its maps equal the first's);
    the user's file beside it is kept."""
    import shutil

    import zarr

    store = tmp_path / "images.zarr"
    shutil.copytree(tiny_store, store)
    (store / "stale").write_text("left by an older run")
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    assert main(["generate", "--serial", "--overwrite", "--store", str(store), *_set(TINY_STORE)]) == 0
    assert not (store / "stale").exists()
    assert artifact_kind(store) == "store"
    assert notes.read_text() == "mine"
    np.testing.assert_array_equal(zarr.open_group(str(store), mode="r")["maps"][:],
                                  zarr.open_group(str(tiny_store), mode="r")["maps"][:])


def test_generate_overwrite_accepts_an_empty_directory(tmp_path):
    store = tmp_path / "images.zarr"
    store.mkdir()
    assert main(["generate", "--serial", "--overwrite", "--store", str(store), *_set(TINY_STORE)]) == 0
    assert artifact_kind(store) == "store"


def test_generate_export_fits_keeps_the_users_fits(tmp_path, capsys):
    """<store dir>/fits/ holding a file cmpipe did not write: refused before any image is made."""
    fits_dir = tmp_path / "fits"
    fits_dir.mkdir()
    (fits_dir / "a2029_sz_y.fits").write_bytes(b"SIMPLE  =                    T")
    before = snapshot(tmp_path)
    status = main(["generate", "--serial", "--store", str(tmp_path / "images.zarr"), "--export-fits", "all",
                   *_set(TINY_STORE)])
    assert status == 2
    one_line_error(capsys, fits_dir, "a2029_sz_y.fits")
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "images.zarr").exists()


# ------------------------------------------------------------------------------ output checks


def _out_commands(path: Path, tmp_path: Path) -> dict[str, list[str]]:
    """Each command with ``path`` as its output (inputs that need not exist: checked after)."""
    return {
        "catalog": ["catalog", "--out", str(path)],
        "render-halo": ["render-halo", "--out", str(path), *_set(TINY_STORE)],
        "validate-mock": ["validate-mock", "--out", str(path)],
        "project-halos": ["project-halos", "--out", str(path)],
        "generate": ["generate", "--serial", "--store", str(path / "images.zarr"), *_set(TINY_STORE)],
        "infer": ["infer", "--store", str(tmp_path / "none.zarr"), "--checkpoint", str(tmp_path / "none.pt"),
                  "--out", str(path)],
        "demo": ["demo", "--out", str(path)],
        "pipeline": ["pipeline", "--out", str(path), "--stages", "catalog"],
    }


@pytest.mark.parametrize("command", ["catalog", "render-halo", "validate-mock", "project-halos", "generate", "infer",
                                     "demo", "pipeline"])
def test_output_under_a_file(command, tmp_path, capsys):
    """An output directory whose parent is a file (unwritable, also for root)."""
    blocker = tmp_path / "results.txt"
    blocker.write_text("my results\n")
    before = snapshot(tmp_path)
    assert main(_out_commands(blocker / "sub", tmp_path)[command]) == 2
    one_line_error(capsys, blocker)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("command", ["catalog", "render-halo", "validate-mock", "project-halos", "infer", "demo",
                                     "pipeline"])
def test_output_is_an_existing_file(command, tmp_path, capsys):
    target = tmp_path / "existing"
    target.write_text("not a directory\n")
    before = snapshot(tmp_path)
    args = _out_commands(target, tmp_path)[command]
    assert main(args) == 2
    one_line_error(capsys, target)
    assert snapshot(tmp_path) == before


def test_generate_store_is_an_existing_file(tmp_path, capsys):
    target = tmp_path / "images.zarr"
    target.write_text("not a store\n")
    before = snapshot(tmp_path)
    assert main(["generate", "--serial", "--store", str(target), *_set(TINY_STORE)]) == 2
    one_line_error(capsys, target)
    assert snapshot(tmp_path) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a 0o500 directory: see test_output_under_a_file")
def test_output_in_a_read_only_directory(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "keep.txt").write_text("kept")
    locked.chmod(0o500)
    try:
        before = snapshot(tmp_path)
        assert main(["catalog", "--out", str(locked)]) == 2
        one_line_error(capsys, locked)
        assert snapshot(tmp_path) == before
    finally:
        locked.chmod(0o700)


def test_infer_refuses_a_directory_of_the_users(tmp_path, capsys):
    paper = _user_dir(tmp_path)
    before = snapshot(tmp_path)
    assert main(["infer", "--store", str(tmp_path / "none.zarr"), "--checkpoint", str(tmp_path / "none.pt"),
                 "--out", str(paper)]) == 2
    one_line_error(capsys, paper)
    assert snapshot(tmp_path) == before


# ------------------------------------------------------------------------------ render-halo, report


def test_render_unknown_halo_id(tmp_path, capsys):
    before = snapshot(tmp_path)
    assert main(["render-halo", "--halo-id", "7", "--out", str(tmp_path / "render"), *_set(TINY_STORE)]) == 2
    line = one_line_error(capsys, "halo id 7")
    assert "valid halo ids: 0" in line
    assert unchanged(before, tmp_path)
    assert not list((tmp_path / "render").glob("*.png"))


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """A small results directory written with the real writers (as tests/test_report.py)."""
    from test_report import _build

    return _build(tmp_path_factory.mktemp("results"), np.array([13.6, 13.8, 14.0]), save_samples=True, seed=1)


def test_report_corrupt_parquet_part(results, tmp_path, capsys):
    import shutil

    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    part = sorted((copy / "tables" / "clusters").glob("part-*.parquet"))[0]
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])  # truncated, as by a full disk
    before = snapshot(tmp_path)
    assert main(["report", "--results", str(copy)]) == 2
    assert "not a readable Parquet file" in one_line_error(capsys, part)
    assert unchanged(before, tmp_path)


def test_report_refuses_a_directory_of_the_users(results, tmp_path, capsys):
    paper = _user_dir(tmp_path)
    before = snapshot(tmp_path)
    assert main(["report", "--results", str(results), "--out", str(paper)]) == 2
    one_line_error(capsys, paper, "paper.tex")
    assert snapshot(tmp_path) == before


def test_report_missing_results(tmp_path, capsys):
    """A missing results directory is one line, and creates nothing (no typo/report)."""
    assert main(["report", "--results", str(tmp_path / "typo")]) == 2
    one_line_error(capsys, tmp_path / "typo")
    assert not (tmp_path / "typo").exists()


def test_compare_refuses_a_results_directory_as_output(results, tmp_path, capsys):
    before = snapshot(results)
    assert main(["compare", "--results", f"a={results}", "--results", f"b={results}", "--out", str(results)]) == 2
    one_line_error(capsys, results)
    assert unchanged(before, results)


# ------------------------------------------------------------------------------ cmpipe.store.outputs


def test_remove_owned_refuses_what_cmpipe_did_not_make(tmp_path):
    paper = _user_dir(tmp_path)
    file = tmp_path / "file.txt"
    file.write_text("x")
    marked = mark_directory(tmp_path / "run", "run")
    (marked / "metrics.csv").write_text("step\n")
    link = tmp_path / "link"
    link.symlink_to(marked, target_is_directory=True)
    before = snapshot(tmp_path)
    for path in (paper, file, link):
        with pytest.raises(OutputError, match="refusing to delete") as info:
            remove_owned(path, ("run",), what="--x")
        assert str(path) in str(info.value)
    with pytest.raises(OutputError, match="cmpipe run, not a store"):
        remove_owned(marked, ("store",))
    assert snapshot(tmp_path) == before


def test_remove_owned_deletes_its_own(tmp_path):
    run = mark_directory(tmp_path / "run", "run")
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "step_00000002.pt").write_bytes(b"x")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert remove_owned(run, ("run",)) and not run.exists()
    assert remove_owned(empty, ("store",)) and not empty.exists()
    assert remove_owned(tmp_path / "absent", ("run",)) is False


def test_mark_directory(tmp_path):
    run = mark_directory(tmp_path / "a" / "run", "run")
    assert json.loads((run / MARKER_NAME).read_text()) == {"cmpipe_artifact": "run", "version": 1}
    assert artifact_kind(run) == "run"
    mark_directory(run, "run")  # idempotent
    with pytest.raises(OutputError, match="cmpipe run directory, not a report"):
        mark_directory(run, "report")
    assert artifact_kind(tmp_path) is None


def test_check_output_file(tmp_path):
    data = tmp_path / "sz.fits"
    data.write_bytes(b"input")
    link = tmp_path / "alias.fits"
    link.symlink_to(data)
    with pytest.raises(OutputError, match="also an input"):
        check_output_file(link, overwrite=True, inputs=[data], what="--recon")
    with pytest.raises(OutputError, match="not a file"):
        check_output_file(tmp_path, overwrite=True)
    with pytest.raises(OutputError, match="--overwrite"):
        check_output_file(data)
    assert check_output_file(data, overwrite=True) == data
    new = check_output_file(tmp_path / "new" / "recon.fits")
    assert new.parent.is_dir() and not new.exists()
    assert data.read_bytes() == b"input"


def test_same_path_through_links(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "alias").symlink_to(real, target_is_directory=True)
    assert same_path(tmp_path / "alias" / "x.fits", real / "x.fits")  # neither exists
    (real / "x.fits").write_bytes(b"")
    assert same_path(tmp_path / "alias" / "x.fits", real / "x.fits")
    assert same_path(real / ".." / "real" / "x.fits", real / "x.fits")
    assert not same_path(real / "x.fits", real / "y.fits")


def test_check_output_dir(tmp_path):
    blocker = tmp_path / "f"
    blocker.write_text("")
    with pytest.raises(OutputError, match="is a file, not a directory"):
        check_output_dir(blocker)
    with pytest.raises(OutputError, match=f"{blocker} is a file"):
        check_output_dir(blocker / "a" / "b")
    assert check_output_dir(tmp_path / "a" / "b").is_dir()
    assert not check_output_dir(tmp_path / "c", create=False).exists()


def test_claim_directory(tmp_path):
    names = ("table1.csv", "fig*.png")
    assert not claim_directory(tmp_path / "new", "report", names=names, create=False).exists()  # only checked
    new = claim_directory(tmp_path / "new", "report", names=names)
    assert artifact_kind(new) == "report"
    assert claim_directory(new, "report", names=names) == new
    with pytest.raises(OutputError, match="cmpipe report, not a results"):
        claim_directory(new, "results", names=names)
    legacy = tmp_path / "legacy"  # only cmpipe's names: a report made before markers existed
    legacy.mkdir()
    (legacy / "fig1_mass.png").write_bytes(b"png")
    assert artifact_kind(claim_directory(legacy, "report", names=names)) == "report"
    paper = _user_dir(tmp_path)
    with pytest.raises(OutputError, match="cmpipe did not write"):
        claim_directory(paper, "report", names=names)
    assert claim_directory(paper, "pipeline", names=names, shared=True) == paper  # used, not claimed
    assert artifact_kind(paper) is None
    (paper / "table1.csv").write_text("mine")
    with pytest.raises(OutputError, match="refusing to overwrite"):
        claim_directory(paper, "pipeline", names=names, shared=True)
    assert (paper / "table1.csv").read_text() == "mine"
