"""Speed of gradient-based query scoring against the reference implementation.

Wang et al. (AAAI 2022) score the pool one image at a time (``batch_size=1``, a forward
and a backward pass per image; xulabs/aitom ``al_gradnorm``). skal computes the same
numbers batch by batch: the final layer in closed form from one forward pass
(``scope="last"``), every parameter with torch.func per-sample gradients
(``scope="all"``).

Setting: a pool of 10,000 random 1x28x28 images, 2 threads, batch size 256 everywhere,
on a fixed reference CNN given as a user module (conv 16 and conv 32 with BatchNorm,
a 64-unit hidden layer, 2 or 10 outputs) and on skal's default ``SmallCNN``. Each
model is fitted briefly on 300 randomly labelled images (it is a timing benchmark).
The reference CNN opts in to ``memory_format="channels_last"`` (its forward uses
``flatten``), which skal's own networks get by default; the plain forward pass is timed
in both layouts, and the reference loop runs on a copy in torch's default layout (the
faster one at batch size 1, and the reference code's).

Measured over the whole pool (best of ``--repeats`` interleaved rounds; wall and CPU
time): a plain forward pass
(``module(x)`` per batch, no gradient), ``predict_proba``, entropy, expected and
entropy GradNorm in both scopes; and the reference-style loop on 300 images,
extrapolated to the pool: (i) the reference code itself, whose loss
``sum_c p_c CE(f(x), c)`` with ``p`` attached is the entropy, hence skal's
``entropy_gradnorm(scope="all")``; (ii) the same loop for the expectation of norms
``sum_c p_c ||grad CE(f(x), c)||`` (one backward per class), skal's
``expected_gradnorm(scope="all")``. The loop's 300 scores are compared with skal's,
and both with the same loop run in float64 (the exact values).
Peak memory of ``scope="all"`` expected GradNorm scoring is measured in fresh processes
for two pool sizes (RSS high-water mark above the pre-scoring level, sampled every 2 ms,
with a fixed glibc mmap threshold so that freed blocks leave RSS).

Timings run with :func:`skal.utils.malloc.tune_malloc` (as ``skal --tune-malloc`` does):
glibc's default settings return the activation memory to the OS after each batch and
make batched passes up to 2.5x slower, by an amount that depends on what ran before.
``--malloc default`` measures that setting instead (``query_speed_default_malloc.json``).

    python benchmarks/query_speed.py                  # writes results/query_speed.json
    python benchmarks/query_speed.py --pool 2000 --repeats 1    # quicker
"""

import argparse
import copy
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

# OpenMP threads that spin while waiting burn the cores of a shared machine and slow
# every multi-threaded op when the machine is oversubscribed; wait passively instead
# (for every measurement alike). Must be set before torch starts; override it from
# the environment (OMP_WAIT_POLICY=ACTIVE) to measure torch's default.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from _common import environment  # noqa: E402
from skal import CNNClassifier  # noqa: E402
from skal.query import (classifier_entropy, classifier_entropy_gradnorm,  # noqa: E402
                        classifier_expected_gradnorm)
from skal.utils.io import atomic_write_json  # noqa: E402
from skal.utils.malloc import tune_malloc  # noqa: E402
from skal.utils.validation import to_image_tensor  # noqa: E402

BATCH = 256
THREADS = 2


class RefCNN(nn.Module):
    """The fixed reference network (a user module: it takes only its own arguments)."""

    def __init__(self, n_classes=10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2))
        self.hidden = nn.Linear(32 * 7 * 7, 64)
        self.out = nn.Linear(64, n_classes)

    def forward(self, x):
        return self.out(torch.relu(self.hidden(self.features(x).flatten(1))))


MODELS = {
    "RefCNN-2": (RefCNN, 2),
    "RefCNN-10": (RefCNN, 10),
    "SmallCNN-2": (None, 2),
    "SmallCNN-10": (None, 10),
}


def make_pool(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 1, 28, 28), dtype=np.uint8)


