"""Simulated pool-based active-learning campaigns on data whose labels are known.

Labels of the pool are revealed only when a strategy queries them. Seeds are paired:
for a given seed every strategy starts from the same initial labelled set and the same
initial network weights (``random_state=seed``), so differences between strategies are
measured per seed and reported with their standard error.
"""

import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from joblib import Parallel, delayed
from sklearn.base import clone
from tqdm.auto import tqdm

from .campaign.engine import (INITIAL_METHODS, accepts_keyword, check_budget, initial_set,
                              run_rounds, task_of)
from .campaign.engine import initial_indices, with_seed as _with_seed
from .data.pool import is_dataset, pool_length
from .exceptions import SkalTypeError, SkalValueError
from .learner import ActiveLearner
from .metrics import (area_under_learning_curve, evaluate_classifier,
                      label_efficiency_ratio, labels_to_target)
from .query.registry import fresh_copy, get_strategy, strategy_name
from .utils.io import atomic_write_files, atomic_write_json, json_bytes

__all__ = ["simulate", "SimulationResult", "initial_indices", "run_rounds",
           "wants_pretraining", "AUTO_PRETRAIN_MIN_POOL"]

METRICS = ("accuracy", "auroc")


@dataclass
class SimulationResult:
    """Learning curves of a simulated campaign.

    Arrays are indexed ``[strategy, seed, point]``; point 0 is the initial labelled set
    and point ``r`` follows the ``r``-th query round.

    Attributes
    ----------
    strategies : list of str
    seeds : list of int
    n_labels : ndarray of shape (n_points,)
    scores : dict of metric name -> ndarray (n_strategies, n_seeds, n_points)
    fit_time, query_time : ndarray (n_strategies, n_seeds, n_points), seconds
        ``query_time[..., 0]`` is 0 (no query precedes the initial fit).
    queried : ndarray (n_strategies, n_seeds, n_points - 1, batch_size) of pool indices
    metric : str
        The headline metric of the summary.
    config : dict
    """

    strategies: list
    seeds: list
    n_labels: np.ndarray
    scores: dict
    fit_time: np.ndarray
    query_time: np.ndarray
    queried: np.ndarray
    metric: str
    config: dict = field(default_factory=dict)
    reference: dict = None

    def curve(self, strategy, metric=None):
        """``(n_seeds, n_points)`` curve of one strategy."""
        return self.scores[metric or self.metric][self.strategies.index(strategy)]

    def summary(self, target=None, baseline="random", metric=None):
        """Honest summary per strategy.

        * ``aulc``: normalised area under the learning curve (mean over seeds), and
          ``aulc_diff`` / ``aulc_diff_se``: its paired difference to the baseline and
          that difference's standard error over seeds.
        * ``final`` / ``final_std``: metric after the last round.
        * ``labels_to_target``: labels from which the *mean* curve stays at or above
          ``target`` (default: the baseline's final mean metric).
        * ``ratio``: baseline's labels to target divided by the strategy's.
        """
        metric = metric or self.metric
        values = self.scores[metric]
        aulc = area_under_learning_curve(self.n_labels, values)          # (S, seeds)
        has_baseline = baseline in self.strategies
        if has_baseline:
            b = self.strategies.index(baseline)
            if target is None:
                target = float(np.mean(values[b, :, -1]))
        rows = []
        base_labels = None
        if has_baseline and target is not None:
            base_labels = labels_to_target(self.n_labels, values[b].mean(axis=0), target)
        n_seeds = values.shape[1]
        for s, name in enumerate(self.strategies):
            mean_curve = values[s].mean(axis=0)
            row = {
                "strategy": name,
                "aulc": float(aulc[s].mean()),
                "final": float(mean_curve[-1]),
                "final_std": float(values[s, :, -1].std(ddof=1)) if n_seeds > 1 else 0.0,
                "fit_time": float(self.fit_time[s].sum(axis=-1).mean()),
                "query_time": float(self.query_time[s].sum(axis=-1).mean()),
            }
            if has_baseline:
                diff = aulc[s] - aulc[b]
                row["aulc_diff"] = float(diff.mean())
                row["aulc_diff_se"] = (float(diff.std(ddof=1) / np.sqrt(n_seeds))
                                       if n_seeds > 1 else float("nan"))
            if target is not None:
                labels = labels_to_target(self.n_labels, mean_curve, target)
                row["labels_to_target"] = labels
                row["ratio"] = label_efficiency_ratio(base_labels, labels)
            rows.append(row)
        return {"metric": metric, "target": target, "baseline": baseline if has_baseline else None,
                "rows": rows}

    def to_dict(self):
        """Plain-JSON form of the result (curves, times, summary)."""
        return {
            "strategies": self.strategies,
            "seeds": [int(s) for s in self.seeds],
            "n_labels": self.n_labels.tolist(),
            "metric": self.metric,
            "scores": {k: v.tolist() for k, v in self.scores.items()},
            "fit_time": self.fit_time.tolist(),
            "query_time": self.query_time.tolist(),
            "queried": self.queried.tolist(),
            "config": self.config,
            "reference": self.reference,
            "summary": self.summary(),
        }

    def to_json(self, path):
        """Write :meth:`to_dict` to ``path`` atomically."""
        return atomic_write_json(path, self.to_dict())

    def save(self, folder, *, target=None, json_name="results.json",
             plot_name="learning_curves.png"):
        """Write the results JSON and the learning-curve plot into ``folder`` as a
        pair: both are rendered and written to temporary files first, then renamed
        together (:func:`skal.utils.io.atomic_write_files`), so an error or Ctrl-C
        never leaves a new JSON beside an old plot. Returns the two paths."""
        from .plotting import png_bytes
        folder = Path(folder)
        figure = self.plot(target=target)
        return atomic_write_files({folder / json_name: json_bytes(self.to_dict()),
                                   folder / plot_name: png_bytes(figure)})

    def plot(self, path=None, **kwargs):
        """Learning curves (mean and spread over seeds); see
        :func:`skal.plotting.plot_learning_curves`."""
        from .plotting import plot_learning_curves
        return plot_learning_curves(self, path=path, **kwargs)


