"""Seeded byte-level fuzzing of read_dicom.

Real DICOM files (small ones bundled with pydicom, plus a downsized copy of the real
MONOCHROME1 chest X-ray when the shared data are present) are mutated: random byte
changes, header damage, truncation, insertion, deletion and targeted corruption of
the Image Pixel module fields. Every case must give a finite float32 image in [0, 1]
or a DicomReadError: never another exception, a warning, or a hang. The header size
guard (``max_pixels``) bounds the time of each case.
"""

import io
import time
import warnings

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ImplicitVRLittleEndian

from skal.data import DicomReadError, read_dicom

SIZE = (24, 24)
MAX_PIXELS = 2**20  # per-case bound: at most ~1M values are ever decoded
MAX_SECONDS_PER_CASE = 5.0

BUNDLED_BASES = ["CT_small.dcm", "MR_small.dcm", "MR_small_RLE.dcm", "rtdose.dcm",
                 "SC_rgb_small_odd.dcm"]
SEEDS_PER_BASE = 24  # per mutation kind
CXR_SEEDS = 12
KINDS = ["flip", "header", "truncate", "insert", "delete", "fields"]

PIXEL_TAG = b"\xe0\x7f\x10\x00"  # (7FE0,0010), little endian
# Image Pixel module tags (little endian) whose values the "fields" mutation damages.
FIELD_TAGS = [
    b"\x28\x00\x10\x00",  # Rows
    b"\x28\x00\x11\x00",  # Columns
    b"\x28\x00\x08\x00",  # Number of Frames
    b"\x28\x00\x02\x00",  # Samples per Pixel
    b"\x28\x00\x00\x01",  # Bits Allocated
    b"\x28\x00\x01\x01",  # Bits Stored
    b"\x28\x00\x03\x01",  # Pixel Representation
    b"\x28\x00\x04\x00",  # Photometric Interpretation
    b"\x28\x00\x52\x10",  # Rescale Intercept
    b"\x28\x00\x53\x10",  # Rescale Slope
    b"\x28\x00\x50\x10",  # Window Center
    b"\x28\x00\x51\x10",  # Window Width
    b"\x02\x00\x10\x00",  # Transfer Syntax UID
    PIXEL_TAG,
]
INTERESTING = [b"\x00", b"\xff", b"\x7f", b"\x80", b"\x01", b"\xfe"]


def header_end(data):
    """Offset of the Pixel Data element (or the whole file if absent)."""
    pos = data.rfind(PIXEL_TAG)
    return pos if pos > 0 else len(data)


def mutate(data, kind, rng):
    data = bytearray(data)
    n = len(data)
    if n < 2:
        return bytes(data) + bytes(rng.randint(0, 256, size=rng.randint(0, 9)).astype(np.uint8))
    head = min(max(header_end(data), 8), n)
    if kind == "flip":
        for pos in rng.randint(0, n, size=rng.randint(1, 9)):
            data[pos] ^= rng.randint(1, 256)
    elif kind == "header":
        for pos in rng.randint(0, head, size=rng.randint(1, 7)):
            if rng.rand() < 0.5:
                data[pos] = INTERESTING[rng.randint(len(INTERESTING))][0]
            else:
                data[pos] = rng.randint(0, 256)
    elif kind == "truncate":
        # half of the cuts inside the header, half anywhere
        cut = rng.randint(0, head) if rng.rand() < 0.5 else rng.randint(0, n)
        del data[cut:]
    elif kind == "insert":
        pos = rng.randint(0, head) if rng.rand() < 0.7 else rng.randint(0, n)
        data[pos:pos] = rng.randint(0, 256, size=rng.randint(1, 65)).astype(np.uint8).tobytes()
    elif kind == "delete":
        pos = rng.randint(0, n)
        del data[pos:pos + rng.randint(1, 65)]
    elif kind == "fields":
        tags = [t for t in FIELD_TAGS if data.find(t) >= 0]
        for _ in range(rng.randint(1, 4)):
            if not tags:
                break
            tag = tags[rng.randint(len(tags))]
            pos = data.find(tag) + 4
            # explicit VR: VR (2) + length (2) then value; implicit: length (4) then value
            for off in rng.randint(0, 12, size=rng.randint(1, 4)):
                if pos + off < len(data):
                    data[pos + off] = INTERESTING[rng.randint(len(INTERESTING))][0]
    else:  # pragma: no cover
        raise ValueError(kind)
    return bytes(data)


