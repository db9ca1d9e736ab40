"""One entry point from a data source to a pool and a test set for simulated campaigns."""

import numbers
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from ..exceptions import DataFileError, SkalValueError

__all__ = ["load_campaign_data", "CampaignData"]


class CampaignData:
    """A labelled pool and a held-out test set."""

    def __init__(self, X_pool, y_pool, X_test, y_test, description):
        self.X_pool, self.y_pool = X_pool, y_pool
        self.X_test, self.y_test = X_test, y_test
        self.description = description

    def __iter__(self):
        return iter((self.X_pool, self.y_pool, self.X_test, self.y_test))


def _npz_keys(path):
    try:
        with np.load(path, allow_pickle=False) as archive:
            return set(getattr(archive, "files", ()))
    except Exception:  # unreadable files are reported by the loader itself
        return set()


def _split(y, test_fraction, random_state, groups=None):
    from .split import patient_split

    if groups is not None:
        return patient_split(groups, test_fraction, random_state=random_state)
    stratify = y if y.ndim == 1 else None
    try:
        return train_test_split(np.arange(len(y)), test_size=test_fraction,
                                stratify=stratify, random_state=random_state)
    except ValueError as exc:
        raise SkalValueError(
            f"Could not split {len(y)} samples into a pool and a test set "
            f"(test_fraction={test_fraction}, stratified by label): {exc} Label more "
            "samples of the rare classes, or change test_fraction.") from exc


def load_campaign_data(source, *, labels=None, size=64, test_fraction=0.25, random_state=0):
    """Pool and test set from ``source``.

    Parameters
    ----------
    source : str or Path
        ``"digits"`` (scikit-learn's bundled images; stratified split); a MedMNIST
        ``.npz`` (its train and test splits); an ``.npz`` with ``images`` / ``labels``
        and optionally ``patient_ids`` (split by patient when present, otherwise
        stratified); or a folder of DICOM files (with ``labels``, a CSV).
    labels : str or Path, optional
        Labels CSV of a DICOM folder (columns ``path``, ``label``).
    size : int
        DICOM images are resized to ``size x size``.
    test_fraction : float
        Held-out share (of patients, when known) for sources without a test split.
    random_state : int
        Seed of the split.

    Returns
    -------
    CampaignData
    """
    if (isinstance(test_fraction, bool) or not isinstance(test_fraction, numbers.Real)
            or not 0 < test_fraction < 1):
        raise SkalValueError(
            f"test_fraction must be a number strictly between 0 and 1; got {test_fraction!r}.")
    if str(source) == "digits":
        from .digits import load_digits_images

        X, y = load_digits_images()
        train, test = _split(y, test_fraction, random_state)
        return CampaignData(X[train], y[train], X[test], y[test], "digits (scikit-learn, 8x8)")
    path = Path(source)
    if path.is_dir():
        from .dicom import load_dicom_folder

        if labels is None:
            raise DataFileError(f"{path} is a folder: pass the labels CSV of its DICOM files.")
        X, y, _ = load_dicom_folder(path, labels, size=size)
        train, test = _split(y, test_fraction, random_state)
        return CampaignData(X[train], y[train], X[test], y[test], f"DICOM folder {path}")
    if _npz_keys(path) >= {"images", "labels"}:
        from .npz import load_image_npz

        data = load_image_npz(path)
        train, test = _split(data.y, test_fraction, random_state, data.patient_ids)
        how = "patient-level split" if data.patient_ids is not None else "stratified split"
        return CampaignData(data.X[train], data.y[train], data.X[test], data.y[test],
                            f"{path.name} ({how})")
    from .medmnist import load_medmnist

    data = load_medmnist(path)
    return CampaignData(data.X_train, data.y_train, data.X_test, data.y_test,
                        f"MedMNIST {path.name}")
