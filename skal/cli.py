"""The ``skal`` command line.

``skal simulate`` runs a simulated active-learning campaign (strategies x seeds x
rounds) on labelled data, prints a summary table and writes ``results.json`` and
``learning_curves.png``. With no ``--data`` it uses scikit-learn's bundled digits images,
so it runs anywhere without a download.
"""

import argparse
import math
import os
import sys
from pathlib import Path

import numpy as np

from .cli_campaign import add_campaign_parser, run_campaign
from .exceptions import SkalError, SkalValueError
from .nets.pretrained import AUTO_FULL_FINETUNE_FROM, FINETUNE_MODES

__all__ = ["main", "build_parser", "format_summary"]


def _estimator(args, multilabel, pretrain):
    from .nets import CNNClassifier, MultiLabelCNNClassifier, ResNet18, SmallCNN

    module = {"small": SmallCNN, "resnet18": ResNet18}[args.net]
    cls = MultiLabelCNNClassifier if multilabel else CNNClassifier
    params = dict(module=module, max_epochs=args.epochs, min_steps=args.min_steps,
                  device=args.device)
    if pretrain != "none":
        params["finetune"] = args.finetune
    if args.lr:
        params["lr"] = args.lr
    return cls(**params)


def _pretrain_choice(args, multilabel, X_pool):
    """``--pretrain``, with ``auto`` resolved by :func:`skal.simulate.wants_pretraining`
    (SimCLR on pools of at least 1,000 images, the digits demo included)."""
    if args.pretrain == "auto":
        from .simulate import wants_pretraining

        scratch = _estimator(args, multilabel, "none")
        return "simclr" if wants_pretraining(scratch, X_pool) else "none"
    return args.pretrain


def _pretrainer(args, pretrain):
    """The self-supervised pre-trainer of ``--pretrain`` (None for ``none``)."""
    if pretrain == "none":
        return None
    from .pretrain import SimCLR

    return SimCLR(max_epochs=args.pretrain_epochs, device=args.device, random_state=0)


def _fmt(value, spec):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return format(value, spec)


def format_summary(summary):
    """The summary of :meth:`SimulationResult.summary` as a text table."""
    metric = summary["metric"].upper() if summary["metric"] == "auroc" else summary["metric"]
    has_base = summary["baseline"] is not None
    target = summary["target"]
    header = ["strategy", "AULC", "dAULC vs random (SE)", f"final {metric}",
              "labels to target", "ratio vs random"]
    lines = []
    for row in summary["rows"]:
        diff = (f"{row['aulc_diff']:+.4f} ({_fmt(row['aulc_diff_se'], '.4f')})"
                if has_base else "n/a")
        lines.append([
            row["strategy"], f"{row['aulc']:.4f}", diff,
            f"{row['final']:.4f} ± {row['final_std']:.4f}",
            _fmt(row.get("labels_to_target"), "d") if target is not None else "n/a",
            (_fmt(row.get("ratio"), ".2f") + "x") if row.get("ratio") is not None else "n/a",
        ])
    widths = [max(len(str(r[i])) for r in [header] + lines) for i in range(len(header))]
    text = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths))]
    text.append("  ".join("-" * w for w in widths))
    text += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in lines]
    if target is not None:
        text.append(f"target: {metric} >= {target:.4f} "
                    f"({'random' if has_base else 'given'}'s final mean), held until the end")
    return "\n".join(text)


