"""``skal campaign``: annotation rounds from the command line.

::

    skal campaign init   DIR --pool FOLDER_OR_NPZ --classes normal pneumonia [--strategy margin]
    skal campaign next   DIR -n 20 [--out batch.csv] [--label-studio tasks.json]
    skal campaign label  DIR labels.csv            # or a Label Studio JSON export
    skal campaign train  DIR
    skal campaign status DIR                        # table + learning_curve.png
    skal campaign export DIR [--out FOLDER]         # labels + model

Every command is safe to rerun: ``init`` on an existing campaign with the same pool
does nothing, ``next`` returns the pending batch until it is labelled, ``label`` with
the same file records nothing new, ``train`` without new labels keeps the latest model.
Errors print one line and exit with status 2.
"""

import sqlite3
import sys
from pathlib import Path

__all__ = ["add_campaign_parser", "run_campaign"]


def add_campaign_parser(sub):
    """Add the ``campaign`` command and its sub-commands to ``sub`` (argparse)."""
    camp = sub.add_parser("campaign", help="run a real annotation campaign (rounds of "
                          "next / label / train)", description=__doc__.split("\n\n")[0])
    cmds = camp.add_subparsers(dest="campaign_command", required=True)

    init = cmds.add_parser("init", help="create a campaign over a pool of images")
    init.add_argument("dir", help="campaign folder (created)")
    init.add_argument("--pool", required=True,
                      help="folder of DICOM / PNG files, or an .npz / .npy file of images")
    init.add_argument("--pattern", default=None,
                      help="files of a folder pool (default: **/*.dcm)")
    init.add_argument("--key", default=None, help="array of an .npz pool (default: images)")
    init.add_argument("--size", type=int, default=64, help="folder images resized to this")
    init.add_argument("--classes", nargs="+", default=None,
                      help="class names (space- or comma-separated); default: those of "
                           "--labels-csv")
    init.add_argument("--multilabel", action="store_true",
                      help="items carry a set of classes (';'-separated in CSV cells)")
    init.add_argument("--labels-csv", default=None,
                      help="labels already known (columns id or path, label)")
    init.add_argument("--strategy", default="uncertainty",
                      help="query strategy name (default: %(default)s)")
    init.add_argument("--net", choices=["small", "resnet18"], default="small")
    init.add_argument("--epochs", type=int, default=30, help="max epochs per training")
    init.add_argument("--min-steps", type=int, default=200,
                      help="at least this many optimizer steps per training")
    init.add_argument("--cv", type=int, default=3,
                      help="cross-validation folds scored after training when there is "
                           "no held-out set (0: none)")
    init.add_argument("--seed", type=int, default=0)

    nxt = cmds.add_parser("next", help="the next batch of items to label")
    nxt.add_argument("dir")
    nxt.add_argument("-n", type=int, default=20, help="batch size (default: %(default)s)")
    nxt.add_argument("--out", default=None, help="write the batch as CSV here")
    nxt.add_argument("--label-studio", default=None,
                     help="write the batch as Label Studio tasks JSON here")
    nxt.add_argument("--document-root", default=None,
                     help="Label Studio's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT")
    nxt.add_argument("--n-jobs", type=int, default=None,
                     help="joblib workers scoring the pool")

    lab = cmds.add_parser("label", help="record labels from a CSV or a Label Studio export")
    lab.add_argument("dir")
    lab.add_argument("file", help="CSV (id,label) or Label Studio JSON export")
    lab.add_argument("--annotator", default=None, help="who labelled (default: user name)")
    lab.add_argument("--correct", action="store_true",
                     help="allow changing recorded labels (history is kept)")
    lab.add_argument("--holdout", action="store_true",
                     help="these labels form the held-out evaluation set")

    trn = cmds.add_parser("train", help="train a model on every label and checkpoint it")
    trn.add_argument("dir")
    trn.add_argument("--cv", type=int, default=None, help="override the campaign's folds")

    st = cmds.add_parser("status", help="a table and a learning-curve PNG")
    st.add_argument("dir")
    st.add_argument("--plot", default=None,
                    help="learning-curve PNG (default: DIR/learning_curve.png)")

    ex = cmds.add_parser("export", help="write labels (CSV) and the latest model")
    ex.add_argument("dir")
    ex.add_argument("--out", default=None, help="output folder (default: DIR/export)")
    for parser in (init, nxt, lab, trn, st, ex):
        parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return camp


