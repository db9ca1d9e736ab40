"""`skal campaign` commands on a DICOM folder, CSV and Label Studio interop."""

import csv
import json

import numpy as np
import pytest

from skal import SkalValueError
from skal.campaign import Campaign, PoolChangedError
from skal.campaign.interop import (read_label_studio_export, read_labels_csv,
                                   write_label_studio_tasks)
from skal.cli import main
from conftest import write_dicom

FAST = ["--epochs", "1", "--min-steps", "4", "--cv", "0", "--no-progress"]





@pytest.fixture
def dicom_folder(tmp_path):
    """24 16x16 DICOM files in two patient folders; odd files show a bright square."""
    rng = np.random.RandomState(0)
    truth = {}
    for i in range(24):
        image = rng.normal(1000, 100, (16, 16))
        if i % 2:
            image[4:10, 4:10] += 1500
        rel = f"patient{i % 2}/img{i:02d}.dcm"
        write_dicom(tmp_path / "pool" / rel, np.clip(image, 0, 4095), bits_stored=12)
        truth[rel] = "pneumonia" if i % 2 else "normal"
    return tmp_path / "pool", truth


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def fill_batch(batch_csv, truth, out):
    rows = read_csv(batch_csv)
    with open(out, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "path", "label"])
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "label": truth[row["id"]]})
    return rows


