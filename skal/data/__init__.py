"""Data loading: MedMNIST npz files, the bundled digits images, pools and DICOM."""

from .digits import load_digits_images
from .medmnist import MedMNISTData, load_medmnist
from .npz import ImageLabelData, load_image_npz
from .campaign import CampaignData, load_campaign_data
from .pool import is_dataset, iter_pool, materialize, pool_length, take
from .split import patient_split

# DICOM support needs pydicom, imported on first use: ``import skal`` stays light and
# leaves pydicom (and its logger) alone. ``skal.data.read_dicom`` etc. still work.
_DICOM_NAMES = ("read_dicom", "DicomReader", "DicomDataset", "DicomReadError",
                "load_dicom_folder")


def __getattr__(name):
    if name in _DICOM_NAMES:
        from . import dicom

        return getattr(dicom, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_DICOM_NAMES))

__all__ = [
    "load_digits_images",
    "load_medmnist",
    "MedMNISTData",
    "load_image_npz",
    "ImageLabelData",
    "patient_split",
    "load_campaign_data",
    "CampaignData",
    "is_dataset",
    "iter_pool",
    "materialize",
    "pool_length",
    "take",
    "read_dicom",
    "DicomReader",
    "DicomDataset",
    "DicomReadError",
    "load_dicom_folder",
]
