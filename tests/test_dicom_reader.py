"""Tests of skal.data.read_dicom and skal.data.DicomReader.

Only files bundled in the pydicom wheel are used (``download=False``: nothing is ever
fetched), plus the shared real data under ../shared/data, which is skipped when absent.
"""

import inspect
import io
import logging
import pickle
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filereader import read_file_meta_info
from pydicom.pixels import apply_modality_lut, apply_voi_lut, get_decoder
from pydicom.uid import (ExplicitVRLittleEndian, ImplicitVRLittleEndian,
                         SecondaryCaptureImageStorage, generate_uid)
from sklearn.base import clone
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from skal.data import DicomReader, DicomReadError, read_dicom
from skal.data.dicom import reader as reader_module
from skal.exceptions import SkalError, SkalTypeError, SkalValueError

JPEG_EXTRA = 'pip install "skal[jpeg]"'


# ----------------------------------------------------------------------- helpers
def bundled(name):
    """Path of a file bundled in the pydicom wheel; never downloads."""
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} is not bundled with this pydicom")
    return path


def make_dataset(pixels, *, photometric="MONOCHROME2", **attrs):
    """A minimal Secondary Capture dataset holding ``pixels`` (uint16/int16/uint8).

    ``pixels`` is (H, W), (F, H, W) or, for photometric "RGB", (H, W, 3).
    """
    pixels = np.asarray(pixels)
    ds = Dataset()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "OT"
    rgb = photometric == "RGB"
    frames = pixels.shape[0] if pixels.ndim == (4 if rgb else 3) else 1
    rows, cols = pixels.shape[-3:-1] if rgb else pixels.shape[-2:]
    ds.Rows, ds.Columns = int(rows), int(cols)
    ds.SamplesPerPixel = 3 if rgb else 1
    if rgb:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    bits = pixels.dtype.itemsize * 8
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = int(pixels.dtype.kind == "i")
    if frames > 1:
        ds.NumberOfFrames = frames
    vr = "OB" if bits == 8 else "OW"
    ds.add_new(0x7FE00010, vr, pixels.astype(pixels.dtype.newbyteorder("<")).tobytes())
    for key, value in attrs.items():
        setattr(ds, key, value)
    return ds


def dicom_bytes(ds, *, meta=True):
    """Encode a dataset: a full Part 10 file, or ACR-NEMA style (no preamble/meta)."""
    buf = io.BytesIO()
    if meta:
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    else:
        pydicom.dcmwrite(buf, ds, implicit_vr=True, little_endian=True)
    return buf.getvalue()


def ramp(h=32, w=48, dtype=np.uint16, top=1000):
    return (np.linspace(0, top, h * w).reshape(h, w)).astype(dtype)


def minmax(x):
    x = np.asarray(x, dtype=np.float64)
    span = x.max() - x.min()
    return (x - x.min()) / span if span > 0 else np.zeros_like(x)


# ------------------------------------------------------------------ basic reads
def test_ct_small_defaults():
    img = read_dicom(bundled("CT_small.dcm"))
    assert img.dtype == np.float32 and img.shape == (128, 128)
    assert img.min() == 0.0 and img.max() == 1.0
    assert np.isfinite(img).all()


@pytest.mark.parametrize("size, shape", [
    (32, (32, 32)), ((20, 40), (20, 40)), ((256, 200), (256, 200)),
])
def test_resize_shapes(size, shape):
    img = read_dicom(bundled("CT_small.dcm"), size=size)
    assert img.shape == shape and img.dtype == np.float32
    assert 0.0 <= img.min() and img.max() <= 1.0


def test_accepts_path_bytes_filelike_and_dataset(tmp_path):
    path = bundled("MR_small.dcm")
    expected = read_dicom(path, size=16)
    data = Path(path).read_bytes()
    (tmp_path / "mr.dcm").write_bytes(data)
    assert np.array_equal(read_dicom(tmp_path / "mr.dcm", size=16), expected)
    assert np.array_equal(read_dicom(data, size=16), expected)
    assert np.array_equal(read_dicom(io.BytesIO(data), size=16), expected)
    ds = pydicom.dcmread(path)
    assert np.array_equal(read_dicom(ds, size=16), expected)


def test_dataset_input_is_not_modified():
    ds = make_dataset(ramp())  # no file_meta at all
    read_dicom(ds)
    assert "file_meta" not in ds.__dict__ or "TransferSyntaxUID" not in ds.file_meta


