"""The ``cmpipe`` command.

Every subcommand takes the same configuration options::

    cmpipe <subcommand> [--config NAME|PATH] [--set section.key=value ...] [--out DIR] [...]

``--config`` is a shipped name (``demo``, the default, or ``paper``) or a YAML path; ``--set``
overrides one key (repeatable, applied in order); ``--out`` overrides ``run.out``. Logging is
configured here, and only here (:func:`configure_logging`), at ``run.log_level``; ``-q`` leaves
errors and the final summary, ``-v`` adds debug logging and Ray's own logs (:mod:`cmpipe.progress`).

Adding a subcommand
-------------------
Add one entry to :data:`SUBCOMMANDS`: ``name -> Subcommand(help, add_arguments, handler)``.

* ``add_arguments(parser)`` adds the subcommand's own options to its
  :class:`argparse.ArgumentParser` (the common options are already there).
* ``handler(args, cfg)`` runs it with the parsed :class:`argparse.Namespace` and the resolved
  :class:`~cmpipe.config.Config` and returns the exit status (``None`` counts as 0). A handler
  that writes artifacts calls :func:`cmpipe.config.save_resolved_config` on its output
  directory (``cfg.run.out``).
* Handlers import heavy modules (numpy, numba, ray, torch) *inside* their body, so that
  ``cmpipe --help`` stays fast; a test checks that importing this module loads none of them.
* A user error raised by a handler, directly or inside a Ray task, actor or Ray Train worker,
  is printed as one line ``cmpipe: error: <message>`` with exit status 2
  (:func:`user_error_message`): a :class:`ValueError` subclass defined in cmpipe
  (``ConfigError``, ``HaloError``, ``OutputError``, ...) or an :class:`OSError` naming a path.
  Any other exception is a bug and keeps its traceback; ``-v`` shows the traceback of user
  errors too.
* Outputs go through :mod:`cmpipe.store.outputs`: checked before work starts, never an input, and
  ``--overwrite`` deletes only what cmpipe made.
* Every path option may be an object-store URL (``s3://``, ``gs://``, ``az://``). :func:`main`
  checks each one (:data:`PATH_OPTIONS`, ``--out``/``run.out``, ``source.path``) with
  :func:`check_location` before the handler runs: an unknown scheme, a missing bucket or missing
  credentials is one line naming the URL, exit status 2, nothing written. A new path option is
  added to :data:`PATH_OPTIONS`; handlers turn paths into path objects with
  :func:`cmpipe.store.location.as_path` (never ``pathlib.Path``, which mangles a URL).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import NamedTuple

from cmpipe import __version__
from cmpipe.config import Config, ConfigError, config_fingerprint, config_to_yaml, load_config
from cmpipe.store.location import AnyPath
from cmpipe.store.schema import SPLIT_NAMES

__all__ = ["SUBCOMMANDS", "Subcommand", "build_parser", "main"]

logger = logging.getLogger(__name__)

#: Exit status for a usage or configuration error (as argparse uses).
EXIT_USAGE = 2

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class Subcommand(NamedTuple):
    """One ``cmpipe`` subcommand.

    Attributes
    ----------
    help : str
        One line shown by ``cmpipe --help``.
    add_arguments : callable
        ``add_arguments(parser: argparse.ArgumentParser) -> None``: the subcommand's own
        options (the common ``--config``, ``--set`` and ``--out`` are added already).
    handler : callable
        ``handler(args: argparse.Namespace, cfg: Config) -> int | None``: runs the
        subcommand, returns its exit status.
    """

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    handler: Callable[[argparse.Namespace, Config], int | None]


# --------------------------------------------------------------------------------------------
# config
# --------------------------------------------------------------------------------------------


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """``cmpipe config`` has only the common options."""


def _run_config(args: argparse.Namespace, cfg: Config) -> int:
    """Print the resolved configuration as YAML (loadable with ``--config``) and its fingerprint."""
    sys.stdout.write(config_to_yaml(cfg))
    return 0


# --------------------------------------------------------------------------------------------
# render-halo
# --------------------------------------------------------------------------------------------


def _add_render_arguments(parser: argparse.ArgumentParser) -> None:
    """Shortcuts for the ``render`` and ``source`` keys (also settable with ``--set``)."""
    parser.add_argument("--input", metavar="HDF5", help="a halo file or directory in cmpipe's HDF5 layout (source.kind=hdf5)")
    parser.add_argument("--halo-id", type=int, help="halo id within the source (render.halo_id)")
    parser.add_argument("--axis", type=int, choices=(0, 1, 2), help="line-of-sight axis (render.axis)")
    parser.add_argument("--rotation-seed", type=int, help="seed of a uniform random rotation, -1 for none (render.rotation_seed)")
    parser.add_argument("--no-npz", action="store_true", help="do not save the maps as .npz (render.save_npz=false)")


def _run_render(args: argparse.Namespace, cfg: Config) -> int:
    """Project one halo and write its four maps as a PNG (and .npz)."""
    from cmpipe.stages.render import render_halo

    source = cfg.source
    if args.input:
        source = dataclasses.replace(source, kind="hdf5", path=args.input)
    render = cfg.render
    updates = {
        "halo_id": args.halo_id,
        "axis": args.axis,
        "rotation_seed": args.rotation_seed,
        "save_npz": False if args.no_npz else None,
    }
    render = dataclasses.replace(render, **{k: v for k, v in updates.items() if v is not None})
    result = render_halo(dataclasses.replace(cfg, source=source, render=render))
    print(result.png)
    if result.npz is not None:
        print(result.npz)
    return 0


# --------------------------------------------------------------------------------------------
# catalog
# --------------------------------------------------------------------------------------------


def _add_catalog_arguments(parser: argparse.ArgumentParser) -> None:
    """``cmpipe catalog`` has only the common options (its keys: ``--set catalog.KEY=...``)."""


def _run_catalog(args: argparse.Namespace, cfg: Config) -> int:
    """Write the halo catalog (Parquet), its mass-function figure and the resolved config (into a
    local directory or an object-store URL)."""
    from cmpipe.config import save_resolved_config
    from cmpipe.store.outputs import check_output_dir
    from cmpipe.stages import catalog

    out = check_output_dir(cfg.run.out, what="--out")
    result = catalog.run(cfg, {"out": out, "catalog": out / "catalog.parquet"}, dpi=150)
    save_resolved_config(cfg, out)
    print(result.catalog)
    print(result.summary)
    return 0


# --------------------------------------------------------------------------------------------
# demo
# --------------------------------------------------------------------------------------------


def _add_project_halos_arguments(parser: argparse.ArgumentParser) -> None:
    """``cmpipe project-halos`` has only the common options."""


def _run_project_halos(args: argparse.Namespace, cfg: Config) -> int:
    """Halos -> HDF5 -> read back -> maps along three axes, with figures and a mass summary."""
    from cmpipe.stages.project import project_halos
    from cmpipe.store.outputs import check_output_dir

    check_output_dir(cfg.run.out, what="--out")
    project_halos(cfg)
    return 0


def _add_pipeline_arguments(parser: argparse.ArgumentParser) -> None:
    """Where Ray runs, how many training workers, which stages."""
    from cmpipe.pipeline.run import STAGES

    parser.add_argument(
        "--address", metavar="ADDRESS",
        help="Ray cluster (auto, HOST:PORT, ray://HOST:10001; default: $RAY_ADDRESS, else a local Ray)",
    )
    parser.add_argument("--workers", type=int, default=1, metavar="N",
                        help="Ray Train workers (DDP), must divide train.batch_size (default: %(default)s)")
    parser.add_argument("--stages", default=",".join(STAGES), metavar="LIST",
                        help="comma-separated subset of %(default)s")


def _run_pipeline(args: argparse.Namespace, cfg: Config) -> int:
    """Every stage (catalog, generate, train, infer, report) into ``--out`` (a local directory or an
    object-store URL), then where things are."""
    from cmpipe.pipeline.run import STAGES, run_pipeline
    from cmpipe.progress import QUIET, verbosity
    from cmpipe.store.location import is_remote

    t0 = time.perf_counter()
    stages = [s.strip() for s in getattr(args, "stages", ",".join(STAGES)).split(",") if s.strip()]
    echo = (lambda *a, **k: None) if verbosity() <= QUIET else print
    result = run_pipeline(cfg, cfg.run.out, address=getattr(args, "address", None),
                          train_workers=getattr(args, "workers", 1), stages=stages, echo=echo)
    paths = result["paths"]
    table1 = paths["report"] / "table1.md"
    if is_remote(table1):
        table1.fs.invalidate_cache()  # written by the report stage: list it afresh
    print(f"\ncmpipe: all stages done in {time.perf_counter() - t0:.0f} s; outputs in {paths['out']}")
    if table1.is_file():
        print(f"  figures and report:  {paths['report']}/report.md")
        print(f"  tables (Parquet):    {paths['results']}/tables/")
        print(f"  posterior maps:      {paths['results']}/posterior.zarr")
        print(f"  Table 1:             {table1}")
    _print_logs_line(result.get("ray_logs"))
    if table1.is_file():
        print()
        print(table1.read_text(encoding="utf-8"))
    return 0


def _ray_logs() -> str | None:
    """:func:`cmpipe.pipeline.session.ray_logs_dir` (None if no Ray ran here)."""
    from cmpipe.pipeline.session import ray_logs_dir

    return ray_logs_dir()


def _print_logs_line(logs: str | None) -> None:
    """Where Ray's worker logs are (the summary's last line of paths), if a Ray session ran."""
    from cmpipe.progress import VERBOSE, verbosity

    if logs:
        print(f"  Ray's worker logs:   {logs}" + ("" if verbosity() >= VERBOSE else " (-v prints them here)"))


def _add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    """``cmpipe demo``: the pipeline on a local Ray (only the common options)."""


# --------------------------------------------------------------------------------------------
# validate-mock
# --------------------------------------------------------------------------------------------

def _add_validate_mock_arguments(parser: argparse.ArgumentParser) -> None:
    """Size and seed of the validation catalog, and the showcase masses."""
    from cmpipe.stages.validate import SHOWCASE_LOG10_M

    parser.add_argument("--n-halos", type=int, default=24, help="halos in the flat-in-log validation catalog (default: %(default)s)")
    parser.add_argument("--seed", type=int, help="catalog seed (default: catalog.seed)")
    parser.add_argument(
        "--showcase", default=",".join(f"{m:g}" for m in SHOWCASE_LOG10_M), metavar="LOG10M,...",
        help="log10 M200m [Msun/h] of the halos whose four maps are drawn, comma-separated, '' for none (default: %(default)s)",
    )


def _run_validate_mock(args: argparse.Namespace, cfg: Config) -> int:
    """Validate the mock clusters against their input model and observed relations: profiles,
    f_gas, M-T, Y-M, L_X-M, the stacked profiles to the map edge, line-of-sight halos, maps."""
    from cmpipe.stages import validate
    from cmpipe.store.location import as_path
    from cmpipe.store.outputs import check_output_dir

    if args.n_halos < 2:
        raise ConfigError(f"--n-halos must be >= 2; got {args.n_halos}")
    try:
        showcase = [float(m) for m in args.showcase.split(",") if m.strip()]
    except ValueError:
        raise ConfigError(f"--showcase must be comma-separated numbers; got {args.showcase!r}") from None
    out = check_output_dir(as_path(cfg.run.out) / "validation", what="--out")
    res = validate.run(cfg, {"out": out}, n_halos=args.n_halos, seed=args.seed, showcase=showcase)
    print(validate.summary_text(res))
    print(out / "validate.md")
    print(out)
    return 0


# --------------------------------------------------------------------------------------------
# generate
# --------------------------------------------------------------------------------------------


def _add_generate_arguments(parser: argparse.ArgumentParser) -> None:
    """The store path and whether to start over (plan keys: ``--set generate.KEY=...``)."""
    parser.add_argument("--store", required=True, metavar="PATH", help="the Zarr image store to create or resume (its plan.parquet goes next to it)")
    parser.add_argument("--overwrite", action="store_true",
                        help="delete an existing image store first, even one made by another config (only a cmpipe "
                             "store or an empty directory is ever deleted)")
    parser.add_argument(
        "--address", metavar="ADDRESS",
        help="Ray cluster to run the chunk tasks on (auto, HOST:PORT, ray://HOST:10001; default: $RAY_ADDRESS, else a local Ray)",
    )
    parser.add_argument("--serial", action="store_true", help="write the chunks in this process, one after another, without Ray (for debugging)")
    parser.add_argument("--keep-failed", action="store_true",
                        help="do not retry failed halos: by default a rerun makes the failed images again (after "
                             "a bad halo file is fixed), clears the failures that now succeed and renormalises")
    parser.add_argument("--export-fits", metavar="SPLIT", choices=(*SPLIT_NAMES, "all"),
                        help="afterwards, write that split's images as FITS (one file per channel, WCS in Mpc) to "
                             "<store dir>/fits/ (inputs for cmpipe reconstruct)")


def _run_generate(args: argparse.Namespace, cfg: Config) -> int:
    """Plan, create or resume the store, write every missing chunk (Ray tasks, or serially), normalise.

    A rerun also retries the failed halos' images (unless ``--keep-failed``). Exit status 1, with
    the failure list on stderr, when any halo failed or chunks are left.
    """
    from cmpipe.config import save_resolved_config

    from cmpipe.store.outputs import claim_directory
    from cmpipe.store.zarr_store import check_store_path

    store = check_store_path(args.store, overwrite=args.overwrite)
    fits_dir = store.absolute().parent / "fits"
    if args.export_fits:
        claim_directory(fits_dir, "fits", names=(), what="--export-fits directory")
    if args.serial:
        if args.address:
            raise ConfigError("--serial runs without Ray: drop --address")
        from cmpipe.stages.generate import generate_serial

        summary = generate_serial(cfg, store, overwrite=args.overwrite, progress=True,
                                  retry_failed=not args.keep_failed)
    else:
        from cmpipe.pipeline import generate_with_ray

        summary = generate_with_ray(cfg, store, overwrite=args.overwrite, address=args.address, progress=True,
                                    retry_failed=not args.keep_failed)
    save_resolved_config(cfg, store.absolute().parent)
    print(store)
    print(
        f"{summary['images']} images of {summary['halos']} halos in {summary['chunks']} chunks; "
        f"{summary['chunks_written']} chunks written at {summary['images_per_s']:.2f} images/s; "
        f"{summary['failed_images']} images failed"
    )
    if not args.serial:
        _print_logs_line(_ray_logs())
    if _generation_failed(summary):
        return 1
    if args.export_fits:
        from cmpipe.stages.reconstruct import export_split_fits

        # the fits directory is cmpipe's (claimed above): re-exporting rewrites its own files
        paths = export_split_fits(store, args.export_fits,
                                  claim_directory(fits_dir, "fits", names=(), what="--export-fits directory"))
        print(f"{len(paths)} FITS files in {fits_dir}")
    return 0


def _generation_failed(summary: dict) -> bool:
    """Print the failed halos (and their JSON) or the chunks left on stderr; True if any."""
    import json

    if summary["failures"]:
        for failure in summary["failures"]:
            print(
                f"cmpipe: failed: chunk {failure['chunk']}, halo {failure['halo_id']} "
                f"({len(failure['images'])} images): {failure['error']}",
                file=sys.stderr,
            )
        print(json.dumps(summary["failures"]), file=sys.stderr)
        return True
    if summary.get("missing_chunks"):
        print(f"cmpipe: {len(summary['missing_chunks'])} chunks not done: rerun to resume", file=sys.stderr)
        return True
    return False


# --------------------------------------------------------------------------------------------
# extract-halos
# --------------------------------------------------------------------------------------------


def _add_extract_halos_arguments(parser: argparse.ArgumentParser) -> None:
    """The snapshot, its catalog and the selection (the slab: ``--set maps.KEY=...``)."""
    parser.add_argument("--format", dest="snapshot_format", required=True, choices=("gadget", "swift"),
                        help="snapshot format: gadget (Gadget-4/AREPO HDF5, FoF/SUBFIND catalog) or swift (swiftsimio)")
    parser.add_argument("--snapshot", required=True, metavar="PATH", help="the snapshot (any file of a multi-file one)")
    parser.add_argument("--catalog", required=True, metavar="PATH", help="its halo catalog (any file of a multi-file one)")
    parser.add_argument("--log10-m-min", type=float, metavar="X", help="lower bound of log10 M200m [Msun/h] (default: none)")
    parser.add_argument("--log10-m-max", type=float, metavar="X", help="upper bound of log10 M200m [Msun/h] (default: none)")
    parser.add_argument("--ids", metavar="ID,ID,...", help="only these catalog halo ids (comma-separated)")
    parser.add_argument("--radius-mpc", type=float, default=0.0, metavar="R",
                        help="extraction radius [physical Mpc]; at least the sphere holding the maps' slab")
    parser.add_argument("--serial", action="store_true", help="extract in this process, one halo after another, without Ray")
    parser.add_argument("--address", metavar="ADDRESS",
                        help="Ray cluster for the halo tasks (default: $RAY_ADDRESS, else a local Ray)")


def _run_extract_halos(args: argparse.Namespace, cfg: Config) -> int:
    """Write the selected halos to ``--out`` (a directory or URL) as one-halo HDF5 files; exit 1
    if any failed."""
    from cmpipe.config import save_resolved_config
    from cmpipe.store.outputs import check_output_dir

    if args.out is None:
        raise ConfigError("extract-halos needs --out DIR (the directory of halo files)")
    if args.serial and args.address:
        raise ConfigError("--serial runs without Ray: drop --address")
    try:
        ids = None if args.ids is None else [int(i) for i in args.ids.split(",") if i.strip()]
    except ValueError:
        raise ConfigError(f"--ids {args.ids!r}: expected comma-separated integers") from None
    kw = dict(fmt=args.snapshot_format, snapshot=args.snapshot, catalog=args.catalog,
              log10_m_min_msun_h=args.log10_m_min, log10_m_max_msun_h=args.log10_m_max, ids=ids,
              radius_mpc=args.radius_mpc)
    paths = {"halos": check_output_dir(cfg.run.out, what="--out", create=False)}
    if args.serial:
        from cmpipe.stages.extract import run as extract_run

        summary = extract_run(cfg, paths, **kw)
    else:
        from cmpipe.pipeline.extract import extract_with_ray

        summary = extract_with_ray(cfg, paths, address=args.address, **kw)
    save_resolved_config(cfg, cfg.run.out)
    print(f"{summary['written']} halos written, {summary['skipped']} skipped, {summary['failed']} failed in "
          f"{summary['seconds']:.1f} s ({summary['particles_per_s']:.3g} particles/s) to {cfg.run.out}; "
          f"ignored: {', '.join(summary['ignored']) or 'nothing'}")
    if not args.serial:
        _print_logs_line(_ray_logs())
    for w in summary["warnings"]:
        print(f"cmpipe: warning: {w}", file=sys.stderr)
    for failure in summary["failures"]:
        print(f"cmpipe: failed: {failure['reason']}", file=sys.stderr)
    return 1 if summary["failed"] else 0


# --------------------------------------------------------------------------------------------
# train
# --------------------------------------------------------------------------------------------


def _add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The store, the run directory and how to run (keys: ``--set train.KEY=...``, ``model.KEY=...``)."""
    parser.add_argument("--store", required=True, metavar="PATH", help="the complete, normalised Zarr image store")
    parser.add_argument("--run", required=True, metavar="RUN_DIR",
                        help="run directory: checkpoints/, metrics.csv, loss.png; an existing run is resumed")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="Ray Train workers (DDP; default 1); must divide train.batch_size")
    parser.add_argument("--serial", action="store_true", help="train in this process without Ray (the reference loop)")
    parser.add_argument("--max-steps", type=int, metavar="N", help="total steps to reach (default: train.max_steps)")
    parser.add_argument(
        "--address", metavar="ADDRESS",
        help="Ray cluster to train on (auto, HOST:PORT, ray://HOST:10001; default: $RAY_ADDRESS, else a local Ray)",
    )