def fit_model(name, seed=0):
    module, n_classes = MODELS[name]
    rng = np.random.default_rng(seed + 1)
    X = rng.integers(0, 256, (300, 1, 28, 28), dtype=np.uint8)
    y = np.arange(300) % n_classes
    rng.shuffle(y)
    common = dict(max_epochs=2, min_steps=None, augment=None, batch_size=64,
                  predict_batch_size=BATCH, random_state=seed)
    if module is None:
        net = CNNClassifier(**common)
    else:
        net = CNNClassifier(module=module, module__n_classes=n_classes,
                            memory_format="channels_last", **common)
    return net.fit(X, y)


# ------------------------------------------------------------------ measurements
def interleaved_best(tasks, repeats):
    """Run every task once per round, ``repeats`` rounds, and keep each task's fastest
    wall time (and the CPU time of that run). Interleaving spreads a shared machine's
    load over all tasks alike; the minimum is the least disturbed run."""
    results, wall, cpu = {}, {k: np.inf for k in tasks}, {}
    for r in range(repeats):
        for key, fn in tasks.items():
            w0, c0 = time.perf_counter(), time.process_time()
            result = fn()
            w, c = time.perf_counter() - w0, time.process_time() - c0
            results.setdefault(key, result)
            if w < wall[key]:
                wall[key], cpu[key] = w, c
            print(f"  round {r + 1}: {key:<20} {w:8.2f} s wall {c:8.2f} s CPU", flush=True)
    return results, wall, cpu


def plain_forward(net, X):
    module = net.module_.eval()
    with torch.no_grad():
        for start in range(0, len(X), BATCH):
            module(to_image_tensor(X[start:start + BATCH]))


def reference_loop(net, X, expected_of_norms=False):
    """The reference code's scoring loop (xulabs/aitom al_gradnorm ``get_uncertainty``):
    a DataLoader with batch size 1, one forward and backward per image, the sum of the
    per-parameter gradient norms. ``expected_of_norms`` backpropagates each class's
    cross-entropy separately and weights the norms by ``p_c`` instead."""
    module = net.module_.eval()
    dtype = next(module.parameters()).dtype
    n_classes = net.n_outputs_
    loader = DataLoader(TensorDataset(torch.from_numpy(X)), batch_size=1)
    criterion = nn.CrossEntropyLoss()
    uncertainty = torch.tensor([])
    for (inputs,) in loader:
        inputs = to_image_tensor(inputs).to(dtype)
        scores = module(inputs)
        posterior = F.softmax(scores, dim=1)
        if expected_of_norms:
            gradnorm = torch.zeros(())
            for c in range(n_classes):
                module.zero_grad()
                criterion(scores, torch.full([1], c)).backward(retain_graph=True)
                norms = [p.grad.norm() for p in module.parameters() if p.grad is not None]
                gradnorm = gradnorm + posterior[0, c].detach() * torch.stack(norms).sum()
        else:
            posterior = posterior.squeeze()
            loss = 0.0
            for c in range(n_classes):
                loss += posterior[c] * criterion(scores, torch.full([1], c))
            module.zero_grad()
            loss.backward(retain_graph=True)
            norms = [p.grad.norm() for p in module.parameters() if p.grad is not None]
            gradnorm = torch.stack(norms).sum()
        uncertainty = torch.cat((uncertainty, gradnorm.detach().view(1)), 0)
    return uncertainty.double().numpy()