def test_big_endian_rle_and_implicit_match_plain():
    plain = read_dicom(bundled("MR_small.dcm"))
    for name in ("MR_small_RLE.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm"):
        np.testing.assert_allclose(read_dicom(bundled(name)), plain, atol=1e-6, err_msg=name)


def test_deflated_transfer_syntax():
    img = read_dicom(bundled("image_dfl.dcm"), size=32)
    assert img.shape == (32, 32) and np.isfinite(img).all()


# ------------------------------------------------------------------- LUTs, VOI
def test_modality_lut_rescale_slope_intercept():
    pixels = ramp()
    ds = make_dataset(pixels, RescaleSlope=2, RescaleIntercept=-100)
    img = read_dicom(dicom_bytes(ds), window=False, scale=False)
    np.testing.assert_allclose(img, pixels * 2.0 - 100.0)
    np.testing.assert_allclose(img, apply_modality_lut(pixels, ds))


def test_file_window_is_applied_like_pydicom():
    pixels = ramp()
    ds = make_dataset(pixels, WindowCenter=500, WindowWidth=200)
    img = read_dicom(dicom_bytes(ds), scale=False)
    np.testing.assert_allclose(img, apply_voi_lut(pixels, ds), rtol=1e-6)
    scaled = read_dicom(dicom_bytes(ds))
    # The window saturates: a third of the ramp is black, a third or more white.
    assert (scaled == 0).mean() > 0.3 and (scaled == 1).mean() > 0.3


def test_window_override_and_false():
    pixels = ramp()
    ds = make_dataset(pixels, WindowCenter=500, WindowWidth=200)
    data = dicom_bytes(ds)
    no_window = read_dicom(data, window=False)
    np.testing.assert_allclose(no_window, minmax(pixels), atol=1e-6)
    wide = read_dicom(data, window=(500, 10_000))  # wider than the data: ~linear
    assert np.corrcoef(wide.ravel(), no_window.ravel())[0, 1] > 0.999
    narrow = read_dicom(data, window=(250.5, 101))  # LINEAR on [200, 300]
    expected = minmax(np.clip((pixels - 250.0) / 100.0 + 0.5, 0, 1))
    np.testing.assert_allclose(narrow, expected, atol=1e-5)


def test_voi_lut_sequence_is_preferred():
    pixels = ramp(top=255).astype(np.uint16)
    item = Dataset()
    item.add_new(0x00283002, "US", [256, 0, 8])  # LUT Descriptor
    item.add_new(0x00283006, "US", list(range(255, -1, -1)))  # LUT Data: inverting
    ds = make_dataset(pixels, WindowCenter=128, WindowWidth=256)
    ds.VOILUTSequence = [item]
    img = read_dicom(dicom_bytes(ds))
    np.testing.assert_allclose(img, 1.0 - minmax(pixels), atol=1e-6)


def test_damaged_file_window_is_ignored():
    pixels = ramp()
    ds = make_dataset(pixels, WindowCenter=500, WindowWidth=0)  # invalid for LINEAR
    np.testing.assert_allclose(read_dicom(dicom_bytes(ds)), minmax(pixels), atol=1e-6)


def test_monochrome1_is_inverted():
    pixels = ramp()
    mono2 = read_dicom(dicom_bytes(make_dataset(pixels)))
    mono1 = read_dicom(dicom_bytes(make_dataset(pixels, photometric="MONOCHROME1")))
    np.testing.assert_allclose(mono1, 1.0 - mono2, atol=1e-6)
    raw = read_dicom(dicom_bytes(make_dataset(pixels, photometric="MONOCHROME1")), scale=False)
    np.testing.assert_allclose(raw, pixels.max() + pixels.min() - pixels.astype(float))


def test_rgb_to_luminance():
    rng = np.random.RandomState(0)
    rgb = rng.randint(0, 256, size=(8, 10, 3)).astype(np.uint8)
    img = read_dicom(dicom_bytes(make_dataset(rgb, photometric="RGB")))
    grey = rgb.astype(float) @ [0.299, 0.587, 0.114]
    np.testing.assert_allclose(img, minmax(grey), atol=1e-6)


def test_ybr_and_rgb_versions_agree():
    rgb = read_dicom(bundled("SC_rgb_rle.dcm"))
    ybr = read_dicom(bundled("SC_ybr_full_422_uncompressed.dcm"))
    assert rgb.shape == ybr.shape == (100, 100)
    assert np.abs(rgb - ybr).max() < 0.05


