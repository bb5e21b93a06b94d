"""The demo dataset: scikit-learn's bundled handwritten digits (no download).

``load_digits`` ships inside scikit-learn (the ``demo`` extra): 1797 grayscale 8x8 images of the
digits 0-9. wattwise returns them as float32 features scaled to [0, 1] and int64 labels, split
deterministically into train and validation parts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wattwise._record import record
from wattwise.errors import ConfigurationError

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = ["Digits", "load_digits"]


@record
class Digits:
    """The digits dataset as numpy arrays.

    Attributes:
        x_train: float32 array of shape ``(n_train, 64)``, pixel intensities in [0, 1].
        y_train: int64 array of shape ``(n_train,)``, labels 0-9.
        x_val: float32 array of shape ``(n_val, 64)``.
        y_val: int64 array of shape ``(n_val,)``.
        n_features: 64 (8x8 pixels).
        n_classes: 10.
        bytes_per_sample: bytes of one float32 sample, features only (64 x 4 = 256).
    """

    x_train: NDArray[np.float32]
    y_train: NDArray[np.int64]
    x_val: NDArray[np.float32]
    y_val: NDArray[np.int64]
    n_features: int = 64
    n_classes: int = 10

    @property
    def bytes_per_sample(self) -> int:
        """Bytes of one sample's float32 features."""
        return int(self.n_features * 4)

    @property
    def n_samples(self) -> int:
        """Train plus validation samples."""
        return int(len(self.y_train) + len(self.y_val))


def load_digits(val_fraction: float = 0.2, *, seed: int = 0) -> Digits:
    """Load scikit-learn's bundled digits (1797 8x8 images) as numpy arrays, split train/val.

    Args:
        val_fraction: share of samples held out for validation, in (0, 1). Default 0.2 (the
            BUTTER 80/20 split).
        seed: seed of the shuffling permutation (deterministic split).

    Returns:
        A :class:`Digits` with float32 features in [0, 1] and int64 labels.

    Raises:
        ConfigurationError: ``val_fraction`` is not strictly between 0 and 1, or scikit-learn
            is not installed.

    Example:
        >>> from wattwise.datasets import load_digits
        >>> d = load_digits()
        >>> d.x_train.shape, d.x_val.shape
        ((1438, 64), (359, 64))
    """
    if not isinstance(val_fraction, (int, float)) or not 0.0 < float(val_fraction) < 1.0:
        raise ConfigurationError(
            f"load_digits(val_fraction={val_fraction!r}): expected a number strictly between "
            "0 and 1, e.g. 0.2"
        )
    try:
        from sklearn.datasets import load_digits as _sk_load_digits
    except ImportError as e:
        raise ConfigurationError(
            "load_digits needs scikit-learn (it ships the digits images): "
            'pip install "wattwise[demo]" or pip install scikit-learn'
        ) from e
    import numpy as np

    bunch = _sk_load_digits()
    x = np.asarray(bunch.data, dtype=np.float32) / np.float32(16.0)
    y = np.asarray(bunch.target, dtype=np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    n_val = int(round(len(y) * float(val_fraction)))
    val_idx, train_idx = order[:n_val], order[n_val:]
    return Digits(
        x_train=np.ascontiguousarray(x[train_idx]),
        y_train=np.ascontiguousarray(y[train_idx]),
        x_val=np.ascontiguousarray(x[val_idx]),
        y_val=np.ascontiguousarray(y[val_idx]),
    )