def _check_count(name, value, minimum):
    if (isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral)
            or value < minimum):
        raise SkalValueError(
            f"{name} must be an integer >= {minimum}; got {value!r}"
            + (" (a fraction of the pool is not accepted here: pass a count)."
               if isinstance(value, numbers.Real) and not isinstance(value, bool) else "."))


def _check_seeds(seeds):
    """``3`` means seeds 0, 1, 2; a sequence gives the seeds (non-negative, distinct)."""
    if isinstance(seeds, numbers.Integral) and not isinstance(seeds, (bool, np.bool_)):
        _check_count("seeds", seeds, 1)
        return list(range(int(seeds)))
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise SkalTypeError(
            f"seeds must be a number of seeds or a sequence of int seeds; got {seeds!r}.")
    seeds = list(seeds)
    if not seeds:
        raise SkalValueError("Give at least one seed.")
    for seed in seeds:
        if (isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral)
                or not 0 <= seed < 2**32):
            raise SkalValueError(
                f"Every seed must be an integer in [0, 2**32); got {seed!r} in {seeds!r}.")
    if len(set(seeds)) != len(seeds):
        raise SkalValueError(f"Seeds must be distinct; got {seeds!r}.")
    return [int(seed) for seed in seeds]


def _is_uint8(X):
    dtype = getattr(X, "dtype", None)
    return dtype in (np.uint8, torch.uint8) if dtype is not None else None


def _check_same_scale(X_pool, X_test):
    """Reject a uint8 pool with a float test set (or the other way round): uint8 is
    scaled by 1/255 and float used as given, so one of the two would be scored on
    the wrong scale. (Conversion is left to the user, who knows the float scale.)"""
    pool8, test8 = _is_uint8(X_pool), _is_uint8(X_test)
    if pool8 is None or test8 is None or pool8 == test8:
        return
    raise SkalValueError(
        f"X_pool is {X_pool.dtype} but X_test is {X_test.dtype}: skal scales uint8 "
        "images by 1/255 and uses float images as given, so the two would not be on "
        "one scale. Pass both as uint8, or both as float on the same scale (e.g. "
        "X.astype(np.float32) / 255 for each).")


# ``pretrain="auto"`` pre-trains on image pools of at least this many images: SimCLR
# contrasts batches of 256, and a few hundred images give it little to learn from.
AUTO_PRETRAIN_MIN_POOL = 1000


