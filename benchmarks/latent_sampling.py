"""Latent-space hard sampling (Mo et al., MIDL 2020) on PneumoniaMNIST, pool mode,
against random and entropy sampling.

Stage 1 (timed on its own): a VAE is fitted once on the pool images (no labels) and
shared by every seed (and by every step size eta given with ``--step-sizes``; the
default runs eta = 0.1, the strategy's default, only).
Stage 2: simulated campaigns with the true labels hidden until queried, 3 paired
seeds, 10 initial labels (balanced), 10 labels per round, 19 rounds (10 to 200
labels), test AUROC. The latent strategy's per-round query time (encoding the pool,
the latent ascent, the nearest-neighbour search) is reported apart from the VAE's
fitting time. Prints tables and writes JSON and a learning-curve PNG.

    python benchmarks/latent_sampling.py                  # the issue's setting
    python benchmarks/latent_sampling.py --rounds 9                  # quicker
    python benchmarks/latent_sampling.py --step-sizes 0.1,0.25       # eta sensitivity
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from _common import data_dir, environment, require
from skal import ActiveLearner, CNNClassifier
from skal.cli import format_summary
from skal.data import load_medmnist
from skal.nets import VAE
from skal.query import LatentHardSampling, entropy_sampling, random_sampling
from skal.simulate import initial_indices, simulate
from skal.utils.io import atomic_write_json


def ascent_check(vae, strategy_params, data, n_initial, seed=0):
    """One query from the initial labelled set: does the ascent raise the task loss,
    and which classes does pool mode pick?"""
    start = initial_indices(data.y_train, n_initial, seed)
    learner = ActiveLearner(CNNClassifier(random_state=seed),
                            LatentHardSampling(vae=vae, random_state=seed,
                                               **strategy_params),
                            X_training=data.X_train[start], y_training=data.y_train[start])
    rest = np.setdiff1d(np.arange(len(data.y_train)), start)
    indices, _ = learner.query(data.X_train[rest], n_instances=10)
    path = learner.query_strategy.loss_path_
    return {"loss_before": float(path[0].mean()), "loss_after": float(path[-1].mean()),
            "share_of_seeds_with_higher_loss": float(np.mean(path[-1] > path[0])),
            "mean_latent_distance_to_query": float(learner.query_strategy.distances_.mean()),
            "queried_class_counts": np.bincount(data.y_train[rest][indices],
                                                minlength=2).tolist()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None, help="pneumoniamnist.npz")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--initial", type=int, default=10)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=19)
    parser.add_argument("--latent-dim", type=int, default=16)
    parser.add_argument("--vae-epochs", type=int, default=30)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--step-sizes", default="0.1",
                        help="one latent_pool strategy per step size (eta)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--name", default="latent_sampling_pneumoniamnist")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    path = require(args.data or data_dir() / "medmnist" / "pneumoniamnist.npz")
    data = load_medmnist(path)

    # Stage 1: the generator, fitted once on the pool images (labels unused).
    t0 = time.perf_counter()
    vae = VAE(latent_dim=args.latent_dim, max_epochs=args.vae_epochs, random_state=0)
    vae.fit(data.X_train)
    vae_seconds = time.perf_counter() - t0
    X_test = data.X_test.astype(np.float32) / 255.0
    recon = vae.inverse_transform(vae.transform(data.X_test))[:, 0]
    vae_info = {
        "fit_seconds": vae_seconds, "epochs": args.vae_epochs,
        "latent_dim": args.latent_dim,
        "n_images": int(len(data.X_train)),
        "train_loss_first_last": [float(vae.history_[0, "train_loss"]),
                                  float(vae.history_[-1, "train_loss"])],
        "test_reconstruction_mse": float(((recon - X_test) ** 2).mean()),
        "test_mean_image_mse": float(((X_test - data.X_train.mean(axis=0) / 255.0) ** 2).mean()),
    }
    print(f"VAE: {args.vae_epochs} epochs on {len(data.X_train)} pool images in "
          f"{vae_seconds:.1f} s; test reconstruction MSE "
          f"{vae_info['test_reconstruction_mse']:.5f} (mean image: "
          f"{vae_info['test_mean_image_mse']:.5f})", flush=True)

    step_sizes = [float(s) for s in args.step_sizes.split(",")]
    strategies = {"random": random_sampling, "entropy": entropy_sampling}
    checks, params = {}, {}
    for eta in step_sizes:
        name = f"latent_pool_eta{eta:g}"
        params[name] = {"steps": args.steps, "step_size": eta}
        strategies[name] = LatentHardSampling(vae=vae, **params[name])
        check = checks[name] = ascent_check(vae, params[name], data, args.initial)
        print(f"{name}: one query from the {args.initial} initial labels (seed 0): task "
              f"loss {check['loss_before']:.3f} -> {check['loss_after']:.3f}, higher for "
              f"{check['share_of_seeds_with_higher_loss']:.0%} of seeds; queried classes "
              f"{check['queried_class_counts']}", flush=True)
    t0 = time.perf_counter()
    result = simulate(CNNClassifier(), strategies, data.X_train, data.y_train, data.X_test,
                      data.y_test, n_initial=args.initial, batch_size=args.batch,
                      n_rounds=args.rounds, seeds=args.seeds, metric="auroc", n_jobs=1,
                      pretrain=None)   # the from-scratch recipe this comparison was run on
    campaign_seconds = time.perf_counter() - t0

    summary = result.summary()
    print(f"\nPneumoniaMNIST, test AUROC, {len(result.seeds)} paired seeds, "
          f"{args.initial} + {args.rounds} x {args.batch} labels")
    print(format_summary(summary))
    print("\naccuracy")
    print(format_summary(result.summary(metric="accuracy")))

    costs = {}
    print(f"\n{'strategy':<20} {'query s/round':>14} {'fit s/round':>12} {'one-off s':>10}")
    for s, name in enumerate(result.strategies):
        query = float(result.query_time[s][:, 1:].mean())
        fit = float(result.fit_time[s].mean())
        once = vae_seconds if name.startswith("latent") else 0.0
        costs[name] = {"query_seconds_per_round": query, "fit_seconds_per_round": fit,
                       "one_off_seconds": once}
        print(f"{name:<20} {query:>14.3f} {fit:>12.2f} {once:>10.1f}")
    print(f"campaign time {campaign_seconds:.0f} s (VAE fit {vae_seconds:.0f} s, not included)")

    out = Path(args.out)
    payload = result.to_dict()
    payload.update({"vae": vae_info, "ascent_check": checks, "costs": costs,
                    "strategy_params": params, "environment": environment(),
                    "campaign_seconds": campaign_seconds, "data": str(path),
                    "summary_accuracy": result.summary(metric="accuracy")})
    atomic_write_json(out / f"{args.name}.json", payload)
    result.plot(out / f"{args.name}.png", target=summary["target"],
                title="PneumoniaMNIST: latent hard sampling (pool) vs random / entropy")
    print(f"wrote {out / (args.name + '.json')} and {out / (args.name + '.png')}")


if __name__ == "__main__":
    main()
