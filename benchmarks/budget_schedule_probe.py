"""Where to switch from TypiClust to margin: learning curves of schedules on a cheap
label-free representation with a linear probe.

The representation is a PCA (50 components) of the training pool's pixels, fitted
without labels (the same as ``budget_strategies_probe.py``); the model is a
logistic-regression probe on it, refitted after each round. Every campaign starts
with no labels and adds ``--batch`` labels per round up to ``--max-labels``. Strategies:
random; margin (its first batch random: it needs a model); TypiClust throughout; and
``typiclust_then_margin`` switching at each ``--switch`` label count. Reports the
normalised area under the test-AUROC curve (AULC) from the first batch to the last,
its paired difference against random (mean and SE over seeds), and the curve. Prints a
table and writes JSON. This measures the schedule logic on a proxy; the recipe's
figures (SimCLR features, CNNs) are ``benchmarks/label_efficiency.py``'s.

    python benchmarks/budget_schedule_probe.py --dataset pneumoniamnist
"""

import argparse
import types
from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from _common import data_dir, environment, require
from skal.data import load_medmnist
from skal.query import TypiClust, TypiclustThenMargin, margin_sampling, random_sampling
from skal.utils.io import atomic_write_json


class Features:
    """The precomputed features of a row index (the 'images' are indices)."""

    def __init__(self, F):
        self.F = F

    def rows(self, X):
        return self.F[np.asarray(X).reshape(-1).astype(np.intp)]

    transform = rows


class Probe:
    """A logistic-regression probe on the features of the row indices it is given."""

    def __init__(self, features, classes):
        self.features, self.classes = features, classes

    def fit(self, X, y):
        self.model_ = LogisticRegression(max_iter=2000).fit(self.features.rows(X), y)
        return self

    def predict_proba(self, X):
        proba = np.zeros((len(np.asarray(X)), len(self.classes)))
        columns = np.searchsorted(self.classes, self.model_.classes_)
        proba[:, columns] = self.model_.predict_proba(self.features.rows(X))
        return proba


class Learner(types.SimpleNamespace):
    """The learner protocol's minimum: labelled data, a model, its predictions."""

    def predict_proba(self, X):
        return self.estimator.predict_proba(X)


def auroc(probe, F_test, y_test, classes, y_labelled):
    if len(np.unique(y_labelled)) < 2:
        return 0.5
    proba = np.zeros((len(F_test), len(classes)))
    proba[:, np.searchsorted(classes, probe.model_.classes_)] = \
        probe.model_.predict_proba(F_test)
    if len(classes) == 2:
        return float(roc_auc_score(y_test, proba[:, 1]))
    return float(roc_auc_score(y_test, proba, multi_class="ovr", labels=classes))


def campaign(strategy, features, y_train, F_test, y_test, classes, batch, max_labels,
             seed, random_first=False):
    pool_ids = np.arange(len(y_train)).reshape(-1, 1, 1, 1)
    labelled = np.zeros(len(y_train), dtype=bool)
    learner = Learner(random_state=seed)
    curve = []
    while labelled.sum() < max_labels:
        unlabelled = np.flatnonzero(~labelled)
        first = not labelled.any()
        query = random_sampling if (first and random_first) else strategy
        picked, _ = query(learner, pool_ids[unlabelled], n_instances=batch, random_state=seed)
        labelled[unlabelled[np.asarray(picked)]] = True
        ids = np.flatnonzero(labelled)
        learner.X_training, learner.y_training = pool_ids[ids], y_train[ids]
        if len(np.unique(y_train[ids])) >= 2:
            learner.estimator = Probe(features, classes).fit(pool_ids[ids], y_train[ids])
            curve.append(auroc(learner.estimator, F_test, y_test, classes, y_train[ids]))
        else:
            curve.append(0.5)
    return curve


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="pneumoniamnist")
    parser.add_argument("--data", default=None)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--max-labels", type=int, default=200)
    parser.add_argument("--switch", type=int, nargs="+", default=[20, 50, 100])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)

    data = load_medmnist(require(args.data or data_dir() / "medmnist" / f"{args.dataset}.npz"))
    flat = data.X_train.reshape(len(data.X_train), -1).astype(np.float64) / 255
    pca = PCA(50, random_state=0).fit(flat)
    features = Features(pca.transform(flat))
    F_test = pca.transform(data.X_test.reshape(len(data.X_test), -1).astype(np.float64) / 255)
    y_train, y_test = data.y_train.ravel(), data.y_test.ravel()
    classes = np.unique(y_train)

    def strategies(seed):
        out = {"random": (random_sampling, False), "margin": (margin_sampling, True),
               "typiclust": (TypiClust(embedder=features), False)}
        for switch in args.switch:
            out[f"typiclust_then_margin@{switch}"] = (
                TypiclustThenMargin(switch_at=switch, embedder=features), False)
        return out

    curves = {}
    for seed in range(args.seeds):
        for name, (strategy, random_first) in strategies(seed).items():
            curves.setdefault(name, []).append(campaign(
                strategy, features, y_train, F_test, y_test, classes, args.batch,
                args.max_labels, seed, random_first))
        print(f"seed {seed} done", flush=True)
    labels = list(range(args.batch, args.max_labels + 1, args.batch))
    base = np.mean(curves["random"], axis=1)
    summary = {}
    print(f"{'strategy':28s} AULC    dAULC vs random (SE)   AUROC at " +
          " ".join(str(n) for n in (10, 20, 50, 100, 200) if n in labels))
    for name, runs in curves.items():
        runs = np.asarray(runs)
        aulc = runs.mean(axis=1)
        diff = aulc - base
        se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else float("nan")
        at = {n: float(runs[:, labels.index(n)].mean()) for n in (10, 20, 50, 100, 200)
              if n in labels}
        summary[name] = {"aulc": float(aulc.mean()), "daulc": float(diff.mean()),
                         "daulc_se": float(se), "mean_curve": runs.mean(axis=0).tolist(),
                         "auroc_at": at}
        print(f"{name:28s} {aulc.mean():.4f}  {diff.mean():+.4f} ({se:.4f})        " +
              " ".join(f"{v:.3f}" for v in at.values()), flush=True)
    atomic_write_json(Path(args.out) / f"budget_schedule_probe_{args.dataset}.json",
                      {"dataset": args.dataset, "labels": labels, "seeds": args.seeds,
                       "representation": "PCA(50) of pixels", "probe": "LogisticRegression",
                       "summary": summary, "environment": environment()})


if __name__ == "__main__":
    main()
