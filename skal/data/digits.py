"""scikit-learn's bundled 8x8 hand-written digits as an image data set (no download).

It is the embedded default of the ``skal simulate`` demo: small enough to run a full
campaign in about a minute on a laptop CPU.
"""

import numpy as np
from sklearn.datasets import load_digits

__all__ = ["load_digits_images"]


def load_digits_images():
    """Return the 1,797 digits as float32 images ``(n, 1, 8, 8)`` in [0, 1] and labels.

    Returns
    -------
    X : ndarray of shape (1797, 1, 8, 8), float32
    y : ndarray of shape (1797,), int64
    """
    digits = load_digits()
    X = (digits.images / 16.0).astype(np.float32)[:, None]
    return X, digits.target.astype(np.int64)