def _estimator(args, multilabel):
    from .nets import CNNClassifier, MultiLabelCNNClassifier, ResNet18, SmallCNN

    module = {"small": SmallCNN, "resnet18": ResNet18}[args.net]
    cls = MultiLabelCNNClassifier if multilabel else CNNClassifier
    return cls(module=module, max_epochs=args.epochs, min_steps=args.min_steps)


def _split_classes(values):
    return [c.strip() for v in values for c in v.split(",") if c.strip()]


def _init(args):
    from .campaign import Campaign
    from .campaign.ids import describe_pool
    from .campaign.interop import read_labels_csv
    from .exceptions import SkalValueError

    path = Path(args.dir)
    known = None
    if args.labels_csv:
        known = read_labels_csv(args.labels_csv, multilabel=args.multilabel)
    classes = _split_classes(args.classes) if args.classes else None
    if classes is None:
        if known is None:
            raise SkalValueError("Give --classes (or --labels-csv to take them from).")
        names = {c for lab in known[1] for c in (lab if args.multilabel else [lab])}
        classes = sorted(names)
    if (path / "campaign.sqlite").is_file():
        campaign = Campaign.open(path, verify="quick")
        spec = describe_pool(args.pool, pattern=args.pattern, key=args.key, size=args.size)
        same = {k: v for k, v in spec.items() if k != "size"} == {
            k: v for k, v in campaign.pool_spec.items() if k != "size"}
        if not same or campaign.classes != classes:
            raise SkalValueError(f"{path} is already a campaign with another pool or other "
                                 "classes; choose a new folder.")
        print(f"{path} is already a campaign over this pool; nothing to do.")
    else:
        campaign = Campaign.create(
            path, args.pool, _estimator(args, args.multilabel), args.strategy,
            classes=classes, multilabel=args.multilabel, pattern=args.pattern, key=args.key,
            size=args.size, random_state=args.seed, cv=args.cv,
            progress=not args.no_progress)
        print(f"created {path}: {len(campaign.ids)} items, classes {classes}, strategy "
              f"{args.strategy}")
    if known is not None:
        ids = [_item_id(campaign, i) for i in known[0]]
        counts = campaign.add_labels(ids, known[1], annotator="labels-csv")
        print(f"labels from {args.labels_csv}: {_counts(counts)}")
    return 0


def _item_id(campaign, key):
    """An item id from a CSV key: the id itself, or a path (absolute or relative to the
    pool folder) of a file item."""
    if key in campaign:
        return key
    if campaign.pool_kind == "folder":
        try:
            rel = Path(key).resolve().relative_to(campaign.pool_root.resolve()).as_posix()
            return rel
        except ValueError:
            pass
    return key


def _counts(counts):
    return ", ".join(f"{v} {k}" for k, v in counts.items())


def _next(args):
    from .campaign import Campaign
    from .campaign.interop import write_batch_csv, write_label_studio_tasks

    campaign = Campaign.open(args.dir, verify="quick", n_jobs=args.n_jobs)
    ids = campaign.next_batch(args.n, progress=not args.no_progress)
    if args.out:
        write_batch_csv(args.out, campaign, ids)
    if args.label_studio:
        write_label_studio_tasks(args.label_studio, campaign, ids,
                                 document_root=args.document_root)
    for item_id in ids:
        path = campaign.item_path(item_id)
        print(item_id if path is None else f"{item_id}\t{path}")
    written = [p for p in (args.out, args.label_studio) if p]
    print(f"{len(ids)} item(s) to label" + (f"; wrote {', '.join(written)}" if written
                                            else ""), file=sys.stderr)
    return 0


