"""Query cost per round of AIFT, MC-dropout BALD, a deep-ensemble committee and TDGF, as
a ratio to one training round of the classifier.

PneumoniaMNIST (28x28), skal's default CNNClassifier trained on ``--labels`` labels
(one active-learning training round), then one query of ``--batch`` samples over the
rest of the training images as the pool. The ensemble's training round (5 members) is
reported too, also as a ratio to one model's. Prints a table and writes JSON to
benchmarks/results/strategy_cost.json.

    python benchmarks/strategy_cost.py
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from _common import data_dir, environment, require
from skal import ActiveLearner, CNNClassifier, Committee
from skal.data import load_campaign_data
from skal.query import AIFT, TDGF, bald_sampling, entropy_sampling
from skal.utils.io import atomic_write_json


def _augmenter():
    """The pre-training augmentations when ``skal.pretrain`` is installed."""
    try:
        from skal.pretrain.augment import ImageAugmenter
    except ImportError:
        return None, "none available (skal.pretrain missing)"
    return ImageAugmenter(), "skal.pretrain.augment.ImageAugmenter()"


def _timed(function):
    t0 = time.perf_counter()
    out = function()
    return out, time.perf_counter() - t0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None, help="pneumoniamnist.npz")
    parser.add_argument("--labels", type=int, default=100)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    path = require(args.data or data_dir() / "medmnist" / "pneumoniamnist.npz")
    data = load_campaign_data(path)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(data.y_pool))
    X_lab, y_lab = data.X_pool[order[:args.labels]], data.y_pool[order[:args.labels]]
    pool = data.X_pool[order[args.labels:]]

    learner = ActiveLearner(CNNClassifier(random_state=0))
    _, train_seconds = _timed(lambda: learner.fit(X_lab, y_lab))
    augmenter, augmenter_name = _augmenter()
    rows = {}
    strategies = {"entropy": entropy_sampling,
                  "bald (T=20)": bald_sampling,
                  "tdgf": TDGF(random_state=0)}
    if augmenter is not None:
        strategies["aift (10 views)"] = AIFT(augmenter=augmenter, random_state=0)
    for name, strategy in strategies.items():
        learner.set_params(query_strategy=strategy)
        _, seconds = _timed(lambda: learner.query(pool, n_instances=args.batch, random_state=0))
        rows[name] = {"query_seconds": seconds, "ratio_to_training_round": seconds / train_seconds}

    committee, ensemble_train = _timed(lambda: Committee.from_estimator(
        CNNClassifier(), n_members=args.members, random_state=0, X_training=X_lab,
        y_training=y_lab))
    _, seconds = _timed(lambda: committee.query(pool, n_instances=args.batch))
    rows[f"ensemble vote entropy ({args.members} members)"] = {
        "query_seconds": seconds, "ratio_to_training_round": seconds / train_seconds,
        "ensemble_training_seconds": ensemble_train,
        "ensemble_training_ratio": ensemble_train / train_seconds}

    print(f"\n{data.description}: {args.labels} labels, pool {len(pool)}, batch {args.batch}, "
          f"{args.threads} thread(s); one training round {train_seconds:.1f} s")
    print(f"{'strategy':<36} {'query s':>8} {'query / training round':>24}")
    for name, row in rows.items():
        print(f"{name:<36} {row['query_seconds']:>8.1f} {row['ratio_to_training_round']:>24.2f}")
    ens = rows[f"ensemble vote entropy ({args.members} members)"]
    print(f"ensemble training round: {ens['ensemble_training_seconds']:.1f} s "
          f"({ens['ensemble_training_ratio']:.2f} x one model)")
    print(f"AIFT augmenter: {augmenter_name}")
    out = Path(args.out)
    atomic_write_json(out / "strategy_cost.json", {
        "data": str(path), "labels": args.labels, "pool": int(len(pool)),
        "batch": args.batch, "training_round_seconds": train_seconds, "strategies": rows,
        "aift_augmenter": augmenter_name, "environment": environment()})
    print(f"wrote {out / 'strategy_cost.json'}")


if __name__ == "__main__":
    main()
