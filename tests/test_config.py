"""Configuration loading, overrides, round trips, and the ``cmpipe`` command skeleton.

Oracles: the dataclass defaults (the paper's values) and the shipped YAML files, which differ
from them only where the README says; exact equality throughout (no numerics here).
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cmpipe import cli
from cmpipe.config import (
    CatalogConfig,
    Config,
    ConfigError,
    GenerateConfig,
    MapsConfig,
    MockConfig,
    ModelConfig,
    RunConfig,
    SphConfig,
    TrainConfig,
    EvaluateConfig,
    InferConfig,
    config_fingerprint,
    config_from_dict,
    config_to_dict,
    load_config,
    save_resolved_config,
    shipped_configs,
)

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "cmpipe" / "configs"

EXPECTED = {
    "demo": Config(
        catalog=CatalogConfig(n_halos=128, log10_m_max_msun_h=15.0, mode="flat"), run=RunConfig(out="runs/demo"),
        generate=GenerateConfig(images_per_0p1dex=20, max_rotations_per_halo=4, chunk_images=16,
                                split_fractions=(0.65, 0.1, 0.25), test_images_per_halo=1),
        model=ModelConfig(resolution=32, nf=16, num_res_blocks=1, attention=False),
        train=TrainConfig(batch_size=8, warmup_steps=20, max_steps=1600, checkpoint_every=200, val_every=200),
        infer=InferConfig(sampler="dpm2m_sde", steps=39, batch_size=100, images_per_batch=2, gpus_per_actor=0.0,
                          threads_per_actor=2),
        evaluate=EvaluateConfig(test_log10_m_min_msun_h=13.5, test_log10_m_max_msun_h=15.0),
    ),
    "paper": Config(
        sph=SphConfig(n_neighbours=48), mock=MockConfig(pair_mass_msun_h=1e9), run=RunConfig(out="runs/paper"),
        train=TrainConfig(use_gpu=True),
    ),
}


def write_yaml(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------
# Shipped configurations
# --------------------------------------------------------------------------------------------


def test_shipped_names():
    assert set(shipped_configs()) >= {"demo", "paper", "science"}


@pytest.mark.parametrize("name", ["demo", "paper"])
def test_shipped_config_by_name(name):
    cfg = load_config(name)
    assert cfg == EXPECTED[name]
    assert cfg.maps.npix == 128 and cfg.maps.pixel_mpc == 0.1 and cfg.maps.depth_mpc == 12.8


@pytest.mark.parametrize("name", ["demo", "paper", "science"])
def test_shipped_config_by_path(name, tmp_path):
    # A copy in tmp_path, loaded by path (str and Path), equals the one loaded by name.
    copy = write_yaml(tmp_path / f"{name}.yaml", (CONFIG_DIR / f"{name}.yaml").read_text())
    assert load_config(str(copy)) == load_config(name)
    assert load_config(copy) == load_config(name)


def test_shipped_configs_set_every_key():
    # The shipped files document every key (with its unit), so none may be missing.
    known = config_to_dict(Config())
    for name in ("demo", "paper", "science"):
        data = yaml.safe_load((CONFIG_DIR / f"{name}.yaml").read_text())
        assert {s: set(v) for s, v in data.items()} == {s: set(v) for s, v in known.items()}


def test_defaults_are_the_paper_values():
    cfg = Config()
    assert (cfg.cosmology.omega_m, cfg.cosmology.omega_b, cfg.cosmology.h) == (0.30, 0.045, 0.70)
    assert (cfg.cosmology.sigma8, cfg.cosmology.ns, cfg.cosmology.redshift) == (0.80, 0.96, 0.0)
    channels = ("sz_y", "xray_sb", "gas_sigma", "dm_sigma")
    assert cfg.maps == MapsConfig(128, 0.1, 12.8, "fast", channels)
    assert cfg.source.analytic_log10_m200m_msun_h == (14.0, 14.5)
    assert cfg.render.rotation_seed == -1 and cfg.run.out == "runs/default"


def test_missing_sections_and_keys_take_defaults(tmp_path):
    path = write_yaml(tmp_path / "partial.yaml", "maps:\n  npix: 64\nsph:\n")
    cfg = load_config(path)
    assert cfg == Config(maps=MapsConfig(npix=64))
    assert load_config(write_yaml(tmp_path / "empty.yaml", "")) == Config()


def test_unknown_name_lists_shipped(tmp_path):
    with pytest.raises(ConfigError, match=r"no config 'nosuch'.*shipped: .*demo.*paper"):
        load_config("nosuch")
    missing = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError, match=re.escape(str(missing))):
        load_config(missing)


# --------------------------------------------------------------------------------------------
# Errors in files
# --------------------------------------------------------------------------------------------


def test_unknown_section_names_key_and_file(tmp_path):
    path = write_yaml(tmp_path / "bad.yaml", "mapz:\n  npix: 64\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "unknown section 'mapz'" in message and str(path) in message
    assert "did you mean 'maps'" in message


def test_unknown_key_names_dotted_key_and_file(tmp_path):
    path = write_yaml(tmp_path / "demo.yaml", "maps:\n  npixx: 64\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert f"unknown key 'maps.npixx' in {path}" in message
    assert "known: npix, pixel_mpc, depth_mpc, backend, channels" in message


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("maps:\n  npix: '64'\n", r"maps\.npix: expected an int, got str '64'"),
        ("maps:\n  npix: 64.0\n", r"maps\.npix: expected an int, got float"),
        ("render:\n  save_npz: 1\n", r"render\.save_npz: expected a bool"),
        ("run:\n  out: 2024\n", r"run\.out: expected a str, got int 2024 \(quote it"),
        ("maps:\n  channels: sz_y\n", r"maps\.channels: expected a list of str"),
        ("maps:\n  backend: slow\n", r"maps\.backend must be one of exact, mesh3d, fast"),
        ("maps:\n  npix: 0\n", r"maps\.npix must be > 0"),
        ("maps:\n  channels: [sz_y, sz_y]\n", r"maps\.channels must not repeat"),
        ("cosmology:\n  omega_b: 0.4\n", r"cosmology\.omega_b must satisfy 0 <= omega_b < omega_m"),
        ("render:\n  axis: 3\n", r"render\.axis must be 0, 1 or 2"),
        ("source:\n  kind: hdf5\n", r"source\.path must name an HDF5 file"),
        ("maps:\n  npix: 1\n  npix: 2\n", r"found duplicate key 'npix'"),
        ("maps: [1, 2]\n", r"section 'maps' .* must be a mapping"),
        ("- maps\n", r"must hold a mapping of sections"),
    ],
)
def test_bad_values_in_file(tmp_path, text, pattern):
    path = write_yaml(tmp_path / "bad.yaml", text)
    with pytest.raises(ConfigError, match=pattern) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_int_accepted_for_float_and_lists_become_tuples(tmp_path):
    path = write_yaml(
        tmp_path / "c.yaml",
        "maps:\n  pixel_mpc: 1\nsource:\n  analytic_log10_m200m_msun_h: [14, 15]\n"
        "  analytic_pair_mass_msun_h: 1e10\n",
    )
    cfg = load_config(path)
    assert cfg.maps.pixel_mpc == 1.0 and isinstance(cfg.maps.pixel_mpc, float)
    assert cfg.source.analytic_log10_m200m_msun_h == (14.0, 15.0)
    # PyYAML reads 1e10 as a string; float keys take it as the number it spells.
    assert cfg.source.analytic_pair_mass_msun_h == 1e10
    hash(cfg)  # frozen and all-tuple: usable as a dict key and in Ray task arguments


def test_sections_validate_when_built_directly():
    with pytest.raises(ConfigError, match=r"maps\.backend must be one of"):
        MapsConfig(backend="gpu")
    assert MapsConfig(channels=["sz_y"]).channels == ("sz_y",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        Config().maps.npix = 3  # type: ignore[misc]


# --------------------------------------------------------------------------------------------
# Overrides
# --------------------------------------------------------------------------------------------


def test_overrides_apply_in_order():
    cfg = load_config(
        "demo",
        [
            "maps.npix=64",
            "maps.npix=32",
            "maps.channels=[sz_y, gas_sigma]",
            "cosmology.omega_m=1",
            "render.save_npz=false",
            "run.out=2024",
            "run.log_level=debug",
        ],
    )
    assert cfg.maps.npix == 32
    assert cfg.maps.channels == ("sz_y", "gas_sigma")
    assert cfg.cosmology.omega_m == 1.0
    assert cfg.render.save_npz is False
    assert cfg.run.out == "2024"  # a str key takes the text itself
    assert cfg.run.log_level == "DEBUG"
    assert load_config("demo", ["source.path="]).source.path == ""


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        ("maps.npixx=3", r"unknown key 'maps\.npixx' in override 'maps\.npixx=3'"),
        ("mapz.npix=3", r"unknown section 'mapz' in override 'mapz\.npix=3'"),
        ("maps.npix=abc", r"maps\.npix: expected an int, got str 'abc' \(from override 'maps\."),
        ("maps.npix=1.5", r"maps\.npix: expected an int, got float 1\.5"),
        ("render.axis=[1]", r"render\.axis: expected an int, got list"),
        ("maps.npix=-1", r"maps\.npix must be > 0; got -1 \(from override 'maps\.npix=-1'\)"),
        ("maps.channels=[sz_y, foo]", r"maps\.channels\[1\] must be one of .* \(from override"),
        ("maps.pixel_mpc=.nan", r"maps\.pixel_mpc: expected a finite float"),
        ("maps.npix=[1", r"cannot parse the value of override 'maps\.npix=\[1'"),
        ("npix=3", r"not of the form section\.key=value"),
        ("maps.npix", r"not of the form section\.key=value"),
    ],
)
def test_bad_overrides(override, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load_config("demo", [override])


def test_cross_field_error_says_where_each_key_was_set(tmp_path):
    path = write_yaml(tmp_path / "c.yaml", "cosmology:\n  omega_b: 0.05\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, ["cosmology.omega_m=0.04"])
    message = str(info.value)
    assert f"in {path}" in message and "from override 'cosmology.omega_m=0.04'" in message


# --------------------------------------------------------------------------------------------
# Serialisation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["demo", "paper"])
def test_resolved_config_round_trip(name, tmp_path):
    cfg = load_config(name, ["maps.npix=64", "source.analytic_log10_m200m_msun_h=[13.5]"])
    path = save_resolved_config(cfg, tmp_path / "run" / "out")
    assert path == tmp_path / "run" / "out" / "config.resolved.yaml"
    back = load_config(path)
    assert back == cfg
    assert config_fingerprint(back) == config_fingerprint(cfg)
    assert yaml.safe_load(path.read_text())["_fingerprint"] == config_fingerprint(cfg)
    assert config_from_dict(config_to_dict(cfg)) == cfg


def test_fingerprint_is_stable_and_sensitive():
    fingerprint = config_fingerprint(Config())
    assert re.fullmatch(r"[0-9a-f]{16}", fingerprint)
    assert config_fingerprint(Config()) == fingerprint
    assert config_fingerprint(Config(maps=MapsConfig(npix=64))) != fingerprint


# --------------------------------------------------------------------------------------------
# README
# --------------------------------------------------------------------------------------------


def test_readme_table_lists_every_key():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([a-z0-9_]+\.[a-z0-9_]+)` \|", readme, flags=re.M))
    known = {f"{s}.{k}" for s, keys in config_to_dict(Config()).items() for k in keys}
    assert documented == known


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def test_cli_config_prints_resolved_yaml(capsys, tmp_path):
    out_dir = tmp_path / "out"
    status = cli.main(
        ["config", "--config", "paper", "--set", "maps.npix=64", "--out", str(out_dir)]
    )
    captured = capsys.readouterr()
    assert status == 0
    expected = load_config("paper", ["maps.npix=64", f"run.out={out_dir}"])
    assert config_fingerprint(expected) in captured.out
    # What it prints is a config file that loads back to the same configuration.
    printed = write_yaml(tmp_path / "printed.yaml", captured.out)
    assert load_config(printed) == expected
    assert not out_dir.exists()  # `config` writes nothing


def test_cli_default_config_is_demo(capsys):
    assert cli.main(["config"]) == 0
    assert config_fingerprint(load_config("demo")) in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["config", "--set", "maps.npixx=3"], "cmpipe: error: unknown key 'maps.npixx'"),
        (["config", "--set", "maps.npix=abc"], "cmpipe: error: maps.npix: expected an int"),
        (["config", "--config", "nosuch"], "cmpipe: error: no config 'nosuch'"),
        (["config", "--out", ""], "cmpipe: error: run.out must not be empty"),
    ],
)
def test_cli_config_error_exit_2(capsys, argv, message):
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(message)
    assert "Traceback" not in captured.err and captured.out == ""


def test_cli_usage_errors_exit_2(capsys):
    assert cli.main([]) == 2
    assert cli.main(["no-such-subcommand"]) == 2
    assert "usage: cmpipe" in capsys.readouterr().err


def test_cli_registered_subcommand(monkeypatch, capsys):
    # How other subcommands plug in: one SUBCOMMANDS entry, with options and a handler.
    seen = {}

    def add_arguments(parser):
        parser.add_argument("--halo", type=int, default=0)

    def handler(args, cfg):
        seen.update(halo=args.halo, npix=cfg.maps.npix, out=cfg.run.out)
        if args.halo < 0:
            raise ConfigError("--halo must be >= 0")
        if args.halo == 99:
            raise ValueError("a bug, not a user error")
        return 0

    monkeypatch.setitem(cli.SUBCOMMANDS, "probe", cli.Subcommand("probe", add_arguments, handler))
    assert cli.main(["probe", "--halo", "3", "--set", "maps.npix=16", "--out", "x"]) == 0
    assert seen == {"halo": 3, "npix": 16, "out": "x"}
    assert cli.main(["probe", "--halo=-1"]) == 2
    assert "cmpipe: error: --halo must be >= 0" in capsys.readouterr().err
    with pytest.raises(ValueError, match="a bug"):  # not a cmpipe error: keeps its traceback
        cli.main(["probe", "--halo", "99"])


def test_import_is_cheap():
    # `import cmpipe.cli` (hence `cmpipe --help`) must not load the heavy libraries.
    heavy = ["numpy", "numba", "torch", "ray", "zarr", "score_models", "matplotlib", "h5py"]
    code = (
        "import sys, cmpipe, cmpipe.config, cmpipe.cli\n"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert result.stdout.strip() == "[]"
