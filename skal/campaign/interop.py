"""Annotation tools: CSV files and Label Studio.

CSV
    Batches to label and labels use the same columns: ``id`` (the item id), ``path``
    (the file, for folder pools) and ``label`` (a class name; multi-label items list
    their classes in one cell separated by ``;``, e.g. ``effusion;nodule``).

Label Studio
    :func:`write_label_studio_tasks` writes the batch as Label Studio tasks JSON, the
    images served as local files (``/data/local-files/?d=<path>``, relative to Label
    Studio's ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``) and the item id kept in
    ``data.skal_id``. :func:`read_label_studio_export` reads the JSON export of a
    project with a ``Choices`` control (``choice="single"`` or ``"multiple"``): one
    ``choices`` result per task, its latest annotation that was not cancelled.
"""

import csv
import io
import json
from pathlib import Path

from ..data.labels_csv import read_csv_rows
from ..exceptions import DataFileError, SkalValueError
from ..utils.io import atomic_write_bytes

__all__ = ["import_label_studio", "read_labels_csv", "write_batch_csv", "write_labels_csv",
           "write_label_studio_tasks", "read_label_studio_export", "label_studio_config"]


def _cell(label):
    return ";".join(label) if isinstance(label, (list, tuple)) else str(label)


def _write_csv(path, header, rows):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))


def write_batch_csv(path, campaign, ids):
    """The batch to label: ``id``, ``path`` (folder pools) and an empty ``label``
    column for the annotator to fill in."""
    files = campaign.pool_kind == "folder"
    header = ["id", "path", "label"] if files else ["id", "label"]
    rows = [[i, campaign.item_path(i), ""] if files else [i, ""] for i in ids]
    return _write_csv(path, header, rows)


def write_labels_csv(path, campaign, records):
    """Label records (from the label history) as CSV."""
    files = campaign.pool_kind == "folder"
    header = (["id"] + (["path"] if files else [])
              + ["label", "annotator", "created", "holdout", "round"])
    rows = [[r["id"]] + ([campaign.item_path(r["id"])] if files else [])
            + [_cell(r["label"]), r["annotator"], r["created"], int(r["holdout"]),
               "" if r["round"] is None else r["round"]] for r in records]
    return _write_csv(path, header, rows)


def _id_and_label(columns):
    """The columns a labels CSV needs: ``id`` (``path`` in a file without one), ``label``."""
    return ("id" if "id" in columns else "path", "label")


def read_labels_csv(path, *, multilabel=False, skip_empty=True):
    """``(ids, labels)`` from a CSV with ``id`` (or, without it, ``path``) and ``label``
    columns.

    Rows with an empty ``label`` are skipped (a batch file partly filled in), except in
    multi-label campaigns with ``skip_empty=False`` where an empty cell means "no
    class". Multi-label cells are split on ``;``.
    """
    columns, rows = read_csv_rows(path, _id_and_label,
                                  hint="A labels CSV needs 'id' (or 'path') and 'label'.")
    key = _id_and_label(columns)[0]
    ids, labels = [], []
    for line, row in enumerate(rows, start=2):
        item_id = (row.get(key) or "").strip()
        cell = (row.get("label") or "").strip()
        if not item_id:
            raise DataFileError(f"Row {line} of {path} has an empty id.")
        if not cell and (skip_empty or not multilabel):
            continue
        ids.append(item_id)
        labels.append([v.strip() for v in cell.split(";") if v.strip()] if multilabel
                      else cell)
    return ids, labels


def label_studio_config(classes, multilabel=False):
    """The labeling config (XML) of a Label Studio project for this campaign."""
    choice = "multiple" if multilabel else "single"
    options = "\n".join(f'    <Choice value="{c}"/>' for c in classes)
    return (f'<View>\n  <Image name="image" value="$image"/>\n  <Choices name="choice" '
            f'toName="image" choice="{choice}">\n{options}\n  </Choices>\n</View>\n')