def wants_pretraining(estimator, X_pool):
    """``pretrain="auto"``'s rule: pre-train when ``estimator`` would start from scratch
    (it has a ``pretrained`` parameter, left ``None``) and the pool holds at least
    ``AUTO_PRETRAIN_MIN_POOL`` images (not tabular rows). The pre-trained recipe beat
    training from scratch on PneumoniaMNIST, BloodMNIST and the digits demo
    (``docs/pretraining.md``)."""
    params = estimator.get_params(deep=False)
    if "pretrained" not in params or params["pretrained"] is not None:
        return False
    images = is_dataset(X_pool) or np.ndim(X_pool) >= 3
    return bool(images and pool_length(X_pool) >= AUTO_PRETRAIN_MIN_POOL)


def _with_pretrained(estimator, pretrain, X_pool, cache_dir, progress):
    """``estimator`` with ``pretrained=`` the encoder of ``pretrain`` (pre-trained once on
    the pool, through the cache), and a description of that encoder for the config."""
    if pretrain is None:
        return estimator, None
    if "pretrained" not in estimator.get_params(deep=False):
        raise SkalValueError(
            f"pretrain= needs an estimator with a `pretrained` parameter (skal's "
            f"CNNClassifier / MultiLabelCNNClassifier); got {type(estimator).__name__}.")
    if isinstance(pretrain, (str, os.PathLike)):
        return clone(estimator).set_params(pretrained=os.fspath(pretrain)), os.fspath(pretrain)
    if hasattr(pretrain, "encoder_"):
        return clone(estimator).set_params(pretrained=pretrain), repr(pretrain)
    from .pretrain.cache import cached_encoder

    path = os.fspath(cached_encoder(pretrain, X_pool, cache_dir, progress=progress))
    return clone(estimator).set_params(pretrained=path), path


def _resolve_strategies(strategies):
    if isinstance(strategies, dict):
        items = list(strategies.items())
    else:
        items = [(strategy_name(s), get_strategy(s) if isinstance(s, str) else s)
                 for s in strategies]
    if not items:
        raise SkalValueError("Give at least one strategy.")
    names = [name for name, _ in items]
    if len(set(names)) != len(names):
        raise SkalValueError(f"Strategy names must be unique; got {names}.")
    for name, strategy in items:
        if not callable(strategy):
            raise SkalValueError(f"Strategy {name!r} is not callable.")
    return items


def _check_initial(initial):
    """``initial`` as a label-based draw name, or a resolved strategy callable."""
    if isinstance(initial, str):
        if initial in INITIAL_METHODS:
            return initial
        return get_strategy(initial)
    if callable(initial):
        return initial
    raise SkalValueError(
        f"initial={initial!r} must be one of {INITIAL_METHODS}, 'auto', a strategy name or a "
        "callable strategy(classifier, X_pool, n_instances).")


def _initial_selection(initial, estimator, X_pool, y_pool, n_initial, seed):
    """The first labelled set: a draw that uses the labels (``"balanced"``: the same
    number per class; ``"stratified"``: class proportions) or not (``"random"``), or a label-free cold start: the strategy ``initial`` applied to
    the unfitted ``estimator`` (with ``pretrained=``, its embeddings are already there)
    on the whole pool, with no label known."""
    if isinstance(initial, str):
        return initial_set(y_pool, n_initial, seed, initial)
    kwargs = ({"random_state": seed}
              if seed is not None and accepts_keyword(initial, "random_state") else {})
    picked = initial(estimator, X_pool, n_initial, **kwargs)
    picked = np.asarray(picked[0] if isinstance(picked, tuple) else picked, dtype=np.intp)
    if (picked.ndim != 1 or len(picked) != n_initial or len(np.unique(picked)) != n_initial
            or picked.min() < 0 or picked.max() >= len(y_pool)):
        raise SkalValueError(
            f"The initial strategy must return {n_initial} distinct positions in the pool; "
            f"got {picked.tolist()[:20]}.")
    return picked


