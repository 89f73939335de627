"""Faults a rerun must repair (issue 14).

* generate: a halo file that is bad when the store is made fails its halo (exit 1, its images
  NaN); once the file is rewritten, a rerun retries those images only, clears the failure
  record and recomputes the normalisation. Oracle: a clean run of the same halos (one thread per
  chunk: bit-identical maps), for the Ray and the serial generator.
* infer's resume: a corrupt Parquet part goes with its batch-mates (here without Ray; the Ray
  run that redoes them, and infer's user errors stopped before Ray, are in test_infer_ray.py,
  beside its store and checkpoint).
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from cmpipe.cli import main
from cmpipe.config import load_config
from cmpipe.stages.generate import generate_serial
from cmpipe.stages.source import open_source
from cmpipe.store import missing_chunks, open_store, validate_store
from tiny_stores import GENERATION_STORE

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")

GEN = [*GENERATION_STORE, "generate.chunk_images=2", "sph.num_threads=1"]
BAD = 5  # the lone halo of its mass bin: always planned


def _sets(overrides) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


def _write_halos(directory: Path, ids=None) -> None:
    """The analytic halos of ``GEN`` as cmpipe HDF5 halo files (all, or ``ids``), replacing any."""
    from cmpipe.physics.hdf5io import write_halo_hdf5

    cfg = load_config("demo", GEN)
    source = open_source(cfg)
    directory.mkdir(parents=True, exist_ok=True)
    for hid in source.halo_ids() if ids is None else ids:
        write_halo_hdf5(directory / f"halo_{hid}.hdf5", source.load(hid), h=cfg.cosmology.h, overwrite=True)


@pytest.fixture(scope="module")
def clean_store(tmp_path_factory):
    """A store made serially from intact HDF5 halo files: the oracle of the repaired stores."""
    root = tmp_path_factory.mktemp("clean")
    _write_halos(root / "halos")
    path = root / "images.zarr"
    generate_serial(load_config("demo", [*GEN, "source.kind=hdf5", f"source.path={root / 'halos'}"]), path)
    return path


@pytest.mark.parametrize("serial", [False, True], ids=["ray", "serial"])
def test_fixed_halo_file_is_retried_and_its_failure_cleared(ray_local, clean_store, tmp_path, capsys, serial):
    halos = tmp_path / "halos"
    _write_halos(halos)
    with h5py.File(halos / f"halo_{BAD}.hdf5", "r+") as f:
        f["PartType0/Coordinates"][0] = np.nan
    store = tmp_path / "out" / "images.zarr"
    argv = ["generate", "--store", str(store), *_sets(GEN), "--set", "source.kind=hdf5",
            "--set", f"source.path={halos}", "--out", str(tmp_path / "out"), *(["--serial"] if serial else [])]
    reference = open_store(clean_store)
    rows = np.flatnonzero(reference["halo_id"][:] == BAD)

    assert main(argv) == 1
    assert f"halo {BAD}" in capsys.readouterr().err
    group = open_store(store)
    assert missing_chunks(store) == [] and {f["halo_id"] for f in group.attrs["failures"]} == {BAD}
    assert np.all(np.isnan(group["maps"][:][rows]))
    stale = group.attrs["normalisation"]
    assert stale is not None and stale != reference.attrs["normalisation"]  # made without the bad halo
    others = np.setdiff1d(np.arange(group["maps"].shape[0]), rows)
    kept = group["maps"][:][others]

    # broken another way: the retry fails again, and the record carries the new error
    _write_halos(halos, [BAD])
    with h5py.File(halos / f"halo_{BAD}.hdf5", "r+") as f:
        f["PartType0/Masses"][0] = -1.0
    assert main(argv) == 1
    err = capsys.readouterr().err
    failures = open_store(store).attrs["failures"]
    assert {f["halo_id"] for f in failures} == {BAD} and all("non-finite" not in f["error"] for f in failures)
    assert sorted(i for f in failures for i in f["images"]) == rows.tolist() and f"halo {BAD}" in err

    # fixed: the rerun retries, succeeds, clears the record and renormalises
    _write_halos(halos, [BAD])
    assert main(argv) == 0, capsys.readouterr().err
    group = open_store(store)
    assert group.attrs["failures"] == [] and not group["image_failed"][:].any()
    np.testing.assert_array_equal(group["maps"][:], reference["maps"][:])  # bit-identical to a clean run
    np.testing.assert_array_equal(group["maps"][:][others], kept)  # the good images were kept as they were
    assert group.attrs["normalisation"] == reference.attrs["normalisation"]
    assert validate_store(store)["failed_images"] == 0
    # nothing left to do
    assert main(argv) == 0
    assert "0 chunks written" in capsys.readouterr().out


def test_keep_failed_leaves_failed_images(clean_store, tmp_path, capsys):
    halos = tmp_path / "halos"
    _write_halos(halos)
    with h5py.File(halos / f"halo_{BAD}.hdf5", "r+") as f:
        f["PartType0/Coordinates"][0] = np.nan
    store = tmp_path / "images.zarr"
    argv = ["generate", "--serial", "--store", str(store), *_sets(GEN), "--set", "source.kind=hdf5",
            "--set", f"source.path={halos}", "--out", str(tmp_path)]
    assert main(argv) == 1
    _write_halos(halos, [BAD])
    before = open_store(store).attrs["failures"]
    assert main([*argv, "--keep-failed"]) == 1  # not retried: still failed
    assert open_store(store).attrs["failures"] == before
    assert main(argv) == 0


@pytest.mark.parametrize("corrupt", [("clusters",), ("clusters", "profiles")], ids=["one-table", "every-table"])
def test_corrupt_part_goes_with_its_batch_mates(tmp_path, caplog, corrupt):
    """Oracle: the batch layout written here. A part that cannot be read takes the same-named parts
    of the other tables with it; where none can be read, the images its name spans are redone."""
    import logging

    import pyarrow as pa
    import pyarrow.parquet as pq

    from cmpipe.store.tables import remove_parts_not_done

    batches = {"part-00000000-00000003.parquet": [0, 3], "part-00000004-00000005.parquet": [4, 5]}
    for table in ("clusters", "profiles"):
        (tmp_path / "tables" / table).mkdir(parents=True)
        for name, images in batches.items():
            pq.write_table(pa.table({"image_index": pa.array(images, pa.int64())}), tmp_path / "tables" / table / name)
    victims = [tmp_path / "tables" / t / "part-00000000-00000003.parquet" for t in corrupt]
    for victim in victims:
        victim.write_bytes(victim.read_bytes()[:20])
    with caplog.at_level(logging.WARNING, logger="cmpipe.store.tables"):
        removed, redo = remove_parts_not_done(tmp_path, {0, 1, 3, 4, 5})
    assert all(str(v) in caplog.text for v in victims)
    assert sorted(p.name for p in removed) == ["part-00000000-00000003.parquet"] * 2
    assert redo == ({0, 1, 3} if len(corrupt) == 2 else {0, 3})  # the name's span is a superset of the batch
    for table in ("clusters", "profiles"):
        assert [p.name for p in (tmp_path / "tables" / table).iterdir()] == ["part-00000004-00000005.parquet"]