def build_parser():
    parser = argparse.ArgumentParser(prog="skal", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tune-malloc", action="store_true",
                        help="keep freed batch memory for reuse (glibc; also set by "
                             "SKAL_TUNE_MALLOC=1), see docs/getting_started.md")
    sub = parser.add_subparsers(dest="command", required=True)
    sim = sub.add_parser(
        "simulate", help="simulate active-learning campaigns on labelled data",
        description="Simulate pool-based active learning with known labels and compare "
                    "strategies against random selection.")
    sim.add_argument("--data", default="digits",
                     help="'digits' (bundled, default), a MedMNIST .npz file, an .npz with "
                          "images/labels[/patient_ids] (split by patient), or a DICOM "
                          "folder (with --labels)")
    sim.add_argument("--labels", help="CSV of labels for a DICOM folder (columns path,label)")
    sim.add_argument("--size", type=int, default=64, help="DICOM images are resized to this")
    sim.add_argument("--test-fraction", type=float, default=0.25,
                     help="held-out share (of patients, when known) for data without a test split")
    sim.add_argument("--strategies", default="random,uncertainty,margin,entropy",
                     help="comma-separated names (default: %(default)s)")
    sim.add_argument("--seeds", type=int, default=3, help="paired seeds (default: %(default)s)")
    sim.add_argument("--initial", type=int, default=10, help="initial labelled images")
    sim.add_argument("--batch", type=int, default=10, help="images queried per round")
    sim.add_argument("--rounds", type=int, default=10, help="query rounds")
    sim.add_argument("--metric", choices=["auto", "accuracy", "auroc"], default="auto")
    sim.add_argument("--target", type=float, default=None,
                     help="metric target for labels-to-target (default: random's final)")
    sim.add_argument("--net", choices=["small", "resnet18"], default="small")
    sim.add_argument("--epochs", type=int, default=30, help="max epochs per fit")
    sim.add_argument("--min-steps", type=int, default=200,
                     help="at least this many optimizer steps per fit (default: %(default)s)")
    sim.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    sim.add_argument("--threads", type=int, default=1,
                     help="torch CPU threads per process; small images train fastest on one "
                          "(default: %(default)s)")
    sim.add_argument("--n-jobs", type=int, default=1,
                     help="campaigns run in parallel processes (default: %(default)s)")
    sim.add_argument("--pretrain", choices=["auto", "none", "simclr"], default="auto",
                     help="self-supervised pre-training on the pool images, shared by every "
                          "strategy and seed and cached; 'auto': SimCLR on pools of >= 1000 "
                          "images (default: %(default)s)")
    sim.add_argument("--pretrain-epochs", type=int, default=30,
                     help="SimCLR epochs over the pool (default: %(default)s)")
    sim.add_argument("--finetune", choices=FINETUNE_MODES, default="auto", help=(
        "with --pretrain: 'linear' head on frozen features, 'full' fine-tuning, or 'auto' "
        f"(linear below {AUTO_FULL_FINETUNE_FROM} labels, full from then; the default)"))
    sim.add_argument("--lr", type=float, default=None,
                     help="learning rate (default: 1e-2 for a linear head on pre-trained "
                          "features, else 1e-3)")
    sim.add_argument("--initial-selection", default="auto",
                     help="how the initial labelled images are chosen: 'balanced' (the "
                          "same number per class) or 'stratified' (class proportions), both "
                          "peeking at labels; 'random'; or a strategy name for a label-free "
                          "cold start, e.g. 'typiclust'; 'auto': typiclust with "
                          "pre-training, else balanced (default: %(default)s)")
    sim.add_argument("--cache-dir", default=None,
                     help="folder of cached pre-trained encoders (default: "
                          "$SKAL_CACHE_DIR/encoders or ~/.cache/skal/encoders)")
    sim.add_argument("--out", default="skal-results", help="output folder")
    sim.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_campaign_parser(sub)
    return parser


def _fail(message):
    """A command-line error: one line on stderr, exit status 2 (as argparse)."""
    raise SkalValueError(message)