def check_case(data, rng, label, tmp_path=None):
    """Run one case; return a failure description or None."""
    frames = ("first", "mean", "all")[rng.randint(3)]
    source = io.BytesIO(data)
    if tmp_path is not None:
        source = tmp_path / f"{label.replace(' ', '_').replace('/', '_')}.dcm"
        source.write_bytes(data)
    start = time.process_time()   # CPU time: a busy machine does not fail a case
    try:
        img = read_dicom(source, size=SIZE, frames=frames, max_pixels=MAX_PIXELS)
    except DicomReadError as exc:
        if not str(exc).startswith("Cannot read DICOM"):
            return f"{label}: badly formed message {exc}"
        outcome = None
    except BaseException as exc:  # noqa: BLE001 - anything else is a bug
        return f"{label}: {type(exc).__name__}: {exc}"
    else:
        outcome = img
    elapsed = time.process_time() - start
    if elapsed > MAX_SECONDS_PER_CASE:
        return f"{label}: took {elapsed:.1f} s of CPU time"
    if outcome is not None:
        ok = (
            isinstance(outcome, np.ndarray)
            and outcome.dtype == np.float32
            and outcome.shape[-2:] == SIZE
            and outcome.ndim == (3 if frames == "all" else 2)
            and np.isfinite(outcome).all()
            and outcome.min() >= 0.0
            and outcome.max() <= 1.0
        )
        if not ok:
            return f"{label}: invalid image {type(outcome)} {getattr(outcome, 'shape', None)}"
    return None


def run_cases(base_name, data, kind, seeds, tmp_path):
    failures = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for seed in seeds:
            rng = np.random.RandomState(seed)
            mutated = mutate(data, kind, rng)
            use_path = seed % 8 == 0  # some cases through the file system
            label = f"{base_name} {kind} seed={seed}"
            failure = check_case(mutated, rng, label, tmp_path if use_path else None)
            if failure:
                failures.append(failure)
    leaked = [f"{w.category.__name__}: {w.message}" for w in caught]
    return failures, leaked


def bundled_bytes(name):
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} is not bundled with this pydicom")
    with open(path, "rb") as fh:
        return fh.read()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("base", BUNDLED_BASES)
def test_fuzz_bundled(base, kind, tmp_path):
    data = bundled_bytes(base)
    # the unmutated file is a valid image
    assert read_dicom(io.BytesIO(data), size=SIZE).shape == SIZE
    seeds = range(1000 * KINDS.index(kind), 1000 * KINDS.index(kind) + SEEDS_PER_BASE)
    failures, leaked = run_cases(base, data, kind, seeds, tmp_path)
    assert failures == []
    assert leaked == []


@pytest.fixture
def small_cxr_bytes(data_file):
    """A 63x63 ACR-NEMA style (no preamble, no meta) copy of the real MONOCHROME1 chest."""
    path = data_file("dicom/real_cxr/CR-MONO1-10-chest.dcm")
    ds = pydicom.dcmread(path, force=True)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    pixels = ds.pixel_array
    small = pixels[::7, ::7][:63, :63].astype(np.uint16)  # 440 / 7 -> 63 x 63
    ds.Rows, ds.Columns = small.shape
    ds.PixelData = small.tobytes()
    del ds.file_meta
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, implicit_vr=True, little_endian=True)
    data = buf.getvalue()
    assert data[128:132] != b"DICM" and len(data) < 20_000
    return data


@pytest.mark.parametrize("kind", KINDS)
def test_fuzz_downsized_real_chest(small_cxr_bytes, kind, tmp_path):
    img = read_dicom(io.BytesIO(small_cxr_bytes), size=SIZE)
    assert img.shape == SIZE
    seeds = range(5000 + 100 * KINDS.index(kind), 5000 + 100 * KINDS.index(kind) + CXR_SEEDS)
    failures, leaked = run_cases("CR-MONO1-small", small_cxr_bytes, kind, seeds, tmp_path)
    assert failures == []
    assert leaked == []


def test_mixed_mutations(tmp_path):
    """Several mutations stacked on one file."""
    bases = [bundled_bytes(name) for name in BUNDLED_BASES]
    failures, total = [], 0
    for seed in range(60):
        rng = np.random.RandomState(90_000 + seed)
        data = bases[seed % len(bases)]
        for _ in range(rng.randint(2, 5)):
            data = mutate(data, KINDS[rng.randint(len(KINDS))], rng)
        failure = check_case(data, rng, f"mixed seed={seed}", tmp_path if seed % 10 == 0 else None)
        total += 1
        if failure:
            failures.append(failure)
    assert total == 60
    assert failures == []
