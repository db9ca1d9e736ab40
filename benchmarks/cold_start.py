"""Cold start: how good is the first labelled set, chosen before any label is known?

On the pre-trained recipe (SimCLR encoder cached by ``label_efficiency.py --pretrain
simclr``, linear head, lr 1e-2), the first ``n`` labels are picked by a uniform random
draw, a class-balanced draw (which peeks at the labels: an upper reference, not a
real cold start) or a label-free strategy on the encoder's embeddings (TypiClust,
ProbCover); the head is trained on them and scored on the test set. Paired seeds.
Writes ``benchmarks/results/cold_start_<data>.json``.

    python benchmarks/cold_start.py --data pneumonia --seeds 10 --n 10 20
    python benchmarks/cold_start.py --data blood --seeds 10 --n 10 20
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.base import clone

from _common import data_dir, environment, require
from label_efficiency import load_pool, pretrainer
from skal import CNNClassifier
from skal.metrics import evaluate_classifier
from skal.pretrain.cache import cached_encoder
from skal.query.registry import get_strategy
from skal.simulate import initial_indices
from skal.utils.io import atomic_write_json

DATA = {"pneumonia": ("pneumoniamnist.npz", None), "blood": ("bloodmnist.npz", 5000)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", choices=sorted(DATA), default="pneumonia")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--n", type=int, nargs="+", default=[10, 20])
    parser.add_argument("--selections", default="random,balanced,typiclust,probcover")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    name, subsample = DATA[args.data]
    X_pool, y_pool, X_test, y_test, description = load_pool(
        require(data_dir() / "medmnist" / name), subsample)
    encoder = str(cached_encoder(pretrainer(30), X_pool, args.cache_dir))
    classes = np.unique(y_pool)
    net = CNNClassifier(pretrained=encoder, finetune="linear", lr=1e-2, classes=classes)
    selections = [s.strip() for s in args.selections.split(",")]
    scores = {s: {n: {"auroc": [], "accuracy": [], "classes_covered": []} for n in args.n}
              for s in selections}
    t0 = time.perf_counter()
    for seed in range(args.seeds):
        model = clone(net).set_params(random_state=seed)
        for n in args.n:
            for selection in selections:
                if selection in ("random", "balanced"):
                    idx = initial_indices(y_pool, n, seed, balanced=selection == "balanced")
                else:
                    idx, _ = get_strategy(selection)(clone(model), X_pool, n, random_state=seed)
                fitted = clone(model).fit(X_pool[idx], y_pool[idx])
                values = evaluate_classifier(fitted, X_test, y_test, classes=classes)
                entry = scores[selection][n]
                entry["auroc"].append(values["auroc"])
                entry["accuracy"].append(values["accuracy"])
                entry["classes_covered"].append(int(len(np.unique(y_pool[idx]))))
        print(f"seed {seed} done ({time.perf_counter() - t0:.0f} s)", flush=True)
    summary = {}
    print(f"\n{description}: first labels chosen without labels, linear head on SimCLR")
    print(f"{'selection':<12} {'n':>4} {'AUROC':>16} {'accuracy':>16} {'classes':>8}")
    for selection in selections:
        for n in args.n:
            e = scores[selection][n]
            row = {k: (float(np.mean(v)), float(np.std(v, ddof=1) / np.sqrt(len(v))))
                   for k, v in e.items()}
            summary[f"{selection}@{n}"] = row
            print(f"{selection:<12} {n:>4} {row['auroc'][0]:.4f} ± {row['auroc'][1]:.4f} "
                  f"{row['accuracy'][0]:.4f} ± {row['accuracy'][1]:.4f} "
                  f"{row['classes_covered'][0]:>8.1f}")
    atomic_write_json(Path(args.out) / f"cold_start_{args.data}.json",
                      {"description": description, "encoder": encoder, "seeds": args.seeds,
                       "scores": scores, "summary_mean_se": summary,
                       "environment": environment()})


if __name__ == "__main__":
    main()
