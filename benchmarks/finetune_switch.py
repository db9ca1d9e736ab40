"""When to switch from a linear head to full fine-tuning on a pre-trained encoder.

For each labelled-set size, draws the same random labelled subsets (paired seeds) of the
pool and trains a classifier on the cached SimCLR encoder of the pool (issue 13's
encoder) with each fine-tuning mode: ``linear`` (a linear head on the frozen features)
and ``full`` (every layer), each at a learning rate (``--modes linear:0.01,full:0.001``). Prints test AUROC (macro for several classes), accuracy and
fit seconds per mode and size, and writes JSON. The size from which ``full`` beats
``linear`` is what ``finetune="auto"`` switches at.

    python benchmarks/finetune_switch.py --data ../shared/data/medmnist/bloodmnist.npz \
        --subsample 5000 --sizes 20,50,100,200,400 --seeds 3
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from _common import data_dir, environment, require
from label_efficiency import load_pool, pretrainer
from skal import CNNClassifier
from skal.metrics import evaluate_classifier
from skal.pretrain.cache import cached_encoder
from skal.utils.io import atomic_write_json


def labelled_subset(y, n, seed):
    """``n`` pool indices drawn uniformly at random, redrawn until two classes appear."""
    rng = np.random.default_rng(seed)
    while True:
        idx = rng.choice(len(y), size=n, replace=False)
        if len(np.unique(y[idx])) > 1:
            return idx


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None)
    parser.add_argument("--subsample", type=int, default=None)
    parser.add_argument("--sizes", default="20,50,100,200,400")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--modes", default="linear:0.01,full:0.001",
                        help="comma-separated finetune modes, each with an optional :lr")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--name", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    path = require(args.data or data_dir() / "medmnist" / "pneumoniamnist.npz")
    X_pool, y_pool, X_test, y_test, description = load_pool(path, args.subsample)
    encoder = str(cached_encoder(pretrainer(30), X_pool, args.cache_dir))
    sizes = [int(s) for s in args.sizes.split(",")]
    modes = [m.strip() for m in args.modes.split(",")]
    rows = []
    for n in sizes:
        for seed in range(args.seeds):
            idx = labelled_subset(y_pool, n, seed)
            for mode in modes:
                finetune, _, lr = mode.partition(":")
                net = CNNClassifier(pretrained=encoder, finetune=finetune, random_state=seed,
                                    **({"lr": float(lr)} if lr else {}))
                t0 = time.perf_counter()
                net.fit(X_pool[idx], y_pool[idx])
                seconds = time.perf_counter() - t0
                scores = evaluate_classifier(net, X_test, y_test)
                rows.append({"n_labels": n, "seed": seed, "mode": mode,
                             "lr": float(net.optimizer_.param_groups[0]["lr"]),
                             "auroc": scores["auroc"], "accuracy": scores["accuracy"],
                             "fit_seconds": seconds})
                print(f"n={n:4d} seed={seed} {mode:12s} auroc {scores['auroc']:.4f} "
                      f"accuracy {scores['accuracy']:.4f} fit {seconds:.1f} s", flush=True)
    summary = {}
    print(f"\n{description}: mean over {args.seeds} paired seeds")
    for n in sizes:
        line = {}
        for mode in modes:
            sel = [r for r in rows if r["n_labels"] == n and r["mode"] == mode]
            line[mode] = {key: float(np.mean([r[key] for r in sel]))
                          for key in ("auroc", "accuracy", "fit_seconds")}
            line[mode]["auroc_se"] = float(np.std([r["auroc"] for r in sel], ddof=1)
                                           / np.sqrt(len(sel))) if len(sel) > 1 else None
        summary[n] = line
        print(f"{n:4d} labels: " + "; ".join(
            f"{m} auroc {v['auroc']:.4f} acc {v['accuracy']:.4f} fit {v['fit_seconds']:.1f} s"
            for m, v in line.items()))
    name = args.name or f"finetune_switch_{Path(path).stem}"
    atomic_write_json(Path(args.out) / f"{name}.json",
                      {"description": description, "encoder": encoder, "rows": rows,
                       "summary": summary, "environment": environment()})


if __name__ == "__main__":
    main()
