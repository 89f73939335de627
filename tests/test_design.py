"""The package's design rules, checked on the source (README "Design").

- Only ``cmpipe/stages/``, ``cmpipe/pipeline/`` and ``cmpipe/cli.py`` turn a whole
  :class:`cmpipe.config.Config` into arguments: no other module imports ``Config``.
- ``cmpipe/store/`` is I/O: it imports nothing from physics, sph or mapmaking.
- Only ``cmpipe/pipeline/`` imports Ray.
- Layers import downward: no library module imports the stages, the pipeline or the CLI.
- No function is longer than :data:`MAX_LINES` lines (body, docstring excluded) unless a
  ``# long: <reason>`` comment in it says why.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cmpipe"
MAX_LINES = 60
# Modules above the libraries: they may import anything.
TOP = ("stages/", "pipeline/", "cli.py", "__main__.py", "api.py", "__init__.py")


def _modules() -> list[tuple[str, ast.Module]]:
    return [(p.relative_to(PACKAGE).as_posix(), ast.parse(p.read_text(encoding="utf-8")))
            for p in sorted(PACKAGE.rglob("*.py"))]


def _imports(tree: ast.Module) -> list[tuple[str, list[str]]]:
    """Every ``import x`` / ``from x import a, b`` anywhere in the module (also inside functions
    and ``TYPE_CHECKING`` blocks): (module, names)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, [alias.name for alias in node.names]))
    return found


def _is_top(name: str) -> bool:
    return name == "__init__.py" or name.startswith(TOP)


def test_the_parser_sees_imports_in_functions_and_type_checking_blocks():
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from cmpipe.config import Config\n"
                     "def f():\n    import ray\n")
    assert ("cmpipe.config", ["Config"]) in _imports(tree)
    assert ("ray", []) in _imports(tree)


def test_only_stages_pipeline_and_cli_import_the_whole_config():
    allowed = ("stages/", "pipeline/", "cli.py", "config.py")
    offenders = [name for name, tree in _modules() if not name.startswith(allowed)
                 and any(mod == "cmpipe.config" and "Config" in names for mod, names in _imports(tree))]
    assert offenders == [], f"modules below the stages import cmpipe.config.Config: {offenders}"


def test_the_store_imports_no_physics_sph_or_maps():
    banned = ("cmpipe.physics", "cmpipe.sph", "cmpipe.mapmaking")
    offenders = [(name, mod) for name, tree in _modules() if name.startswith("store/")
                 for mod, _ in _imports(tree) if mod.startswith(banned)]
    assert offenders == []


def test_only_the_pipeline_imports_ray():
    offenders = [(name, mod) for name, tree in _modules() if not name.startswith("pipeline/")
                 for mod, _ in _imports(tree) if mod == "ray" or mod.startswith("ray.")]
    assert offenders == []


def test_libraries_do_not_import_the_layers_above_them():
    above = ("cmpipe.stages", "cmpipe.pipeline", "cmpipe.cli", "cmpipe.api")
    offenders = [(name, mod) for name, tree in _modules() if not _is_top(name)
                 for mod, _ in _imports(tree) if mod.startswith(above)]
    assert offenders == []


def _body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    body = node.body
    first = body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        start = first.end_lineno + 1 if len(body) > 1 else first.end_lineno
    else:
        start = first.lineno
    return node.end_lineno - start + 1


def test_functions_are_short_or_say_why():
    long = []
    for p in sorted(PACKAGE.rglob("*.py")):
        lines = p.read_text(encoding="utf-8").splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _body_lines(node) > MAX_LINES:
                text = "\n".join(lines[node.lineno - 1:node.end_lineno])
                if "# long:" not in text:
                    long.append(f"{p.relative_to(PACKAGE)}:{node.lineno} {node.name} ({_body_lines(node)} lines)")
    assert long == [], "functions over %d lines without a '# long: <reason>' comment:\n%s" % (MAX_LINES, "\n".join(long))


@pytest.mark.parametrize("bad", ["import ray\n", "from ray import train\n"])
def test_the_ray_rule_would_catch_an_import(bad):
    assert any(mod == "ray" or mod.startswith("ray.") for mod, _ in _imports(ast.parse(bad)))
