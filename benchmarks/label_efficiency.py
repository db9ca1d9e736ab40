"""Label efficiency of query strategies on real medical images.

Simulated campaign with the true labels hidden until queried: by default PneumoniaMNIST
(MedMNIST v2), 10 paired seeds, 10 initial labels (balanced), 10 labels per round,
19 rounds (10 to 200 labels), test AUROC. Also trains the same net on all training
images as the full-data reference. Prints a table and writes JSON and a learning-curve
PNG. ``--data`` takes anything ``skal simulate`` does, e.g. the NIH ChestX-ray14 sample
(multi-label, macro AUROC, patient-level split).

    python benchmarks/label_efficiency.py                       # the issue's setting
    python benchmarks/label_efficiency.py --seeds 3 --strategies random,entropy,tdgf
    python benchmarks/label_efficiency.py --data ../shared/data/cxr14_sample/cxr14_sample_28.npz \
        --seeds 3 --initial 20 --batch 20 --rounds 14 --name label_efficiency_cxr14
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.base import clone

from _common import data_dir, environment, require
from skal import CNNClassifier, MultiLabelCNNClassifier
from skal.cli import format_summary
from skal.data import load_campaign_data
from skal.metrics import evaluate_classifier, labels_to_target
from skal.query.registry import get_strategy
from skal.simulate import simulate
from skal.utils.io import atomic_write_json


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None, help="pneumoniamnist.npz")
    parser.add_argument("--strategies", default="random,uncertainty,margin,entropy")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--initial", type=int, default=10)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=19)
    parser.add_argument("--reference-seeds", type=int, default=3,
                        help="seeds of the full-data reference model")
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--name", default="label_efficiency_pneumoniamnist")
    args = parser.parse_args(argv)

    torch.set_num_threads(1 if args.n_jobs and args.n_jobs > 1 else 2)
    path = require(args.data or data_dir() / "medmnist" / "pneumoniamnist.npz")
    data = load_campaign_data(path)
    multilabel = data.y_pool.ndim == 2
    net = MultiLabelCNNClassifier() if multilabel else CNNClassifier()
    names = [s.strip() for s in args.strategies.split(",")]
    strategies = {name: get_strategy(name) for name in names}

    t0 = time.perf_counter()
    result = simulate(net, strategies, data.X_pool, data.y_pool, data.X_test, data.y_test,
                      n_initial=args.initial, batch_size=args.batch, n_rounds=args.rounds,
                      seeds=args.seeds, metric="auroc", n_jobs=args.n_jobs)
    campaign_seconds = time.perf_counter() - t0

    t0 = time.perf_counter()
    reference = []
    for seed in range(args.reference_seeds):
        full = clone(net).set_params(random_state=seed).fit(data.X_pool, data.y_pool)
        reference.append(evaluate_classifier(full, data.X_test, data.y_test)["auroc"])
    reference_seconds = time.perf_counter() - t0
    full_auroc = float(np.mean(reference))
    result.reference = {"auroc_mean": full_auroc, "auroc_per_seed": reference,
                        "n_labels": int(len(data.y_pool)), "seconds": reference_seconds}

    summary = result.summary()
    print(f"\n{data.description}, test AUROC, {len(result.seeds)} paired seeds, "
          f"{args.initial} + {args.rounds} x {args.batch} labels")
    print(format_summary(summary))
    print(f"full-data reference ({len(data.y_pool)} labels): AUROC {full_auroc:.4f} "
          f"(seeds: {', '.join(f'{a:.4f}' for a in reference)})")
    extra = {}
    for share in (0.95, 0.98):
        target = share * full_auroc
        row = {}
        for s, name in enumerate(result.strategies):
            row[name] = labels_to_target(result.n_labels, result.scores["auroc"][s].mean(axis=0),
                                         target)
        extra[f"{int(share * 100)}pct_of_full"] = {"target": target, "labels": row}
        print(f"labels to stay >= {share:.0%} of full-data AUROC ({target:.4f}): "
              + ", ".join(f"{k} {v if v is not None else '>' + str(result.n_labels[-1])}"
                          for k, v in row.items()))
    print(f"campaign time {campaign_seconds:.0f} s, reference time {reference_seconds:.0f} s")

    out = Path(args.out)
    payload = result.to_dict()
    payload.update({"targets_vs_full": extra, "environment": environment(),
                    "campaign_seconds": campaign_seconds, "data": str(path)})
    atomic_write_json(out / f"{args.name}.json", payload)
    result.plot(out / f"{args.name}.png", reference=full_auroc, target=summary["target"],
                title=f"{data.description}: test AUROC vs labels")
    print(f"wrote {out / (args.name + '.json')} and {out / (args.name + '.png')}")


if __name__ == "__main__":
    main()
