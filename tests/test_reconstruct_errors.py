"""``cmpipe reconstruct``: nothing a user owns is destroyed, every user error is one line, one
bad cluster does not stop a batch, and out-of-distribution inputs are flagged (issue 14).

Oracles: the bytes of every file that existed before a refused or partly failed command
(unchanged afterwards); the exit status and the one line on stderr (``cmpipe: error: ...``
naming the file); the training store's own ranges (a train image is in distribution by
construction: its pixels define the normalisation's min and max and its total lies in the
recorded range of train totals; a y map times 1e6 and an all-zero X-ray map are not).
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from tiny_stores import inference_config as _cfg
from tiny_stores import make_run, make_store

SETS = [a for s in ["infer.steps=4", "infer.sampler=em", "infer.images_per_batch=1", "infer.actors=1",
                    "infer.cpus_per_actor=1", "infer.gpus_per_actor=0", "infer.threads_per_actor=1"]
        for a in ("--set", s)]



@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny store and a 2-step training run (as tests/test_fits.py makes them)."""
    store = make_store(_cfg(), tmp_path_factory.mktemp("ood_store"))
    return store, make_run(_cfg(), store, tmp_path_factory.mktemp("ood_run"))


def _train_indices(store, n):
    from cmpipe.store.zarr_store import open_store

    group = open_store(store)
    return [int(i) for i in np.flatnonzero((group["split"][:] == 0) & (group["image_failed"][:] == 0))[:n]]


def _export(store, index, directory):
    """(sz, xray) FITS of a train image."""
    from cmpipe.stages.reconstruct import export_store_fits

    sz, xray, *_ = export_store_fits(store, [index], directory)
    return sz, xray


def _scaled(src, dst, factor):
    """A copy of FITS map ``src`` with its data times ``factor``."""
    with fits.open(src) as hdul:
        hdul[0].data = hdul[0].data * np.float32(factor)
        hdul.writeto(dst)
    return dst


def _snapshot(root):
    return {p: p.read_bytes() for p in Path(root).rglob("*") if p.is_file()}


def _assert_unchanged(before):
    for path, data in before.items():
        assert path.is_file() and path.read_bytes() == data, f"{path} changed"


def _one_line_error(err, *names):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("cmpipe: error: "), lines[0]
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    return lines[0]


def _argv(run, sz, xray, recon, *extra):
    return ["reconstruct", "--checkpoint", str(run), "--sz", str(sz), "--xray", str(xray), "--recon", str(recon),
            "--samples", "2", *SETS, *extra]


# --------------------------------------------------------------------------- one cluster


def test_output_equal_to_an_input_is_refused(tiny_run, tmp_path, capsys):
    from cmpipe.cli import main

    store, run = tiny_run
    sz, xray = _export(store, _train_indices(store, 1)[0], tmp_path / "fits")
    before = _snapshot(tmp_path)
    for target in (sz, xray):
        assert main(_argv(run, sz, xray, target)) == 2
        _one_line_error(capsys.readouterr().err, target, "also an input")
        # Not even --overwrite replaces an input.
        assert main(_argv(run, sz, xray, target, "--overwrite")) == 2
        _one_line_error(capsys.readouterr().err, target, "also an input")
    _assert_unchanged(before)
    assert set(_snapshot(tmp_path)) == set(before)


def test_existing_output_is_kept_unless_overwrite(tiny_run, tmp_path, capsys):
    from cmpipe.cli import main

    store, run = tiny_run
    sz, xray = _export(store, _train_indices(store, 1)[0], tmp_path / "fits")
    out = tmp_path / "recon.fits"
    out.write_bytes(b"my own file")
    before = _snapshot(tmp_path)
    assert main(_argv(run, sz, xray, out)) == 2
    _one_line_error(capsys.readouterr().err, out, "--overwrite")
    _assert_unchanged(before)
    # The PNG quick look is an output too.
    out.unlink()
    png = tmp_path / "recon.png"
    png.write_bytes(b"my own picture")
    before = _snapshot(tmp_path)
    assert main(_argv(run, sz, xray, out)) == 2
    _one_line_error(capsys.readouterr().err, png, "--overwrite")
    _assert_unchanged(before)
    assert not out.exists()
    # --overwrite replaces both.
    assert main(_argv(run, sz, xray, out, "--overwrite")) == 0
    capsys.readouterr()
    with fits.open(out) as hdul:
        assert hdul["MEAN"].data.shape == (2, 16, 16)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("content", [b"name,sz\nfoo,bar\n", b"", b"SIMPLE  =                    T" + b" " * 100],
                         ids=["text", "empty", "truncated"])
