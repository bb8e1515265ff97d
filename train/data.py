"""Real data with no network: Fashion-MNIST from IDX files, MNIST-1D generated locally, binary tasks.

Binary tasks follow the sources (Pacelli et al. 2023, Baglioni et al. 2024/2026): two classes, raw
labels 0/1 (or ±1), a seeded subset of P training and P_test test points, inputs flattened,
optionally reduced (average-pool downsampling or PCA fitted on the training subset), then
standardised per feature with statistics of the whole training split of the two classes (a subset
of a few dozen images would give near-constant pixels a tiny standard deviation and blow up test
points that differ there).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "Dataset",
    "BinaryTask",
    "DataError",
    "read_idx",
    "write_idx",
    "load_fashion_mnist",
    "load_mnist1d",
    "load_dataset",
    "mnist1d_samples_for",
    "MNIST1D_MAX_SAMPLES",
    "binary_task",
    "load_task",
    "DATASETS",
    "DATA_DIR_ENV",
    "FASHION_MNIST_DIRS",
]

DATA_DIR_ENV = "DEEPTHEORY_DATA_DIR"
# The most MNIST-1D samples generated for a task (about 1–2 minutes at ~1 ms a sample on one CPU core): enough for
# 12 306 training or 3 076 test points over two classes (mnist1d_samples_for); beyond it, an error says what to do.
MNIST1D_MAX_SAMPLES = 100_000
DATASETS = ("auto", "fashion-mnist", "mnist1d")
LABELS = ("01", "pm1", "centred")  # binary_task targets: raw 0/1, ±1, or 0/1 minus ½
FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist",)
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class DataError(RuntimeError):
    """A data file is missing or corrupt; the message names the files and what to do."""


@dataclass(frozen=True)
class Dataset:
    """A labelled dataset with a train/test split. x: (n, ...) float or uint8; y: (n,) int labels."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    source: str
    requested: str = ""  # what was asked for ("auto", "fashion-mnist", "mnist1d")
    note: str = ""  # why this dataset was used when it is not the one asked for


