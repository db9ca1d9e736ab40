"""Continual fine-tuning policies (ACFT, Zhou et al. MedIA 2021) compared on
PneumoniaMNIST: retrain from the start vs continue from the current weights, on all
labelled data, the new samples, or new + misclassified ("HQ").

Paired seeds, 10 balanced initial labels, ``--batch`` per round to 100, random or any
registered query strategy, test AUROC per round and training seconds. Prints a table
and writes JSON to benchmarks/results/finetune_policies.json. ``--pretrain`` starts every
policy from the pool's cached SimCLR encoder (skal's default recipe: ``finetune="auto"``,
first labels picked by TypiClust without labels).

    python benchmarks/finetune_policies.py --strategy random --seeds 3
    python benchmarks/finetune_policies.py --pretrain --strategy margin --seeds 5 \
        --batch 19 --rounds 10 --name finetune_policies_pretrained
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from joblib import Parallel, delayed

from _common import data_dir, environment, require
from skal import ActiveLearner, CNNClassifier
from skal.data import load_campaign_data
from skal.metrics import area_under_learning_curve, evaluate_classifier
from skal.query.registry import get_strategy
from skal.simulate import initial_indices, run_rounds
from skal.utils.io import atomic_write_json

POLICIES = {
    "restart / all (default)": dict(),
    "continue / all (LQ)": dict(finetune_from="current", finetune_on="all"),
    "continue / hq (HQ)": dict(finetune_from="current", finetune_on="hq"),
    "continue / new": dict(finetune_from="current", finetune_on="new"),
    "continue / all / 10 epochs": dict(finetune_from="current", finetune_on="all",
                                      finetune_epochs=10),
    "continue / hq / 10 epochs": dict(finetune_from="current", finetune_on="hq",
                                     finetune_epochs=10),
}
DEFAULT = "restart / all (default)"


def first_labels(data, n_initial, seed, encoder):
    """The initial labelled set: class-balanced from scratch; TypiClust on the encoder's
    embeddings (no label seen) with a pre-trained start."""
    if encoder is None:
        return initial_indices(data.y_pool, n_initial, seed)
    typiclust = get_strategy("typiclust")
    picked = typiclust(CNNClassifier(pretrained=encoder), data.X_pool, n_initial,
                       random_state=seed)
    return np.asarray(picked[0] if isinstance(picked, tuple) else picked)


def campaign(policy, seed, data, strategy, n_initial, batch, rounds, encoder=None):
    torch.set_num_threads(1)
    net = CNNClassifier(random_state=seed, pretrained=encoder)
    learner = ActiveLearner(net, get_strategy(strategy), **POLICIES[policy])
    auroc = []

    def evaluate(_r, learner, _labelled):
        auroc.append(evaluate_classifier(learner, data.X_test, data.y_test)["auroc"])

    start = first_labels(data, n_initial, seed, encoder)
    out = run_rounds(learner, data.X_pool, data.y_pool, start, batch_size=batch,
                     n_rounds=rounds, seed=seed, on_round=evaluate)
    return policy, seed, auroc, float(out["fit_time"].sum())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None, help="pneumoniamnist.npz")
    parser.add_argument("--strategy", default="random")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--initial", type=int, default=10)
    parser.add_argument("--batch", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--policies", default=",".join(list(POLICIES)[:4]),
                        help=f"comma-separated, from: {'; '.join(POLICIES)}")
    parser.add_argument("--pretrain", action="store_true",
                        help="start from the pool's cached SimCLR encoder (default recipe)")
    parser.add_argument("--name", default="finetune_policies")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    policies = [DEFAULT] + [p.strip() for p in args.policies.split(",")
                            if p.strip() and p.strip() != DEFAULT]
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        parser.error(f"unknown policies {unknown}; choose from {list(POLICIES)}")

    path = require(args.data or data_dir() / "medmnist" / "pneumoniamnist.npz")
    data = load_campaign_data(path)
    encoder = None
    if args.pretrain:
        from label_efficiency import pretrainer
        from skal.pretrain.cache import cached_encoder

        encoder = str(cached_encoder(pretrainer(30), data.X_pool))
    t0 = time.perf_counter()
    runs = Parallel(n_jobs=args.n_jobs)(
        delayed(campaign)(policy, seed, data, args.strategy, args.initial, args.batch,
                          args.rounds, encoder)
        for policy in policies for seed in range(args.seeds))
    seconds = time.perf_counter() - t0
    n_labels = args.initial + args.batch * np.arange(args.rounds + 1)
    table = {}
    for policy in policies:
        curves = np.array([a for p, _, a, _ in runs if p == policy])
        fit = np.array([f for p, _, _, f in runs if p == policy])
        aulc = np.array([area_under_learning_curve(n_labels, c) for c in curves])
        table[policy] = {"aulc_per_seed": aulc.tolist(), "curves": curves.tolist(),
                         "final_auroc_per_seed": curves[:, -1].tolist(),
                         "training_seconds_per_seed": fit.tolist()}
    base = np.array(table[DEFAULT]["aulc_per_seed"])
    print(f"\n{data.description}, strategy {args.strategy}, "
          f"{'pre-trained start (SimCLR, finetune=auto), ' if encoder else ''}{args.seeds} paired seeds, "
          f"{args.initial} + {args.rounds} x {args.batch} labels, test AUROC")
    print(f"{'policy':<28} {'AULC':>7} {'dAULC vs default (SE)':>22} {'final AUROC':>16} "
          f"{'train s':>8}")
    for policy, row in table.items():
        aulc = np.array(row["aulc_per_seed"])
        diff = aulc - base
        se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else 0.0
        final = np.array(row["final_auroc_per_seed"])
        print(f"{policy:<28} {aulc.mean():>7.4f} {diff.mean():>+13.4f} ({se:.4f}) "
              f"{final.mean():>9.4f} ± {final.std():.4f} "
              f"{np.mean(row['training_seconds_per_seed']):>8.1f}")
    out = Path(args.out)
    atomic_write_json(out / f"{args.name}.json", {
        "data": str(path), "strategy": args.strategy, "encoder": encoder,
        "n_labels": n_labels.tolist(),
        "policies": {k: v for k, v in table.items()}, "seconds": seconds,
        "environment": environment()})
    print(f"campaign time {seconds:.0f} s; wrote {out / (args.name + '.json')}")


if __name__ == "__main__":
    main()