def measure_model(name, pool, n_loop, repeats):
    net = fit_model(name)
    # the same weights in torch's default layout
    standard = copy.deepcopy(net)
    standard.module_.to(memory_format=torch.contiguous_format)
    n = len(pool)
    sub = pool[:n_loop]
    tasks = {
        "forward": lambda: plain_forward(net, pool),
        "forward_contiguous": lambda: plain_forward(standard, pool),
        "predict_proba": lambda: net.predict_proba(pool),
        "entropy": lambda: classifier_entropy(net, pool, batch_size=BATCH),
        "expected_last": lambda: classifier_expected_gradnorm(net, pool, scope="last",
                                                              batch_size=BATCH),
        "entropy_last": lambda: classifier_entropy_gradnorm(net, pool, scope="last",
                                                            batch_size=BATCH),
        "entropy_all": lambda: classifier_entropy_gradnorm(net, pool, scope="all",
                                                           batch_size=BATCH),
        "expected_all": lambda: classifier_expected_gradnorm(net, pool, scope="all",
                                                             batch_size=BATCH),
        "loop_reference_sub": lambda: reference_loop(standard, sub),
        "loop_expected_sub": lambda: reference_loop(standard, sub, True),
    }
    results, timings, cpu = interleaved_best(tasks, repeats)
    scale = n / n_loop
    for key in ("loop_reference", "loop_expected"):
        timings[key] = timings[key + "_sub"] * scale
        cpu[key] = cpu[key + "_sub"] * scale

    def rel_err(a, b):
        return float(np.max(np.abs(a - b) / np.abs(b)))

    def ratios(t):
        return {
            "expected_last_over_forward": t["expected_last"] / t["forward"],
            "expected_last_over_forward_contiguous": (t["expected_last"]
                                                      / t["forward_contiguous"]),
            "forward_contiguous_over_forward": t["forward_contiguous"] / t["forward"],
            "entropy_last_over_forward": t["entropy_last"] / t["forward"],
            "expected_last_over_predict_proba": t["expected_last"] / t["predict_proba"],
            "loop_reference_over_expected_last": t["loop_reference"] / t["expected_last"],
            "loop_reference_over_entropy_last": t["loop_reference"] / t["entropy_last"],
            "loop_reference_over_entropy_all": t["loop_reference"] / t["entropy_all"],
            "loop_expected_over_expected_all": t["loop_expected"] / t["expected_all"],
            "loop_reference_over_expected_all": t["loop_reference"] / t["expected_all"],
        }

    # The same loops in float64 (a copy of the net in double precision): the exact
    # values both float32 computations approximate.
    net64 = copy.deepcopy(standard)
    net64.module_.double()
    truth_reference = reference_loop(net64, sub)
    truth_expected = reference_loop(net64, sub, True)
    errors = {
        "entropy_all_vs_reference_loop": rel_err(results["entropy_all"][:n_loop],
                                                 results["loop_reference_sub"]),
        "expected_all_vs_expected_loop": rel_err(results["expected_all"][:n_loop],
                                                 results["loop_expected_sub"]),
        "entropy_all_vs_float64_loop": rel_err(results["entropy_all"][:n_loop],
                                               truth_reference),
        "expected_all_vs_float64_loop": rel_err(results["expected_all"][:n_loop],
                                                truth_expected),
        "reference_loop_vs_float64_loop": rel_err(results["loop_reference_sub"],
                                                  truth_reference),
        "expected_loop_vs_float64_loop": rel_err(results["loop_expected_sub"],
                                                 truth_expected),
    }
    return {"n_outputs": int(net.n_outputs_),
            "n_parameters": int(sum(p.numel() for p in net.module_.parameters())),
            "seconds": timings, "cpu_seconds": cpu, "ratios": ratios(timings),
            "cpu_ratios": ratios(cpu), "max_relative_error": errors}


# ------------------------------------------------------------------------ memory
def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_child(name, n):
    """Run in a fresh process: peak RSS above the pre-scoring level during
    ``scope="all"`` scoring of an ``n``-image pool."""
    torch.set_num_threads(THREADS)
    net = fit_model(name)
    pool = make_pool(n)
    classifier_expected_gradnorm(net, pool[:BATCH], scope="all")     # warm-up
    peak, stop = [0], threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.002)

    base = _rss_bytes()
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    classifier_expected_gradnorm(net, pool, scope="all", batch_size=BATCH)
    seconds = time.perf_counter() - t0
    stop.set()
    thread.join()
    peak[0] = max(peak[0], _rss_bytes())
    print(json.dumps({"pool": n, "baseline_mb": base / 2**20,
                      "peak_above_baseline_mb": (peak[0] - base) / 2**20,
                      "seconds": seconds}))