def test_palette_color():
    img = read_dicom(bundled("examples_palette.dcm"), size=64)
    assert img.shape == (64, 64) and np.isfinite(img).all() and img.max() == 1.0


def test_constant_image_maps_to_zeros():
    img = read_dicom(dicom_bytes(make_dataset(np.full((16, 16), 7, np.uint16))), size=8)
    assert img.shape == (8, 8) and not np.isnan(img).any() and (img == 0).all()


# ------------------------------------------------------------------ resizing
def test_resize_is_antialiased():
    checker = ((np.indices((128, 128)).sum(axis=0) % 2) * 1000).astype(np.uint16)
    checker[:, :64] //= 2  # left half dimmer: a real low-frequency signal
    data = dicom_bytes(make_dataset(checker))
    smooth = read_dicom(data, size=37, scale=False)
    aliased = read_dicom(data, size=37, scale=False, antialias=False)
    # Area-like averaging: each half becomes flat at half its peak ...
    # (away from the borders, where the Gaussian's edge padding breaks the pattern)
    np.testing.assert_allclose(smooth[4:-4, 4:12], 250, atol=5)
    np.testing.assert_allclose(smooth[4:-4, -12:-4], 500, atol=5)
    # ... while plain bilinear sampling of a 1-pixel checkerboard aliases into stripes.
    assert aliased[4:-4, -12:-4].std() > 50 * smooth[4:-4, -12:-4].std()