def _label(args):
    from .campaign import Campaign
    from .campaign.interop import import_label_studio, read_labels_csv

    campaign = Campaign.open(args.dir, verify="quick")
    if str(args.file).lower().endswith(".json"):
        counts = import_label_studio(campaign, args.file, correct=args.correct,
                                     holdout=args.holdout)
    else:
        ids, labels = read_labels_csv(args.file, multilabel=campaign.multilabel)
        ids = [_item_id(campaign, i) for i in ids]
        counts = campaign.add_labels(ids, labels, annotator=args.annotator,
                                     correct=args.correct, holdout=args.holdout)
    print(f"{args.file}: {_counts(counts)}")
    return 0


def _train(args):
    from .campaign import Campaign

    campaign = Campaign.open(args.dir, verify="quick")
    before = campaign.status()["n_checkpoints"]
    checkpoint = campaign.train(cv=args.cv, progress=not args.no_progress)
    fresh = campaign.status()["n_checkpoints"] > before
    metrics = {k: v for k, v in checkpoint["metrics"].items() if isinstance(v, float)}
    print(("trained" if fresh else "up to date, no new label:") + f" checkpoint "
          f"{checkpoint['id']} on {checkpoint['n_labels']} labels; "
          + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
          + f" ({checkpoint['metrics'].get('source')})")
    return 0


def format_status(status):
    """The status of a campaign as a text table."""
    lines = [f"campaign  {status['path']}",
             f"pool      {status['n_items']} items: {status['n_labelled']} labelled, "
             f"{status['n_holdout']} held out, {status['n_unlabelled']} unlabelled",
             "classes   " + ", ".join(f"{c} {n}" for c, n in status["per_class"].items()),
             f"strategy  {status['strategy']}; {status['n_rounds']} round(s), "
             f"{status['pending']} item(s) pending",
             f"models    {status['n_checkpoints']} checkpoint(s)"
             + ("" if status["up_to_date"] or not status["n_checkpoints"]
                else " (new labels since the latest: run train)")]
    if status["curve"]:
        keys = [k for k in ("accuracy", "auroc") if k in status["curve"][-1]]
        lines.append("")
        lines.append("labels  " + "  ".join(f"{k:>8}" for k in keys) + "  evaluation")
        for point in status["curve"]:
            lines.append(f"{point['n_labels']:>6}  " + "  ".join(
                f"{point.get(k, float('nan')):>8.4f}" for k in keys)
                + f"  {point.get('source')}")
    return "\n".join(lines)


def _status(args):
    from .campaign import Campaign

    campaign = Campaign.open(args.dir, verify="quick")
    print(format_status(campaign.status()))
    plot = Path(args.plot) if args.plot else Path(args.dir) / "learning_curve.png"
    campaign.plot_curve(plot)
    print(f"wrote {plot}")
    return 0


def _export(args):
    from .campaign import Campaign

    campaign = Campaign.open(args.dir, verify="quick")
    out = Path(args.out) if args.out else Path(args.dir) / "export"
    written = campaign.export(out)
    print("wrote " + ", ".join(written.values()))
    return 0


_COMMANDS = {"init": _init, "next": _next, "label": _label, "train": _train,
             "status": _status, "export": _export}


def run_campaign(args):
    """Run ``skal campaign <command>``; errors print one line and return 2."""
    from .exceptions import SkalError

    try:
        return _COMMANDS[args.campaign_command](args)
    except (SkalError, OSError, sqlite3.Error) as exc:
        print(f"skal campaign {args.campaign_command}: error: {exc}", file=sys.stderr)
        return 2
