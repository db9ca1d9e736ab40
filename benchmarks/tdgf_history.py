"""Which historical proxy makes TDGF work: a short paired comparison on PneumoniaMNIST.

TDGF (Chen et al., IEEE JBHI 2025) scores the change of the proxy's final-layer gradient
flow between a historical proxy and the final one. Variants of the historical proxy:
``lag`` (one epoch before the end: a single optimizer step with few labels, the old
default), ``fraction`` (the snapshot after half of the proxy's training) and
``previous_round`` (the proxy of the previous query). Paired seeds, 10 initial labels
(balanced), 15 per round to 100, test AUROC, against random sampling. Prints a table
and writes JSON to benchmarks/results/tdgf_history.json.

    python benchmarks/tdgf_history.py                 # 3 seeds, ~15 min on 2 cores
"""

import argparse
import time
from pathlib import Path

import torch

from _common import data_dir, environment, require
from skal import CNNClassifier
from skal.cli import format_summary
from skal.data import load_campaign_data
from skal.query import TDGF, random_sampling
from skal.simulate import simulate
from skal.utils.io import atomic_write_json


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None, help="pneumoniamnist.npz")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--initial", type=int, default=10)
    parser.add_argument("--batch", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    path = require(args.data or data_dir() / "medmnist" / "pneumoniamnist.npz")
    data = load_campaign_data(path)
    strategies = {
        "random": random_sampling,
        "tdgf_lag": TDGF(history="lag", lag=1),
        "tdgf_fraction": TDGF(history="fraction", history_fraction=0.5),
        "tdgf_previous_round": TDGF(history="previous_round"),
    }
    t0 = time.perf_counter()
    result = simulate(CNNClassifier(), strategies, data.X_pool, data.y_pool, data.X_test,
                      data.y_test, n_initial=args.initial, batch_size=args.batch,
                      n_rounds=args.rounds, seeds=args.seeds, metric="auroc",
                      n_jobs=args.n_jobs)
    seconds = time.perf_counter() - t0
    summary = result.summary()
    print(f"\n{data.description}, test AUROC, {len(result.seeds)} paired seeds, "
          f"{args.initial} + {args.rounds} x {args.batch} labels")
    print(format_summary(summary))
    print(f"campaign time {seconds:.0f} s")
    payload = result.to_dict()
    payload.update({"environment": environment(), "campaign_seconds": seconds,
                    "data": str(path)})
    out = Path(args.out)
    atomic_write_json(out / "tdgf_history.json", payload)
    print(f"wrote {out / 'tdgf_history.json'}")


if __name__ == "__main__":
    main()
