"""Generate the image store with Ray: one task per missing chunk, each calling ``write_chunk``.

The driver does what :func:`cmpipe.stages.generate.generate_serial` does (catalog, plan, create
or resume the store, the failures record, the normalisation); only the chunk loop becomes Ray
tasks. A task owns one whole shard of ``maps`` (the unit of safe concurrent writing) and returns
:func:`cmpipe.mapmaking.generate.write_chunk`'s small metadata, never arrays. So the store is the serial one:
bit-identical where the serial run also used one thread per chunk (``sph.num_threads: 1``), and
equal to float32 rounding otherwise (the thread count partitions the particle sums).

Resources per task
------------------
``num_cpus=1``, one thread inside (``sph.num_threads`` is set to 1 in the config the tasks get,
numba's threads to 1, ``OMP_NUM_THREADS=1``), and a ``memory`` request from the chunk's largest
halo (:func:`chunk_memory_bytes`) so that Ray never packs more of the largest halos on a node
than its memory holds.

Failures
--------
A halo that raises :class:`ValueError` is recorded by ``write_chunk`` itself (its images stay
NaN, the chunk is done). A worker that dies (killed, out of memory, node lost) is retried up to
``max_retries`` times; application exceptions are never retried (they would fail again): a task
that raises is a bug, recorded as a failure of every halo of its chunk (its images flagged in
``image_failed``, ``chunk_done`` set to 0), and the run goes on. Such a chunk is redone by the
next run (a resume), which then replaces its failure entries.

A rerun also retries, by default (``retry_failed``), the done chunks holding failed images: only
their failed halos are made again (a bad HDF5 file fixed since), the entries of those that now
succeed are cleared, those that fail again carry the new error, and the normalisation is
recomputed (:func:`cmpipe.store.chunks_to_write`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from typing import TYPE_CHECKING, Any

from cmpipe.pipeline.session import start_ray
from cmpipe.store.location import AnyPath, as_path

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

    from cmpipe.config import Config, CosmologyConfig, MapsConfig
    from cmpipe.mapmaking.maps import MapSettings
    from cmpipe.physics.halo import HaloSource

__all__ = ["BYTES_PER_PARTICLE", "MEMORY_FLOOR_BYTES", "chunk_memory_bytes", "generate_with_ray"]

logger = logging.getLogger(__name__)

#: Peak resident bytes per particle of one halo in a chunk task: bench/mock.py measured about
#: 75 B (10^15.5 Msun/h at m_pair = 1e9: 9.6e6 particles, +720 MB over the process baseline);
#: twice that for a margin.
BYTES_PER_PARTICLE = 150
#: Baseline of a worker process with cmpipe, numpy, numba, zarr loaded (about 330 MB), rounded up.
MEMORY_FLOOR_BYTES = 512 * 2**20
_SECONDS = ("particles", "smoothing", "projection", "writing", "total", "cpu")


def chunk_memory_bytes(
    log10_m200m_msun_h: float, pair_mass_msun_h: float | None, maps: MapsConfig, cosmology: CosmologyConfig,
    source: HaloSource | None = None,
) -> int:
    """Memory to request for a chunk task whose largest halo has this mass.

    ``MEMORY_FLOOR_BYTES + BYTES_PER_PARTICLE * N``, with the expected particle count
    ``N = 2 (1.5 M200m + M_bg) / m_pair`` (gas and DM pairs): the halo out to the infall
    extent holds about 1.5 M200m (bench/mock.py: 9.6e6 particles at 10^15.5 Msun/h and
    m_pair = 1e9 Msun/h), and ``M_bg = Omega_m rho_crit0 h^-2 (1 + z)^3 (4/3) pi r^3`` is the
    mean-density background in the sphere circumscribing the map's slab,
    ``r = sqrt(2 side^2 + depth^2) / 2`` (all in Msun/h and physical Mpc). The issue-16 mock
    (neighbour halos, two-halo term, background inside the halo) holds up to 1.3x this count at
    10^13.5-10^14.5 Msun/h (``bench/mock.py``: 58,178 particles against 42,000 at 10^13.5 and
    1e10) and less at 10^15.5; ``BYTES_PER_PARTICLE`` is about 3x the measured peak-RSS growth
    per particle (~53 B at 10^14.5 and 1e9), which covers it. Sources without a
    fixed m_pair (``hdf5``): four times the largest halo file's size, plus the floor.

    Parameters
    ----------
    log10_m200m_msun_h : float
        log10 M200m [log10 Msun/h] of the chunk's largest halo.
    pair_mass_msun_h : float or None
        m_pair [Msun/h] of the source (:func:`cmpipe.stages.generate.pair_mass_msun_h`); None
        where the source does not fix it.
    maps : MapsConfig
        The map's side (``npix * pixel_mpc``) and ``depth_mpc`` [Mpc].
    cosmology : CosmologyConfig
        ``omega_m``, ``h`` and ``redshift`` of the background.
    source : HaloSource, optional
        For ``hdf5`` sources, its ``files``.

    Returns
    -------
    int
        Bytes.
    """
    if pair_mass_msun_h is None:
        files = getattr(source, "files", ()) or ()
        largest = max((as_path(f).stat().st_size for f in files), default=0)
        return int(MEMORY_FLOOR_BYTES + 4 * largest)
    from cmpipe.physics.cosmology import mean_densities

    side = maps.npix * maps.pixel_mpc
    radius = 0.5 * math.sqrt(2.0 * side**2 + maps.depth_mpc**2)
    rho_m = mean_densities(cosmology).matter / cosmology.h  # Omega_m rho_crit0 h (1 + z)^3, as before
    m_bg = rho_m * 4.0 / 3.0 * math.pi * radius**3
    n_particles = 2.0 * (1.5 * 10.0**log10_m200m_msun_h + m_bg) / float(pair_mass_msun_h)
    return int(MEMORY_FLOOR_BYTES + BYTES_PER_PARTICLE * n_particles)


def _single_threaded(cfg: Config) -> Config:
    """``cfg`` with ``sph.num_threads = 1`` (same store fingerprint)."""
    return dataclasses.replace(cfg, sph=dataclasses.replace(cfg.sph, num_threads=1))


def _chunk_task(
    store_path: AnyPath, chunk_index: int, settings: MapSettings, fingerprint: str, source: HaloSource
) -> dict[str, Any]:
    """Body of one Ray task: one thread, then :func:`cmpipe.mapmaking.generate.write_chunk`."""
    os.environ["OMP_NUM_THREADS"] = "1"
    import numba

    numba.set_num_threads(1)
    from cmpipe.mapmaking.generate import write_chunk

    return write_chunk(store_path, chunk_index, settings, fingerprint, source)


def _max_node_memory() -> float | None:
    """The largest ``memory`` resource of one alive node [bytes], or None if unknown."""
    import ray

    sizes = [n["Resources"].get("memory", 0.0) for n in ray.nodes() if n.get("Alive")]
    return max(sizes) if sizes and max(sizes) > 0 else None


def _crash_failures(plan: pa.Table, chunk: int, k: int, error: str) -> list[dict[str, Any]]:
    """One failure entry per halo of chunk ``chunk`` (its images in the plan), with ``error``."""
    halo_ids = plan["halo_id"].to_numpy()
    start, stop = chunk * k, min(plan.num_rows, (chunk + 1) * k)
    out = []
    for hid in dict.fromkeys(int(h) for h in halo_ids[start:stop]):
        images = [int(i) for i in range(start, stop) if int(halo_ids[i]) == hid]
        out.append({"chunk": int(chunk), "halo_id": hid, "images": images, "error": error})
    return out


@dataclasses.dataclass
class _Run:
    """One Ray generation: the store, its plan and chunk size, and what the tasks returned."""

    store_path: AnyPath
    plan: pa.Table
    k: int
    seconds: dict[str, float] = dataclasses.field(default_factory=lambda: dict.fromkeys(_SECONDS, 0.0))
    images_written: int = 0
    crashed: list[int] = dataclasses.field(default_factory=list)
    cpus: float = 0.0
    wall: float = 0.0

    def rows(self, chunk: int) -> slice:
        """The images of ``chunk``."""
        return slice(chunk * self.k, min(self.plan.num_rows, (chunk + 1) * self.k))


def _chunks_to_do(run: _Run, n_chunks: int, retry_failed: bool, max_chunks: int | None) -> list[int]:
    """The chunks this run writes (at most ``max_chunks``); clears the normalisation where they
    retry failed train images (:func:`cmpipe.store.clear_normalisation`)."""
    from cmpipe.store.zarr_store import chunks_to_write, clear_normalisation, missing_chunks

    todo = chunks_to_write(run.store_path, retry_failed)
    retried = len(todo) - len(missing_chunks(run.store_path))
    if max_chunks is not None:
        todo = todo[: max(0, int(max_chunks))]
    logger.info("%s: %d images, %d chunks, %d to write with Ray (%d retried: they hold failed images)",
                run.store_path, run.plan.num_rows, n_chunks, len(todo), retried)
    clear_normalisation(run.store_path, todo)
    return todo


def _images_to_write(run: _Run, todo: list[int]) -> int:
    """Images the tasks of ``todo`` make: a missing chunk's all, a retried one's failed ones."""
    from cmpipe.store.zarr_store import open_store

    state = open_store(run.store_path)
    failed_before, done_before = state["image_failed"][:], state["chunk_done"][:]
    return sum(int(failed_before[run.rows(c)].sum()) if done_before[c] else run.rows(c).stop - c * run.k
               for c in todo)


def _submit_chunks(cfg: Config, run: _Run, todo: list[int], source: HaloSource, max_retries: int) -> dict[Any, int]:
    """One task per chunk of ``todo`` (``num_cpus=1``, ``memory`` of its largest halo capped at
    the largest node's); returns ``{object ref: chunk}``."""
    import ray

    from cmpipe.stages.generate import map_settings, pair_mass_msun_h, store_fingerprint

    logm = run.plan["log10_m200m_msun_h"].to_numpy()
    cap = _max_node_memory()
    settings_ref = ray.put(map_settings(_single_threaded(cfg)))
    source_ref = ray.put(source)
    fingerprint, m_pair = store_fingerprint(cfg), pair_mass_msun_h(cfg)
    remote = ray.remote(_chunk_task)
    pending: dict[Any, int] = {}
    for chunk in todo:
        memory = chunk_memory_bytes(float(logm[run.rows(chunk)].max()), m_pair, cfg.maps, cfg.cosmology, source)
        if cap is not None:
            memory = min(memory, int(cap))
        ref = remote.options(
            num_cpus=1, memory=memory, max_retries=max_retries, retry_exceptions=False,
            name=f"cmpipe-chunk-{chunk}",
        ).remote(run.store_path, chunk, settings_ref, fingerprint, source_ref)  # a UPath pickles
        pending[ref] = chunk
    return pending


def _record_crash(run: _Run, chunk: int, exc: Exception) -> dict[str, Any]:
    """A task that raised or whose worker died for good: its images flagged failed, the chunk
    marked not done (a rerun makes it whole again); the result recording it."""
    from cmpipe.store.zarr_store import open_store

    run.crashed.append(chunk)
    error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
    logger.error("chunk %d: task failed (%s); its images are flagged, the chunk stays missing", chunk, error)
    crashed_group = open_store(run.store_path, mode="r+")
    crashed_group["image_failed"][run.rows(chunk)] = 1
    crashed_group["chunk_done"][chunk] = 0  # a retried chunk is then made whole again
    return {"chunk": chunk, "images": 0, "failures": _crash_failures(run.plan, chunk, run.k, error)}


def _collect_results(run: _Run, pending: dict[Any, int], n_images: int, progress: bool) -> None:
    """Wait for every task, recording each result's failures as it arrives (driver only); a
    :class:`cmpipe.progress.Progress` of chunks (with the images written) if ``progress``."""
    import ray

    from cmpipe.progress import Progress
    from cmpipe.store.zarr_store import record_failures

    with Progress(len(pending), "generate", "chunks", enabled=progress) as bar:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            chunk = pending.pop(done[0])
            try:
                result = ray.get(done[0])
            except ray.exceptions.RayError as exc:  # a bug in the task, or a worker dead for good
                result = _record_crash(run, chunk, exc)
            else:
                run.images_written += result["images"]
                for key in _SECONDS:
                    run.seconds[key] += result["seconds"][key]
            bar.update(1, images=f"{run.images_written}/{n_images}")
            record_failures(run.store_path, [result])


def _run_tasks(
    cfg: Config, run: _Run, todo: list[int], source: HaloSource, address: str | None, progress: bool,
    max_retries: int,
) -> None:
    """Start (or join) Ray, run the chunk tasks of ``todo`` and collect them; shut down a Ray this
    call started."""
    import ray

    n_images = _images_to_write(run, todo)
    started = start_ray(address)
    t0 = time.perf_counter()  # the chunk loop, as the serial generator's wall (not ray.init)
    try:
        run.cpus = float(ray.cluster_resources().get("CPU", 0.0))
        pending = _submit_chunks(cfg, run, todo, source, max_retries)
        _collect_results(run, pending, n_images, progress)
        run.wall = time.perf_counter() - t0
    finally:
        if started:
            ray.shutdown()


def generate_with_ray(
    cfg: Config,
    store_path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    address: str | None = None,
    progress: bool = True,
    max_retries: int = 3,
    max_chunks: int | None = None,
    source: HaloSource | None = None,
    retry_failed: bool = True,
) -> dict[str, Any]:
    """Make every missing image of the plan of ``cfg`` into the store, one Ray task per chunk.

    Steps as :func:`cmpipe.stages.generate.generate_serial`: the source's catalog, the plan (written next
    to the store), the store (created, or reopened to resume), then a task per chunk not yet done,
    or done but holding failed images (``retry_failed``) (``num_cpus=1``, ``memory=`` :func:`chunk_memory_bytes` of its largest halo, capped at the
    largest node's memory, ``max_retries`` for worker death, application errors not retried), the
    failures record updated as results arrive, and the normalisation once every chunk is done.

    Ray: reused if initialised (and left running); else ``ray.init(address)`` with ``address``
    or ``RAY_ADDRESS``; else a local instance without dashboard, shut down at the end.

    Parameters
    ----------
    cfg : Config
    store_path : str, path-like or URL
        The store directory; on a cluster, a path every node sees, or an object-store URL
        (``s3://bucket/run/images.zarr``): the tasks then write whole objects through zarr's
        ``FsspecStore`` with the credentials of their own environment (for S3 ``AWS_*``; a local
        Ray's workers inherit the driver's), and the driver reads fresh listings before
        deciding what is done (:mod:`cmpipe.store.zarr_store`).
    overwrite : bool
        Start over, deleting a store made by another config.
    address : str, optional
        Ray cluster address (``auto``, ``ray://host:10001``, ``host:6379``).
    progress : bool
        Progress on the driver (:class:`cmpipe.progress.Progress`): a bar of chunks (and images
        written) on a terminal, else a line every ``$CMPIPE_PROGRESS_S`` seconds.
    max_retries : int
        Retries of a chunk whose worker died.
    max_chunks : int, optional
        Write at most this many of the missing chunks (the rest stay missing: resume later).
    source : HaloSource, optional
        Default: :func:`cmpipe.stages.source.open_source` of ``cfg`` with one thread. Must be
        picklable; it goes to the object store once, as do the map settings.
    retry_failed : bool
        Also redo the failed images of chunks already done (default): their failure entries are
        cleared where they now succeed. False leaves them failed.

    Returns
    -------
    dict
        ``store``, ``plan``, ``images``, ``halos``, ``chunks``, ``chunks_written``,
        ``missing_chunks`` (still not done), ``failures`` (the store's whole record),
        ``failed_images``, ``crashed_chunks`` (chunks whose task raised or died for good),
        ``seconds`` (sums over the written chunks of ``particles``, ``smoothing``,
        ``projection``, ``writing``, ``total``: task seconds; ``wall``: the driver's chunk loop),
        ``images_per_s`` (images written / wall; 0 if none), ``cpus`` (the cluster's) and
        ``normalised``.
    """
    from cmpipe.mapmaking.generate import run_summary
    from cmpipe.stages.source import open_source
    from cmpipe.stages.generate import normalise_store, plan_and_create_store
    from cmpipe.store.zarr_store import missing_chunks, record_failures

    if source is None:
        source = open_source(_single_threaded(cfg))
    store_path, plan, group = plan_and_create_store(cfg, store_path, source, overwrite)
    n_chunks = int(group.attrs["n_chunks"])
    run = _Run(store_path, plan, int(group.attrs["chunk_images"]))
    todo = _chunks_to_do(run, n_chunks, retry_failed, max_chunks)
    if todo:
        _run_tasks(cfg, run, todo, source, address, progress, max_retries)
    failures = record_failures(store_path, [])
    still_missing = missing_chunks(store_path)
    if not still_missing:
        normalise_store(store_path, cfg)
    else:
        logger.warning("%s: %d chunks still missing; rerun to resume, then it is normalised", store_path, len(still_missing))
    summary = run_summary(
        store_path, plan, n_chunks, len(todo) - len(run.crashed), failures, run.seconds, run.wall, run.images_written
    )
    summary.update(
        missing_chunks=still_missing, crashed_chunks=sorted(run.crashed), cpus=run.cpus, normalised=not still_missing
    )
    return summary
