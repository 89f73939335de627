"""Config overrides of the tiny image stores several test files build (one definition each).

Every store keeps all its test images (``generate.test_images_per_halo=0``).

``GENERATION_STORE``: 7 analytic halos in three 0.1 dex bins -- five common halos at 13.5
(subsampled), one at 14.0 and one at 14.4 (rotated twice each: target 6 images = 2 rotations x 3
axes); 32 x 32 maps of 0.2 Mpc. Each file adds its own ``generate.chunk_images``.

``TRAINING_STORE``: 6 analytic halos of 10^14-10^14.5, one rotation each, 18 images of 32 x 32
of 0.4 Mpc (12 train, 6 val), chunks of 4, one thread.
"""

GENERATION_MASSES = [13.51, 13.53, 13.55, 13.57, 13.59, 14.05, 14.45]
GENERATION_STORE = [
    "source.kind=analytic",
    f"source.analytic_log10_m200m_msun_h={GENERATION_MASSES}",
    "source.analytic_pair_mass_msun_h=1e11",
    "maps.npix=32",
    "maps.pixel_mpc=0.2",
    "maps.depth_mpc=6.4",
    "generate.images_per_0p1dex=6",
    "generate.max_rotations_per_halo=3",
    "generate.axes_per_rotation=3",
    "generate.test_images_per_halo=0",
]

TRAINING_MASSES = [14.0, 14.1, 14.2, 14.3, 14.4, 14.5]
TRAINING_STORE = [
    "source.kind=analytic",
    f"source.analytic_log10_m200m_msun_h={TRAINING_MASSES}",
    "source.analytic_pair_mass_msun_h=1e11",
    "maps.npix=32",
    "maps.pixel_mpc=0.4",
    "maps.depth_mpc=12.8",
    "generate.images_per_0p1dex=3",
    "generate.max_rotations_per_halo=1",
    "generate.test_images_per_halo=0",
    "generate.chunk_images=4",
    "generate.split_fractions=[0.67, 0.33, 0.0]",
    "sph.num_threads=1",
]

# The store of the inference tests: the training store's halos split 3 train, 1 val, 2 test
# (6 test images of 32 x 32, 0.4 Mpc).
INFERENCE_STORE = [*TRAINING_STORE[:-2], "generate.split_fractions=[0.5, 0.17, 0.33]", "sph.num_threads=1"]
TINY_MODEL = ["model.resolution=16", "model.nf=8", "model.ch_mult=[1, 2]", "model.num_res_blocks=1",
              "model.attention=false", "train.batch_size=4", "train.warmup_steps=1", "train.checkpoint_every=2",
              "train.val_every=2", "train.val_batches=1", "train.num_workers=0", "train.augment=false"]
TINY_INFER = ["infer.n_samples=4", "infer.sampler=em", "infer.steps=4", "infer.batch_size=16",
              "infer.images_per_batch=2", "infer.actors=1", "infer.cpus_per_actor=1", "infer.gpus_per_actor=0",
              "infer.threads_per_actor=1", "evaluate.test_log10_m_min_msun_h=13.5",
              "evaluate.test_log10_m_max_msun_h=15.0", "evaluate.mass_split_log10_msun_h=14.25"]


def inference_config(*extra: str):
    """The demo config on ``INFERENCE_STORE`` with the tiny model and sampler, plus ``extra``
    overrides (the config of the inference, baseline, FITS and training-error tests)."""
    from cmpipe.config import load_config

    return load_config("demo", [*INFERENCE_STORE, *TINY_MODEL, *TINY_INFER, *extra])


def make_store(cfg, directory):
    """``directory / "images.zarr"``: the store of ``cfg``, generated serially."""
    from cmpipe.stages.generate import generate_serial

    path = directory / "images.zarr"
    generate_serial(cfg, path)
    return path


def make_run(cfg, store, directory, max_steps: int = 2):
    """``directory / "run"``: a serial training run of ``max_steps`` steps on ``store``."""
    from cmpipe.stages.train import run as train_run

    run = directory / "run"
    train_run(cfg, {"store": store, "run": run}, max_steps=max_steps)
    return run
