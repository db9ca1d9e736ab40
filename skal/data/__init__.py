"""Data loading: MedMNIST npz files, the bundled digits images, pools and DICOM."""

from .digits import load_digits_images
from .medmnist import MedMNISTData, load_medmnist
from .npz import ImageLabelData, load_image_npz
from .campaign import CampaignData, load_campaign_data
from .pool import is_dataset, iter_pool, materialize, pool_length, take
from .split import patient_split
from .dicom import DicomDataset, DicomReader, DicomReadError, load_dicom_folder, read_dicom

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