def test_cli_round_trip_on_a_dicom_folder(tmp_path, dicom_folder, capsys):
    pool, truth = dicom_folder
    camp = tmp_path / "camp"
    init = ["campaign", "init", str(camp), "--pool", str(pool), "--size", "16",
            "--classes", "normal,pneumonia", "--strategy", "margin"] + FAST
    assert main(init) == 0
    assert main(init) == 0                                  # rerun: nothing to do
    assert "already a campaign" in capsys.readouterr().out
    assert main(["campaign", "next", str(camp), "-n", "6", "--out",
                 str(tmp_path / "batch.csv")]) == 0
    rows = fill_batch(tmp_path / "batch.csv", truth, tmp_path / "labels.csv")
    assert len(rows) == 6 and all(r["id"] in truth for r in rows)
    assert all(r["path"] == str(pool.resolve() / r["id"]) for r in rows)
    assert main(["campaign", "next", str(camp), "-n", "6", "--out",
                 str(tmp_path / "again.csv")]) == 0         # the same pending batch
    assert read_csv(tmp_path / "again.csv") == read_csv(tmp_path / "batch.csv")
    assert main(["campaign", "label", str(camp), str(tmp_path / "labels.csv"),
                 "--annotator", "dr_a"]) == 0
    assert main(["campaign", "label", str(camp), str(tmp_path / "labels.csv")]) == 0
    assert "0 added, 0 corrected, 6 unchanged" in capsys.readouterr().out
    assert main(["campaign", "train", str(camp), "--no-progress"]) == 0
    assert main(["campaign", "train", str(camp), "--no-progress"]) == 0
    assert "up to date" in capsys.readouterr().out
    assert main(["campaign", "next", str(camp), "-n", "4", "--out",
                 str(tmp_path / "b2.csv")]) == 0
    fill_batch(tmp_path / "b2.csv", truth, tmp_path / "l2.csv")
    assert main(["campaign", "label", str(camp), str(tmp_path / "l2.csv")]) == 0
    assert main(["campaign", "train", str(camp), "--cv", "2", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["campaign", "status", str(camp)]) == 0
    out = capsys.readouterr().out
    assert "10 labelled" in out and "2-fold cv" in out
    assert (camp / "learning_curve.png").stat().st_size > 0
    assert main(["campaign", "export", str(camp), "--out", str(tmp_path / "export")]) == 0
    exported = read_csv(tmp_path / "export" / "labels.csv")
    assert {r["id"]: r["label"] for r in exported} == {
        r["id"]: truth[r["id"]] for r in rows + read_csv(tmp_path / "b2.csv")}
    assert (tmp_path / "export" / "model.safetensors").is_file()
    opened = Campaign.open(camp)
    assert opened.label_history(rows[0]["id"])[0]["annotator"] == "dr_a"


def test_cli_errors_are_one_line_with_status_2(tmp_path, dicom_folder, capsys):
    pool, truth = dicom_folder
    camp = tmp_path / "camp"
    assert main(["campaign", "init", str(camp), "--pool", str(pool), "--classes", "a", "b",
                 "--size", "16"] + FAST) == 0
    capsys.readouterr()
    bad = tmp_path / "bad.csv"
    bad.write_text("id,label\npatient0/img00.dcm,a\npatient0/img02.dcm,zebra\n")
    assert main(["campaign", "label", str(camp), str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Unknown class 'zebra'" in err
    assert Campaign.open(camp).labels() == {}               # nothing recorded
    assert main(["campaign", "train", str(tmp_path / "nowhere")]) == 2
    assert "No campaign database" in capsys.readouterr().err
    assert main(["campaign", "init", str(camp), "--pool", str(pool), "--classes", "x", "y"]
                + FAST) == 2                                # other classes: refused
    (pool / "patient1" / "img03.dcm").write_bytes(b"changed")
    assert main(["campaign", "status", str(camp)]) == 2
    assert "changed (e.g. patient1/img03.dcm)" in capsys.readouterr().err


def test_init_with_known_labels_and_moved_pool(tmp_path, dicom_folder):
    pool, truth = dicom_folder
    known = tmp_path / "known.csv"
    known.write_text("id,label\n" + "".join(f"{k},{v}\n" for k, v in list(truth.items())[:4]))
    camp = tmp_path / "camp"
    assert main(["campaign", "init", str(camp), "--pool", str(pool), "--labels-csv",
                 str(known), "--size", "16"] + FAST) == 0
    opened = Campaign.open(camp)
    assert opened.classes == ["normal", "pneumonia"]        # from the CSV
    assert len(opened.labels()) == 4
    opened.close()
    moved = tmp_path / "moved"
    pool.rename(moved)
    with pytest.raises(PoolChangedError, match="moved or deleted"):
        Campaign.open(camp)
    Campaign.open(camp, pool=moved).close()
    assert Campaign.open(camp).item_path("patient0/img00.dcm") == str(
        moved.resolve() / "patient0/img00.dcm")


def label_studio_task(task_id, skal_id, annotations):
    """A task as Label Studio's JSON export writes it (docs: "Label Studio JSON format
    of annotated tasks")."""
    return {
        "id": task_id, "created_at": "2026-11-29T09:00:00.000000Z",
        "updated_at": "2026-11-29T10:00:00.000000Z", "project": 3,
        "data": {"image": f"/data/local-files/?d=images/{skal_id}.png", "skal_id": skal_id},
        "annotations": annotations, "predictions": [],
    }


def annotation(ann_id, choices, *, cancelled=False, when="2026-11-29T10:00:00.000000Z",
               user=7):
    return {
        "id": ann_id,
        "result": [{"from_name": "choice", "id": f"r{ann_id}", "to_name": "image",
                    "type": "choices", "origin": "manual", "value": {"choices": choices}}],
        "was_cancelled": cancelled, "ground_truth": False, "created_at": when,
        "updated_at": when, "lead_time": 3.2, "result_count": 0, "task": ann_id,
        "completed_by": user,
    }


def test_label_studio_tasks_and_export_single_label(tmp_path, dicom_folder, capsys):
    pool, truth = dicom_folder
    camp = tmp_path / "camp"
    assert main(["campaign", "init", str(camp), "--pool", str(pool), "--size", "16",
                 "--classes", "normal", "pneumonia"] + FAST) == 0
    tasks_file = tmp_path / "ls" / "tasks.json"
    assert main(["campaign", "next", str(camp), "-n", "3", "--label-studio",
                 str(tasks_file)]) == 0
    tasks = json.loads(tasks_file.read_text())
    ids = [t["data"]["skal_id"] for t in tasks]
    assert len(tasks) == 3 and set(ids) <= set(truth)
    for task in tasks:            # DICOM is rendered to PNG under the document root
        rel = task["data"]["image"].split("?d=", 1)[1]
        assert task["data"]["image"].startswith("/data/local-files/?d=")
        assert (tmp_path / "ls" / "images" / rel).stat().st_size > 0
    export = [
        label_studio_task(1, ids[0], [annotation(1, [truth[ids[0]]])]),
        # the latest annotation that was not cancelled wins
        label_studio_task(2, ids[1], [
            annotation(2, ["normal"], when="2026-11-29T10:00:00Z"),
            annotation(3, [truth[ids[1]]], when="2026-11-29T11:00:00Z"),
            annotation(4, ["normal"], cancelled=True, when="2026-11-29T12:00:00Z")]),
        label_studio_task(3, ids[2], []),                    # not annotated yet: skipped
    ]
    (tmp_path / "export.json").write_text(json.dumps(export))
    assert main(["campaign", "label", str(camp), str(tmp_path / "export.json")]) == 0
    opened = Campaign.open(camp)
    assert opened.labels() == {ids[0]: truth[ids[0]], ids[1]: truth[ids[1]]}
    assert opened.label_history(ids[0])[0]["annotator"] == "label-studio:7"
    two = [label_studio_task(5, ids[2], [annotation(5, ["normal", "pneumonia"])])]
    (tmp_path / "two.json").write_text(json.dumps(two))
    assert main(["campaign", "label", str(camp), str(tmp_path / "two.json")]) == 2
    assert "exactly one choice" in capsys.readouterr().err


def test_label_studio_multilabel_export(tmp_path):
    X = np.random.RandomState(0).randint(0, 255, (10, 1, 8, 8)).astype(np.uint8)
    np.save(tmp_path / "pool.npy", X)
    camp = Campaign.create(tmp_path / "c", tmp_path / "pool.npy", None, "entropy",
                           classes=["effusion", "nodule", "mass"], multilabel=True,
                           progress=False)
    path = write_label_studio_tasks(tmp_path / "tasks.json", camp, camp.ids[:2])
    tasks = json.loads(path.read_text())
    assert [t["data"]["skal_id"] for t in tasks] == camp.ids[:2]
    export = [label_studio_task(1, camp.ids[0], [annotation(1, ["mass", "effusion"],
                                                            user={"id": 2, "email": "a@b"})]),
              label_studio_task(2, camp.ids[1], [annotation(2, [])])]
    ids, labels, who = read_label_studio_export(export)
    assert (ids, labels, who) == (camp.ids[:2], [["mass", "effusion"], []],
                                  ["a@b", "label-studio:7"])
    from skal.campaign.interop import import_label_studio

    (tmp_path / "export.json").write_text(json.dumps(export))
    assert import_label_studio(camp, tmp_path / "export.json")["added"] == 2
    assert camp.labels() == {camp.ids[0]: ["effusion", "mass"], camp.ids[1]: []}
    bad = [label_studio_task(3, camp.ids[2], [annotation(3, ["tumour"])])]
    with pytest.raises(SkalValueError, match="Unknown class"):
        import_label_studio(camp, bad)
    with pytest.raises(SkalValueError, match="no data.skal_id"):
        read_label_studio_export([{"id": 1, "data": {"image": "x"}, "annotations": []}])


def test_csv_multilabel_cells(tmp_path):
    path = tmp_path / "l.csv"
    path.write_text("id,label\nrow-000000,effusion;mass\nrow-000001,\nrow-000002,nodule\n")
    assert read_labels_csv(path, multilabel=True) == (
        ["row-000000", "row-000002"], [["effusion", "mass"], ["nodule"]])
    assert read_labels_csv(path, multilabel=True, skip_empty=False)[1][1] == []
    (tmp_path / "paths.csv").write_text("path,label\na/b.dcm,nodule\n")
    assert read_labels_csv(tmp_path / "paths.csv") == (["a/b.dcm"], ["nodule"])
    (tmp_path / "bad.csv").write_text("name,label\nx,y\n")
    with pytest.raises(SkalValueError, match="'id' \\(or 'path'\\) and 'label'"):
        read_labels_csv(tmp_path / "bad.csv")
