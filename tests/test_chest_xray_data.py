"""Image/label npz files with patient ids, patient-level splits, and the CLI on them
(and on a DICOM folder with a labels CSV)."""

import csv

import numpy as np
import pytest

from skal import SkalValueError
from skal.cli import main
from skal.data import load_image_npz, patient_split
from skal.exceptions import DataFileError


def test_patient_split_keeps_patients_on_one_side():
    patients = np.repeat(np.arange(40), np.random.RandomState(0).randint(1, 6, 40))
    train, test = patient_split(patients, test_size=0.25, random_state=0)
    assert len(train) + len(test) == len(patients)
    assert not set(patients[train]) & set(patients[test])
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(len(patients)))
    again = patient_split(patients, test_size=0.25, random_state=0)
    assert np.array_equal(train, again[0])


def test_patient_split_errors():
    with pytest.raises(SkalValueError):
        patient_split(np.zeros(5))
    with pytest.raises(SkalValueError):
        patient_split([])


def test_load_image_npz_roundtrip_and_errors(tmp_path):
    path = tmp_path / "cxr.npz"
    X = np.random.RandomState(0).randint(0, 255, (12, 16, 16), dtype=np.uint8)
    Y = np.random.RandomState(1).randint(0, 2, (12, 4)).astype(np.uint8)
    np.savez(path, images=X, labels=Y, patient_ids=np.arange(12) // 2,
             label_names=np.array(list("abcd")))
    data = load_image_npz(path)
    assert data.multilabel and data.y.shape == (12, 4) and data.y.dtype == np.int64
    assert np.array_equal(data.X, X) and data.label_names.tolist() == list("abcd")
    np.savez(tmp_path / "bad.npz", images=X, labels=Y[:5])
    with pytest.raises(DataFileError, match="rows"):
        load_image_npz(tmp_path / "bad.npz")
    np.savez(tmp_path / "nokeys.npz", x=X)
    with pytest.raises(DataFileError, match="missing keys"):
        load_image_npz(tmp_path / "nokeys.npz")
    with pytest.raises(DataFileError, match="not found"):
        load_image_npz(tmp_path / "missing.npz")


def test_real_cxr14_sample_is_multilabel_with_patients(data_file):
    data = load_image_npz(data_file("cxr14_sample/cxr14_sample_28.npz"))
    assert data.X.shape == (1000, 28, 28) and data.y.shape == (1000, 14)
    assert len(np.unique(data.patient_ids)) == 264
    assert data.label_names[0] == "Atelectasis"
    train, test = patient_split(data.patient_ids, 0.25, random_state=0)
    assert not set(data.patient_ids[train]) & set(data.patient_ids[test])


def test_cli_on_npz_with_patients_reports_macro_auroc(tmp_path, capsys):
    rng = np.random.RandomState(0)
    X = rng.randint(0, 255, (80, 16, 16), dtype=np.uint8)
    Y = (rng.rand(80, 3) > 0.6).astype(np.uint8)
    np.savez(tmp_path / "cxr.npz", images=X, labels=Y, patient_ids=np.arange(80) // 2)
    code = main(["simulate", "--data", str(tmp_path / "cxr.npz"), "--strategies",
                 "random,entropy,tdgf", "--seeds", "1", "--initial", "10", "--batch", "5",
                 "--rounds", "1", "--epochs", "4", "--min-steps", "4", "--out",
                 str(tmp_path / "out"), "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    assert "patient-level split" in out and "AUROC" in out and "tdgf" in out


def test_cli_on_dicom_folder_with_labels_csv(tmp_path, capsys):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    folder = tmp_path / "dicoms"
    folder.mkdir()
    rng = np.random.RandomState(0)
    rows = []
    for i in range(40):
        label = i % 2
        image = (rng.rand(24, 24) * 60).astype(np.uint16)
        if label:
            image[6:18, 6:18] += 150
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(folder / f"im{i}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.PhotometricInterpretation = "OT", "MONOCHROME2"
        ds.Rows, ds.Columns, ds.SamplesPerPixel = 24, 24, 1
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = image.tobytes()
        ds.save_as(folder / f"im{i}.dcm", enforce_file_format=True)
        rows.append({"path": f"im{i}.dcm", "label": label})
    with open(tmp_path / "labels.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "label"])
        writer.writeheader()
        writer.writerows(rows)
    code = main(["simulate", "--data", str(folder), "--labels", str(tmp_path / "labels.csv"),
                 "--size", "16", "--strategies", "random,margin", "--seeds", "1",
                 "--initial", "6", "--batch", "4", "--rounds", "1", "--epochs", "3",
                 "--min-steps", "5", "--out", str(tmp_path / "out"), "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    assert "DICOM folder" in out and "pool 30, test 10" in out