def _run_train(args: argparse.Namespace, cfg: Config) -> int:
    """Train (Ray Train workers, or ``--serial`` in this process), then write ``loss.png``
    (``--store`` and ``--run`` may be object-store URLs)."""
    from cmpipe.stages import train as train_stage
    from cmpipe.store.location import as_path

    run = as_path(args.run)
    if args.serial:
        if args.address or args.workers is not None:
            raise ConfigError("--serial runs in this process without Ray: drop --address and --workers")
        summary = train_stage.run(cfg, {"store": args.store, "run": run}, max_steps=args.max_steps)
    else:
        from cmpipe.pipeline.train import train_with_ray

        workers = 1 if args.workers is None else args.workers
        summary = train_with_ray(cfg, args.store, run, num_workers=max(1, workers),
                                 max_steps=args.max_steps, address=args.address)
    train_stage.plot_loss(run)
    print(summary["checkpoint"])
    print(f"steps {summary['start_step']} -> {summary['step']}; {summary['s_per_step'] or 0.0:.3f} s/step")
    if not args.serial and summary["s_per_step"] is not None:  # None: nothing to train, no Ray
        _print_logs_line(_ray_logs())
    return 0


def _add_infer_arguments(parser: argparse.ArgumentParser) -> None:
    """The store, the checkpoint and where Ray runs (keys: ``--set infer.KEY=...``, ``evaluate.KEY=...``)."""
    parser.add_argument("--store", required=True, metavar="PATH", help="the complete, normalised Zarr image store")
    parser.add_argument("--checkpoint", required=True, metavar="CKPT",
                        help="a checkpoint file, or a run directory (its latest checkpoint), trained on this store")
    parser.add_argument(
        "--address", metavar="ADDRESS",
        help="Ray cluster to sample on (auto, HOST:PORT, ray://HOST:10001; default: $RAY_ADDRESS, else a local Ray)",
    )
    parser.add_argument("--serial", action="store_true",
                        help="sample in this process, one model, no Ray (the same tables as the Ray run)")


