"""Patient-level splits: images of one patient never on both sides.

Images of the same patient (follow-up studies, several views) are strongly correlated;
a split by image leaks patients from training into testing and inflates every metric.
"""

import numpy as np
from sklearn.model_selection import GroupShuffleSplit

from ..exceptions import SkalValueError

__all__ = ["patient_split"]


def patient_split(patient_ids, test_size=0.25, random_state=None):
    """Split sample indices so that every patient is entirely in train or in test.

    Parameters
    ----------
    patient_ids : array-like of shape (n_samples,)
        One identifier per image.
    test_size : float in (0, 1) or int
        Share (or number) of *patients* in the test side.
    random_state : int or None

    Returns
    -------
    train_indices, test_indices : ndarray of int
    """
    patient_ids = np.asarray(patient_ids)
    if patient_ids.ndim != 1 or len(patient_ids) == 0:
        raise SkalValueError("patient_ids must be a non-empty 1-d array, one id per image.")
    if len(np.unique(patient_ids)) < 2:
        raise SkalValueError("A patient-level split needs at least two patients.")
    splitter = GroupShuffleSplit(n_splits=1, test_size=test_size, random_state=random_state)
    train, test = next(splitter.split(np.zeros(len(patient_ids)), groups=patient_ids))
    return np.sort(train), np.sort(test)
