"""The public surface: theory/, models/, train.harness and train.inference re-export every module's public names,
one subject per module, and no module or benchmark imports another module's private (underscore) names."""

import ast
import functools
import pathlib
import types

import pytest

from deeptheory import models, theory
from deeptheory.train import harness, inference

ROOT = pathlib.Path(theory.__file__).parent.parent  # the repository root: the package deeptheory


@pytest.mark.parametrize("package", [theory, models, harness, inference])
def test_packages_reexport_each_module_public_names(package):
    assert len(set(package.__all__)) == len(package.__all__), "a public name is defined by two modules"
    for module in package.MODULES:
        name = module.__name__.rsplit(".", 1)[1]
        assert isinstance(getattr(package, name), types.ModuleType), name  # the module name stays the module
        assert module.__doc__ and len(module.__doc__) > 200, f"{module.__name__} needs a docstring saying its subject"
        for public in module.__all__:
            if public == name:  # theory.particle_flow.particle_flow: the package name is the module
                continue
            assert getattr(package, public) is getattr(module, public), f"{package.__name__}.{public}"


def test_no_cross_module_private_imports():
    offenders = []
    for folder in ("theory", "models", "train", "benchmarks"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("deeptheory"):
                    offenders += [f"{path.relative_to(ROOT)}: {node.module}.{a.name}" for a in node.names
                                  if a.name.startswith("_") and a.name != "__future__"]
                elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                    owner = node.value
                    if isinstance(owner, ast.Name) and owner.id in _module_aliases(path):
                        offenders.append(f"{path.relative_to(ROOT)}: {owner.id}.{node.attr}")
    assert not offenders, offenders


@functools.cache
def _module_aliases(path) -> frozenset:
    """Names bound to deeptheory modules in `path` (import deeptheory.x as y, from deeptheory.x import module)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("deeptheory"):
            folder = ROOT / node.module.removeprefix("deeptheory").strip(".").replace(".", "/")
            names |= {a.asname or a.name for a in node.names if (folder / f"{a.name}.py").exists()}
        elif isinstance(node, ast.Import):
            names |= {a.asname for a in node.names if a.name.startswith("deeptheory") and a.asname}
    return frozenset(names)


def test_theory_imports_neither_models_nor_train():
    for path in (ROOT / "theory").glob("*.py"):
        text = path.read_text()
        assert "deeptheory.models" not in text and "deeptheory.train" not in text, path.name


def test_old_import_paths_warn_and_give_the_moved_objects():
    """theory.particles and the names that left theory.nngp still import for one release, with a warning naming
    the new home; anything else is an AttributeError."""
    import importlib

    from deeptheory.theory import activations, conv_kernels, particle_flow, priors

    old = importlib.import_module("deeptheory.theory.particles")
    for name, home in [("two_stage_denoise", particle_flow), ("make_prior", priors), ("rbf_attention", theory.attention)]:
        with pytest.warns(DeprecationWarning, match=f"import {name} from {home.__name__}"):
            assert getattr(old, name) is getattr(home, name)
    for name in theory.nngp._MOVED:  # noqa: SLF001 (the test reads the list of moved names)
        home = conv_kernels if name == "conv_patch_kernels" else activations
        if name in vars(theory.nngp):  # imported by nngp for its own use: the same object, silently
            assert getattr(theory.nngp, name) is getattr(home, name)
            continue
        with pytest.warns(DeprecationWarning, match=f"{name} moved from deeptheory.theory.nngp to {home.__name__}"):
            assert getattr(theory.nngp, name) is getattr(home, name)
    with pytest.raises(AttributeError):
        old.prior_score  # noqa: B018 (removed: it was used nowhere)