def _run_infer(args: argparse.Namespace, cfg: Config) -> int:
    """Sample and evaluate the test split into ``--out`` (posterior.zarr, tables/), resumable."""
    from cmpipe.stages.infer import RESULTS_NAMES
    from cmpipe.store.outputs import claim_directory

    claim_directory(cfg.run.out, "results", names=RESULTS_NAMES, what="--out", create=False)  # before the inputs
    if args.serial:
        from cmpipe.stages.infer import run

        summary = run(cfg, {"store": args.store, "run": args.checkpoint, "results": cfg.run.out})
    else:
        from cmpipe.pipeline.infer import infer_with_ray

        summary = infer_with_ray(cfg, args.store, args.checkpoint, cfg.run.out, address=args.address)
    print(summary["results"])
    print(f"{summary['images']} test images: {summary['done_before']} done before, {summary['sampled']} sampled "
          f"({summary['sampler']}, {summary['steps']} steps, {summary['n_samples']} samples); "
          f"{summary['s_per_image']:.2f} s/image {'sampling' if args.serial else 'in the actors'}, "
          f"{summary['wall_s']:.1f} s wall")
    if not args.serial and summary["sampled"]:
        _print_logs_line(_ray_logs())
    return 0


def _add_baselines_arguments(parser: argparse.ArgumentParser) -> None:
    """The store the model was trained on (``--out``: the results directory)."""
    parser.add_argument("--store", required=True, metavar="PATH", help="the complete, normalised Zarr image store")