def _run_campaign(seed, strategy, *, estimator, X_pool, y_pool, X_test, y_test,
                  n_initial, batch_size, n_rounds, initial, classes, multilabel,
                  query_kwargs, bar=None):
    """One strategy, one seed: initial fit, then ``n_rounds`` of query and teach."""
    scores = {m: np.full(n_rounds + 1, np.nan) for m in METRICS}
    estimator = _with_seed(estimator, seed, classes)
    start_idx = _initial_selection(initial, estimator, X_pool, y_pool, n_initial, seed)
    strategy = fresh_copy(strategy)     # stateful strategies: fresh state per campaign
    learner = ActiveLearner(estimator, strategy)

    def evaluate(point, learner, _labelled):
        values = evaluate_classifier(learner, X_test, y_test, classes=classes,
                                     multilabel=multilabel)
        for key, value in values.items():
            scores[key][point] = value
        if bar is not None:
            bar.update()

    run = run_rounds(learner, X_pool, y_pool, start_idx, batch_size=batch_size,
                     n_rounds=n_rounds, seed=seed, query_kwargs=query_kwargs,
                     on_round=evaluate)
    return {"scores": scores, "fit_time": run["fit_time"],
            "query_time": run["query_time"], "queried": run["queried"]}


def simulate(estimator, strategies, X_pool, y_pool, X_test, y_test, *, n_initial=10,
             batch_size=10, n_rounds=10, seeds=3, initial="auto", metric=None,
             progress=True, query_kwargs=None, n_jobs=None, pretrain="auto",
             pretrain_cache=None):
    """Run simulated active-learning campaigns: strategies x seeds x rounds.

    Parameters
    ----------
    estimator : classifier
        Cloned for every (strategy, seed); its ``random_state`` is set to the seed (and
        ``classes`` to every class of the task when it has that parameter), so for a
        given seed all strategies start from the same weights.
    strategies : list of names / callables, or dict name -> callable
        Names are those of :data:`skal.query.registry.STRATEGIES` (``"random"``,
        ``"uncertainty"``, ``"margin"``, ``"entropy"``, ...).
    X_pool, y_pool : the pool and its (hidden) labels
    X_test, y_test : held-out test data
        On the pool's scale: a uint8 pool with a float test set (or the other way
        round) is rejected, since skal scales uint8 by 1/255 and uses float as given.
    n_initial : int
        Size of the initial labelled set (the same for all strategies of a seed).
    batch_size : int
        Samples queried per round.
    n_rounds : int
        Query rounds; curves have ``n_rounds + 1`` points.
    seeds : int or sequence of int
        ``3`` means seeds 0, 1, 2.
    initial : {"auto", "balanced", "stratified", "random"}, strategy name or callable, \
default="auto"
        How the initial set is chosen: ``"balanced"`` draws the same number per class and
        ``"stratified"`` follows the class proportions (both peek at the labels: a
        reference, not a real cold start), ``"random"`` draws uniformly; a strategy
        (e.g. ``"typiclust"``) picks it without any label, as a real cold start must,
        from the unfitted estimator (its pre-trained embeddings; see ``pretrain``).
        ``"auto"``: ``"typiclust"`` with ``pretrain`` (it beat both label draws at 10
        labels; ``benchmarks/README.md``, ``benchmarks/cold_start.py``), else
        ``"balanced"`` (skal's behaviour before ``initial`` existed).
    metric : {"accuracy", "auroc"} or None
        Headline metric; ``None`` picks AUROC for binary and multi-label tasks, accuracy
        for multi-class.
    progress : bool
        Show a progress bar over rounds.
    query_kwargs : dict, optional
        Extra keyword arguments for every ``query`` call.
    n_jobs : int or None
        Run (strategy, seed) campaigns in parallel with joblib (``None`` or 1: in this
        process, with a progress bar per round). Results do not depend on ``n_jobs``.
    pretrain : "auto", skal.pretrain.SimCLR, fitted SimCLR, encoder file path or None, \
default="auto"
        Self-supervised pre-training shared by every strategy and seed: an unfitted
        pre-trainer is fitted once on the pool images (never the test set) and cached
        (see ``pretrain_cache``); the estimator gets ``pretrained=`` that encoder. A
        fitted SimCLR or an encoder file is used as given. ``"auto"``:
        ``SimCLR(random_state=0)`` when :func:`wants_pretraining` (a skal classifier
        without ``pretrained`` on a pool of ``AUTO_PRETRAIN_MIN_POOL`` or more images),
        else none. ``None``: no pre-training.
    pretrain_cache : path, None or False
        Folder of cached encoders, keyed by a hash of the pool and the pre-training
        parameters, so a second run reuses the encoder (``None``:
        ``$SKAL_CACHE_DIR/encoders`` or ``~/.cache/skal/encoders``; ``False``: no cache).

    Returns
    -------
    SimulationResult
    """
    items = _resolve_strategies(strategies)
    seeds = _check_seeds(seeds)
    if isinstance(pretrain, str) and pretrain == "auto":
        from .pretrain import SimCLR

        pretrain = SimCLR(random_state=0) if wants_pretraining(estimator, X_pool) else None
    if isinstance(initial, str) and initial == "auto":
        initial = "typiclust" if pretrain is not None else "balanced"
    initial_name = initial if isinstance(initial, str) else strategy_name(initial)
    initial = _check_initial(initial)
    y_pool, y_test = np.asarray(y_pool), np.asarray(y_test)
    n_pool = pool_length(X_pool)
    if len(y_pool) != n_pool:
        raise SkalValueError(f"X_pool has {n_pool} samples but y_pool has {len(y_pool)}.")
    for name, value, minimum in (("n_initial", n_initial, 1), ("batch_size", batch_size, 1),
                                 ("n_rounds", n_rounds, 0)):
        _check_count(name, value, minimum)
    n_initial, batch_size, n_rounds = int(n_initial), int(batch_size), int(n_rounds)
    _check_same_scale(X_pool, X_test)
    check_budget(n_pool, n_initial, n_rounds, batch_size)
    classes, multilabel = task_of(y_pool, y_test)
    if metric is None:
        metric = "auroc" if multilabel or len(classes) == 2 else "accuracy"
    if metric not in METRICS:
        raise SkalValueError(f"metric must be one of {METRICS}; got {metric!r}.")
    query_kwargs = dict(query_kwargs or {})
    estimator, pretrained_from = _with_pretrained(estimator, pretrain, X_pool, pretrain_cache,
                                                  progress)

    shape = (len(items), len(seeds), n_rounds + 1)
    scores = {m: np.full(shape, np.nan) for m in METRICS}
    fit_time, query_time = np.zeros(shape), np.zeros(shape)
    queried = np.full(shape[:2] + (n_rounds, batch_size), -1, dtype=np.int64)
    campaign = dict(estimator=estimator, X_pool=X_pool, y_pool=y_pool, X_test=X_test,
                    y_test=y_test, n_initial=n_initial, batch_size=batch_size,
                    n_rounds=n_rounds, initial=initial, classes=classes,
                    multilabel=multilabel, query_kwargs=query_kwargs)
    jobs = [(k, s, seed, name, strategy) for k, seed in enumerate(seeds)
            for s, (name, strategy) in enumerate(items)]
    bar = tqdm(total=int(np.prod(shape)), desc="simulate", unit="round", disable=not progress)
    if n_jobs in (None, 1):
        runs = (_run_campaign(seed, strategy, bar=bar, **campaign)
                for _, _, seed, _, strategy in jobs)
    else:
        runs = Parallel(n_jobs=n_jobs, return_as="generator")(
            delayed(_run_campaign)(seed, strategy, **campaign)
            for _, _, seed, _, strategy in jobs)
    for (k, s, _, _, _), run in zip(jobs, runs):
        for metric_name in METRICS:
            scores[metric_name][s, k] = run["scores"][metric_name]
        fit_time[s, k], query_time[s, k], queried[s, k] = (
            run["fit_time"], run["query_time"], run["queried"])
        if n_jobs not in (None, 1):
            bar.update(n_rounds + 1)
    bar.close()
    config = {"n_initial": int(n_initial), "batch_size": int(batch_size),
              "n_rounds": int(n_rounds), "initial": initial_name, "n_pool": int(n_pool),
              "pretrained": pretrained_from,
              "n_test": int(len(y_test)), "multilabel": bool(multilabel),
              "estimator": repr(estimator)}
    return SimulationResult(
        strategies=[name for name, _ in items], seeds=seeds,
        n_labels=n_initial + batch_size * np.arange(n_rounds + 1), scores=scores,
        fit_time=fit_time, query_time=query_time, queried=queried, metric=metric,
        config=config)
