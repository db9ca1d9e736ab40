"""A short paired comparison of query strategies on PneumoniaMNIST (or any file
``skal simulate`` reads): few seeds, 10 initial labels (balanced), 15 per round to 100,
test AUROC. Prints a table and writes JSON to benchmarks/results/<name>.json.

    python benchmarks/quick_compare.py --strategies random,aift,bald,ensemble_vote_entropy,tdgf
"""

import argparse
import time
from pathlib import Path

import torch

from _common import data_dir, environment, require
from skal import CNNClassifier
from skal.cli import format_summary
from skal.data import load_campaign_data
from skal.query.registry import get_strategy
from skal.simulate import simulate
from skal.utils.io import atomic_write_json


def arguments(description, argv=None, strategies="random,aift,bald,ensemble_vote_entropy,tdgf",
              name="quick_compare"):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", default=None, help="pneumoniamnist.npz")
    parser.add_argument("--strategies", default=strategies)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--initial", type=int, default=10)
    parser.add_argument("--batch", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--pretrain", choices=["none", "auto"], default="none",
                        help="'auto': skal's default recipe (the pool's cached SimCLR encoder, "
                             "finetune='auto', TypiClust start); 'none': from scratch, "
                             "balanced start")
    parser.add_argument("--name", default=name)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    return parser.parse_args(argv)


def compare(strategies, args):
    """Run ``simulate`` for ``strategies`` (name -> callable), print and save."""
    torch.set_num_threads(1)
    path = require(args.data or data_dir() / "medmnist" / "pneumoniamnist.npz")
    data = load_campaign_data(path)
    t0 = time.perf_counter()
    result = simulate(CNNClassifier(), strategies, data.X_pool, data.y_pool, data.X_test,
                      data.y_test, n_initial=args.initial, batch_size=args.batch,
                      n_rounds=args.rounds, seeds=args.seeds, metric="auroc",
                      n_jobs=args.n_jobs, pretrain=None if args.pretrain == "none" else "auto")
    seconds = time.perf_counter() - t0
    print(f"\n{data.description}, test AUROC, {len(result.seeds)} paired seeds, "
          f"{args.initial} + {args.rounds} x {args.batch} labels, pre-trained start "
          f"{result.config['pretrained']}")
    print(format_summary(result.summary()))
    print(f"campaign time {seconds:.0f} s")
    payload = result.to_dict()
    payload.update({"environment": environment(), "campaign_seconds": seconds,
                    "data": str(path), "pretrain": args.pretrain})
    out = Path(args.out) / f"{args.name}.json"
    atomic_write_json(out, payload)
    print(f"wrote {out}")
    return result


def main(argv=None):
    args = arguments(__doc__.split("\n\n")[0], argv)
    compare({name: get_strategy(name) for name in args.strategies.split(",")}, args)


if __name__ == "__main__":
    main()