def _run_baselines(args: argparse.Namespace, cfg: Config) -> int:
    """The trivial baselines on the test images into ``--out``/baselines/ (cmpipe infer runs them too)."""
    from cmpipe.stages.infer import RESULTS_NAMES, run_baselines_for_config
    from cmpipe.store.outputs import claim_directory

    out = claim_directory(cfg.run.out, "results", names=RESULTS_NAMES, what="--out")
    for name, s in run_baselines_for_config(cfg, args.store, out).items():
        when = "done before" if s["skipped"] else f"{s['wall_s']:.1f} s"
        print(f"{name}: {s['results']} ({s['images']} test images, {when})")
    return 0


def _add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """The results directory of ``cmpipe infer``."""
    parser.add_argument("--results", required=True, metavar="RESULTS",
                        help="the --out directory of cmpipe infer (tables/, posterior.zarr, images.parquet)")


def _run_report(args: argparse.Namespace, cfg: Config) -> int:
    """Figures, Table 1 and the summaries from the tables only (no model); ``--out``: default RESULTS/report."""
    from cmpipe.stages.report import run

    written = run(cfg, {"results": args.results, "report": args.out})
    print(written.get("headline_text", ""))
    print(written["report"])
    return 0


def _add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    """Two or more labelled results directories."""
    parser.add_argument("--results", action="append", required=True, metavar="LABEL=RESULTS",
                        help="a label and the --out directory of cmpipe infer, e.g. diffusion=runs/a/results "
                             "(repeat; at least two)")