def _check_simulate_args(args):
    """Check every value before any work: a bad value gives one line and status 2,
    not a traceback after the data were loaded or the campaign ran."""
    import torch

    minimum = {"seeds": 1, "initial": 1, "batch": 1, "rounds": 0, "epochs": 1,
               "min_steps": 0, "threads": 1, "size": 1}
    for name, low in minimum.items():
        value = getattr(args, name)
        if value < low:
            _fail(f"--{name.replace('_', '-')} must be >= {low}; got {value}.")
    if not 0 < args.test_fraction < 1 or not math.isfinite(args.test_fraction):
        _fail(f"--test-fraction must be between 0 and 1 (exclusive); got {args.test_fraction}.")
    if args.n_jobs == 0 or args.n_jobs < -1:
        _fail(f"--n-jobs must be >= 1 (or -1 for every CPU); got {args.n_jobs}.")
    if args.target is not None and not math.isfinite(args.target):
        _fail(f"--target must be a finite number; got {args.target}.")
    try:
        device = torch.device(args.device)
    except (RuntimeError, ValueError) as exc:
        _fail(f"--device {args.device!r} is not a torch device ({exc}); use cpu or cuda.")
    if device.type == "cuda" and not torch.cuda.is_available():
        _fail(f"--device {args.device} was asked for but CUDA is not available on this "
              "machine; use --device cpu.")
    if device.type == "mps" and not (hasattr(torch.backends, "mps")
                                     and torch.backends.mps.is_available()):
        _fail(f"--device {args.device} was asked for but MPS is not available; use --device cpu.")
    names = [s.strip() for s in args.strategies.split(",") if s.strip()]
    if not names:
        _fail("--strategies is empty; give comma-separated strategy names.")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        _fail(f"--strategies names {', '.join(duplicates)} more than once; give each once.")
    _check_out(Path(args.out))
    return names


def _check_out(out):
    """The output folder must be creatable and writable before the campaign runs."""
    if out.exists() and not out.is_dir():
        _fail(f"--out {out} exists and is not a folder; choose another path.")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".skal-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        _fail(f"--out {out} is not a writable folder ({exc.strerror or exc}); choose "
              "another path.")


def _simulate(args):
    from .query.registry import get_strategy
    from .simulate import simulate

    import torch

    names = _check_simulate_args(args)

    torch.set_num_threads(max(1, args.threads))
    from .data.campaign import load_campaign_data

    if Path(args.data).is_dir() and not args.labels:
        _fail(f"--data {args.data} is a DICOM folder: it needs --labels LABELS.csv.")
    data = load_campaign_data(args.data, labels=args.labels, size=args.size,
                              test_fraction=args.test_fraction)
    X_pool, y_pool, X_test, y_test = data
    description = data.description
    multilabel = np.asarray(y_pool).ndim == 2
    pretrain = _pretrain_choice(args, multilabel, X_pool)
    strategies = {name: get_strategy(name) for name in names}
    print(f"skal simulate: {description}; pool {len(y_pool)}, test {len(y_test)}; "
          f"strategies {', '.join(names)}; {args.seeds} seeds; {args.initial} initial "
          f"({args.initial_selection}) + {args.rounds} x {args.batch} labels; pre-training "
          f"{pretrain}", flush=True)
    result = simulate(
        _estimator(args, multilabel, pretrain), strategies, X_pool, y_pool, X_test, y_test,
        n_initial=args.initial, batch_size=args.batch, n_rounds=args.rounds,
        seeds=args.seeds, metric=None if args.metric == "auto" else args.metric,
        progress=not args.no_progress, n_jobs=args.n_jobs, initial=args.initial_selection,
        pretrain=_pretrainer(args, pretrain), pretrain_cache=args.cache_dir)
    summary = result.summary(target=args.target)
    print(format_summary(summary))
    out = Path(args.out)
    json_path, png_path = result.save(out, target=summary["target"])
    print(f"wrote {json_path} and {png_path}")
    return 0


def main(argv=None):
    """Entry point of the ``skal`` command."""
    args = build_parser().parse_args(argv)
    if args.tune_malloc or os.environ.get("SKAL_TUNE_MALLOC") == "1":
        from .utils.malloc import tune_malloc

        tune_malloc()   # opt-in: changes this process and its n_jobs workers
    try:
        if args.command == "simulate":
            return _simulate(args)
        if args.command == "campaign":
            return run_campaign(args)
    except SkalError as exc:
        print(f"skal: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("skal: interrupted; no output file was changed.", file=sys.stderr)
        return 130
    return 1


if __name__ == "__main__":
    sys.exit(main())