@dataclass(frozen=True)
class BinaryTask:
    """Two-class regression task. x: (P, d) float64, y: (P,) float64 in {0, 1} or {−1, +1}."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    info: dict


# ---------------------------------------------------------------------------------------------
# IDX files (LeCun's MNIST format)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed). Raises DataError naming the file if corrupt."""
    path = Path(path)
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read IDX file {path}: {e}") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path} is not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header ({len(raw)} bytes, expected {header})")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(
            f"{path}: corrupt IDX file, header says shape {shape} ({expected} bytes of data) but "
            f"{len(raw) - header} bytes follow; re-download or reinstall it"
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write an IDX file (gzip if the name ends in .gz); for tests and for exporting subsets."""
    array = np.asarray(array)
    code = {np.dtype(v).newbyteorder("="): k for k, v in _IDX_DTYPES.items()}[array.dtype.newbyteorder("=")]
    data = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data += array.astype(np.dtype(_IDX_DTYPES[code])).tobytes()
    path = Path(path)
    with (gzip.open(path, "wb") if path.suffix == ".gz" else open(path, "wb")) as f:
        f.write(data)


def _find(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def _idx_files(directory: Path) -> dict | None:
    files = {split: [_find(directory, stem) for stem in stems] for split, stems in _SPLIT_FILES.items()}
    return files if all(f is not None for pair in files.values() for f in pair) else None


def _read_split_files(directory: Path, files: dict) -> Dataset:
    arrays = {split: [read_idx(f) for f in pair] for split, pair in files.items()}
    for split, (images, labels) in arrays.items():
        if len(images) != len(labels):
            raise DataError(f"{files[split][0]} has {len(images)} images but {files[split][1]} has {len(labels)} labels")
    (xtr, ytr), (xte, yte) = arrays["train"], arrays["test"]
    return Dataset("fashion-mnist", xtr, ytr.astype(np.int64), xte, yte.astype(np.int64), FASHION_MNIST_CLASSES,
                   str(directory))


_EXPECTED_FILES = ("train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz] and "
                   "t10k-labels-idx1-ubyte[.gz]")
_INSTALL_HINT = "install the Debian package with `sudo apt-get install dataset-fashion-mnist`"


def _explicit_data_dir(data_dir) -> tuple[Path, str] | None:
    """The folder the user named (--data-dir, else $DEEPTHEORY_DATA_DIR) and how it was named; None if neither."""
    if data_dir:
        return Path(data_dir), "--data-dir"
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]), f"${DATA_DIR_ENV}"
    return None


def load_fashion_mnist(data_dir: str | os.PathLike | None = None) -> Dataset:
    """Fashion-MNIST (or any directory of MNIST-format IDX files) with no network.

    Reads `data_dir` if given, else $DEEPTHEORY_DATA_DIR if set, else /usr/share/datasets/fashion-mnist (Debian
    package `dataset-fashion-mnist`). Files: {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]. A folder the user
    named that does not exist or holds no IDX files is an error (never silently replaced by another source).
    """
    explicit = _explicit_data_dir(data_dir)
    if explicit is not None:
        directory, how = explicit
        if not directory.is_dir():
            raise DataError(f"{how} {directory} does not exist; point it at a folder holding {_EXPECTED_FILES}, or "
                            f"leave it unset to read the Debian package ({', '.join(FASHION_MNIST_DIRS)}; "
                            f"{_INSTALL_HINT})")
        files = _idx_files(directory)
        if files is None:
            raise DataError(f"{how} {directory} holds no complete set of IDX files; expected {_EXPECTED_FILES}")
        return _read_split_files(directory, files)
    for directory in map(Path, FASHION_MNIST_DIRS):
        files = _idx_files(directory)
        if files is not None:
            return _read_split_files(directory, files)
    raise DataError(
        "Fashion-MNIST IDX files not found; looked in: " + ", ".join(FASHION_MNIST_DIRS) + f". To use it, "
        f"{_INSTALL_HINT}, or point --data-dir / ${DATA_DIR_ENV} at a folder holding {_EXPECTED_FILES}."
    )


def load_mnist1d(num_samples: int = 5000, seed: int = 42) -> Dataset:
    """MNIST-1D (Greydanus 2020) generated locally by the `mnist1d` package's procedural generator.

    Never uses its download path. 80 % of the samples form the training split, 20 % the test split, about one
    tenth of each per class. The generator seeds NumPy's global RNG; we restore its state.
    """
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as e:
        raise DataError("MNIST-1D (the fallback when Fashion-MNIST is not installed) needs the `mnist1d` package, a "
                        "dependency of deeptheory: reinstall it (pip install -e .) or pip install mnist1d") from e
    args = get_dataset_args()
    args.num_samples, args.seed = num_samples, seed
    state = np.random.get_state()  # noqa: NPY002  (mnist1d seeds the legacy global RNG)
    try:
        d = make_dataset(args)
    finally:
        np.random.set_state(state)  # noqa: NPY002
    return Dataset("mnist1d", d["x"], d["y"].astype(np.int64), d["x_test"], d["y_test"].astype(np.int64),
                   tuple(f"digit {i}" for i in range(10)), f"mnist1d generator (seed {seed}, {num_samples} samples)")


_MNIST1D_TRAIN, _MNIST1D_TEST, _MNIST1D_SLACK = 0.08, 0.02, 1.3


def _mnist1d_limits(max_samples: int = MNIST1D_MAX_SAMPLES) -> tuple[int, int]:
    """The largest (n_train, n_test) of a balanced two-class task that `max_samples` generated samples hold."""
    per_train = int(max_samples * _MNIST1D_TRAIN / _MNIST1D_SLACK)
    per_test = int(max_samples * _MNIST1D_TEST / _MNIST1D_SLACK)
    return 2 * per_train, 2 * per_test


def mnist1d_samples_for(per_class_train: int, per_class_test: int) -> int:
    """Samples to generate so that every class has at least these many training and test points (the generator
    puts 8 % of the samples per class into the training split and 2 % into the test split, up to ±15 %).

    At most MNIST1D_MAX_SAMPLES: a task that needs more raises DataError naming the limit and what to lower
    (generating millions of samples would run for an hour)."""
    needed = max(per_class_train / _MNIST1D_TRAIN, per_class_test / _MNIST1D_TEST) * _MNIST1D_SLACK
    samples = max(5000, 1000 * math.ceil(needed / 1000))
    if samples > MNIST1D_MAX_SAMPLES:
        max_train, max_test = _mnist1d_limits()
        over = " and ".join(f for f, per, most in (("--n-train", per_class_train, max_train),
                                                   ("--n-test", per_class_test, max_test)) if 2 * per - 1 > most)
        raise DataError(
            f"{over} too large for MNIST-1D: {per_class_train} training and {per_class_test} test points per class "
            f"would need {samples:,} generated samples, and at most {MNIST1D_MAX_SAMPLES:,} are generated (about 1–2 "
            f"minutes), which hold --n-train <= {max_train} and --n-test <= {max_test}. Lower {over}, or use "
            f"Fashion-MNIST (up to 12000 training and 2000 test points of two classes; {_INSTALL_HINT}, or give "
            "--data-dir)")
    return samples


def load_dataset(name: str = "auto", data_dir: str | os.PathLike | None = None, *,
                 per_class: tuple[int, int] = (0, 0)) -> Dataset:
    """'fashion-mnist', 'mnist1d', or 'auto': Fashion-MNIST when a folder was named (--data-dir or
    $DEEPTHEORY_DATA_DIR; errors there are errors) or the Debian package is installed, else MNIST-1D, with the
    reason in `Dataset.note`. `per_class` = (training, test) points needed per class: MNIST-1D is generated
    large enough for them."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; use one of {', '.join(DATASETS)}")
    if name == "fashion-mnist" or (name == "auto" and _explicit_data_dir(data_dir) is not None):
        return dataclasses.replace(load_fashion_mnist(data_dir), requested=name)
    if name == "auto":
        try:
            return dataclasses.replace(load_fashion_mnist(), requested=name)
        except DataError:
            note = (f"Fashion-MNIST is not installed (looked in {', '.join(FASHION_MNIST_DIRS)}; {_INSTALL_HINT}, "
                    "or give --data-dir), so MNIST-1D, generated locally, was used instead")
            return dataclasses.replace(load_mnist1d(mnist1d_samples_for(*per_class)), requested=name, note=note)
    return dataclasses.replace(load_mnist1d(mnist1d_samples_for(*per_class)), requested=name)