def write_label_studio_tasks(path, campaign, ids, *, document_root=None, image_dir=None):
    """The batch as Label Studio tasks JSON (local files).

    Parameters
    ----------
    path : output ``.json`` file
    campaign : Campaign
    ids : item ids of the batch
    document_root : folder, optional
        Label Studio's ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``; image paths are
        written relative to it (default: the pool folder, or ``image_dir``).
    image_dir : folder, optional
        Where PNG renderings of the items are written. Needed for array pools and for
        DICOM files (browsers do not show DICOM); defaults to ``path``'s folder /
        ``images``.
    """
    path = Path(path)
    need_png = campaign.pool_kind != "folder" or any(
        not campaign.item_path(i).lower().endswith((".png", ".jpg", ".jpeg")) for i in ids)
    tasks = []
    if need_png:
        image_dir = Path(image_dir) if image_dir is not None else path.parent / "images"
        files = _render_pngs(campaign, ids, image_dir)
        root = Path(document_root) if document_root is not None else image_dir
    else:
        files = [Path(campaign.item_path(i)) for i in ids]
        root = Path(document_root) if document_root is not None else campaign.pool_root
    for item_id, file in zip(ids, files):
        try:
            rel = Path(file).resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            raise SkalValueError(f"{file} is not under the document root {root}; set "
                                 "document_root to a folder that contains the images.") from None
        tasks.append({"data": {"image": f"/data/local-files/?d={rel}", "skal_id": item_id}})
    atomic_write_bytes(path, json.dumps(tasks, indent=2).encode("utf-8"))
    return path


def _render_pngs(campaign, ids, folder):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np

    from ..data.pool import materialize, take

    folder.mkdir(parents=True, exist_ok=True)
    positions = [campaign.ids.index(i) for i in ids]
    images = materialize(take(campaign.X, positions))
    files = []
    for item_id, image in zip(ids, images):
        image = np.asarray(image, dtype=np.float64)
        if image.ndim == 3:                       # (C, H, W): first channel
            image = image[0]
        name = item_id.replace("/", "__") + ".png"
        lo, hi = float(image.min()), float(image.max())
        plt.imsave(folder / name, (image - lo) / (hi - lo) if hi > lo else image * 0,
                   cmap="gray", vmin=0, vmax=1)
        files.append(folder / name)
    return files


def _annotator(annotation):
    who = annotation.get("completed_by")
    if isinstance(who, dict):
        return str(who.get("email") or who.get("id") or "label-studio")
    return f"label-studio:{who}" if who is not None else "label-studio"


def read_label_studio_export(path_or_tasks, *, from_name=None):
    """``(ids, labels, annotators)`` from a Label Studio JSON export.

    Each task's item id is ``data.skal_id`` (written by
    :func:`write_label_studio_tasks`). Its label is the ``choices`` result (of the
    control ``from_name`` when given) of the latest annotation that was not
    cancelled; a multi-choice result gives a list of classes. Tasks without such an
    annotation are skipped.
    """
    if isinstance(path_or_tasks, (str, Path)):
        try:
            tasks = json.loads(Path(path_or_tasks).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataFileError(f"{path_or_tasks} is not a readable JSON file: {exc}") from exc
    else:
        tasks = path_or_tasks
    if not isinstance(tasks, list):
        raise DataFileError("A Label Studio JSON export is a list of tasks.")
    ids, labels, who = [], [], []
    for task in tasks:
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise DataFileError(f"Not a Label Studio task: {str(task)[:80]}.")
        item_id = task["data"].get("skal_id")
        if item_id is None:
            raise DataFileError(f"Task {task.get('id')} has no data.skal_id; export tasks "
                                "that skal wrote (skal campaign next --label-studio).")
        annotations = [a for a in task.get("annotations") or []
                       if not a.get("was_cancelled")]
        annotations.sort(key=lambda a: (a.get("updated_at") or a.get("created_at") or "",
                                        str(a.get("id"))))
        for annotation in reversed(annotations):
            results = [r for r in annotation.get("result") or []
                       if r.get("type") == "choices"
                       and (from_name is None or r.get("from_name") == from_name)]
            if not results:
                continue
            if len(results) > 1:
                raise DataFileError(f"Task {task.get('id')} has {len(results)} choices "
                                    "results; name the control with from_name=.")
            choices = results[0].get("value", {}).get("choices")
            if not isinstance(choices, list):
                raise DataFileError(f"Task {task.get('id')}: a choices result without a "
                                    "list of choices.")
            ids.append(str(item_id))
            labels.append(choices)
            who.append(_annotator(annotation))
            break
    return ids, labels, who


def import_label_studio(campaign, path, *, from_name=None, correct=False, holdout=False):
    """Record the labels of a Label Studio JSON export in ``campaign`` (one transaction;
    see :meth:`Campaign.add_labels`). A single-label campaign needs exactly one choice
    per task."""
    ids, choices, annotators = read_label_studio_export(path, from_name=from_name)
    if not campaign.multilabel:
        bad = [i for i, c in zip(ids, choices) if len(c) != 1]
        if bad:
            raise SkalValueError(f"{len(bad)} task(s) do not have exactly one choice in a "
                                 f"single-label campaign (e.g. {bad[:5]}); nothing was "
                                 "recorded.")
        choices = [c[0] for c in choices]
    return campaign.add_labels(ids, choices, annotator=annotators, correct=correct,
                               holdout=holdout)
