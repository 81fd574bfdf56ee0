"""Data that installed packages ship: nothing here downloads anything.

* ``digits``: scikit-learn's bundled 8x8 digit images.
* ``fashion-mnist``: Zalando's Fashion-MNIST (60k train / 10k test, 28x28 grey, 10 classes) as
  Debian's ``dataset-fashion-mnist`` package installs it: IDX files, gzipped, under
  ``/usr/share/datasets/fashion-mnist``. The folder can be moved: the task's ``data_dir`` argument,
  else ``$TRADEOFF_FASHION_MNIST_DIR``, else the Debian path.

IDX (LeCun's format): a big-endian header ``0x00 0x00 <dtype code> <ndim>``, then ``ndim``
big-endian uint32 sizes, then the values in C order.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")  # where Debian's package installs it
FASHION_MNIST_ENV = "TRADEOFF_FASHION_MNIST_DIR"
FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class DataError(ValueError):
    """Data files are missing or not what they should be; the message says how to get them."""


def read_idx(data: bytes, source: str = "IDX data") -> np.ndarray:
    """Parse IDX bytes (already decompressed) into an array of the shape and type the header gives.

    Example:
        >>> read_idx(bytes([0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6])).tolist()
        [[1, 2, 3], [4, 5, 6]]
    """
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"{source}: not an IDX file (its first two bytes must be zero).")
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        raise DataError(f"{source}: unknown IDX type code 0x{code:02x}; expected one of {sorted(_IDX_DTYPES)}.")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{source}: truncated IDX header ({len(data)} bytes for {ndim} dimensions).")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise DataError(
            f"{source}: IDX header says {shape} of {dtype.name} ({expected} bytes) but the file holds "
            f"{len(data) - header}; the file is truncated or corrupt: reinstall it."
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def fashion_mnist_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder holding Fashion-MNIST: ``data_dir``, else ``$TRADEOFF_FASHION_MNIST_DIR``, else Debian's."""
    if data_dir is not None:
        return Path(data_dir)
    env = os.environ.get(FASHION_MNIST_ENV)
    return Path(env) if env else FASHION_MNIST_DIR


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def fashion_mnist_arrays(
    data_dir: str | os.PathLike[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fashion-MNIST as uint8 arrays ``(train_images, train_labels, test_images, test_labels)``.

    Images are ``(n, 28, 28)``, labels ``(n,)`` in ``0..9``. Files may be gzipped or not.

    Raises:
        DataError: a file is missing (the message says how to install or point to it) or malformed.
    """
    folder = fashion_mnist_dir(data_dir)
    paths = {key: _find(folder, stem) for key, stem in FASHION_MNIST_FILES.items()}
    missing = [FASHION_MNIST_FILES[k] for k, p in paths.items() if p is None]
    if missing:
        raise DataError(
            f"fashion-mnist: {', '.join(m + '[.gz]' for m in missing)} not found in {folder}. Install Debian's "
            f"package (sudo apt-get install dataset-fashion-mnist, which puts the files in {FASHION_MNIST_DIR}), "
            f"or point to a folder holding the four IDX files with the task's data_dir or ${FASHION_MNIST_ENV}."
        )
    out = []
    for key, path in paths.items():
        raw = path.read_bytes()  # type: ignore[union-attr]
        if path.suffix == ".gz":  # type: ignore[union-attr]
            try:
                raw = gzip.decompress(raw)
            except (OSError, EOFError) as exc:
                raise DataError(f"{path}: not a readable gzip file ({exc}); reinstall it.") from None
        out.append(read_idx(raw, str(path)))
    x_tr, y_tr, x_te, y_te = out
    for images, labels, split in ((x_tr, y_tr, "train"), (x_te, y_te, "test")):
        if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != (len(images),):
            raise DataError(
                f"fashion-mnist {split}: expected (n, 28, 28) images and n labels, got {images.shape} and "
                f"{labels.shape}; are these Fashion-MNIST files?"
            )
    return x_tr, y_tr, x_te, y_te
