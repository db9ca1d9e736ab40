"""Byte-level fuzzing of the files skal reads besides DICOM: image/label ``.npz``,
MedMNIST ``.npz`` and labels CSVs (seeded, so every run mutates the same bytes).

Each mutated file must give a result that is consistent (as many labels as images)
or a skal error deriving from ``ValueError`` / ``TypeError``; never another
exception, a hang or a memory blow-up. The reads run in a subprocess whose address
space is capped at 256 MB above what the imports took (a bomb fails with
MemoryError, reported as a failure) and whose run is bounded by a timeout; each read's
peak allocation is measured with tracemalloc and must stay under 32 MB (the clean
inputs are a few KB).
"""

import io
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from conftest import dicom_bytes

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_PEAK_LIMIT = 32 << 20
N_MUTANTS = 60          # per clean file


def _mutants(data, rng, n):
    """``n`` byte-wise mutations of ``data``: flipped bytes, overwritten runs, inserted
    and deleted runs, truncation, and digits changed (shapes and sizes in headers)."""
    out = []
    digits = [i for i, b in enumerate(data) if 48 <= b <= 57]
    for k in range(n):
        buf = bytearray(data)
        kind = k % 6
        if kind == 0:
            for i in rng.integers(0, len(buf), rng.integers(1, 8)):
                buf[i] ^= 1 << int(rng.integers(0, 8))
        elif kind == 1:
            i = int(rng.integers(0, len(buf)))
            buf[i:i + 16] = bytes(rng.integers(0, 256, 16, dtype=np.uint8))
        elif kind == 2:
            i = int(rng.integers(0, len(buf)))
            buf[i:i] = bytes(rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8))
        elif kind == 3:
            i = int(rng.integers(0, len(buf)))
            del buf[i:i + int(rng.integers(1, 64))]
        elif kind == 4:
            del buf[int(rng.integers(0, len(buf))):]
        elif digits:
            for i in rng.choice(digits, min(len(digits), 3), replace=False):
                buf[i] = int(rng.choice([48, 57, 55]))
        out.append(bytes(buf))
    return out


def _npz_bytes(arrays, compressed):
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return buffer.getvalue()





_READER = r"""
import json, resource, sys, tracemalloc
import numpy as np
from skal.data import DicomDataset, load_dicom_folder
from skal.data.campaign import load_campaign_data
from skal.data.medmnist import load_medmnist
from skal.data.npz import load_image_npz
from skal.exceptions import SkalError

def vm_size():
    for line in open("/proc/self/status"):
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024

cap = vm_size() + (256 << 20)
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

def check(kind, path, folder):
    if kind == "npz":
        data = load_image_npz(path)
        assert len(data.X) == len(data.y)
        pool = load_campaign_data(path, test_fraction=0.25)
        assert len(pool.X_pool) == len(pool.y_pool) and len(pool.X_test) == len(pool.y_test)
    elif kind == "medmnist":
        data = load_medmnist(path)
        for split in ("train", "val", "test"):
            assert len(getattr(data, "X_" + split)) == len(getattr(data, "y_" + split))
    else:
        ds = DicomDataset.from_folder(folder, labels_csv=path)
        assert len(ds.labels) == len(ds.paths) == 4
        X, y, paths = load_dicom_folder(folder, path, size=4)
        assert len(X) == len(y) == len(paths)

results = []
for kind, path, folder in json.loads(sys.argv[1]):
    tracemalloc.start()
    try:
        check(kind, path, folder)
        outcome = "ok"
    except SkalError as exc:
        outcome = "skal" if isinstance(exc, (ValueError, TypeError)) else f"bad {exc!r}"
    except BaseException as exc:
        outcome = f"bad {type(exc).__name__}: {exc}"[:300]
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    results.append([path, outcome, peak])
print(json.dumps(results))
"""


def _run(cases):
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([_REPO, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", _READER, json.dumps(cases)],
                          capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _clean_files(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (24, 8, 8)).astype(np.uint8)
    labels = np.arange(24) % 2
    plain = {"images": images, "labels": labels,
             "patient_ids": np.repeat(np.arange(12), 2)}
    medmnist = {f"{s}_{k}": (images if k == "images" else labels[:, None])
                for s in ("train", "val", "test") for k in ("images", "labels")}
    folder = tmp_path / "dicom"
    for i, rel in enumerate(["a/IM1.dcm", "b/IM1.dcm", "c/x.dcm", "d.dcm"]):
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        pixels = np.full((4, 4), 100 + i)
        pixels[0, 0] = 0
        (folder / rel).write_bytes(dicom_bytes(pixels))
    csv = b"path,label\na/IM1.dcm,0\nb/IM1.dcm,1\nc/x.dcm,0\nd.dcm,1\n"
    return {
        ("npz", "plain.npz"): _npz_bytes(plain, False),
        ("npz", "plain_z.npz"): _npz_bytes(plain, True),
        ("medmnist", "med.npz"): _npz_bytes(medmnist, True),
        ("csv", "labels.csv"): csv,
    }, folder


def test_mutated_npz_and_csv_files_give_a_result_or_a_skal_error(tmp_path):
    clean, folder = _clean_files(tmp_path)
    rng = np.random.default_rng(2024)
    cases = []
    for (kind, name), data in clean.items():
        n = N_MUTANTS * (3 if kind == "csv" else 1)    # CSVs are tiny: more mutants
        for i, mutant in enumerate([data] + _mutants(data, rng, n)):
            path = tmp_path / f"{i:03d}-{name}"
            path.write_bytes(mutant)
            cases.append([kind, str(path), str(folder)])
    results = _run(cases)
    assert len(results) == len(cases)
    bad = [(path, outcome) for path, outcome, _ in results if outcome.startswith("bad")]
    assert not bad, sorted({o for _, o in bad})
    heavy = [(path, peak) for path, _, peak in results if peak > _PEAK_LIMIT]
    assert not heavy, heavy[:5]
    outcomes = {outcome for _, outcome, _ in results}
    # the clean files are read, and the mutants reach both outcomes
    assert all(results[i][1] == "ok" for i, c in enumerate(cases) if c[1].split("/")[-1]
               .startswith("000-"))
    assert outcomes == {"ok", "skal"}


@pytest.mark.parametrize("member_bytes", [1 << 12, 1 << 20])
def test_npz_sizes_are_checked_from_headers_before_reading(tmp_path, member_bytes):
    """A header declaring more than the archive stores is refused without
    allocating what the header declares (``check sizes`` half of the bounds)."""
    from skal.data.npz import load_image_npz
    from skal.exceptions import DataFileError
    import tracemalloc

    path = tmp_path / "liar.npz"
    with zipfile.ZipFile(path, "w") as archive:
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            header, {"descr": "<f8", "fortran_order": False, "shape": (10**6, 64, 64)})
        archive.writestr("images.npy", header.getvalue() + bytes(member_bytes))
        labels = io.BytesIO()
        np.save(labels, np.zeros(3, np.int64))
        archive.writestr("labels.npy", labels.getvalue())
    tracemalloc.start()
    with pytest.raises(DataFileError, match="declares"):
        load_image_npz(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2 * member_bytes + (1 << 20)   # never the 32 GB the header claims
