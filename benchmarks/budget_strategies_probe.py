"""Cold-start selection check: TypiClust and ProbCover against random on a cheap
label-free representation, with a linear probe.

A quick, CPU-cheap check that the selection logic pays at small budgets, independent of
the self-supervised encoder (``benchmarks/label_efficiency.py`` measures the full
recipe with SimCLR and CNNs). The representation is a PCA of the training pool's pixels
(fitted without labels; ``--whiten`` to whiten it); each budget ``B`` is selected in one query from a
cold start (no labels), a logistic-regression probe is fitted on the ``B`` labelled
feature vectors, and the test metric is recorded (binary: AUROC; multi-class: accuracy
and macro AUROC). Random uses ``--seeds`` draws; the strategies one k-means seed each.
A selection that misses a class is scored as chance (0.5 AUROC, majority accuracy), as
random's are. Prints a table and writes JSON.

    python benchmarks/budget_strategies_probe.py --dataset pneumoniamnist
"""

import argparse
import types
from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score

from _common import data_dir, environment, require
from skal.data import load_medmnist
from skal.query import ProbCover, TypiClust
from skal.utils.io import atomic_write_json


class Features:
    """The precomputed features of a row index (the 'images' are indices)."""

    def __init__(self, F):
        self.F = F

    def transform(self, X):
        return self.F[np.asarray(X).reshape(-1).astype(np.intp)]


def probe_scores(F_train, y_train, F_test, y_test, picked, classes):
    y = y_train[picked]
    if len(np.unique(y)) < 2:
        majority = np.mean(y_test == y[0])
        return {"auroc": 0.5, "accuracy": float(majority)}
    model = LogisticRegression(max_iter=2000, C=1.0).fit(F_train[picked], y)
    proba = np.zeros((len(F_test), len(classes)))
    proba[:, np.searchsorted(classes, model.classes_)] = model.predict_proba(F_test)
    if len(classes) == 2:
        auroc = roc_auc_score(y_test, proba[:, 1])
    else:
        auroc = roc_auc_score(y_test, proba, multi_class="ovr", average="macro",
                              labels=classes)
    return {"auroc": float(auroc),
            "accuracy": float(accuracy_score(y_test, classes[proba.argmax(1)]))}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="pneumoniamnist")
    parser.add_argument("--data", default=None)
    parser.add_argument("--budgets", type=int, nargs="+", default=[10, 20, 50, 100])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--components", type=int, default=50)
    parser.add_argument("--whiten", action="store_true")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)

    path = require(args.data or data_dir() / "medmnist" / f"{args.dataset}.npz")
    data = load_medmnist(path)
    flat = data.X_train.reshape(len(data.X_train), -1).astype(np.float64) / 255
    pca = PCA(args.components, whiten=args.whiten, random_state=0).fit(flat)
    F_train = pca.transform(flat)
    F_test = pca.transform(data.X_test.reshape(len(data.X_test), -1).astype(np.float64) / 255)
    y_train, y_test = data.y_train.ravel(), data.y_test.ravel()
    classes = np.unique(y_train)
    embedder = Features(F_train)
    pool = np.arange(len(F_train)).reshape(-1, 1, 1, 1)      # 'images' = row indices
    cold = types.SimpleNamespace()

    results = {}
    for budget in args.budgets:
        runs = {"random": [], "typiclust": [], "probcover": []}
        for seed in range(args.seeds):
            rng = np.random.default_rng(seed)
            picks = {"random": rng.choice(len(F_train), budget, replace=False)}
            picks["typiclust"] = TypiClust(embedder=embedder, random_state=seed)(
                cold, pool, budget)[0]
            picks["probcover"] = ProbCover(embedder=embedder, n_clusters=len(classes),
                                           random_state=seed)(cold, pool, budget)[0]
            for name, picked in picks.items():
                scores = probe_scores(F_train, y_train, F_test, y_test, picked, classes)
                scores["classes_hit"] = int(len(np.unique(y_train[picked])))
                runs[name].append(scores)
        results[budget] = runs
        line = [f"B={budget:4d}"]
        for name, scores in runs.items():
            auroc = np.array([s["auroc"] for s in scores])
            acc = np.array([s["accuracy"] for s in scores])
            line.append(f"{name} AUROC {auroc.mean():.3f}+-{auroc.std(ddof=1) / np.sqrt(len(auroc)):.3f} "
                        f"acc {acc.mean():.3f}")
        print("  ".join(line), flush=True)
    suffix = "_whitened" if args.whiten else ""
    atomic_write_json(Path(args.out) / f"budget_strategies_probe_{args.dataset}{suffix}.json",
                      {"dataset": args.dataset, "representation": f"PCA({args.components}) "
                       f"of pixels, whiten={args.whiten}", "probe": "LogisticRegression(C=1)",
                       "selection": "one cold-start query per budget", "seeds": args.seeds,
                       "results": {str(k): v for k, v in results.items()},
                       "environment": environment()})


if __name__ == "__main__":
    main()
