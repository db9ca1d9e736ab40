"""A real annotation campaign on a folder of DICOM files, from the command line.

The script writes its own small DICOM folder (synthetic 12-bit images from
``examples/dicom_pool.py``: a bright disc on noise is a "nodule", noise only is
"normal"; files are grouped by patient, so the folder names say nothing about the
label), then runs the commands a radiology team would type::

    skal campaign init   chest-campaign --pool dicoms --classes normal nodule --strategy margin
    skal campaign label  chest-campaign holdout.csv --holdout     # a held-out set, once
    skal campaign next   chest-campaign -n 10 --out batch.csv     # the files to read
    skal campaign label  chest-campaign batch.csv --annotator dr_smith
    skal campaign train  chest-campaign
    skal campaign status chest-campaign                          # table + learning curve
    skal campaign next   chest-campaign -n 10 --label-studio tasks.json
    skal campaign export chest-campaign

Here the "radiologist" fills in the batch CSV from the known labels of the synthetic
images. Every command goes through ``skal.cli.main``, exactly as typed in a shell.
Run it with ``python examples/dicom_campaign.py`` (about a minute on a CPU); pass a
folder to keep the campaign: ``python examples/dicom_campaign.py my-folder``.
"""

import csv
import shlex
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dicom_pool import synthetic_image, write_dicom  # noqa: E402

from skal.cli import main  # noqa: E402

N_FILES, N_PATIENTS = 120, 12
CLASSES = {0: "normal", 1: "nodule"}


def write_pool(root, rng):
    """``N_FILES`` DICOM files under ``root/patientXX/``; returns {relative path: label}."""
    truth = {}
    for i in range(N_FILES):
        label = int(rng.rand() < 0.4)
        rel = f"patient{i % N_PATIENTS:02d}/image_{i:04d}.dcm"
        write_dicom(root / rel, synthetic_image(label, rng), monochrome1=rng.rand() < 0.3)
        truth[rel] = CLASSES[label]
    return truth


def skal(command):
    """Run ``skal <command>`` as typed in a shell."""
    print(f"\n$ skal {command}")
    code = main(shlex.split(command))
    if code:
        raise SystemExit(f"skal exited with status {code}")


def radiologist_reads(batch_csv, labels_csv, truth):
    """Fill in the ``label`` column of a batch CSV (the radiologist's work)."""
    with open(batch_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    with open(labels_csv, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "path", "label"])
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "label": truth[row["id"]]})


def run(work):
    rng = np.random.RandomState(0)
    dicoms, camp = work / "dicoms", work / "chest-campaign"
    truth = write_pool(dicoms, rng)
    print(f"wrote {len(truth)} DICOM files under {dicoms}")

    skal(f"campaign init {camp} --pool {dicoms} --classes normal nodule --strategy margin "
         "--size 32 --epochs 10 --min-steps 100 --no-progress")
    # a held-out set of 30 reads, never trained on, scores every model
    holdout = sorted(rng.choice(sorted(truth), 30, replace=False))
    with open(work / "holdout.csv", "w", newline="") as handle:
        handle.write("id,label\n" + "".join(f"{i},{truth[i]}\n" for i in holdout))
    skal(f"campaign label {camp} {work / 'holdout.csv'} --holdout --annotator dr_jones")

    for _ in range(3):
        skal(f"campaign next {camp} -n 10 --out {work / 'batch.csv'}")
        radiologist_reads(work / "batch.csv", work / "batch_labels.csv", truth)
        skal(f"campaign label {camp} {work / 'batch_labels.csv'} --annotator dr_smith")
        skal(f"campaign train {camp} --no-progress")

    skal(f"campaign status {camp}")
    skal(f"campaign next {camp} -n 10 --label-studio {work / 'label-studio' / 'tasks.json'}")
    skal(f"campaign export {camp}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        folder = Path(sys.argv[1])
        folder.mkdir(parents=True, exist_ok=True)
        run(folder)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            run(Path(tmp))
