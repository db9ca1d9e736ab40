"""Cost of SimCLR pre-training relative to supervised training of the same network.

Issue 13's speed target: one pre-training epoch (two augmented views of every image,
encoder + projection, NT-Xent) over a 5,000-image 28-px pool costs at most what 2 epochs
of supervised training of the same network (skal's ``CNNClassifier`` default SmallCNN,
batch 32) cost on the same images. Epochs are timed interleaved (SimCLR, supervised,
SimCLR, ...) so load from other processes hits both alike; the median of the repeats is
reported. Writes ``benchmarks/results/pretrain_cost.json``.

    python benchmarks/pretrain_cost.py                  # PneumoniaMNIST train images
    python benchmarks/pretrain_cost.py --repeats 5 --threads 2
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from _common import data_dir, environment, require
from skal import CNNClassifier
from skal.pretrain import SimCLR
from skal.utils.io import atomic_write_json


def _pool(n):
    path = require(data_dir() / "medmnist" / "pneumoniamnist.npz")
    with np.load(path) as data:
        X = np.concatenate([data["train_images"], data["val_images"]])[:n]
        y = np.concatenate([data["train_labels"], data["val_labels"]]).ravel()[:n]
    return X, y


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000, help="pool size (28-px images)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    X, y = _pool(args.n)

    simclr_s, supervised_s = [], []
    for repeat in range(args.repeats):
        pretrainer = SimCLR(max_epochs=1, random_state=repeat, progress=False)
        t0 = time.perf_counter()
        pretrainer.fit(X)
        simclr_s.append(time.perf_counter() - t0)
        net = CNNClassifier(max_epochs=2, min_steps=None, random_state=repeat)
        t0 = time.perf_counter()
        net.fit(X, y)
        supervised_s.append(time.perf_counter() - t0)
        print(f"repeat {repeat}: SimCLR epoch {simclr_s[-1]:.2f} s, 2 supervised epochs "
              f"{supervised_s[-1]:.2f} s", flush=True)
    ratios = [a / b for a, b in zip(simclr_s, supervised_s)]
    result = {
        "n_images": int(len(X)), "image_shape": list(X.shape[1:]),
        "simclr_epoch_s": simclr_s, "supervised_2_epochs_s": supervised_s,
        "ratio_per_repeat": ratios, "ratio_median": float(np.median(ratios)),
        "target": "ratio <= 1 (one SimCLR epoch costs at most 2 supervised epochs)",
        "simclr": repr(SimCLR()), "supervised": repr(CNNClassifier(max_epochs=2)),
        "environment": environment(),
    }
    print(f"median ratio (SimCLR epoch / 2 supervised epochs): {result['ratio_median']:.2f}")
    atomic_write_json(Path(args.out) / "pretrain_cost.json", result)
    print(f"wrote {Path(args.out) / 'pretrain_cost.json'}")


if __name__ == "__main__":
    main()