def test_non_fits_file_is_one_line_naming_it(tiny_run, tmp_path, capsys, content):
    from cmpipe.cli import main

    store, run = tiny_run
    sz, xray = _export(store, _train_indices(store, 1)[0], tmp_path / "fits")
    bad = tmp_path / "notfits_sz_y.fits"
    bad.write_bytes(content)
    before = _snapshot(tmp_path)
    assert main(_argv(run, bad, xray, tmp_path / "out" / "recon.fits")) == 2
    _one_line_error(capsys.readouterr().err, bad, "not a readable FITS file")
    _assert_unchanged(before)
    assert not (tmp_path / "out" / "recon.fits").exists()


# ------------------------------------------------------------------------ out of distribution


def test_train_image_is_in_distribution(tiny_run, tmp_path):
    from cmpipe.stages.reconstruct import reconstruct

    store, run = tiny_run
    sz, xray = _export(store, _train_indices(store, 1)[0], tmp_path / "fits")
    result = reconstruct(run, sz, xray, tmp_path / "recon.fits", n_samples=2, quicklook=False)
    ood = result["ood"]
    assert not ood.flagged and ood.fractions == (0.0, 0.0)
    assert [ood.total_outside(i) for i in range(2)] == [False, False]
    with fits.open(result["fits"]) as hdul:
        h = hdul[0].header
        assert (h["OODFLAG"], h["OODFRAC1"], h["OODFRAC2"], h["OODTOTY"], h["OODTOTX"]) == (False, 0.0, 0.0, False, False)
        assert hdul["MEAN"].header["OODFLAG"] is False


def test_y_times_1e6_is_flagged_in_header_and_warned(tiny_run, tmp_path, caplog, capsys):
    from cmpipe.cli import main

    store, run = tiny_run
    sz, xray = _export(store, _train_indices(store, 1)[0], tmp_path / "fits")
    loud = _scaled(sz, tmp_path / "loud_sz_y.fits", 1e6)
    out = tmp_path / "recon.fits"
    with caplog.at_level("WARNING", logger="cmpipe.stages.reconstruct"):
        assert main(_argv(run, loud, xray, out)) == 0
    capsys.readouterr()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert str(loud) in warnings[0] and "sz_y pixels outside the training range" in warnings[0]
    assert "total sz_y" in warnings[0]
    with fits.open(out) as hdul:
        h = hdul[0].header
        assert h["OODFLAG"] is True and h["OODTOTY"] is True and h["OODTOTX"] is False
        assert h["OODFRAC1"] > 0.01 and h["OODFRAC2"] == 0.0
        assert "sz_y" in h.comments["OODFRAC1"]


def test_all_zero_xray_is_flagged(tiny_run, tmp_path):
    from cmpipe.stages.reconstruct import reconstruct

    store, run = tiny_run
    sz, xray = _export(store, _train_indices(store, 1)[0], tmp_path / "fits")
    dark = _scaled(xray, tmp_path / "dark_xray_sb.fits", 0.0)
    result = reconstruct(run, sz, dark, tmp_path / "recon.fits", n_samples=2, quicklook=False)
    ood = result["ood"]
    assert ood.flagged and ood.totals[1] == 0.0 and ood.total_outside(1) is True
    with fits.open(result["fits"]) as hdul:
        assert hdul[0].header["OODFLAG"] is True and hdul[0].header["OODTOTX"] is True


