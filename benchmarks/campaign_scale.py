"""Pools that outgrow one process: scoring a 100,000-image memmap pool, and what a
campaign's ``next`` and ``train`` cost on a 5,000-image pool.

Part 1, scaling. A pool of 1x28x28 uint8 images lives in an ``.npy`` file read as a
memmap (synthetic pixels: this is a timing benchmark). A fitted ``CNNClassifier``
(skal's default ``SmallCNN``) scores it with ``entropy_sampling`` (every
pool-scoring strategy streams the pool through :func:`skal.query.base.score_pool`).
Each measurement runs in a fresh process: pool sizes of 25,000, 50,000 and 100,000
images with one worker (time should be linear in the pool, peak memory flat); then the
full pool with 1 and with ``n_jobs=2`` joblib (loky) workers alternately (after a
warm-up that starts the workers), the best wall time of each giving the speed-up.
Time is wall-clock and CPU time of the
scoring process (the linear fit uses CPU time, which other processes on a shared machine
do not inflate). Peak memory is the high-water mark of *anonymous* resident memory (``RssAnon``: the
memmap's file pages are cache, not the process's memory) above the level before
scoring, of the process and its workers, sampled every 5 ms.

Part 2, Dask. The same call on a ``dask.distributed`` cluster through joblib's
backend (a ``LocalCluster`` of 2 processes here; the scores must equal one process's).
To point the same code at a real cluster::

    dask scheduler                                   # on the scheduler machine
    dask worker tcp://SCHEDULER:8786 --nworkers 8 --nthreads 1   # on each worker machine

    from dask.distributed import Client
    from joblib import parallel_config
    client = Client("tcp://SCHEDULER:8786")
    with parallel_config(backend="dask"):
        batch = campaign.next_batch(20)              # campaign opened with n_jobs=-1

(the pool file must be readable at the same path on every worker, e.g. on a shared
file system; a memmap travels as a file reference).

Part 3, a campaign round on 5,000 images (PneumoniaMNIST train + val when the shared
data is present, else synthetic): with 200 labels, the time of ``train()`` (a fresh
fit, safetensors checkpoint, database record), of ``next_batch(20)`` in a freshly opened
campaign (model restored from its checkpoint, 4,800 images scored, round recorded), of
``add_labels`` for 20 items, and of opening with a full content-hash check, each as a
ratio to one training round (``fit`` of the same estimator on the same 200 labels).

    python benchmarks/campaign_scale.py               # writes results/campaign_scale.json
    python benchmarks/campaign_scale.py --pool 20000  # quicker
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, data_dir, environment  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"


def rss_anon_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
    except OSError:
        return 0
    return 0


class PeakMemory:
    """Sample the anonymous RSS of this process and its children every 5 ms."""

    def __init__(self):
        import psutil

        self.proc = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()

    def total(self):
        pids = [self.proc.pid] + [c.pid for c in self.proc.children(recursive=True)]
        return sum(rss_anon_kb(p) for p in pids)

    def __enter__(self):
        self.base = self.total()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.total())
            time.sleep(0.005)

    def __exit__(self, *exc):
        self._stop.set()
        self.thread.join()
        self.peak_mb = max(0, self.peak - self.base) / 1024


def fitted_model():
    from skal import CNNClassifier

    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (200, 1, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 2, 200)
    return CNNClassifier(max_epochs=1, min_steps=5, random_state=0).fit(X, y)


def worker(pool_path, size, n_jobs):
    """One measurement in this (fresh) process; prints a JSON line."""
    import torch

    torch.set_num_threads(1)
    from skal.query import entropy_sampling

    X = np.load(pool_path, mmap_mode="r")[:size]
    model = fitted_model()
    entropy_sampling(model, X[:2048], 5, batch_size=512, n_jobs=n_jobs)   # warm-up
    with PeakMemory() as memory:
        t0, c0 = time.perf_counter(), time.process_time()
        picked, _ = entropy_sampling(model, X, 20, batch_size=512, n_jobs=n_jobs)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({"size": size, "n_jobs": n_jobs, "seconds": seconds,
                      "cpu_seconds_main_process": cpu,
                      "peak_mb": memory.peak_mb, "picked": picked[:5].tolist()}))


def pair_worker(pool_path, size, repeats):
    """1 and 2 workers alternately, ``repeats`` times each, in one process: the best
    wall time of each (the least disturbed by other processes) gives the speed-up."""
    import torch

    torch.set_num_threads(1)
    from skal.query import entropy_sampling

    X = np.load(pool_path, mmap_mode="r")[:size]
    model = fitted_model()
    entropy_sampling(model, X[:2048], 5, batch_size=512, n_jobs=2)        # start workers
    walls = {1: [], 2: []}
    peak = 0.0
    for _ in range(repeats):
        for n_jobs in (1, 2):
            with PeakMemory() as memory:
                t0 = time.perf_counter()
                picked, _ = entropy_sampling(model, X, 20, batch_size=512, n_jobs=n_jobs)
                walls[n_jobs].append(time.perf_counter() - t0)
            if n_jobs == 2:
                peak = max(peak, memory.peak_mb)
    print(json.dumps({"size": size, "repeats": repeats, "wall_1": walls[1],
                      "wall_2": walls[2], "peak_mb_2": peak, "picked": picked[:5].tolist()}))


def dask_worker(pool_path, size):
    import torch

    torch.set_num_threads(1)
    from dask.distributed import Client, LocalCluster
    from joblib import parallel_config

    from skal.query.uncertainty import classifier_entropy

    X = np.load(pool_path, mmap_mode="r")[:size]
    model = fitted_model()
    reference = classifier_entropy(model, X, batch_size=512)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster):
        with parallel_config(backend="dask"):
            classifier_entropy(model, X[:2048], batch_size=512, n_jobs=2)      # warm-up
            t0 = time.perf_counter()
            scores = classifier_entropy(model, X, batch_size=512, n_jobs=2)
            seconds = time.perf_counter() - t0
    print(json.dumps({"size": size, "seconds": seconds,
                      "max_abs_diff": float(np.abs(scores - reference).max())}))


def make_pool(path, n):
    from numpy.lib.format import open_memmap

    pool = open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, 1, 28, 28))
    rng = np.random.default_rng(1)
    for start in range(0, n, 10_000):
        stop = min(n, start + 10_000)
        pool[start:stop] = rng.integers(0, 256, (stop - start, 1, 28, 28), dtype=np.uint8)
    pool.flush()
    del pool


def run(args):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, __file__] + args, capture_output=True, text=True,
                         env=env, check=False)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def campaign_round(workdir, n_labels=200, batch=20):
    """Part 3: next / train / label / open on a 5,000-image campaign, as ratios."""
    import torch

    torch.set_num_threads(1)
    from skal import CNNClassifier
    from skal.campaign import Campaign
    from skal.campaign.engine import with_seed
    from skal.data.pool import take

    npz = data_dir() / "medmnist" / "pneumoniamnist.npz"
    if npz.is_file():
        with np.load(npz) as data:
            X = np.concatenate([data["train_images"], data["val_images"]])[:5000, None]
            y = np.concatenate([data["train_labels"], data["val_labels"]]).ravel()[:5000]
        source = "PneumoniaMNIST train+val (first 5,000)"
    else:
        rng = np.random.default_rng(2)
        X = rng.integers(0, 256, (5000, 1, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 2, 5000)
        source = "synthetic"
    names = np.where(y == 1, "pneumonia", "normal")
    np.save(workdir / "p5000.npy", X)
    shutil.rmtree(workdir / "c5000", ignore_errors=True)     # a --workdir used before
    estimator = CNNClassifier(random_state=0)
    camp = Campaign.create(workdir / "c5000", workdir / "p5000.npy", estimator, "entropy",
                           classes=["normal", "pneumonia"], cv=0, progress=False)
    picked = np.random.default_rng(0).choice(5000, n_labels, replace=False)
    camp.add_labels([camp.ids[k] for k in picked], names[picked])
    order = np.sort(picked)
    fitted_model()                       # warm-up: lazy imports and set-up of a first fit
    t0 = time.perf_counter()
    with_seed(estimator, 0, np.array(["normal", "pneumonia"])).fit(
        np.asarray(take(X, order)), names[order])
    fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    camp.train(progress=False)
    train = time.perf_counter() - t0
    camp.close()
    t0 = time.perf_counter()
    fresh = Campaign.open(workdir / "c5000", verify="quick")
    ids = fresh.next_batch(batch)
    next_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    fresh.add_labels(ids, [names[fresh.ids.index(i)] for i in ids])
    label = time.perf_counter() - t0
    fresh.close()
    t0 = time.perf_counter()
    Campaign.open(workdir / "c5000", verify="full").close()
    open_full = time.perf_counter() - t0
    return {"source": source, "pool": 5000, "labels": n_labels, "batch": batch,
            "estimator": "CNNClassifier() defaults (SmallCNN, min_steps=200)",
            "seconds": {"fit_one_round": fit, "train": train, "next": next_s,
                        "add_labels": label, "open_full_check": open_full},
            "ratio_to_one_training_round": {
                "train": train / fit, "next": next_s / fit, "add_labels": label / fit,
                "open_full_check": open_full / fit}}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pool", type=int, default=100_000)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--no-dask", action="store_true")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--dask-worker", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--pair-worker", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3,
                        help="alternations of 1 and 2 workers for the speed-up")
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker[0], int(args.worker[1]), int(args.worker[2]))
    if args.dask_worker:
        return dask_worker(args.dask_worker[0], int(args.dask_worker[1]))
    if args.pair_worker:
        return pair_worker(args.pair_worker[0], int(args.pair_worker[1]),
                           int(args.pair_worker[2]))
    tmp = tempfile.TemporaryDirectory() if args.workdir is None else None
    workdir = Path(args.workdir or tmp.name)
    workdir.mkdir(parents=True, exist_ok=True)
    pool = workdir / "pool.npy"
    make_pool(pool, args.pool)
    sizes = [args.pool // 4, args.pool // 2, args.pool]
    scaling = [run(["--worker", str(pool), str(s), "1"]) for s in sizes]
    for row in scaling:
        print(f"n_jobs=1  {row['size']:>7} images  {row['seconds']:7.2f} s wall, "
              f"{row['cpu_seconds_main_process']:7.2f} s CPU "
              f"({1000 * row['cpu_seconds_main_process'] / row['size']:.3f} ms/image)  "
              f"peak +{row['peak_mb']:.0f} MB")
    two = run(["--pair-worker", str(pool), str(args.pool), str(args.repeats)])
    speedup = min(two["wall_1"]) / min(two["wall_2"])
    print(f"n_jobs=1 vs 2 alternately, {two['size']} images, best of {args.repeats}: "
          f"{min(two['wall_1']):.2f} s vs {min(two['wall_2']):.2f} s, speed-up "
          f"{speedup:.2f}x; peak +{two['peak_mb_2']:.0f} MB (process and workers)")
    # CPU time: on a shared machine wall time also counts other processes' turns
    cpu = [r["cpu_seconds_main_process"] for r in scaling]
    slope, intercept = np.polyfit([r["size"] for r in scaling], cpu, 1)
    fitted = np.polyval([slope, intercept], [r["size"] for r in scaling])
    worst = float(np.max(np.abs(fitted - cpu) / cpu))
    result = {"benchmark": "campaign_scale", "environment": environment(),
              "cpus": os.cpu_count(), "pool_images": args.pool,
              "image_shape": [1, 28, 28], "dtype": "uint8 memmap (.npy)",
              "strategy": "entropy_sampling, batch_size=512",
              "scaling_one_worker": scaling, "two_workers": two,
              "speedup_2_over_1": speedup,
              "linear_fit_cpu": {"ms_per_image": 1000 * slope, "intercept_s": intercept,
                             "worst_relative_deviation": worst},
              "same_batch_1_vs_2_workers": two["picked"] == scaling[-1]["picked"],
              "load_average_after": os.getloadavg(),
              "dask_commands": __doc__.split("Part 2, Dask.")[1].split("Part 3")[0].strip()}
    if not args.no_dask:
        dask = run(["--dask-worker", str(pool), str(min(args.pool, 20_000))])
        print(f"dask LocalCluster(2 processes): {dask['size']} images in "
              f"{dask['seconds']:.2f} s; max |score - one process| = {dask['max_abs_diff']:.1e}")
        result["dask_local_cluster"] = dask
    result["campaign_5000"] = campaign_round(workdir)
    ratios = result["campaign_5000"]["ratio_to_one_training_round"]
    print("5,000-image campaign, ratio to one training round: "
          + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()))
    RESULTS.mkdir(parents=True, exist_ok=True)
    from skal.utils.io import atomic_write_json

    atomic_write_json(RESULTS / "campaign_scale.json", result)
    print(f"wrote {RESULTS / 'campaign_scale.json'}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
