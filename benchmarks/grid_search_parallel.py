"""Wall time of a grid search over query strategies, sequential vs. two joblib workers.

The search of ``examples/grid_search_strategies.py`` (four strategies: random,
uncertainty, margin, entropy; 3-fold CV; each candidate a 100-label campaign of a CNN
on the bundled digits) runs with ``n_jobs=1`` and ``n_jobs=2`` (joblib's default loky
backend). Prints both times and their ratio, checks that both searches agree, and
writes ``benchmarks/results/grid_search_parallel.json``.

    python benchmarks/grid_search_parallel.py
"""

import argparse
import importlib.util
import time
from pathlib import Path

import numpy as np
import torch
from joblib import cpu_count
from sklearn.model_selection import train_test_split

from _common import REPO, environment
from skal.data import load_digits_images
from skal.utils.io import atomic_write_json

EXAMPLE = REPO / "examples" / "grid_search_strategies.py"


def _example():
    spec = importlib.util.spec_from_file_location("grid_search_strategies", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--repeats", type=int, default=1,
                        help="timings per setting (the minimum is reported)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    example = _example()
    X, y = load_digits_images()
    X_dev, _, y_dev, _ = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)

    # warm-up: imports and the loky workers' start-up are not part of the timing
    example.make_search(["random"], n_jobs=2, cv=2).fit(X_dev[:200], y_dev[:200])

    times, searches = {}, {}
    for n_jobs in (1, 2):
        runs = []
        for _ in range(args.repeats):
            search = example.make_search(example.CORE, n_jobs=n_jobs)
            start = time.perf_counter()
            search.fit(X_dev, y_dev)
            runs.append(time.perf_counter() - start)
        times[n_jobs], searches[n_jobs] = min(runs), search
        print(f"n_jobs={n_jobs}: {times[n_jobs]:.1f} s")
    ratio = times[1] / times[2]
    same = bool(np.allclose(searches[1].cv_results_["mean_test_score"],
                            searches[2].cv_results_["mean_test_score"]))
    print(f"speed-up n_jobs=2 vs 1: {ratio:.2f}x (identical results: {same})")

    payload = {
        "benchmark": "grid_search_parallel",
        "task": "GridSearchCV over 4 query strategies x 3 folds, digits (1257 dev images), "
                "20 initial labels + 4 rounds of 20, CNNClassifier(lr=5e-3, max_epochs=10, "
                "min_steps=60)",
        "strategies": list(example.CORE),
        "seconds_n_jobs_1": times[1],
        "seconds_n_jobs_2": times[2],
        "speedup": ratio,
        "identical_results": same,
        "mean_test_score": dict(zip(example.CORE,
                                    searches[1].cv_results_["mean_test_score"].tolist())),
        "repeats": args.repeats,
        "cpu_count": cpu_count(),
        "environment": environment(),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "grid_search_parallel.json", payload)
    print(f"wrote {out / 'grid_search_parallel.json'}")


if __name__ == "__main__":
    main()