def _run_compare(args: argparse.Namespace, cfg: Config) -> int:
    """Side-by-side Table 1, mass errors, profiles and spectra of several results, on their common images."""
    from cmpipe.stages.report import run_compare

    pairs = {}
    for item in args.results:
        label, sep, path = item.partition("=")
        if not sep or not label or not path:
            raise ConfigError(f"--results takes LABEL=RESULTS; got {item!r}")
        pairs[label] = path
    if len(pairs) < 2:
        raise ConfigError("cmpipe compare needs at least two --results LABEL=RESULTS")
    written = run_compare(cfg, pairs, cfg.run.out if args.out is not None else "runs/comparison")
    print(written["report"])
    return 0


def _add_reconstruct_arguments(parser: argparse.ArgumentParser) -> None:
    """A checkpoint and the observed maps as FITS: one cluster (--sz, --xray) or many (--inputs)."""
    parser.add_argument("--checkpoint", required=True, metavar="CKPT", help="a checkpoint file or a run directory")
    parser.add_argument("--sz", metavar="FITS",
                        help="Compton-y map (dimensionless), with a WCS in Mpc or kpc about the halo, or on the sky "
                             "(RA/Dec, any standard projection) with --redshift or a REDSHIFT header keyword")
    parser.add_argument("--xray", metavar="FITS", help="X-ray surface brightness map (erg s-1 cm-2 sr-1)")
    parser.add_argument("--kappa", metavar="FITS",
                        help="weak-lensing convergence map, for a model trained with a kappa condition "
                             "(model.conditions)")
    parser.add_argument("--redshift", type=float, metavar="Z",
                        help="the cluster's redshift (default: REDSHIFT or Z in the headers); needed for sky maps")
    parser.add_argument("--centre", type=float, nargs=2, metavar=("LON", "LAT"),
                        help="cluster centre [deg] in the sky map's frame (RA Dec); default: the map's central pixel")
    parser.add_argument("--physical-units", action="store_true",
                        help="write surface densities in Msun Mpc-2 (BUNIT solMass Mpc-2) instead of the model's "
                             "dimensionless units (the factors are in the headers either way)")
    parser.add_argument("--inputs", metavar="DIR_OR_TABLE",
                        help="many clusters, through Ray Data: a directory of <name>sz_y*.fits / <name>xray_sb*.fits "
                             "pairs, or a CSV/Parquet table with columns name, sz, xray")
    parser.add_argument("--recon", required=True, metavar="FITS_OR_DIR",
                        help="output FITS (MEAN, STD, + SAMPLES extensions); with --inputs, the output directory")
    parser.add_argument("--samples", type=int, default=50, help="posterior samples (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the samples (default %(default)s)")
    parser.add_argument("--pixel-mpc", type=float, help="the model's pixel size [Mpc], if the checkpoint does not record it")
    parser.add_argument("--save-samples", action="store_true", help="also write every sample (SAMPLES extension)")
    parser.add_argument("--device", default="cpu", help="torch device of the one-cluster run (default %(default)s)")
    parser.add_argument("--address", metavar="ADDRESS", help="Ray cluster for --inputs (default: $RAY_ADDRESS, else local)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing outputs (with --inputs: reconstruct every cluster again); "
                             "an output is never one of the inputs")
    parser.add_argument("--strict", action="store_true",
                        help="refuse inputs outside the training distribution (exit 2; with --inputs the cluster "
                             "is recorded as failed) instead of reconstructing them with a warning")
    parser.add_argument("--ood-max-fraction", type=float, default=None, metavar="F",
                        help="a map with more than this fraction of its pixels outside the training range is out "
                             "of distribution (default 0.01); so is a total y or S_X outside the training halos'. "
                             "With --inputs, exit status 1 when some clusters failed (see reconstructions.csv)")