# ---------------------------------------------------------------------------------------------
# Binary tasks


def _most_balanced(pools) -> int:
    """The largest n whose balanced split (n − n//2 of the first class, n//2 of the second) the pools hold."""
    return min(2 * len(pools[0]), 2 * len(pools[1]) + 1)


def _check_sizes(dataset: Dataset, classes, n_train: int, n_test: int) -> None:
    """The class and size errors of `binary_task`, worded for the command line (--classes, --n-train, --n-test)."""
    for split, n, y in (("train", n_train, dataset.y_train), ("test", n_test, dataset.y_test)):
        pools = [np.flatnonzero(y == c) for c in classes]
        for c, pool in zip(classes, pools, strict=True):
            if len(pool) == 0:
                names = ", ".join(f"{i} = {name}" for i, name in enumerate(dataset.class_names))
                raise DataError(f"--classes: class {c} does not occur in the {split} split of {dataset.name}; its "
                                f"classes are {names}")
        most = _most_balanced(pools)
        if n > most:
            raise DataError(f"--n-{split} {n}: the {split} split of {dataset.name} holds {len(pools[0])} and "
                            f"{len(pools[1])} points of classes {classes[0]} and {classes[1]}, enough for a balanced "
                            f"--n-{split} of at most {most}; lower it")


