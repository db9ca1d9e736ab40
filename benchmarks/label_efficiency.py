"""Label efficiency of query strategies on real medical images.

Simulated campaign with the true labels hidden until queried: by default PneumoniaMNIST
(MedMNIST v2), 10 paired seeds, 10 initial labels (balanced), 10 labels per round,
19 rounds (10 to 200 labels), test AUROC. Also trains the same net on all training
images as the full-data reference. Prints a table and writes JSON and a learning-curve
PNG. ``--data`` takes anything ``skal simulate`` does, e.g. the NIH ChestX-ray14 sample
(multi-label, macro AUROC, patient-level split).

``--pretrain simclr`` runs the pre-trained recipe (issue 13): SimCLR pre-trained once on
the pool images (cached under ``--cache-dir``, shared by every strategy and seed), a
linear head (``--finetune``), and a label-free initial set (``--initial-selection``).
``--subsample N`` takes a fixed stratified subsample of the pool (BloodMNIST: 5,000).
``--pretrain-only`` just fills the encoder cache. Several runs (different strategies or
seeds) are merged into one table by ``benchmarks/label_efficiency_report.py``.

    python benchmarks/label_efficiency.py                       # the from-scratch setting
    python benchmarks/label_efficiency.py --seeds 3 --strategies random,entropy,tdgf
    python benchmarks/label_efficiency.py --pretrain simclr --initial-selection random \
        --strategies random,typiclust --name le_pneumonia_simclr_a
    python benchmarks/label_efficiency.py --data ../shared/data/medmnist/bloodmnist.npz \
        --subsample 5000 --pretrain simclr --name le_blood_simclr_a
    python benchmarks/label_efficiency.py --data ../shared/data/cxr14_sample/cxr14_sample_28.npz \
        --seeds 3 --initial 20 --batch 20 --rounds 14 --name label_efficiency_cxr14
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.base import clone
from sklearn.model_selection import train_test_split

from _common import data_dir, environment, require
from skal import CNNClassifier, MultiLabelCNNClassifier
from skal.cli import format_summary
from skal.data import load_campaign_data
from skal.metrics import evaluate_classifier, labels_to_target
from skal.pretrain import SimCLR
from skal.pretrain.cache import cached_encoder
from skal.query.registry import get_strategy
from skal.simulate import simulate
from skal.utils.io import atomic_write_json


def load_pool(path, subsample=None):
    """Campaign data, with an optional fixed stratified subsample of the pool (seed 0)."""
    data = load_campaign_data(path)
    X_pool, y_pool = data.X_pool, data.y_pool
    if subsample and subsample < len(y_pool):
        keep, _ = train_test_split(np.arange(len(y_pool)), train_size=subsample,
                                   stratify=y_pool if y_pool.ndim == 1 else None,
                                   random_state=0)
        keep = np.sort(keep)
        X_pool, y_pool = X_pool[keep], y_pool[keep]
    return X_pool, y_pool, data.X_test, data.y_test, data.description


def pretrainer(epochs):
    """The benchmark's pre-training recipe: skal's SimCLR defaults, seed 0."""
    return SimCLR(max_epochs=epochs, random_state=0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None, help="pneumoniamnist.npz")
    parser.add_argument("--strategies", default="random,uncertainty,margin,entropy")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=0,
                        help="seeds are first-seed .. first-seed + seeds - 1")
    parser.add_argument("--initial", type=int, default=10)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=19)
    parser.add_argument("--reference-seeds", type=int, default=3,
                        help="seeds of the full-data reference model (0: skip)")
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--subsample", type=int, default=None,
                        help="fixed stratified subsample of the pool (seed 0)")
    parser.add_argument("--pretrain", choices=["none", "simclr"], default="none")
    parser.add_argument("--pretrain-epochs", type=int, default=30)
    parser.add_argument("--pretrain-only", action="store_true",
                        help="pre-train (fill the encoder cache) and stop")
    parser.add_argument("--finetune", choices=["linear", "full", "auto"], default="auto",
                        help="the classifier's finetune= on the pre-trained encoder")
    parser.add_argument("--initial-selection", default="balanced",
                        help="balanced (same number per class), stratified (class "
                             "proportions), random, or a label-free strategy name")
    parser.add_argument("--lr", type=float, default=None,
                        help="classifier learning rate (default: the classifier's lr='auto', "
                             "1e-3 when every layer trains, 1e-2 for a linear head)")
    parser.add_argument("--dropout", type=float, default=None,
                        help="dropout before the classifier's linear layer (MC-dropout "
                             "strategies such as bald need one on the pre-trained start)")
    parser.add_argument("--metric", choices=["auroc", "accuracy"], default="auroc")
    parser.add_argument("--cache-dir", default=None, help="encoder cache folder")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--name", default="label_efficiency_pneumoniamnist")
    args = parser.parse_args(argv)

    torch.set_num_threads(1 if args.n_jobs and args.n_jobs > 1 else 2)
    path = require(args.data or data_dir() / "medmnist" / "pneumoniamnist.npz")
    X_pool, y_pool, X_test, y_test, description = load_pool(path, args.subsample)
    if args.subsample:
        description += f", stratified pool subsample of {len(y_pool)}"
    multilabel = y_pool.ndim == 2
    net = MultiLabelCNNClassifier() if multilabel else CNNClassifier()

    encoder_path, pretrain_seconds = None, 0.0
    if args.pretrain == "simclr":
        t0 = time.perf_counter()
        encoder_path = str(cached_encoder(pretrainer(args.pretrain_epochs), X_pool,
                                          args.cache_dir))
        pretrain_seconds = time.perf_counter() - t0
        print(f"encoder {encoder_path} ({pretrain_seconds:.0f} s, 0 if cached)", flush=True)
        if args.pretrain_only:
            return
        net.set_params(pretrained=encoder_path, finetune=args.finetune)
    if args.lr:
        net.set_params(lr=args.lr)
    if args.dropout is not None:
        net.set_params(module__dropout=args.dropout)
    names = [s.strip() for s in args.strategies.split(",")]
    strategies = {name: get_strategy(name) for name in names}
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))

    t0 = time.perf_counter()
    result = simulate(net, strategies, X_pool, y_pool, X_test, y_test,
                      n_initial=args.initial, batch_size=args.batch, n_rounds=args.rounds,
                      seeds=seeds, metric=args.metric, n_jobs=args.n_jobs,
                      initial=args.initial_selection, pretrain=None)  # the encoder is set above
    campaign_seconds = time.perf_counter() - t0
    metric = args.metric

    t0 = time.perf_counter()
    reference = []
    for seed in range(args.reference_seeds):
        full = clone(net).set_params(random_state=seed).fit(X_pool, y_pool)
        reference.append(evaluate_classifier(full, X_test, y_test)[metric])
    reference_seconds = time.perf_counter() - t0
    full_metric = float(np.mean(reference)) if reference else None
    result.reference = {f"{metric}_mean": full_metric, f"{metric}_per_seed": reference,
                        "n_labels": int(len(y_pool)), "seconds": reference_seconds}

    summary = result.summary()
    print(f"\n{description}, test {metric}, {len(result.seeds)} paired seeds, "
          f"{args.initial} + {args.rounds} x {args.batch} labels, recipe "
          f"{'simclr + ' + args.finetune if encoder_path else 'from scratch'}, initial "
          f"{args.initial_selection}")
    print(format_summary(summary))
    extra = {}
    if full_metric is not None:
        print(f"full-data reference ({len(y_pool)} labels): {metric} {full_metric:.4f} "
              f"(seeds: {', '.join(f'{a:.4f}' for a in reference)})")
        for share in (0.95, 0.98):
            target = share * full_metric
            row = {name: labels_to_target(result.n_labels,
                                          result.scores[metric][s].mean(axis=0), target)
                   for s, name in enumerate(result.strategies)}
            extra[f"{int(share * 100)}pct_of_full"] = {"target": target, "labels": row}
            print(f"labels to stay >= {share:.0%} of full-data {metric} ({target:.4f}): "
                  + ", ".join(f"{k} {v if v is not None else '>' + str(result.n_labels[-1])}"
                              for k, v in row.items()))
    print(f"campaign time {campaign_seconds:.0f} s, reference time {reference_seconds:.0f} s")

    out = Path(args.out)
    payload = result.to_dict()
    payload.update({"targets_vs_full": extra, "environment": environment(),
                    "campaign_seconds": campaign_seconds, "data": str(path),
                    "description": description,
                    "recipe": {"pretrain": args.pretrain, "encoder": encoder_path,
                               "pretrain_epochs": args.pretrain_epochs,
                               "pretrain_seconds": pretrain_seconds,
                               "finetune": args.finetune if encoder_path else None,
                               "initial": args.initial_selection,
                               "dropout": args.dropout,
                               "subsample": args.subsample}})
    atomic_write_json(out / f"{args.name}.json", payload)
    result.plot(out / f"{args.name}.png", reference=full_metric, target=summary["target"],
                title=f"{description}: test {metric} vs labels")
    print(f"wrote {out / (args.name + '.json')} and {out / (args.name + '.png')}")


if __name__ == "__main__":
    main()
