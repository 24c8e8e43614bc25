"""ARCHITECTURE.md's import rules, checked against every Python file's imports.

Each layer (a set of files) names what it may import besides the standard library: other
layers of this repository and third-party packages. An import outside that list fails with
the file, the line and the rule. The table below is the same as the one in ARCHITECTURE.md.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

#: layer -> (files, allowed first-party layers, allowed third-party top-level packages)
LAYERS = {
    "core": (
        "alm_forecaster/*.py alm_forecaster/native/*.py",
        {"core"},
        {"numpy", "torch", "orjson", "threadpoolctl"},
    ),
    "train": (
        "alm_forecaster/train/*.py",
        {"core", "train"},
        {"numpy", "torch", "pandas", "matplotlib", "tqdm", "scipy", "arch", "scoringrules"},
    ),
    "testing": ("alm_forecaster/testing/*.py", {"core", "testing"}, {"numpy", "torch"}),
    "handler": ("handlers/*.py", {"core"}, {"torch", "ts"}),
    "ops": ("alm_ops/*.py", {"core", "ops"}, {"numpy", "torch", "requests", "yaml", "psutil", "tqdm", "matplotlib"}),
    "bench": (
        "bench/*.py",
        {"core", "testing", "ops", "bench"},
        {"numpy", "torch", "psutil", "matplotlib", "requests", "pandas", "ts"},
    ),
    "scripts": ("scripts/*.py", {"core", "train", "testing", "ops", "bench"}, {"numpy", "torch", "pandas"}),
    "docker": ("docker/*.py", set(), set()),
    "tests": ("tests/**/*.py", {"core", "train", "testing", "ops", "bench", "test-helpers"}, None),
}
#: first-party module prefix -> layer (longest prefix wins)
FIRST_PARTY = {
    "alm_forecaster": "core",
    "alm_forecaster.train": "train",
    "alm_forecaster.testing": "testing",
    "alm_ops": "ops",
    "bench": "bench",
    "handlers": "handler",
    "scripts": "scripts",
    "tests.helpers": "test-helpers",
    "tests.corpus": "test-helpers",
    "tests.replay_corpus": "test-helpers",
    "tests.conftest": "test-module",
    "tests.deploy.conftest": "test-helpers",
    "tests.deploy.containers": "test-helpers",
    "tests.deploy.kustomize": "test-helpers",
    "tests": "test-module",
}


def files(pattern: str) -> list[Path]:
    return sorted(path for part in pattern.split() for path in ROOT.glob(part) if ".venv" not in path.parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file; relative ones resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names if module == "alm_forecaster"]
    return found


def layer_of(module: str) -> str | None:
    matches = [prefix for prefix in FIRST_PARTY if module == prefix or module.startswith(prefix + ".")]
    return FIRST_PARTY[max(matches, key=len)] if matches else None


def violations(layer: str) -> list[str]:
    pattern, allowed_layers, allowed_packages = LAYERS[layer]
    problems = []
    for path in files(pattern):
        for line, module in imports(path):
            top = module.split(".")[0]
            owner = layer_of(module)
            where = f"{path.relative_to(ROOT)}:{line} imports {module}"
            if owner is not None:
                if owner not in allowed_layers:
                    problems.append(f"{where}: the {layer} layer may not import the {owner} layer")
            elif top not in sys.stdlib_module_names and allowed_packages is not None and top not in allowed_packages:
                problems.append(f"{where}: the {layer} layer may not depend on {top!r}")
    return problems


@pytest.mark.parametrize("layer", list(LAYERS))
def test_layer_imports_follow_the_rules(layer):
    assert files(LAYERS[layer][0]), f"no files for layer {layer}"
    assert violations(layer) == []


def test_the_rules_can_fail(tmp_path, monkeypatch):
    """Negative control: a core module importing TorchServe or the train layer is reported."""
    fake_root = tmp_path / "repo"
    (fake_root / "alm_forecaster").mkdir(parents=True)
    (fake_root / "alm_forecaster" / "bad.py").write_text(
        "import ts\nfrom alm_forecaster.train import scoring\nfrom . import contract\nimport numpy\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "ROOT", fake_root)
    found = violations("core")
    assert len(found) == 2, found
    assert "may not depend on 'ts'" in found[0] and "may not import the train layer" in found[1]


def test_architecture_doc_states_the_same_layers():
    text = (ROOT / "ARCHITECTURE.md").read_text()
    for layer, (pattern, _, _) in LAYERS.items():
        for part in pattern.split():
            assert f"`{part}`" in text, f"ARCHITECTURE.md does not name {part} ({layer})"