def test_strict_refuses_out_of_distribution_inputs(tiny_run, tmp_path, capsys):
    from cmpipe.cli import main

    store, run = tiny_run
    sz, xray = _export(store, _train_indices(store, 1)[0], tmp_path / "fits")
    loud = _scaled(sz, tmp_path / "loud_sz_y.fits", 1e6)
    dark = _scaled(xray, tmp_path / "dark_xray_sb.fits", 0.0)
    out = tmp_path / "out" / "recon.fits"
    before = _snapshot(tmp_path)
    assert main(_argv(run, loud, xray, out, "--strict")) == 2
    _one_line_error(capsys.readouterr().err, loud, "sz_y", "--strict")
    assert main(_argv(run, sz, dark, out, "--strict")) == 2
    _one_line_error(capsys.readouterr().err, dark, "total xray_sb", "--strict")
    assert not out.exists() and not out.with_suffix(".png").exists()
    _assert_unchanged(before)
    # A threshold of 100 % of pixels still refuses a total outside the training range.
    assert main(_argv(run, loud, xray, out, "--strict", "--ood-max-fraction", "1")) == 2
    _one_line_error(capsys.readouterr().err, "total sz_y")
    assert main(_argv(run, sz, xray, out, "--ood-max-fraction", "2")) == 2
    _one_line_error(capsys.readouterr().err, "--ood-max-fraction")


def test_checkpoint_without_totals_reports_them_unknown(tiny_run, tmp_path):
    """A checkpoint whose store was normalised before the totals were recorded: the pixel
    fractions are still known (min and max always were), the total flags are unknown."""
    from cmpipe.model.training import latest_checkpoint
    from cmpipe.stages.reconstruct import reconstruct

    store, run = tiny_run
    sz, xray = _export(store, _train_indices(store, 1)[0], tmp_path / "fits")
    ckpt = latest_checkpoint(run)
    old = tmp_path / ckpt.name
    shutil.copy(ckpt, old)
    meta = json.loads(ckpt.with_suffix(".json").read_text())
    assert "totals" in meta["hyperparameters"]["normalisation"]
    del meta["hyperparameters"]["normalisation"]["totals"]
    old.with_suffix(".json").write_text(json.dumps(meta))
    result = reconstruct(old, sz, xray, tmp_path / "recon.fits", n_samples=2, quicklook=False)
    ood = result["ood"]
    assert ood.fractions == (0.0, 0.0) and ood.total_ranges == (None, None) and not ood.flagged
    assert ood.columns()["ood_total_sz_y"] == "unknown"
    with fits.open(result["fits"]) as hdul:
        h = hdul[0].header
        assert "OODTOTY" in h and "OODTOTX" in h and h["OODTOTY"] is None and h["OODTOTX"] is None  # undefined
        assert h["OODFLAG"] is False and "unknown" in h.comments["OODTOTY"]


# ------------------------------------------------------------------------------ many clusters


def _read_table(path):
    with open(path, newline="", encoding="utf-8") as f:
        return {row["name"]: row for row in csv.DictReader(f)}


@pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")
def test_one_bad_cluster_does_not_stop_the_batch(tiny_run, ray_local, tmp_path, capsys):
    """Four clusters: two train images, one whose y map is not FITS, one with y times 1e6. The
    bad one is recorded as failed (exit 1, one line naming it), the others are done, the loud one
    flagged; inputs are untouched. Fixed and rerun, only the failed cluster is redone."""
    from cmpipe.cli import main
    from cmpipe.store.outputs import artifact_kind

    store, run = tiny_run
    a, b = _train_indices(store, 2)
    inputs = tmp_path / "fits"
    sz_a, _ = _export(store, a, inputs)
    sz_b, xray_b = _export(store, b, inputs)
    bad_sz = inputs / "bad_sz_y.fits"
    bad_sz.write_text("not a FITS file\n")
    shutil.copy(xray_b, inputs / "bad_xray_sb.fits")
    _scaled(sz_a, inputs / "loud_sz_y.fits", 1e6)
    shutil.copy(inputs / f"image_{a:06d}_xray_sb.fits", inputs / "loud_xray_sb.fits")
    for extra in inputs.glob("*_sigma.fits"):
        extra.unlink()
    before = _snapshot(inputs)
    out = tmp_path / "out"
    argv = ["reconstruct", "--checkpoint", str(run), "--inputs", str(inputs), "--recon", str(out), "--samples", "2",
            *SETS]

    assert main(argv) == 1
    captured = capsys.readouterr()
    last = captured.err.strip().splitlines()[-1]
    assert last.startswith("cmpipe: error: 1 of 4 clusters failed (bad_)") and str(bad_sz) in last
    assert "4 clusters: 0 done before, 3 reconstructed, 1 failed, 1 out of distribution" in captured.out
    _assert_unchanged(before)
    assert artifact_kind(out) == "reconstructions"
    rows = _read_table(out / "reconstructions.csv")
    assert set(rows) == {"bad_", "loud_", f"image_{a:06d}_", f"image_{b:06d}_"}
    assert rows["bad_"]["status"] == "failed" and str(bad_sz) in rows["bad_"]["error"]
    assert "not a readable FITS file" in rows["bad_"]["error"] and not (out / "bad_recon.fits").exists()
    assert rows["loud_"]["status"] == "done" and rows["loud_"]["ood"] == "True"
    assert rows["loud_"]["ood_total_sz_y"] == "True" and float(rows["loud_"]["ood_frac_sz_y"]) > 0.01
    assert "sz_y pixels outside the training range" in rows["loud_"]["warning"]
    for name in (f"image_{a:06d}_", f"image_{b:06d}_"):
        assert rows[name]["status"] == "done" and rows[name]["ood"] == "False" and rows[name]["error"] == ""
    with fits.open(out / "loud_recon.fits") as hdul:
        assert hdul[0].header["OODFLAG"] is True

    # Fix the bad cluster and rerun: it is retried, the others are kept as they are.
    done = _snapshot(out)
    shutil.copy(sz_b, bad_sz)
    assert main(argv) == 0
    assert "4 clusters: 3 done before, 1 reconstructed, 0 failed, 1 out of distribution" in capsys.readouterr().out
    _assert_unchanged({p: d for p, d in done.items() if p.name != "reconstructions.csv"})
    rows = _read_table(out / "reconstructions.csv")
    assert {r["status"] for r in rows.values()} == {"done"} and (out / "bad_recon.fits").is_file()
    # Flags of clusters done before come from their FITS headers.
    assert rows["loud_"]["ood"] == "True" and rows["loud_"]["ood_total_sz_y"] == "True"
    assert rows[f"image_{a:06d}_"]["ood"] == "False"


def test_batch_output_that_is_an_input_is_refused_before_ray(tiny_run, tmp_path, capsys):
    """A table naming a map where a reconstruction would go, and an output directory cmpipe did
    not make holding a reconstructions.csv: both refused in one line, before Ray starts."""
    from cmpipe.cli import main

    store, run = tiny_run
    sz, xray = _export(store, _train_indices(store, 1)[0], tmp_path / "fits")
    out = tmp_path / "out"
    out.mkdir()
    trap = shutil.copy(sz, out / "c1_recon.fits")
    table = tmp_path / "clusters.csv"
    table.write_text(f"name,sz,xray\nc1,{trap},{xray}\n")
    before = _snapshot(tmp_path)
    argv = ["reconstruct", "--checkpoint", str(run), "--inputs", str(table), "--recon", str(out), "--samples", "2",
            *SETS]
    assert main(argv) == 2
    _one_line_error(capsys.readouterr().err, trap, "also an input")
    _assert_unchanged(before)

    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "reconstructions.csv").write_text("my,own,table\n")
    table.write_text(f"name,sz,xray\nc1,{sz},{xray}\n")
    before = _snapshot(tmp_path)
    assert main([*argv[:5], "--recon", str(theirs), *argv[7:]]) == 2
    _one_line_error(capsys.readouterr().err, theirs / "reconstructions.csv", "--overwrite")
    _assert_unchanged(before)
    assert set(_snapshot(tmp_path)) == set(before)
