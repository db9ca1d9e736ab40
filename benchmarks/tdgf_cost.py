"""Query cost per round: TDGF (proxy fit + closed-form scoring) against all-parameter
expected-gradnorm on the target model (Chen et al. claim TDGF is the cheaper of the two).

A learner is fitted on ``--labels`` PneumoniaMNIST images; each strategy then scores the
rest of the training pool (4,708 - labels images) ``--repeats`` times. Prints the mean
times and their ratio and writes JSON.

    python benchmarks/tdgf_cost.py
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from _common import data_dir, environment, require
from skal import ActiveLearner, CNNClassifier
from skal.data import load_medmnist
from skal.query.registry import get_strategy
from skal.simulate import initial_indices
from skal.utils.io import atomic_write_json


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None)
    parser.add_argument("--labels", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--gradnorm", default="expected_gradnorm_all",
                        help="registry name of the all-parameter gradnorm strategy")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    data = load_medmnist(require(args.data or data_dir() / "medmnist" / "pneumoniamnist.npz"))
    start = initial_indices(data.y_train, args.labels, random_state=0)
    pool = np.setdiff1d(np.arange(len(data.y_train)), start)
    X_pool = data.X_train[pool]
    timings = {}
    for name in ("tdgf", args.gradnorm):
        learner = ActiveLearner(CNNClassifier(random_state=0), get_strategy(name),
                                X_training=data.X_train[start], y_training=data.y_train[start])
        learner.predict(X_pool[:2])                              # fit outside the timing
        times = []
        for r in range(args.repeats):
            t0 = time.perf_counter()
            learner.query(X_pool, n_instances=10, random_state=r)
            times.append(time.perf_counter() - t0)
        timings[name] = {"mean": float(np.mean(times)), "runs": times}
        print(f"{name:24s} {np.mean(times):8.2f} s per query (pool {len(pool)})", flush=True)
    ratio = timings[args.gradnorm]["mean"] / timings["tdgf"]["mean"]
    print(f"all-parameter gradnorm / TDGF = {ratio:.2f}x")
    atomic_write_json(Path(args.out) / "tdgf_cost.json",
                      {"pool": int(len(pool)), "labels": args.labels, "timings": timings,
                       "ratio_gradnorm_all_over_tdgf": ratio, "environment": environment()})


if __name__ == "__main__":
    main()
