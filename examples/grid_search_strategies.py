"""Choose a query strategy by cross-validation: GridSearchCV over strategies.

Each candidate runs a simulated active-learning campaign on the training folds (20
initial labels, then 4 rounds of 20) and is scored on the held-out fold, so the grid
search answers "which strategy gives the best model for this labelling budget?".
Uses scikit-learn's bundled 8x8 digits (no download); the four core strategies take a
few seconds with ``--n-jobs 2``. Strategies of skal.query.registry beyond the core four
(expected gradient norm, BADGE, core-set, TDGF) are added when they are available;
``--core`` keeps the four.

    python examples/grid_search_strategies.py --n-jobs 2
"""

import argparse
import time

import numpy as np
import torch
from sklearn.model_selection import GridSearchCV, train_test_split

from skal import ActiveLearningClassifier, CNNClassifier
from skal.data import load_digits_images
from skal.query.registry import STRATEGIES

CORE = ["random", "uncertainty", "margin", "entropy"]
OPTIONAL = ["expected_gradnorm", "badge", "coreset", "tdgf"]


def make_search(strategies, n_jobs=1, cv=3):
    """The grid search of this example (also timed by benchmarks/grid_search_parallel.py)."""
    # a quick net for 8x8 images: a higher learning rate, at least 60 steps per fit
    net = CNNClassifier(lr=5e-3, max_epochs=10, min_steps=60)
    model = ActiveLearningClassifier(net, n_initial=20, n_queries=4, batch_size=20,
                                     random_state=0, record_scores=False)
    return GridSearchCV(model, {"query_strategy": list(strategies)}, cv=cv, n_jobs=n_jobs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-jobs", type=int, default=1)
    parser.add_argument("--core", action="store_true", help="only the four core strategies")
    args = parser.parse_args()
    torch.set_num_threads(1)

    strategies = CORE + ([] if args.core else [s for s in OPTIONAL if s in STRATEGIES])
    X, y = load_digits_images()
    X_dev, X_test, y_dev, y_test = train_test_split(X, y, test_size=0.3, stratify=y,
                                                    random_state=0)
    search = make_search(strategies, n_jobs=args.n_jobs)
    start = time.perf_counter()
    search.fit(X_dev, y_dev)
    seconds = time.perf_counter() - start

    results = search.cv_results_
    print(f"{len(strategies)} strategies x 3 folds, 100 labels per campaign, "
          f"n_jobs={args.n_jobs}: {seconds:.1f} s")
    print(f"{'strategy':<20} {'CV accuracy':>12}")
    for rank in np.argsort(results["rank_test_score"], kind="stable"):
        name = results["param_query_strategy"][rank]
        print(f"{name:<20} {results['mean_test_score'][rank]:>7.3f} "
              f"+- {results['std_test_score'][rank]:.3f}")
    best = search.best_estimator_
    print(f"best: {search.best_params_['query_strategy']}; refitted on the development "
          f"set ({len(best.labeled_indices_)} labels): test accuracy "
          f"{search.score(X_test, y_test):.3f}")


if __name__ == "__main__":
    main()