def _run_reconstruct(args: argparse.Namespace, cfg: Config) -> int:
    """Posterior mean and std of gas and DM for observed clusters, as FITS and PNG quick looks.

    Exit status 0; 2 (one line) for a user error, nothing written; with ``--inputs``, 1 when
    some clusters failed (one line naming them; their errors are in ``reconstructions.csv``)."""
    from cmpipe.stages.reconstruct import OOD_MAX_FRACTION

    max_fraction = OOD_MAX_FRACTION if args.ood_max_fraction is None else args.ood_max_fraction
    if not 0.0 <= max_fraction <= 1.0:
        raise ConfigError(f"--ood-max-fraction must be in [0, 1]; got {max_fraction}")
    if args.inputs:
        if args.sz or args.xray or args.kappa:
            raise ConfigError("--inputs reconstructs many clusters: drop --sz, --xray and --kappa")
        if args.redshift is not None or args.centre is not None:
            raise ConfigError("--inputs: each cluster's redshift and centre come from its maps (REDSHIFT keyword, "
                              "central pixel); drop --redshift and --centre")
        from cmpipe.pipeline.reconstruct import reconstruct_many

        summary = reconstruct_many(cfg, args.checkpoint, args.inputs, args.recon, n_samples=args.samples,
                                   seed=args.seed, pixel_mpc=args.pixel_mpc, save_samples=args.save_samples,
                                   address=args.address, overwrite=args.overwrite, strict=args.strict,
                                   max_ood_fraction=max_fraction, physical_units=args.physical_units)
        print(summary["table"])
        print(f"{summary['clusters']} clusters: {summary['done_before']} done before, "
              f"{summary['reconstructed']} reconstructed, {len(summary['failed'])} failed, "
              f"{len(summary['out_of_distribution'])} out of distribution in {summary['wall_s']:.1f} s")
        if summary["failed"]:
            names = [name for name, _ in summary["failed"]]
            shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
            first = " ".join(summary["failed"][0][1].split())
            print(f"cmpipe: error: {len(names)} of {summary['clusters']} clusters failed ({shown}); first: {first}; "
                  f"errors in {summary['table']}, a rerun retries them", file=sys.stderr)
            return 1
        return 0
    if not (args.sz or args.xray or args.kappa):
        raise ConfigError("give --sz and --xray (and --kappa for a model trained on it) for one cluster, "
                          "or --inputs for many")
    from cmpipe.stages import reconstruct

    paths = {"checkpoint": args.checkpoint, "sz": args.sz, "xray": args.xray, "kappa": args.kappa, "out": args.recon}
    result = reconstruct.run(cfg, paths, n_samples=args.samples, seed=args.seed, pixel_mpc=args.pixel_mpc,
                             save_samples=args.save_samples, device=args.device, overwrite=args.overwrite,
                             strict=args.strict, max_ood_fraction=max_fraction, redshift=args.redshift,
                             centre=None if args.centre is None else tuple(args.centre),
                             physical_units=args.physical_units)
    for message in result["messages"]:
        print(f"cmpipe: {message}")
    print(result["fits"])
    return 0


# --------------------------------------------------------------------------------------------
# The registry: name -> Subcommand(help, add_arguments, handler)
# --------------------------------------------------------------------------------------------

