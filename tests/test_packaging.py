"""The package installs as one namespace, `deeptheory`, and lives beside other projects' `train` or `theory`."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _foreign_train(tmp_path: Path) -> Path:
    """Another project's top-level `train` and `theory` packages, first on sys.path."""
    other = tmp_path / "other"
    for name in ("train", "theory"):
        (other / name).mkdir(parents=True)
        (other / name / "__init__.py").write_text(f"WHO = 'other {name}'\n")
    return other


_CHECK = ("import train, theory, deeptheory.train.harness.cli, deeptheory.theory.nngp as n; "
          "assert train.WHO == 'other train' and theory.WHO == 'other theory', (train.WHO, theory.WHO); "
          "print(n.__name__)")


def test_imports_beside_another_projects_train(tmp_path):
    other = _foreign_train(tmp_path)
    done = subprocess.run([sys.executable, "-c", _CHECK], cwd=other, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "deeptheory.theory.nngp"


def test_every_package_folder_is_listed_in_pyproject():
    """setuptools installs only the packages pyproject lists: a new subfolder of train/ must be added there."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {"deeptheory." + ".".join(init.parent.relative_to(ROOT).parts)
             for top in ("theory", "models", "train", "benchmarks") for init in (ROOT / top).rglob("__init__.py")}
    assert found == listed, f"add to pyproject: {sorted(found - listed)}; remove: {sorted(listed - found)}"


@pytest.mark.slow
def test_wheel_holds_only_the_deeptheory_namespace(tmp_path):
    """Build the wheel (pip fetches the build backend), install it without dependencies into a folder of its own,
    and import it from there next to a foreign `train`: nothing named theory/models/train/benchmarks is installed
    at the top level."""
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"),
                            str(ROOT)], capture_output=True, text=True, timeout=600)
    if built.returncode != 0 and "Could not find a version" in built.stderr + built.stdout:
        pytest.skip("no package index reachable to fetch the build backend")
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("deeptheory-*.whl")
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert tops == {"deeptheory", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}, tops
    names = zipfile.ZipFile(wheel).namelist()
    assert "deeptheory/theory/nngp.py" in names and "deeptheory/train/harness/cli.py" in names
    assert "deeptheory/train/experiments/rf_scaling/optimizers.py" in names
    assert not any(n.startswith("deeptheory/__init__") for n in names)  # an implicit namespace package
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    other = _foreign_train(tmp_path)
    # the installed copy first on the path, the editable one hidden: -S drops site-packages, so add the dependencies'
    # folder explicitly after the foreign packages and the installed wheel.
    site = next(p for p in sys.path if p.endswith("site-packages"))
    code = f"import sys; sys.path[:0] = [{str(other)!r}, {str(target)!r}, {site!r}]; " + _CHECK.replace(
        "print(n.__name__)", "print(n.__file__)")
    done = subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith(str(target))


def test_no_control_characters_in_text_files():
    """A TeX command such as \\varepsilon written through an unescaped Python string becomes a control character
    (\\v, \\a, \\r, ...) and renders as garbage; no text file of the repository may hold one (tabs and newlines
    aside)."""
    import re

    listed = subprocess.run(["git", "ls-files", "*.md", "*.py", "*.toml", "*.cff", "*.txt"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split()
    control = re.compile("[\x00-\x08\x0b-\x1f\x7f]")
    bad = [name for name in listed if (ROOT / name).is_file() and control.search((ROOT / name).read_text())]
    assert not bad, bad
