"""IDX parsing and the fashion-mnist files: what is read, and what is said when they are missing."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from tradeoff.studies import TaskError, load_task
from tradeoff.studies.datasets import (
    FASHION_MNIST_DIR,
    FASHION_MNIST_ENV,
    FASHION_MNIST_FILES,
    DataError,
    fashion_mnist_arrays,
    read_idx,
)


def _idx(array: np.ndarray, code: int = 0x08) -> bytes:
    return bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def _write_fake_fashion(folder: Path, n_train: int = 6, n_test: int = 4, gz: bool = True) -> None:
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for key, stem in FASHION_MNIST_FILES.items():
        data = _idx(arrays[key])
        (folder / (stem + (".gz" if gz else ""))).write_bytes(gzip.compress(data) if gz else data)


def test_read_idx_gives_the_header_shape_and_values() -> None:
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(read_idx(_idx(a)), a)
    big = np.array([1, -2, 300], dtype=">i4")
    assert read_idx(_idx(big, 0x0C)).tolist() == [1, -2, 300]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x01\x00\x08\x01", "not an IDX file"),
        (bytes([0, 0, 0x07, 1, 0, 0, 0, 1, 5]), "unknown IDX type code 0x07"),
        (bytes([0, 0, 0x08, 2, 0, 0, 0, 2]), "truncated IDX header"),
        (bytes([0, 0, 0x08, 1, 0, 0, 0, 3, 1, 2]), r"header says \(3,\) of uint8 \(3 bytes\) but the file holds 2"),
    ],
)
def test_malformed_idx_is_named(data: bytes, match: str) -> None:
    with pytest.raises(DataError, match=match):
        read_idx(data)


@pytest.mark.parametrize("gz", [True, False])
def test_arrays_are_read_from_data_dir_gzipped_or_not(tmp_path: Path, gz: bool) -> None:
    _write_fake_fashion(tmp_path, gz=gz)
    x_tr, y_tr, x_te, y_te = fashion_mnist_arrays(tmp_path)
    assert x_tr.shape == (6, 28, 28) and y_tr.shape == (6,) and x_te.shape == (4, 28, 28) and y_te.shape == (4,)
    assert x_tr.dtype == np.uint8


def test_the_environment_variable_points_to_the_files(tmp_path: Path, monkeypatch) -> None:
    _write_fake_fashion(tmp_path)
    monkeypatch.setenv(FASHION_MNIST_ENV, str(tmp_path))
    assert fashion_mnist_arrays()[0].shape == (6, 28, 28)


def test_missing_files_say_how_to_get_them(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        fashion_mnist_arrays(tmp_path)
    message = str(info.value)
    assert "train-images-idx3-ubyte[.gz]" in message and str(tmp_path) in message
    assert "apt-get install dataset-fashion-mnist" in message and FASHION_MNIST_ENV in message


def test_the_task_reports_missing_data_as_a_task_error(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match="apt-get install dataset-fashion-mnist"):
        load_task("fashion-mnist", {"data_dir": str(tmp_path)})


def test_bad_sizes_are_named(tmp_path: Path) -> None:
    _write_fake_fashion(tmp_path)
    with pytest.raises(TaskError, match=r"train_size must be an integer in 1..6, got 60"):
        load_task("fashion-mnist", {"data_dir": str(tmp_path), "train_size": 60})


_REAL = (FASHION_MNIST_DIR / (FASHION_MNIST_FILES["train_images"] + ".gz")).is_file()
_REQUIRED = os.environ.get("TRADEOFF_REQUIRE_DATA") == "1"  # .ci/run installs the package and sets it


@pytest.mark.skipif(not _REAL and not _REQUIRED, reason="Debian's dataset-fashion-mnist is not installed here")
def test_the_debian_files_hold_fashion_mnist() -> None:
    x_tr, y_tr, x_te, y_te = fashion_mnist_arrays()
    assert x_tr.shape == (60_000, 28, 28) and x_te.shape == (10_000, 28, 28)
    assert sorted(np.unique(y_tr).tolist()) == list(range(10))
    assert np.bincount(y_te).tolist() == [1000] * 10  # the test set is balanced
    assert abs(x_tr.mean() / 255 - 0.2860) < 0.001  # the mean the task normalises with


@pytest.mark.skipif(not _REAL and not _REQUIRED, reason="Debian's dataset-fashion-mnist is not installed here")
def test_a_reduced_fashion_mnist_task_trains_a_teacher_and_caches_it() -> None:
    kwargs = {"train_size": 5000, "val_size": 1000, "epochs": 3, "width": 8}
    task = load_task("fashion-mnist", kwargs)
    assert task.info["teacher_trained_s"] is not None
    assert task.info["teacher_val_accuracy"] > 0.7  # 3 epochs on 5k images; full size reaches >= 0.9
    assert task.example_inputs[0].shape == (1, 1, 28, 28)
    again = load_task("fashion-mnist", kwargs)
    assert again.info["teacher_trained_s"] is None  # loaded from the cache
    assert again.info["teacher_val_accuracy"] == task.info["teacher_val_accuracy"]
