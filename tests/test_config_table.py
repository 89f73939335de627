"""The configuration keys are declared once, in :mod:`cmpipe.config`; this checks what is derived.

Oracles: the README's key table equals the one rendered from the dataclasses' field metadata
(``python tests/test_config_table.py`` rewrites it); the registries' names that the config
reads from source equal the imported registries; a fresh interpreter that loads a config
imports neither numba nor torch.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

from cmpipe.config import Config, config_to_dict, key_valid, load_config, shipped_configs

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
BEGIN = "<!-- key table: generated from cmpipe/config.py by `python tests/test_config_table.py` -->"
END = "<!-- end of the generated key table -->"


def _value(value: object) -> str:
    """A value as YAML would spell it: ``true``, ``1e10``, ``[sz_y, xray_sb]``, ``""``."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value != 0 and not 1e-4 <= abs(value) < 1e5:
        return re.sub(r"e([+-])0*(\d)", lambda m: f"e{m[1].strip('+')}{m[2]}", f"{value:g}")
    if isinstance(value, (tuple, list)):
        return f"[{', '.join(_value(v) for v in value)}]"
    if value == "":
        return '""'
    return str(value)


def _cell(text: str) -> str:
    """Markdown table cell: Sphinx roles become code spans, pipes are escaped."""
    return re.sub(r":\w+:`([^`]+)`", r"`\1`", text).replace("|", r"\|")


def _sections() -> dict[str, type]:
    """Section name -> section class, in :class:`Config` order."""
    return {f.name: type(getattr(Config(), f.name)) for f in dataclasses.fields(Config)}


def render_key_table() -> str:
    """The README's configuration section body: one row per key, then the shipped configs' changes."""
    lines = [BEGIN, "| key | default | unit | valid | meaning |", "|---|---|---|---|---|"]
    for section, cls in _sections().items():
        for f in dataclasses.fields(cls):
            cells = [f"`{section}.{f.name}`", f"`{_value(f.default)}`", f.metadata["unit"],
                     _cell(key_valid(f)), _cell(f.metadata["meaning"])]
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "The shipped configs set every key; they differ from these defaults in:", ""]
    defaults = config_to_dict(Config())
    for name in shipped_configs():
        shipped = config_to_dict(load_config(name))
        changed = [f"`{s}.{k}: {_value(v)}`" for s, keys in shipped.items() for k, v in keys.items()
                   if v != defaults[s][k]]
        lines.append(f"- `{name}`: {', '.join(changed)}.")
    return "\n".join([*lines, "", END])


def _readme_block(text: str) -> str:
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[start:end]


def test_readme_key_table_is_generated_from_the_dataclasses():
    text = README.read_text(encoding="utf-8")
    assert _readme_block(text) == render_key_table(), "run: python tests/test_config_table.py"


def test_every_key_declares_unit_and_meaning():
    for section, cls in _sections().items():
        for f in dataclasses.fields(cls):
            assert f.metadata["unit"] and f.metadata["meaning"].strip(), f"{section}.{f.name}"


def test_registry_names_read_from_source_equal_the_registries():
    from cmpipe.config import PROJECTION_BACKENDS, SAMPLER_NAMES
    from cmpipe.model.sampling import SAMPLERS
    from cmpipe.sph.projection import BACKEND_NAMES, BACKENDS

    assert PROJECTION_BACKENDS == BACKEND_NAMES and set(BACKENDS) == set(BACKEND_NAMES)
    assert SAMPLER_NAMES == tuple(SAMPLERS)


def test_loading_a_config_imports_no_registry_module():
    # Checking maps.backend and infer.sampler reads the registries' source, not numba or torch.
    code = (
        "import sys, cmpipe.config as c\n"
        "c.load_config('demo'); c.load_config('science')\n"
        "print(sorted(m for m in ('numpy', 'numba', 'torch') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert result.stdout.strip() == "[]"


if __name__ == "__main__":
    text = README.read_text(encoding="utf-8")
    README.write_text(text.replace(_readme_block(text), render_key_table()), encoding="utf-8")
    print(f"rewrote the key table in {README}")