SUBCOMMANDS: dict[str, Subcommand] = {
    "config": Subcommand(
        "print the resolved configuration as YAML, with its fingerprint",
        _add_config_arguments,
        _run_config,
    ),
    "render-halo": Subcommand(
        "project one halo into its four maps (y, S_X, gas, DM): a PNG like the paper's Figure 2, and .npz",
        _add_render_arguments,
        _run_render,
    ),
    "catalog": Subcommand(
        "draw the halo catalog (masses, concentrations, shapes, mergers) to catalog.parquet, with its mass-function figure",
        _add_catalog_arguments,
        _run_catalog,
    ),
    "demo": Subcommand(
        "the CPU demo: every stage (catalog, generate, train, infer, report) on a local Ray with the demo config",
        _add_demo_arguments,
        _run_pipeline,
    ),
    "pipeline": Subcommand(
        "every stage (or --stages) on a Ray cluster (--address): what jobs/pipeline.py submits",
        _add_pipeline_arguments,
        _run_pipeline,
    ),
    "project-halos": Subcommand(
        "halos to HDF5 and back, projected along three axes: figures, .npz and a mass-conservation summary",
        _add_project_halos_arguments,
        _run_project_halos,
    ),
    "validate-mock": Subcommand(
        "validate the mock clusters: stacked profiles vs their model, f_gas, Y-M and L_X-M fits, showcase maps",
        _add_validate_mock_arguments,
        _run_validate_mock,
    ),
    "extract-halos": Subcommand(
        "cut halos out of a simulation snapshot (Gadget-4/AREPO or SWIFT) into one-halo HDF5 files for "
        "source.kind=hdf5: resumable, one Ray task per halo (--serial: without Ray)",
        _add_extract_halos_arguments,
        _run_extract_halos,
    ),
    "generate": Subcommand(
        "make the training images into a Zarr store: flat-in-mass sightline plan, resumable, "
        "one Ray task per chunk (--serial: without Ray)",
        _add_generate_arguments,
        _run_generate,
    ),
    "train": Subcommand(
        "train the score model on a store: Ray Train DDP workers (--serial: in this process), resumable, "
        "with metrics.csv and loss.png",
        _add_train_arguments,
        _run_train,
    ),
    "infer": Subcommand(
        "draw posterior samples for the test split with Ray Data actors (--serial: in this process) and evaluate "
        "them: posterior.zarr and Parquet tables, resumable",
        _add_infer_arguments,
        _run_infer,
    ),
    "baselines": Subcommand(
        "the trivial baselines (mass oracle, pixel regression) on the test images, scored like the model: "
        "RESULTS/baselines/<name>/, resumable",
        _add_baselines_arguments,
        _run_baselines,
    ),
    "report": Subcommand(
        "the paper's figures, Table 1, mass errors and calibration from the results of cmpipe infer (no model)",
        _add_report_arguments,
        _run_report,
    ),
    "compare": Subcommand(
        "compare results side by side (e.g. diffusion and U-Net): Table 1, mass errors, profiles, b(k), r(k)",
        _add_compare_arguments,
        _run_compare,
    ),
    "reconstruct": Subcommand(
        "gas and DM posterior (mean, std, samples) for one cluster's observed y and S_X FITS maps, as FITS with WCS",
        _add_reconstruct_arguments,
        _run_reconstruct,
    ),
}


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("configuration")
    group.add_argument(
        "--config",
        default="demo",
        metavar="NAME|PATH",
        help="shipped config name (demo, paper) or YAML file (default: %(default)s)",
    )
    group.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one key, value parsed as YAML (repeatable, applied in order)",
    )
    group.add_argument("--out", metavar="DIR", help="output directory (overrides run.out)")
    loudness = common.add_argument_group("verbosity").add_mutually_exclusive_group()
    loudness.add_argument("-q", "--quiet", action="store_true",
                          help="print only errors and the final summary (no progress, no log)")
    loudness.add_argument("-v", "--verbose", action="store_true",
                          help="debug logging, Ray's own logs (worker output, Ray Data progress) on the terminal, "
                               "and the traceback of an error (a user error is otherwise one line)")
    return common


