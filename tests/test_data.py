"""train.data: IDX round trips, clear errors, binary tasks on synthetic and real data."""

import numpy as np
import pytest

from deeptheory.train.data import (
    MNIST1D_MAX_SAMPLES,
    DataError,
    Dataset,
    binary_task,
    load_dataset,
    load_fashion_mnist,
    load_mnist1d,
    mnist1d_samples_for,
    read_idx,
    write_idx,
)


def _fake_mnist_dir(tmp_path, n_train=60, n_test=30, gz=True):
    rng = np.random.default_rng(0)
    ext = ".gz" if gz else ""
    for split, n in (("train", n_train), ("t10k", n_test)):
        write_idx(tmp_path / f"{split}-images-idx3-ubyte{ext}", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte{ext}", (np.arange(n) % 10).astype(np.uint8))
    return tmp_path


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
def test_idx_round_trip(tmp_path, dtype, name):
    x = (np.arange(24).reshape(2, 3, 4) * 3).astype(dtype)
    write_idx(tmp_path / name, x)
    y = read_idx(tmp_path / name)
    assert y.dtype == np.dtype(dtype) and np.array_equal(x, y)


def test_corrupt_idx_files_are_named(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04xxxx")
    with pytest.raises(DataError, match="bad.* not an IDX file"):
        read_idx(tmp_path / "bad")
    write_idx(tmp_path / "short", np.zeros((4, 5), np.uint8))
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-3])
    with pytest.raises(DataError, match="short: corrupt IDX file"):
        read_idx(tmp_path / "short")


def test_missing_files_name_paths_and_package(tmp_path, monkeypatch):
    monkeypatch.setattr("deeptheory.train.data.FASHION_MNIST_DIRS", (str(tmp_path / "nowhere"),))
    monkeypatch.delenv("DEEPTHEORY_DATA_DIR", raising=False)
    with pytest.raises(DataError, match="(?s)nowhere.*apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path / "empty")


def test_data_dir_and_environment_variable(tmp_path, monkeypatch):
    d = _fake_mnist_dir(tmp_path, gz=False)
    ds = load_fashion_mnist(d)
    assert ds.x_train.shape == (60, 28, 28) and ds.y_test.shape == (30,)
    monkeypatch.setenv("DEEPTHEORY_DATA_DIR", str(d))
    monkeypatch.setattr("deeptheory.train.data.FASHION_MNIST_DIRS", ())
    assert load_dataset("fashion-mnist").source == str(d)


def test_binary_task_properties(tmp_path):
    ds = load_fashion_mnist(_fake_mnist_dir(tmp_path))
    task = binary_task(ds, classes=(3, 7), n_train=9, n_test=5, seed=1, labels="pm1", input_dim=4)
    assert task.x_train.shape == (9, 4) and task.x_test.shape == (5, 4)
    assert set(np.unique(task.y_train)) == {-1.0, 1.0} and np.sum(task.y_train == -1) == 5
    # Standardised with the statistics of every training image of the two classes.
    full = binary_task(ds, classes=(3, 7), n_train=12, n_test=5, seed=1, labels="pm1", input_dim=4, balanced=False)
    assert full.x_train.shape == (12, 4)  # all 12 training images of classes 3 and 7
    np.testing.assert_allclose(full.x_train.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(full.x_train.std(0), 1, rtol=1e-12)
    again = binary_task(ds, classes=(3, 7), n_train=9, n_test=5, seed=1, labels="pm1", input_dim=4)
    assert np.array_equal(task.x_train, again.x_train)
    other = binary_task(ds, classes=(3, 7), n_train=9, n_test=5, seed=2, labels="pm1", input_dim=4)
    assert not np.array_equal(task.x_train, other.x_train)
    down = binary_task(ds, classes=(0, 1), n_train=6, n_test=4, input_dim=49, reduce="downsample")
    assert down.x_train.shape == (6, 49) and set(np.unique(down.y_train)) == {0.0, 1.0}
    centred = binary_task(ds, classes=(3, 7), n_train=9, n_test=5, seed=1, labels="centred", input_dim=4)
    np.testing.assert_array_equal(centred.y_train, task.y_train / 2)  # ±½: the 0/1 targets minus ½
    np.testing.assert_array_equal(centred.x_train, task.x_train)
    with pytest.raises(ValueError, match="labels must be one of 01, pm1, centred"):
        binary_task(ds, classes=(3, 7), n_train=9, n_test=5, labels="pm½")


def test_binary_task_errors(tmp_path):
    ds = load_fashion_mnist(_fake_mnist_dir(tmp_path))
    with pytest.raises(ValueError, match="which has 6; lower n_train to at most 12"):
        binary_task(ds, classes=(0, 1), n_train=20, n_test=2)
    with pytest.raises(ValueError, match="two different class"):
        binary_task(ds, classes=(1, 1), n_train=2, n_test=2)
    with pytest.raises(ValueError, match="labels must be"):
        binary_task(ds, n_train=2, n_test=2, labels="yes")
    with pytest.raises(ValueError, match="integer f"):
        binary_task(ds, n_train=2, n_test=2, input_dim=50, reduce="downsample")


def test_mnist1d_is_generated_locally_and_leaves_global_rng_alone():  # noqa: NPY002 (legacy RNG on purpose)
    np.random.seed(123)  # noqa: NPY002
    expected = np.random.rand()  # noqa: NPY002
    np.random.seed(123)  # noqa: NPY002
    ds = load_mnist1d(num_samples=500)
    assert np.random.rand() == expected  # noqa: NPY002
    assert ds.x_train.shape == (400, 40) and ds.x_test.shape == (100, 40)
    task = binary_task(ds, classes=(0, 1), n_train=20, n_test=10)
    assert task.info["dataset"] == "mnist1d"


def test_mnist1d_size_is_capped_with_one_clear_error():
    """--n-test 100000 on the fallback used to generate millions of samples for an hour; now one error."""
    assert mnist1d_samples_for(250, 250) == 17000 and mnist1d_samples_for(6153, 1538) == MNIST1D_MAX_SAMPLES
    with pytest.raises(DataError) as error:
        mnist1d_samples_for(50, 50_000)
    message = str(error.value)
    assert message.startswith("--n-test too large for MNIST-1D") and "--n-train" not in message.split(":")[0]
    assert f"at most {MNIST1D_MAX_SAMPLES:,} are generated" in message and "--n-test <= 3076" in message
    assert "dataset-fashion-mnist" in message


def test_real_fashion_mnist(fashion_dir):
    ds = load_fashion_mnist(fashion_dir)
    assert ds.x_train.shape == (60000, 28, 28) and ds.x_test.shape == (10000, 28, 28)
    assert np.bincount(ds.y_train).tolist() == [6000] * 10
    task = binary_task(ds, classes=(0, 1), n_train=100, n_test=50, input_dim=196, reduce="downsample")
    assert task.info["class_names"] == ["T-shirt/top", "Trouser"]
    assert isinstance(ds, Dataset) and task.x_train.shape == (100, 196)