# ------------------------------------------------------------------ multi-frame
def _frames_dataset():
    frames = np.stack([ramp() * (k + 1) // 4 for k in range(4)]).astype(np.uint16)
    frames[2] = 0
    return frames, dicom_bytes(make_dataset(frames))


def test_frame_policies_synthetic():
    frames, data = _frames_dataset()
    np.testing.assert_allclose(read_dicom(data, frames="first"), minmax(frames[0]), atol=1e-6)
    np.testing.assert_allclose(read_dicom(data, frames="mean"), minmax(frames.mean(0)), atol=1e-6)
    every = read_dicom(data, frames="all")
    assert every.shape == (4, 32, 48)
    np.testing.assert_allclose(every, minmax(frames), atol=1e-6)  # one global scale
    assert read_dicom(data, frames="all", size=8).shape == (4, 8, 8)
    with pytest.raises(DicomReadError, match="4 frames"):
        read_dicom(data, frames="raise")


def test_frames_all_on_single_frame_file():
    assert read_dicom(bundled("CT_small.dcm"), frames="all", size=16).shape == (1, 16, 16)
    assert read_dicom(bundled("CT_small.dcm"), frames="raise", size=16).shape == (16, 16)


def test_rtdose_multiframe_bundled():
    path = bundled("rtdose.dcm")
    raw = pydicom.dcmread(path).pixel_array.astype(float)
    first = read_dicom(path, frames="first", window=False)
    np.testing.assert_allclose(first, minmax(raw[0]), atol=1e-6)
    assert read_dicom(path, frames="all").shape == (15, 10, 10)


def test_mr_brucker_each_frame_policy(data_file):
    path = data_file("dicom/edge_cases/mr_brucker.dcm")
    raw = pydicom.dcmread(path).pixel_array.astype(float)
    assert raw.shape == (4, 128, 256)
    first = read_dicom(path, frames="first", window=False)
    np.testing.assert_allclose(first, minmax(raw[0]), atol=1e-6)
    mean = read_dicom(path, frames="mean", window=False, size=(64, 128))
    assert mean.shape == (64, 128) and np.isfinite(mean).all()
    every = read_dicom(path, frames="all", window=False)
    assert every.shape == (4, 128, 256)
    np.testing.assert_allclose(every, minmax(raw), atol=1e-6)
    with pytest.raises(DicomReadError, match="frames='raise'"):
        read_dicom(path, frames="raise")


# ---------------------------------------------------------- ACR-NEMA / no meta
def test_no_preamble_no_meta_file(tmp_path):
    pixels = ramp()
    data = dicom_bytes(make_dataset(pixels), meta=False)
    assert data[128:132] != b"DICM"
    path = tmp_path / "acr.dcm"
    path.write_bytes(data)
    np.testing.assert_allclose(read_dicom(path), minmax(pixels), atol=1e-6)
    with pytest.raises(DicomReadError, match="force=True"):
        read_dicom(path, force=False)


def test_meta_without_transfer_syntax_gets_default():
    ds = make_dataset(ramp())
    data = dicom_bytes(ds, meta=False)
    parsed = pydicom.dcmread(io.BytesIO(data), force=True)
    assert "TransferSyntaxUID" not in parsed.file_meta
    np.testing.assert_allclose(read_dicom(parsed), minmax(ramp()), atol=1e-6)
    assert "TransferSyntaxUID" not in parsed.file_meta       # the caller's copy untouched


# ---------------------------------------------------------------- real files
def _region(img, y0, y1, x0, x1):
    h, w = img.shape
    return float(img[int(y0 * h):int(y1 * h), int(x0 * w):int(x1 * w)].mean())


def _check_chest_orientation(img):
    # Regions chosen by looking at both images (saved as PNG): the lung fields sit
    # around 1/3 and 2/3 of the width at mid height, the mediastinum (spine, heart)
    # in the central column, the abdomen/diaphragm at the bottom, soft tissue and
    # ribs at the lateral borders.
    left_lung = _region(img, 0.35, 0.60, 0.25, 0.38)
    right_lung = _region(img, 0.35, 0.60, 0.62, 0.75)
    mediastinum = _region(img, 0.30, 0.70, 0.46, 0.54)
    bottom = _region(img, 0.85, 0.97, 0.10, 0.90)
    left_border = _region(img, 0.30, 0.70, 0.00, 0.06)
    right_border = _region(img, 0.30, 0.70, 0.94, 1.00)
    for lung in (left_lung, right_lung):
        assert lung < mediastinum - 0.2
        assert lung < bottom - 0.2
        assert lung < left_border - 0.05
        assert lung < right_border - 0.05


def test_real_cr_monochrome1_chest(data_file):
    path = data_file("dicom/real_cxr/CR-MONO1-10-chest.dcm")
    assert Path(path).read_bytes()[128:132] != b"DICM"  # no preamble, no meta
    full = read_dicom(path)
    assert full.shape == (440, 440) and full.dtype == np.float32
    _check_chest_orientation(read_dicom(path, size=64))
    # The stored values are inverted (MONOCHROME1): raw lungs are brighter than the
    # raw mediastinum, so this test would fail without the inversion.
    ds = pydicom.dcmread(path, force=True)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    raw = minmax(ds.pixel_array)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    assert _region(raw, 0.35, 0.60, 0.25, 0.38) > _region(raw, 0.30, 0.70, 0.46, 0.54)


def test_real_nih_dx_chest(data_file):
    path = data_file("dicom/real_cxr/nih_cxr14_dx_no_finding.dcm")
    full = read_dicom(path)
    assert full.shape == (1024, 1024)
    _check_chest_orientation(read_dicom(path, size=64))
    _check_chest_orientation(read_dicom(path, size=(48, 40)))


# --------------------------------------------------------------------- errors
def test_error_hierarchy_and_pickling():
    err = DicomReadError("bad header", "x.dcm")
    assert isinstance(err, SkalValueError) and isinstance(err, SkalError)
    assert isinstance(err, ValueError)
    again = pickle.loads(pickle.dumps(err))
    assert str(again) == str(err) and again.path == "x.dcm" and again.reason == "bad header"


BUNDLED_FAILURES = [
    ("MR_truncated.dcm", "truncated"),
    ("badVR.dcm", "NumberOfFrames"),
    ("meta_missing_tsyntax.dcm", "Rows"),
    ("no_meta.dcm", "no pixel data"),
    ("no_meta_group_length.dcm", "no pixel data"),
    ("ExplVR_BigEndNoMeta.dcm", "no pixel data"),
    ("rtplan.dcm", "no pixel data"),
    ("rtplan_truncated.dcm", "no pixel data"),
    ("rtstruct.dcm", "no pixel data"),
    ("test-SR.dcm", "no pixel data"),
    ("reportsi.dcm", "no pixel data"),
    ("waveform_ecg.dcm", "no pixel data"),
    ("nested_priv_SQ.dcm", "Rows"),
    ("zipMR.gz", "gzip"),
]


@pytest.mark.parametrize("name, fragment", BUNDLED_FAILURES)
def test_bundled_malformed_files(name, fragment):
    path = bundled(name)
    with pytest.raises(DicomReadError, match=fragment) as info:
        read_dicom(path)
    assert name in str(info.value)  # names the file
    assert info.value.path == path


SHARED_FAILURES = [
    ("GH626.dcm", "no pixel data"),
    ("GH1146.dcm", "empty"),
    ("GH1376.dcm", "truncated"),
    ("GH177_D_CLUNIE_CT1_IVRLE_BigEndian_undefined_length.dcm", "could not be parsed"),
]


@pytest.mark.parametrize("name, fragment", SHARED_FAILURES)
def test_shared_edge_cases(data_file, name, fragment):
    path = data_file(f"dicom/edge_cases/{name}")
    with pytest.raises(DicomReadError, match=fragment) as info:
        read_dicom(path, size=32)
    assert name in str(info.value)


def test_truncated_message_is_clear(data_file):
    path = data_file("dicom/edge_cases/GH1376.dcm")
    with pytest.raises(DicomReadError, match=r"1,340,284 bytes present .* needs 9,287,460"):
        read_dicom(path)


def no_decoder(monkeypatch):
    """Pretend that no JPEG-family decoder plugin is installed."""
    monkeypatch.setattr(reader_module, "_available_plugins", lambda decoder: ())


@pytest.mark.parametrize("name", ["JPEG-lossy.dcm", "SC_rgb_jpeg.dcm", "JPEG2000.dcm",
                                  "MR_small_jpeg_ls_lossless.dcm"])
def test_jpeg_without_decoder_names_the_extra(monkeypatch, name):
    path = bundled(name)
    no_decoder(monkeypatch)
    with pytest.raises(DicomReadError) as info:
        read_dicom(path)
    assert JPEG_EXTRA in str(info.value) and "no decoder" in str(info.value)


def test_multiframe_jpeg_without_decoder_names_the_extra(monkeypatch, data_file):
    path = data_file("dicom/edge_cases/multiframe.dcm")
    no_decoder(monkeypatch)
    for frames in ("first", "mean", "all"):
        with pytest.raises(DicomReadError, match="skal\\[jpeg\\]") as info:
            read_dicom(path, frames=frames)
        assert "multiframe.dcm" in str(info.value)


@pytest.mark.parametrize("name", [
    "JPEG-lossy.dcm", "JPGExtended.dcm", "MR_small_jpeg_ls_lossless.dcm",
    "SC_rgb_jpeg_gdcm.dcm", "SC_rgb_jpeg.dcm", "examples_ybr_color.dcm",
])
def test_jpeg_with_installed_plugins_decodes_or_names_the_extra(name):
    """Whatever decoders are installed here: an image, or an error naming the extra
    (a file that even the extra's plugins cannot decode gives a decoding error)."""
    path = bundled(name)
    decoder = get_decoder(read_file_meta_info(path).TransferSyntaxUID)
    try:
        img = read_dicom(path, size=32)
    except DicomReadError as exc:
        if "pylibjpeg" in decoder.available_plugins:
            assert "could not be decoded" in str(exc)
        else:
            assert JPEG_EXTRA in str(exc)
    else:
        assert img.shape == (32, 32) and np.isfinite(img).all()


def test_multiframe_jpeg_real_file(data_file):
    """140 JPEG frames, some of a different size: each policy gives an image or an error
    that names the extra (Pillow decodes the first frame; the odd frames fail)."""
    path = data_file("dicom/edge_cases/multiframe.dcm")
    for frames in ("first", "mean", "all"):
        try:
            img = read_dicom(path, frames=frames, size=32)
        except DicomReadError as exc:
            assert JPEG_EXTRA in str(exc) or "decoded" in str(exc)
        else:
            assert np.isfinite(img).all() and img.shape[-2:] == (32, 32)


def test_absurd_header_rejected_before_decoding(monkeypatch, tmp_path):
    ds = make_dataset(np.zeros((2, 2), np.uint16))
    ds.Rows = ds.Columns = 65535
    ds.NumberOfFrames = 1000
    path = tmp_path / "huge.dcm"
    path.write_bytes(dicom_bytes(ds))
    assert path.stat().st_size < 2000

    def must_not_decode(*args, **kwargs):
        raise AssertionError("decoding was attempted")

    monkeypatch.setattr(reader_module, "_decode", must_not_decode)
    with pytest.raises(DicomReadError, match="max_pixels") as info:   # not decoded
        read_dicom(path)
    assert "65535 x 65535" in str(info.value) and "1000 frame" in str(info.value)


def test_max_pixels_is_configurable():
    data = dicom_bytes(make_dataset(ramp(32, 48)))
    with pytest.raises(DicomReadError, match="max_pixels=1,000"):
        read_dicom(data, max_pixels=1000)
    assert read_dicom(data, max_pixels=32 * 48).shape == (32, 48)


@pytest.mark.parametrize("attrs, fragment", [
    ({"Rows": 0}, "empty image"),
    ({"Columns": 0}, "empty image"),
    ({"NumberOfFrames": -3}, "negative"),
    ({"SamplesPerPixel": 4}, "SamplesPerPixel"),
    ({"BitsAllocated": 12}, "BitsAllocated"),
])
def test_invalid_geometry(attrs, fragment):
    ds = make_dataset(ramp())
    for key, value in attrs.items():
        setattr(ds, key, value)
    with pytest.raises(DicomReadError, match=fragment):
        read_dicom(dicom_bytes(ds))


@pytest.mark.parametrize("keyword", ["Rows", "Columns", "BitsAllocated"])
def test_missing_required_attribute(keyword):
    ds = make_dataset(ramp())
    delattr(ds, keyword)
    with pytest.raises(DicomReadError, match=f"no {keyword}"):
        read_dicom(dicom_bytes(ds))


def test_synthetic_truncation_and_empty_pixels():
    ds = make_dataset(ramp())
    ds.PixelData = ds.PixelData[:100]
    with pytest.raises(DicomReadError, match="truncated"):
        read_dicom(dicom_bytes(ds))
    ds.PixelData = b""
    with pytest.raises(DicomReadError, match="empty"):
        read_dicom(dicom_bytes(ds))


def test_non_finite_float_pixels():
    ds = make_dataset(ramp())
    del ds.PixelData
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 32, 32, 31
    del ds.PixelRepresentation
    values = np.linspace(0, 1, 32 * 48).astype("<f4")
    values[5] = np.nan
    ds.FloatPixelData = values.tobytes()
    with pytest.raises(DicomReadError, match="not finite"):
        read_dicom(dicom_bytes(ds))
    values[5] = 0.5
    ds.FloatPixelData = values.tobytes()
    np.testing.assert_allclose(read_dicom(dicom_bytes(ds)), values.reshape(32, 48), atol=1e-6)


def test_file_system_errors(tmp_path):
    with pytest.raises(DicomReadError, match="does not exist"):
        read_dicom(tmp_path / "missing.dcm")
    with pytest.raises(DicomReadError, match="directory"):
        read_dicom(tmp_path)
    (tmp_path / "empty.dcm").write_bytes(b"")
    with pytest.raises(DicomReadError, match="empty"):
        read_dicom(tmp_path / "empty.dcm")
    (tmp_path / "text.dcm").write_text("patient,label\nA,1\n" * 20)
    with pytest.raises(DicomReadError):
        read_dicom(tmp_path / "text.dcm")
    with pytest.raises(DicomReadError):
        read_dicom(b"\x00" * 4096)


def test_invalid_options():
    path = bundled("CT_small.dcm")
    with pytest.raises(SkalValueError, match="frames"):
        read_dicom(path, frames="middle")
    with pytest.raises(SkalValueError, match="size"):
        read_dicom(path, size=0)
    with pytest.raises(SkalTypeError, match="size"):
        read_dicom(path, size=(1, 2, 3))
    with pytest.raises(SkalValueError, match="window"):
        read_dicom(path, window=(40, 0))
    with pytest.raises(SkalTypeError, match="window"):
        read_dicom(path, window="lung")
    with pytest.raises(SkalValueError, match="max_pixels"):
        read_dicom(path, max_pixels=0)
    with pytest.raises(SkalTypeError):
        read_dicom(12345)
    with pytest.raises(SkalTypeError, match="binary"):
        read_dicom(io.StringIO("text"))


def test_no_warning_or_log_flood(caplog):
    names = [name for name, _ in BUNDLED_FAILURES] + ["CT_small.dcm", "examples_palette.dcm"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with caplog.at_level(logging.DEBUG, logger="pydicom"):
            for name in names:
                path = get_testdata_file(name, download=False)
                if path is None:
                    continue
                try:
                    read_dicom(path)
                except DicomReadError:
                    pass
    assert [str(w.message) for w in caught] == []
    assert [r.getMessage() for r in caplog.records if r.name.startswith("pydicom")] == []


# ----------------------------------------------------------------- DicomReader
@pytest.fixture
def three_paths(tmp_path):
    paths = []
    for k, pixels in enumerate([ramp(), ramp()[::-1], np.full((32, 48), 3, np.uint16)]):
        path = tmp_path / f"img{k}.dcm"
        path.write_bytes(dicom_bytes(make_dataset(pixels)))
        paths.append(str(path))
    return paths


def test_dicom_reader_defaults_are_read_dicoms():
    """DicomReader repeats read_dicom's options in its signature (scikit-learn needs
    them there): the defaults must stay the same."""
    defaults = {name: p.default for name, p in inspect.signature(read_dicom).parameters.items()
                if name != "path"}
    assert set(defaults) == {"size", *reader_module.READ_OPTIONS}
    params = DicomReader().get_params()
    assert {name: params[name] for name in defaults} == defaults


def test_dicom_reader_transform(three_paths):
    reader = DicomReader(size=16)
    assert reader.fit(three_paths) is reader
    X = reader.transform(three_paths)
    assert X.shape == (3, 1, 16, 16) and X.dtype == np.float32
    assert reader.errors_ == [] and list(reader.kept_indices_) == [0, 1, 2]
    np.testing.assert_array_equal(X[0, 0], read_dicom(three_paths[0], size=16))
    # size=None works when every file has the same size
    assert DicomReader().fit_transform(three_paths).shape == (3, 1, 32, 48)
    # (n, 1) arrays of paths as given by ColumnTransformer are accepted
    assert DicomReader(size=8).transform(np.array(three_paths)[:, None]).shape == (3, 1, 8, 8)


def test_dicom_reader_on_error(three_paths, tmp_path):
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"not a dicom file at all" * 10)
    paths = [three_paths[0], str(bad), three_paths[1], str(tmp_path / "gone.dcm")]
    with pytest.raises(DicomReadError, match="bad.dcm"):
        DicomReader(size=8).fit_transform(paths)

    skip = DicomReader(size=8, on_error="skip")
    X = skip.fit_transform(paths)
    assert X.shape == (2, 1, 8, 8)
    assert list(skip.kept_indices_) == [0, 2]
    assert [p for p, _ in skip.errors_] == [str(bad), str(tmp_path / "gone.dcm")]
    assert "does not exist" in skip.errors_[1][1]

    nan = DicomReader(size=8, on_error="nan")
    X = nan.fit_transform(paths)
    assert X.shape == (4, 1, 8, 8)
    assert np.isnan(X[1]).all() and np.isnan(X[3]).all() and np.isfinite(X[[0, 2]]).all()
    assert list(nan.kept_indices_) == [0, 1, 2, 3] and len(nan.errors_) == 2


def test_dicom_reader_size_mismatch_needs_size(three_paths):
    paths = three_paths + [bundled("CT_small.dcm")]
    with pytest.raises(SkalValueError, match="different sizes.*size="):
        DicomReader().fit_transform(paths)
    assert DicomReader(size=(10, 12)).fit_transform(paths).shape == (4, 1, 10, 12)


def test_dicom_reader_is_a_clean_sklearn_estimator(three_paths):
    reader = DicomReader(size=(16, 16), window=(500, 400), on_error="skip", n_jobs=2)
    params = reader.get_params()
    assert params["size"] == (16, 16) and params["window"] == (500, 400)
    cloned = clone(reader)
    assert cloned.get_params() == params and not hasattr(cloned, "errors_")
    flatten = FunctionTransformer(lambda X: X.reshape(len(X), -1))
    pipe = make_pipeline(DicomReader(size=8), flatten)
    assert pipe.fit_transform(three_paths).shape == (3, 64)
    # __init__ stores the parameters untouched, invalid ones fail in fit
    bad = DicomReader(size=-1, on_error="ignore")
    assert bad.size == -1
    with pytest.raises(SkalValueError):
        bad.fit(three_paths)
    with pytest.raises(SkalValueError, match="frames='all'"):
        DicomReader(size=8, frames="all").fit(three_paths)
    with pytest.raises(SkalTypeError, match="single path"):
        DicomReader(size=8).transform(three_paths[0])


def test_dicom_reader_parallel_matches_sequential(three_paths):
    paths = three_paths * 2
    seq = DicomReader(size=16).fit_transform(paths)
    par = DicomReader(size=16, n_jobs=2).fit_transform(paths)
    np.testing.assert_array_equal(seq, par)