def build_parser() -> argparse.ArgumentParser:
    """The ``cmpipe`` argument parser, one subparser per entry of :data:`SUBCOMMANDS`.

    Returns
    -------
    argparse.ArgumentParser
    """
    parser = argparse.ArgumentParser(
        prog="cmpipe",
        description="Galaxy-cluster gas and dark-matter mass maps from SZ and X-ray images.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)
    common = _common_options()
    for name, spec in SUBCOMMANDS.items():
        sub = subparsers.add_parser(
            name, help=spec.help, description=spec.help, parents=[common]
        )
        spec.add_arguments(sub)
    return parser


# --------------------------------------------------------------------------------------------
# Paths: every path argument may be an object-store URL, checked before any work
# --------------------------------------------------------------------------------------------

#: The subcommands' path options: attribute of the parsed arguments -> the option's name.
PATH_OPTIONS = {"store": "--store", "run": "--run", "checkpoint": "--checkpoint", "results": "--results",
                "input": "--input", "inputs": "--inputs", "sz": "--sz", "xray": "--xray", "recon": "--recon",
                "snapshot": "--snapshot", "catalog": "--catalog"}
#: Subcommands that write into ``run.out`` even without ``--out``.
WRITES_RUN_OUT = ("render-halo", "catalog", "demo", "pipeline", "project-halos", "validate-mock", "extract-halos",
                  "infer", "baselines")


def check_location(value: str | os.PathLike[str], what: str) -> AnyPath:
    """:func:`cmpipe.store.location.as_path` of one path argument, and for an object-store URL a
    check that its bucket exists and the environment's credentials reach it; call it before any
    work. Returns the path (``pathlib.Path`` or ``upath.UPath``).

    Raises
    ------
    cmpipe.store.location.LocationError
        Naming ``what`` (``"--store"``) and the URL: an unknown scheme, a missing filesystem
        package, a missing bucket, missing credentials or an unreachable endpoint (one line, exit
        status 2 from :func:`main`).
    """
    from cmpipe.store.location import LocationError, as_path, check_reachable

    try:
        path = as_path(value)
    except LocationError as exc:
        raise LocationError(f"{what} {exc}") from None
    check_reachable(path, what)
    return path


def _path_values(attr: str, value: object) -> list[str]:
    """The paths of one option's value (``--results LABEL=PATH`` of ``compare`` is repeated)."""
    if value is None or value == "":
        return []
    values = value if isinstance(value, list) else [value]
    if attr == "results" and isinstance(value, list):
        return [v.partition("=")[2] for v in values if v.partition("=")[2]]
    return [str(v) for v in values]


def check_path_arguments(args: argparse.Namespace, cfg: Config) -> None:
    """:func:`check_location` of every path the command was given (:data:`PATH_OPTIONS`, ``--out``
    or ``run.out`` where the subcommand writes there, ``source.path`` of an ``hdf5`` source), before
    the handler runs: an unusable URL is a one-line error naming it, and nothing is written.
    ``cmpipe config`` only prints: nothing is checked."""
    if args.command == "config":
        return
    for attr, option in PATH_OPTIONS.items():
        for value in _path_values(attr, getattr(args, attr, None)):
            check_location(value, option)
    if args.out is not None or args.command in WRITES_RUN_OUT:
        check_location(cfg.run.out, "--out" if args.out is not None else "run.out")
    if cfg.source.kind == "hdf5" and cfg.source.path.strip():
        check_location(cfg.source.path, "source.path")


def _is_cmpipe_error(exc: BaseException) -> bool:
    """A ValueError subclass defined in cmpipe, with a message: a user error, not a bug."""
    module = type(exc).__module__
    return (
        isinstance(exc, ValueError)
        and (module == "cmpipe" or module.startswith("cmpipe."))
        and bool(str(exc))
    )


#: OSError subclasses that name a path the user gave: user errors, not bugs.
_USER_OS_ERRORS = (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError)


def _os_error_message(exc: OSError) -> str:
    """``<path>: <reason>`` (both paths of a rename), or the exception's text."""
    if exc.filename is None:
        return str(exc)
    paths = f"{exc.filename}" + (f" -> {exc.filename2}" if exc.filename2 is not None else "")
    return f"{paths}: {exc.strerror or type(exc).__name__}"


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it wraps: ``__cause__``/``__context__`` chains, Ray's ``RayTaskError.cause``
    and Ray Train's ``WorkerGroupError.worker_failures`` (first failing rank), breadth first.

    Ray Train 2.60 (V2, ``ray/train/v2/api/exceptions.py``): ``fit()`` raises
    ``WorkerGroupError(TrainingFailedError)`` whose ``worker_failures`` maps each failed world
    rank to the user's own exception (already unwrapped from ``UserExceptionWithTraceback._base_exc``),
    or ``ControllerError`` with ``controller_failure``."""
    seen: list[BaseException] = []
    queue = [exc]
    while queue:
        e = queue.pop(0)
        if e is None or any(e is s for s in seen):
            continue
        seen.append(e)
        wrapped = [getattr(e, "cause", None), getattr(e, "controller_failure", None), getattr(e, "_base_exc", None),
                   e.__cause__, e.__context__]
        failures = getattr(e, "worker_failures", None)
        if isinstance(failures, dict):
            wrapped = [failures[k] for k in sorted(failures)] + wrapped
        queue.extend(w for w in wrapped if isinstance(w, BaseException))
    return seen


def user_error_message(exc: BaseException) -> str | None:
    """The one-line message of a user error, searched through wrapping exceptions (Ray task and
    Ray Train worker errors); None for a bug.

    A user error is a :class:`ValueError` subclass defined in cmpipe (``ConfigError``,
    ``StoreError``, ``OutputError``, ...) or an :class:`OSError` naming a path
    (missing, existing, not permitted, a directory where a file belongs or the reverse).

    Parameters
    ----------
    exc : BaseException

    Returns
    -------
    str or None
    """
    for e in _causes(exc):
        if _is_cmpipe_error(e):
            return str(e).strip()
    for e in _causes(exc):
        if isinstance(e, _USER_OS_ERRORS) and e.filename is not None:
            return _os_error_message(e)
    return None


class _StderrHandler(logging.StreamHandler):
    """A handler writing to the current ``sys.stderr`` (tests and tqdm swap it), marked as cmpipe's."""

    @property  # type: ignore[override]
    def stream(self):  # noqa: D102
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it
        pass


def configure_logging(level: str, *, quiet: bool = False, verbose: bool = False) -> None:
    """The one logging set-up of the ``cmpipe`` command, and its verbosity
    (:func:`cmpipe.progress.set_verbosity`).

    cmpipe's loggers at ``level`` (``run.log_level``; DEBUG with ``verbose``, ERROR with
    ``quiet``); other libraries' (botocore, fsspec, ...) at WARNING (INFO with ``verbose``, ERROR
    with ``quiet``). One handler on the root logger, to standard error; a handler of an earlier
    call is replaced, never added to (``main`` may run several times in one process), so every
    record is printed once; as :func:`logging.basicConfig`, none is added where the host process
    has its own (pytest's). Ray's loggers keep their own handlers and do not propagate here; below
    ``verbose`` Ray is quietened where it starts (:func:`cmpipe.pipeline.session.start_ray`).
    """
    from cmpipe.progress import NORMAL, QUIET, VERBOSE, set_verbosity

    set_verbosity(VERBOSE if verbose else QUIET if quiet else NORMAL)
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(handler)
    if not root.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(handler)
    root.setLevel("INFO" if verbose else "ERROR" if quiet else "WARNING")
    logging.getLogger("cmpipe").setLevel("DEBUG" if verbose else "ERROR" if quiet else level)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``cmpipe`` command.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; ``None`` reads ``sys.argv[1:]``.

    Returns
    -------
    int
        Exit status: 0 on success, 2 on a usage, configuration or input error (printed to
        stderr as one line, ``cmpipe: error: <message>``, also when the error was raised inside a
        Ray worker; ``-v`` adds the traceback), otherwise what the subcommand returned. Any other
        exception is a bug and keeps its traceback.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    verbose = bool(getattr(args, "verbose", False))
    try:
        cfg = load_config(args.config, args.overrides)
        if args.out is not None:
            cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, out=args.out))
        configure_logging(cfg.run.log_level, quiet=bool(getattr(args, "quiet", False)), verbose=verbose)
        logger.debug(
            "cmpipe %s %s: config %s, fingerprint %s",
            __version__, args.command, args.config, config_fingerprint(cfg),
        )
        check_path_arguments(args, cfg)
        status = SUBCOMMANDS[args.command].handler(args, cfg)
    except Exception as exc:  # noqa: BLE001 - user errors become one line, bugs re-raise
        message = user_error_message(exc)
        if message is None:
            raise
        if verbose:
            traceback.print_exc()
        print(f"cmpipe: error: {' '.join(message.split())}", file=sys.stderr)
        return EXIT_USAGE
    return 0 if status is None else int(status)


if __name__ == "__main__":
    sys.exit(main())