def measure_memory(name, sizes):
    # A fixed mmap threshold stops glibc from moving it after the warm-up (which would
    # keep freed blocks in the heap, hence in RSS, for one run and not another): every
    # large block is then mapped and returned, so the peak is the working set.
    env = {key: value for key, value in os.environ.items()
           if key != "MALLOC_TRIM_THRESHOLD_"}
    env["MALLOC_MMAP_THRESHOLD_"] = "131072"
    out = []
    for n in sizes:
        proc = subprocess.run([sys.executable, __file__, "--memory-child", name, str(n)],
                              capture_output=True, text=True, check=True, env=env,
                              cwd=Path(__file__).parent)
        out.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f"  memory {name} pool {n}: +{out[-1]['peak_above_baseline_mb']:.1f} MiB "
              f"above the pre-scoring RSS", flush=True)
    return out


# -------------------------------------------------------------------------- main
def format_table(results, n_loop):
    cols = ["forward", "forward_contiguous", "predict_proba", "entropy", "expected_last",
            "entropy_last", "entropy_all", "expected_all", "loop_reference",
            "loop_expected"]
    lines = [f"wall seconds for the whole pool (loops extrapolated from {n_loop} images)",
             f"{'model':<12}" + "".join(f"{c:>15}" for c in cols)]
    for name, r in results.items():
        lines.append(f"{name:<12}" + "".join(f"{r['seconds'][c]:15.2f}" for c in cols))
    lines.append("")
    keys = list(next(iter(results.values()))["ratios"])
    for kind, label in (("ratios", "wall-time ratio"), ("cpu_ratios", "CPU-time ratio")):
        lines.append(f"{label:<44}" + "".join(f"{name:>13}" for name in results))
        for key in keys:
            lines.append(f"{key:<44}" + "".join(f"{r[kind][key]:13.2f}"
                                                for r in results.values()))
        lines.append("")
    for key in next(iter(results.values()))["max_relative_error"]:
        lines.append(f"{'max rel err ' + key:<44}" + "".join(
            f"{r['max_relative_error'][key]:13.1e}" for r in results.values()))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pool", type=int, default=10_000)
    parser.add_argument("--loop", type=int, default=300, help="images in the reference loop")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--memory-sizes", default="2000,10000")
    parser.add_argument("--memory-model", default="RefCNN-10")
    parser.add_argument("--malloc", choices=["tuned", "default"], default="tuned",
                        help="glibc allocator settings for the timings (default: tuned)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--memory-child", nargs=2, metavar=("MODEL", "N"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        return memory_child(args.memory_child[0], int(args.memory_child[1]))

    malloc_tuned = args.malloc == "tuned" and tune_malloc(child_processes=False)
    torch.set_num_threads(THREADS)
    pool = make_pool(args.pool)
    load_before = os.getloadavg()
    results = {}
    for name in args.models.split(","):
        print(f"{name}:", flush=True)
        results[name] = measure_model(name, pool, args.loop, args.repeats)
    memory = {}
    if args.memory_sizes:
        sizes = [int(s) for s in args.memory_sizes.split(",")]
        memory = {"model": args.memory_model, "runs": measure_memory(args.memory_model, sizes)}
    table = format_table(results, args.loop)
    print(f"\npool {args.pool} random 1x28x28 images, {THREADS} threads, batch {BATCH}, "
          f"best of {args.repeats}")
    print(table)
    for run in memory.get("runs", []):
        print(f"peak memory of scope='all' scoring ({memory['model']}), pool {run['pool']}: "
              f"+{run['peak_above_baseline_mb']:.1f} MiB")
    payload = {"omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "pool": args.pool,
               "loop_images": args.loop, "batch_size": BATCH, "threads": THREADS,
               "malloc_tuned": bool(malloc_tuned), "repeats": args.repeats, "models": results,
               "memory": memory, "environment": environment(),
               "load_average_before": load_before, "load_average_after": os.getloadavg()}
    suffix = "" if args.malloc == "tuned" else "_default_malloc"
    out = Path(args.out) / f"query_speed{suffix}.json"
    atomic_write_json(out, payload)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