def _downsample(x_NxHxW: np.ndarray, factor: int) -> np.ndarray:
    n, h, w = x_NxHxW.shape
    h2, w2 = h // factor, w // factor
    return x_NxHxW[:, : h2 * factor, : w2 * factor].reshape(n, h2, factor, w2, factor).mean(axis=(2, 4))


def binary_task(
    dataset: Dataset,
    *,
    classes: tuple[int, int] = (0, 1),
    n_train: int,
    n_test: int,
    seed: int = 0,
    labels: str = "01",
    input_dim: int | None = None,
    reduce: str = "pca",
    standardize: bool = True,
    balanced: bool = True,
) -> BinaryTask:
    """A two-class task: classes[0] → 0 (or −1, −½), classes[1] → 1 (or ½).

    Args:
      classes: the two class indices (Fashion-MNIST 0 = T-shirt/top, 1 = Trouser).
      n_train, n_test: P and P_test, drawn without replacement from the train and test splits.
      seed: the subset (and nothing else) depends on it.
      labels: "01" (the sources' raw labels), "pm1" (±1) or "centred" (y − ½ = ±½: the 0/1 task without its
        offset, same scale).
      input_dim: reduce the flattened inputs to this dimension (None: keep all).
      reduce: "pca" (principal components of the training subset) or "downsample" (average
        pooling of images by an integer factor, input_dim = (H/f)·(W/f)).
      standardize: per-feature z-score, statistics from the whole training split of the two classes
        (after the same reduction); constant features → 0.
      balanced: equal numbers from both classes (the first class gets the odd one).
    """
    if len(classes) != 2 or classes[0] == classes[1]:
        raise ValueError(f"classes must be two different class indices; got {classes!r}")
    if labels not in LABELS:
        raise ValueError(f"labels must be one of {', '.join(LABELS)}; got {labels!r}")
    if reduce not in ("pca", "downsample"):
        raise ValueError(f"reduce must be 'pca' or 'downsample'; got {reduce!r}")
    for name, n in (("n_train", n_train), ("n_test", n_test)):
        if not isinstance(n, int | np.integer) or n < 1:
            raise ValueError(f"{name} must be a positive integer; got {n!r}")
    rng = np.random.default_rng(seed)

    def subset(x, y, n, split):
        pools = [np.flatnonzero(y == c) for c in classes]
        for c, pool in zip(classes, pools, strict=True):
            if len(pool) == 0:
                names = ", ".join(f"{i} = {n}" for i, n in enumerate(dataset.class_names))
                raise ValueError(f"class {c} does not occur in the {split} split of {dataset.name}; its classes are {names}")
        if balanced:
            counts = [n - n // 2, n // 2]
            for c, pool, k in zip(classes, pools, counts, strict=True):
                if k > len(pool):
                    raise ValueError(
                        f"asked for {k} points of class {c} from the {split} split of {dataset.name}, "
                        f"which has {len(pool)}; lower n_{split} to at most {_most_balanced(pools)}"
                    )
            idx = np.concatenate([rng.choice(p, k, replace=False) for p, k in zip(pools, counts, strict=True)])
        else:
            pool = np.concatenate(pools)
            if n > len(pool):
                raise ValueError(
                    f"asked for {n} {split} points of classes {classes} but {dataset.name} has {len(pool)}"
                )
            idx = rng.choice(pool, n, replace=False)
        idx = rng.permutation(idx)
        return x[idx], (y[idx] == classes[1]).astype(np.float64)

    x_tr, y_tr = subset(dataset.x_train, dataset.y_train, n_train, "train")
    x_te, y_te = subset(dataset.x_test, dataset.y_test, n_test, "test")
    x_pool = dataset.x_train[np.isin(dataset.y_train, classes)]  # for standardisation statistics
    x_tr, x_te, x_pool = x_tr.astype(np.float64), x_te.astype(np.float64), x_pool.astype(np.float64)
    if input_dim is not None and reduce == "downsample":
        if x_tr.ndim != 3:
            raise ValueError(f"reduce='downsample' needs images (N, H, W); {dataset.name} has shape {x_tr.shape[1:]}")
        factor = int(round(np.sqrt(np.prod(x_tr.shape[1:]) / input_dim)))
        if factor < 1 or (x_tr.shape[1] // factor) * (x_tr.shape[2] // factor) != input_dim:
            raise ValueError(f"input_dim {input_dim} is not (H/f)·(W/f) for an integer f with images {x_tr.shape[1:]}")
        x_tr, x_te, x_pool = _downsample(x_tr, factor), _downsample(x_te, factor), _downsample(x_pool, factor)
    x_tr, x_te, x_pool = (a.reshape(len(a), -1) for a in (x_tr, x_te, x_pool))
    if input_dim is not None and reduce == "pca":
        if not 1 <= input_dim <= min(x_tr.shape):
            raise ValueError(f"PCA input_dim must be in [1, min(n_train, d) = {min(x_tr.shape)}]; got {input_dim}")
        mean = x_tr.mean(0)
        _, _, vt = np.linalg.svd(x_tr - mean, full_matrices=False)
        x_tr, x_te, x_pool = ((a - mean) @ vt[:input_dim].T for a in (x_tr, x_te, x_pool))
    if standardize:
        mu, sd = x_pool.mean(0), x_pool.std(0)
        sd = np.where(sd > 1e-12 * max(1.0, float(np.abs(x_pool).max())), sd, np.inf)
        x_tr, x_te = (x_tr - mu) / sd, (x_te - mu) / sd
    if labels == "pm1":
        y_tr, y_te = 2 * y_tr - 1, 2 * y_te - 1
    elif labels == "centred":
        y_tr, y_te = y_tr - 0.5, y_te - 0.5
    fingerprint = hashlib.sha256()
    for a in (x_tr, y_tr, x_te, y_te):
        fingerprint.update(np.ascontiguousarray(a).tobytes())
    info = dict(
        dataset=dataset.name, requested=dataset.requested or dataset.name, note=dataset.note, source=dataset.source,
        classes=list(classes), class_names=[dataset.class_names[c] for c in classes], n_train=n_train, n_test=n_test,
        seed=seed, labels=labels, raw_shape=list(dataset.x_train.shape[1:]), input_dim=x_tr.shape[1],
        reduce=reduce if input_dim else "none", standardize=standardize, balanced=balanced,
        fingerprint=fingerprint.hexdigest()[:16],  # of the arrays handed to the experiment
    )
    return BinaryTask(x_tr, y_tr, x_te, y_te, info)


def load_task(config, *, input_dim: int | None = None, reduce: str = "pca", labels: str = "01") -> BinaryTask:
    """The binary task of an experiment config (fields dataset, data_dir, classes, n_train, n_test, seed).

    `input_dim`/`reduce` apply to data whose raw inputs are larger; data with at most `input_dim` features (MNIST-1D,
    40) are kept whole, and "downsample" falls back to keeping the inputs when the data are not images. What was
    actually loaded and done is in `task.info` (the experiment records it next to its config). `labels`: "01",
    "pm1" (targets ±1) or "centred" (±½), as in `binary_task`.
    """
    per_class = (config.n_train - config.n_train // 2, config.n_test - config.n_test // 2)
    dataset = load_dataset(config.dataset, config.data_dir or None, per_class=per_class)
    _check_sizes(dataset, tuple(config.classes), config.n_train, config.n_test)
    raw_dim = int(np.prod(dataset.x_train.shape[1:]))
    if input_dim is not None and (input_dim >= raw_dim or (reduce == "downsample" and dataset.x_train.ndim != 3)):
        input_dim = None
    return binary_task(dataset, classes=tuple(config.classes), n_train=config.n_train, n_test=config.n_test,
                       seed=config.seed, input_dim=input_dim, reduce=reduce, labels=labels)
