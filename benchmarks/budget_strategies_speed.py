"""Query time and peak memory of TypiClust and ProbCover against the pool size.

The embeddings are given directly (an identity embedder on ``(n, 1, 8, 8)`` arrays, 64
dimensions: 10 Gaussian clusters around unit vectors, L2-normalised), so the figures
are the selection's own cost, not the encoder's. ``--noise 0.15`` gives ProbCover balls
of about 5 points (a sparse graph); ``0.1`` gives tight clusters whose pure balls hold
whole clusters (hundreds of millions of edges at 50,000: the implicit, block-recomputed
balls). Each query is a cold start (no labels; ProbCover with ``n_clusters=10``) asking
for 10. Peak memory is numpy's, from ``tracemalloc``. Prints a table and writes JSON.

    python benchmarks/budget_strategies_speed.py --sizes 5000 20000 50000
"""

import argparse
import time
import tracemalloc
import types
from pathlib import Path

import numpy as np
import torch

from _common import environment
from skal.query import ProbCover, TypiClust
from skal.utils.io import atomic_write_json


class Identity:
    """The stored 64 numbers of each 'image' are its embedding."""

    def transform(self, X):
        return np.asarray(X, dtype=np.float64).reshape(len(X), -1)


def embeddings(n, noise, dim=64, n_clusters=10, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    E = centres[rng.integers(n_clusters, size=n)] + noise * rng.normal(size=(n, dim))
    return E.reshape(n, 1, 8, 8).astype(np.float32)


def measure(strategy, learner, X_pool, n_instances):
    tracemalloc.start()
    t0 = time.perf_counter()
    strategy(learner, X_pool, n_instances)
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return seconds, peak / 2**20


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000, 50000])
    parser.add_argument("--noise", type=float, nargs="+", default=[0.15, 0.1])
    parser.add_argument("--n-instances", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    rows = []
    learner = types.SimpleNamespace()                # cold start: no labels
    for n in args.sizes:
        for noise in args.noise:
            pool = embeddings(n, noise)
            strategies = [("probcover", ProbCover(embedder=Identity(), n_clusters=10,
                                                  random_state=0))]
            if noise == args.noise[0]:
                strategies.insert(0, ("typiclust", TypiClust(embedder=Identity(),
                                                             random_state=0)))
            for name, strategy in strategies:
                seconds, mib = measure(strategy, learner, pool, args.n_instances)
                extra = ({"delta": round(strategy.delta_, 4), "edges": strategy.n_edges_,
                          "graph": strategy.graph_}
                         if name == "probcover" else {"clusters": strategy.n_clusters_})
                rows.append({"strategy": name, "pool": n, "noise": noise,
                             "seconds": seconds, "peak_numpy_mib": mib, **extra})
                print(f"{name:10s} pool {n:7d} noise {noise:.2f} {seconds:7.2f} s  "
                      f"peak {mib:7.1f} MiB  {extra}", flush=True)
    atomic_write_json(Path(args.out) / "budget_strategies_speed.json",
                      {"labels": 0, "n_instances": args.n_instances, "dim": 64,
                       "rows": rows, "environment": environment()})


if __name__ == "__main__":
    main()
