"""The lowest layer: parameters.py, config_fields.py and errors.py import nothing of the project (import-linter, run by
``make test``, checks the packages above them; it cannot see top-level modules)."""

from __future__ import annotations

import ast

import pytest
from conftest import ROOT

PROJECT = {"train", "evaluate", "export", "predict", "predict_from_video", "convert_fer2013", "optimize_hyperparams",
           "serve", "training", "inference", "models", "data", "experiments", "benchmarks", "parameters", "errors",
           "flags", "config_fields"}
# config_fields (the table's machinery) may raise errors' classes; parameters (the table) is built with it; flags
# (the argparse side of the table) reads both
ALLOWED = {"parameters": {"config_fields"}, "config_fields": {"errors"}, "errors": set(),
           "flags": {"parameters", "config_fields"}}


def imported_top_names(path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("module", sorted(ALLOWED))
def test_lowest_layer_imports_no_project_module(module):
    project_imports = imported_top_names(ROOT / f"{module}.py") & PROJECT
    assert project_imports <= ALLOWED[module], f"{module}.py imports {sorted(project_imports)}"


def test_the_finder_sees_imports():
    """The check above could pass by finding nothing: it does find train.py's project imports."""
    assert {"errors", "parameters"} <= imported_top_names(ROOT / "train.py")
