"""``Campaign``: a persistent, resumable, crash-safe active-learning campaign.

A real campaign runs for weeks: a pool of images on disk, annotators who label a batch
in a tool of their choice, a model retrained between working days, processes that crash
or are killed. A :class:`Campaign` keeps all of it in one folder::

    my-campaign/
        campaign.sqlite          # items, labels (with history), rounds, checkpoints
        checkpoints/ckpt-*.safetensors + .json

Every change is one SQLite transaction, acknowledged only once it is on disk, so a
``kill -9`` at any moment leaves a campaign that opens with every acknowledged label.
The rounds run through :mod:`skal.campaign.engine`, the code that runs simulations
(:func:`skal.simulate.simulate`): a simulation is a campaign whose labels come from
known data.
"""

import getpass
import os
import shutil
import time
import uuid
from pathlib import Path

import numpy as np

from ..data.pool import materialize, take
from ..exceptions import NotFittedError, SkalTypeError, SkalValueError
from ..utils.io import atomic_write_json
from .engine import CampaignLearner, accepts_keyword, query_round, round_seed, with_seed
from .ids import describe_pool, item_rows, load_pool, verify_pool
from .persist import (build_estimator, build_strategy, estimator_spec, load_weights,
                      read_metadata, save_weights, strategy_spec)
from .store import DB_NAME, CampaignStore, utc_now

__all__ = ["Campaign"]

_CHECKPOINTS = "checkpoints"


def _default_annotator():
    try:
        return getpass.getuser()
    except Exception:  # no user name in some containers
        return "unknown"


def _default_estimator(multilabel):
    from ..nets import CNNClassifier, MultiLabelCNNClassifier

    return MultiLabelCNNClassifier() if multilabel else CNNClassifier()


class Campaign:
    """A persistent active-learning campaign in a folder (SQLite + safetensors).

    Use :meth:`create` once and :meth:`open` afterwards; do not call the constructor.

    Examples
    --------
    >>> camp = Campaign.create("pneumonia-campaign", "dicoms/", CNNClassifier(),
    ...                        "margin", classes=["normal", "pneumonia"])
    >>> ids = camp.next_batch(20)              # the files to label
    >>> camp.add_labels(ids, labels, annotator="dr_a")
    >>> camp.train()                            # checkpoint + metrics
    >>> camp = Campaign.open("pneumonia-campaign")   # days later, another process

    Notes
    -----
    The estimator and the strategy are stored by name (see
    :mod:`skal.campaign.persist`): user-defined ones that cannot be imported by name
    must be passed again to :meth:`open`. An in-memory array pool must be passed again
    too (``.npz`` / ``.npy`` files and folders are found from their path).
    """

    def __init__(self, path, store, *, array=None, estimator=None, query_strategy=None,
                 n_jobs=None):
        self.path = Path(path)
        self._store = store
        self._config = store.meta("config")
        self._pool_spec = store.meta("pool")
        self._array = array
        self._estimator = estimator
        self._estimator_given = estimator is not None
        self._strategy = query_strategy
        self.n_jobs = n_jobs
        rows = store.items()
        self._ids = [r[1] for r in rows]
        self._paths = [r[2] for r in rows]
        self._position = {item_id: k for k, item_id in enumerate(self._ids)}
        self._X = None
        self._model = None                     # (checkpoint id, fitted model)

    # ------------------------------------------------------------------ create
    @classmethod
    def create(cls, path, pool, estimator=None, query_strategy="uncertainty", *, classes,
               multilabel=False, pattern=None, key=None, size=64, random_state=0,
               query_kwargs=None, cv=3, n_jobs=None, progress=True):
        """Create a campaign in the new folder ``path``.

        Parameters
        ----------
        path : str or Path
            The campaign folder; it must not exist (or be empty).
        pool : folder, ``.npz`` / ``.npy`` file, or array of images
            A folder of DICOM files (``pattern="**/*.dcm"``) or PNG / JPEG files
            (``pattern="**/*.png"``): item ids are relative paths. An ``.npy`` file is
            read as a memmap, an ``.npz`` through its ``images`` array (or ``key``), an
            array as is: item ids are rows (``row-000042``) with a content hash.
        estimator : classifier or None
            ``None``: :class:`skal.CNNClassifier` (single-label) or
            :class:`skal.MultiLabelCNNClassifier` (multi-label).
        query_strategy : str or callable
            A name of :data:`skal.query.registry.STRATEGIES` or a strategy.
        classes : list of str
            Every class name of the task.
        multilabel : bool
            Items carry a set of classes each (multi-hot targets) instead of one.
        size : int
            Folder images are resized to ``size x size``.
        random_state : int
            Seeds the model (``random_state``), the cold-start draw and the strategy.
        query_kwargs : dict, optional
            Extra keyword arguments of every query.
        cv : int
            Folds of the cross-validation scored after each training when there is no
            held-out labelled set (0 disables it).
        n_jobs : int or None
            joblib workers for scoring the pool (not stored: a property of the machine).
        progress : bool
            Show progress bars.
        """
        path = Path(path)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise SkalValueError(f"{path} already exists and is not empty; open it with "
                                 "Campaign.open, or choose a new folder.")
        classes = [str(c) for c in classes] if classes is not None else None
        if not classes or len(set(classes)) != len(classes) or (not multilabel
                                                                and len(classes) < 2):
            raise SkalValueError(f"classes must list distinct class names (at least two for "
                                 f"a single-label task); got {classes!r}.")
        if any(";" in c or not c.strip() for c in classes):
            raise SkalValueError("Class names must be non-empty and contain no ';' (the "
                                 "separator of multi-label CSV cells).")
        if isinstance(random_state, bool) or not isinstance(random_state, (int, np.integer)):
            raise SkalTypeError(f"random_state must be an int; got {random_state!r}.")
        if query_kwargs is not None and not isinstance(query_kwargs, dict):
            raise SkalTypeError(f"query_kwargs must be a dict; got {query_kwargs!r}.")
        spec = describe_pool(pool, pattern=pattern, key=key, size=size)
        array = pool if spec["kind"] == "array" else None
        rows = item_rows(spec, array, progress=progress)
        estimator = _default_estimator(multilabel) if estimator is None else estimator
        if not hasattr(estimator, "fit") or not hasattr(estimator, "predict_proba"):
            raise SkalTypeError("estimator must be a classifier with fit and predict_proba.")
        strategy = query_strategy
        if isinstance(strategy, str):
            strategy = build_strategy(strategy_spec(strategy))
        elif not callable(strategy):
            raise SkalTypeError(f"query_strategy must be a strategy name or callable; got "
                                f"{query_strategy!r}.")
        try:
            est_spec = estimator_spec(estimator)
        except SkalValueError:
            est_spec = None
        from ..query.registry import strategy_name

        config = {"classes": classes, "multilabel": bool(multilabel),
                  "seed": int(random_state), "estimator": est_spec,
                  "strategy": strategy_spec(query_strategy),
                  "strategy_name": strategy_name(query_strategy),
                  "query_kwargs": query_kwargs or {}, "cv": int(cv), "created": utc_now()}
        # Build in a temporary folder and rename: a crash never leaves half a campaign.
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.creating-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            (tmp / _CHECKPOINTS).mkdir()
            store = CampaignStore(tmp / DB_NAME, create=True)
            with store.transaction():
                store.set_meta("config", config)
                store.set_meta("pool", spec)
                store.insert_items(rows)
            store.close()
            if path.exists():
                path.rmdir()
            os.replace(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return cls(path, CampaignStore(path / DB_NAME), array=array, estimator=estimator,
                   query_strategy=strategy, n_jobs=n_jobs)

    # -------------------------------------------------------------------- open
    @classmethod
    def open(cls, path, *, pool=None, estimator=None, query_strategy=None, verify="full",
             n_jobs=None):
        """Open an existing campaign.

        Parameters
        ----------
        path : str or Path
        pool : optional
            The in-memory array of an array campaign, or the new location of a pool
            folder / file that moved (checked against the stored hashes first).
        estimator, query_strategy : optional
            Replace the stored ones (required when they could not be stored by name).
        verify : {"full", "quick", "none"}
            How the pool is checked against the campaign's record: every content hash,
            sizes and shapes only, or not at all.
        n_jobs : int or None
            joblib workers for scoring the pool.
        """
        path = Path(path)
        store = CampaignStore(path / DB_NAME)
        try:
            spec = store.meta("pool")
            array = None
            if pool is not None:
                if spec["kind"] == "array":
                    array = pool
                else:
                    moved = describe_pool(pool, pattern=spec.get("pattern"),
                                          key=spec.get("key"), size=spec.get("size", 64))
                    verify_pool(moved, store.items(), level="full")
                    with store.transaction():
                        store.set_meta("pool", moved)
                    spec, verify = moved, "none"
            verify_pool(spec, store.items(), array=array, level=verify)
        except BaseException:
            store.close()
            raise
        return cls(path, store, array=array, estimator=estimator,
                   query_strategy=query_strategy, n_jobs=n_jobs)

    def close(self):
        """Close the database connection."""
        self._store.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"Campaign({str(self.path)!r}, {len(self._ids)} items)"

    # -------------------------------------------------------------- properties
    @property
    def ids(self):
        """Every item id, in pool order."""
        return list(self._ids)

    @property
    def classes(self):
        return list(self._config["classes"])

    @property
    def multilabel(self):
        return bool(self._config["multilabel"])

    @property
    def pool_kind(self):
        """``"folder"``, ``"npz"``, ``"npy"`` or ``"array"``."""
        return self._pool_spec["kind"]

    def item_path(self, item_id):
        """Absolute path of a file item (None for array pools)."""
        rel = self._paths[self._position_of(item_id)]
        return None if rel is None else str(Path(self._pool_spec["root"]) / rel)

    def __contains__(self, item_id):
        return item_id in self._position

    @property
    def pool_spec(self):
        """The stored description of the pool (kind, location, pattern)."""
        return dict(self._pool_spec)

    @property
    def pool_root(self):
        """The pool folder (folder pools) or file."""
        return Path(self._pool_spec.get("root") or self._pool_spec.get("path", "."))

    @property
    def X(self):
        """The pool, in item order (lazy dataset, memmap or array)."""
        if self._X is None:
            self._X = load_pool(self._pool_spec, self._paths, self._array)
        return self._X

    @property
    def estimator(self):
        """The (unfitted) estimator of the campaign."""
        if self._estimator is None:
            if self._config["estimator"] is None:
                raise SkalValueError("This campaign's estimator was not stored by name: pass "
                                     "it again, Campaign.open(path, estimator=...).")
            self._estimator = build_estimator(self._config["estimator"])
        return self._estimator

    @property
    def query_strategy(self):
        if self._strategy is None:
            self._strategy = build_strategy(self._config["strategy"])
        return self._strategy

    def _position_of(self, item_id):
        try:
            return self._position[item_id]
        except KeyError:
            raise SkalValueError(f"Unknown item id {item_id!r}.") from None

    # ------------------------------------------------------------------ labels
    def _normalise_label(self, label):
        """A class name (single-label) or a sorted list of class names (multi-label);
        raises on classes outside the campaign's."""
        classes = self._config["classes"]
        if self.multilabel:
            if isinstance(label, str):
                values = [v.strip() for v in label.split(";") if v.strip()]
            elif isinstance(label, (list, tuple, set, frozenset, np.ndarray)):
                values = [str(v).strip() for v in label]
            else:
                raise SkalValueError(f"A multi-label label is a list of class names or a "
                                     f"';'-separated string; got {label!r}.")
            unknown = [v for v in values if v not in classes]
            if unknown:
                raise SkalValueError(f"Unknown class(es) {unknown} (classes: {classes}).")
            return sorted(set(values), key=classes.index)
        if isinstance(label, (list, tuple, set, np.ndarray)):
            raise SkalValueError(f"This campaign is single-label: one class per item, got "
                                 f"{label!r}.")
        value = str(label).strip()
        if value not in classes:
            raise SkalValueError(f"Unknown class {value!r} (classes: {classes}).")
        return value

    def add_labels(self, ids, labels, annotator=None, *, holdout=False, correct=False):
        """Record labels, in one transaction: all of them or none.

        Parameters
        ----------
        ids : sequence of str
            Item ids.
        labels : sequence
            One per id: a class name, or for multi-label campaigns a list of class
            names (or a ``;``-separated string; an empty list means no class).
        annotator : str or sequence of str, optional
            Who labelled (default: the user name), or one name per id. Stored with the
            time.
        holdout : bool
            These labels form a held-out evaluation set: never trained on, used to
            score every model after training.
        correct : bool
            Allow changing labels already given (corrections); the previous label
            stays in :meth:`label_history`.

        Returns
        -------
        dict with ``added``, ``corrected`` and ``unchanged`` counts.

        Raises
        ------
        SkalValueError
            Unknown ids, unknown classes, one id given two different labels in this
            call, or a label that differs from the recorded one without
            ``correct=True``. Nothing is recorded then.
        """
        if isinstance(ids, str):
            raise SkalTypeError("ids must be a sequence of item ids, not one string.")
        ids = [str(i) for i in ids]
        labels = list(labels)
        if len(ids) != len(labels):
            raise SkalValueError(f"{len(ids)} ids but {len(labels)} labels; give one label "
                                 "per id.")
        unknown = [i for i in ids if i not in self._position]
        if unknown:
            raise SkalValueError(f"{len(unknown)} id(s) are not in this campaign's pool "
                                 f"(e.g. {unknown[:5]}); nothing was recorded.")
        if annotator is None or isinstance(annotator, str):
            annotators = [annotator or _default_annotator()] * len(ids)
        else:
            annotators = [str(a) for a in annotator]
            if len(annotators) != len(ids):
                raise SkalValueError(f"{len(ids)} ids but {len(annotators)} annotators.")
        who = dict(zip(ids, annotators))
        problems, given = [], {}
        for item_id, label in zip(ids, labels):
            try:
                value = self._normalise_label(label)
            except SkalValueError as exc:
                problems.append(f"{item_id}: {exc}")
                continue
            if item_id in given and given[item_id] != value:
                problems.append(f"{item_id}: given two different labels ({given[item_id]!r} "
                                f"and {value!r})")
            given[item_id] = value
        if problems:
            raise SkalValueError(f"{len(problems)} bad label(s), nothing was recorded: "
                                 + "; ".join(problems[:5]))
        counts = {"added": 0, "corrected": 0, "unchanged": 0}
        with self._store.transaction():
            current = self._store.current_labels()
            open_round = self._store.open_round()
            batch = set(open_round["batch"]) if open_round else set()
            conflicts, rows, now = [], [], utc_now()
            for item_id, value in given.items():
                old = current.get(item_id)
                if old is not None and old[0] == value and old[1] == bool(holdout):
                    counts["unchanged"] += 1
                    continue
                if old is not None and not correct:
                    conflicts.append(f"{item_id} is labelled {old[0]!r}"
                                     + (" (held out)" if old[1] else ""))
                    continue
                counts["corrected" if old is not None else "added"] += 1
                rows.append((item_id, value, who[item_id], now, holdout,
                             open_round["round"] if item_id in batch else None))
            if conflicts:
                raise SkalValueError(
                    f"{len(conflicts)} label(s) differ from those recorded, nothing was "
                    f"recorded: {'; '.join(conflicts[:5])}. Pass correct=True (CLI: "
                    "--correct) to record corrections; the old labels stay in the history.")
            self._store.insert_labels(rows)
        return counts

    def labels(self, include_holdout=True):
        """``{id: label}`` of every labelled item (the latest label of each)."""
        return {i: lab for i, (lab, held, _) in self._store.current_labels().items()
                if include_holdout or not held}

    def label_history(self, item_id=None):
        """Every label ever recorded (of ``item_id``, or of all items), oldest first,
        with annotator, time, hold-out flag and round."""
        if item_id is not None:
            self._position_of(item_id)
        return self._store.label_history(item_id)

    def _targets(self, values):
        if self.multilabel:
            classes = self._config["classes"]
            y = np.zeros((len(values), len(classes)), dtype=np.int64)
            for row, value in enumerate(values):
                for name in value:
                    y[row, classes.index(name)] = 1
            return y
        return np.asarray(values, dtype=object).astype(str)

    def _labelled(self, holdout, up_to_seq=None):
        """``(positions, y)`` of the training (``holdout=False``) or held-out labels."""
        current = self._store.current_labels(up_to_seq)
        items = sorted((self._position[i], lab) for i, (lab, held, _) in current.items()
                       if held == holdout)
        positions = np.asarray([p for p, _ in items], dtype=np.intp)
        return positions, self._targets([lab for _, lab in items])

    # ------------------------------------------------------------------- model
    def _fresh_estimator(self, estimator=None):
        estimator = self.estimator if estimator is None else estimator
        return with_seed(estimator, self._config["seed"], self._sorted_classes())

    def _checkpoint_estimator(self, checkpoint):
        """The estimator a checkpoint was trained with: the one passed to :meth:`open`,
        else the one its JSON metadata names, else the campaign's."""
        if self._estimator_given or checkpoint["file"] is None:
            return self._fresh_estimator()
        spec = read_metadata(self.path / checkpoint["file"]).get("estimator")
        return self._fresh_estimator(None if spec is None else build_estimator(spec))

    def _sorted_classes(self):
        """Single-label class names in sorted order (how scikit-learn orders
        ``classes_``, and what :func:`skal.metrics.evaluate_classifier` expects)."""
        return None if self.multilabel else np.sort(np.asarray(self._config["classes"]))

    def model(self):
        """The model of the latest checkpoint (fitted), or raise
        :class:`skal.NotFittedError` when the campaign has not been trained yet."""
        checkpoint = self._store.latest_checkpoint()
        if checkpoint is None:
            raise NotFittedError("This campaign has no trained model yet; label some items "
                                 "and call train().")
        if self._model is not None and self._model[0] == checkpoint["id"]:
            return self._model[1]
        positions, y = self._labelled(False, checkpoint["label_seq"])
        model = self._checkpoint_estimator(checkpoint)
        X = materialize(take(self.X, positions))
        if checkpoint["file"] is None:
            model.fit(X, y)                     # no weights: refit, seeded, on its labels
        else:
            model.fit(X[:8], y[:8], epochs=0)   # initialise the network, then load
            load_weights(model, self.path / checkpoint["file"], checkpoint["sha256"])
        self._model = (checkpoint["id"], model)
        return model

    def _score(self, model, X, y, X_eval=None, y_eval=None, cv=0):
        """Held-out metrics, or cross-validated ones over the training labels."""
        from ..metrics import evaluate_classifier

        kwargs = dict(classes=self._sorted_classes(), multilabel=self.multilabel)
        if X_eval is not None and len(y_eval):
            values = evaluate_classifier(model, X_eval, y_eval, **kwargs)
            return {"source": "holdout", "n_eval": int(len(y_eval)),
                    **{k: float(v) for k, v in values.items()}}
        if cv < 2 or len(y) < 2 * cv:
            return {"source": "none"}
        from sklearn.model_selection import KFold, StratifiedKFold

        seed = self._config["seed"]
        splitter = KFold(cv, shuffle=True, random_state=seed)
        if not self.multilabel and np.unique(y, return_counts=True)[1].min() >= cv:
            splitter = StratifiedKFold(cv, shuffle=True, random_state=seed)
        scores = {}
        for train, test in splitter.split(X, y if not self.multilabel else None):
            fold = self._fresh_estimator().fit(X[train], y[train])
            for k, v in evaluate_classifier(fold, X[test], y[test], **kwargs).items():
                scores.setdefault(k, []).append(v)
        return {"source": f"{cv}-fold cv", "n_eval": int(len(y)),
                **{k: float(np.nanmean(v)) for k, v in scores.items()}}

    def train(self, *, cv=None, progress=True):
        """Train a fresh model on every training label, save it as a checkpoint and
        record its metrics (on the held-out labels, else ``cv``-fold cross-validation
        over the training labels).

        Safe to rerun: when no label arrived since the latest checkpoint, that
        checkpoint is returned without training.

        Returns
        -------
        dict: the checkpoint record (``id``, ``n_labels``, ``metrics``, ...).
        """
        from tqdm.auto import tqdm

        label_seq = self._store.last_label_seq()
        latest = self._store.latest_checkpoint()
        if latest is not None and latest["label_seq"] == label_seq:
            return latest
        positions, y = self._labelled(False, label_seq)
        if len(positions) < 2:
            raise SkalValueError(f"train() needs at least 2 training labels; the campaign "
                                 f"has {len(positions)}. Label the next batch first.")
        cv = self._config["cv"] if cv is None else int(cv)
        steps = tqdm(total=3, desc="train", unit="step", disable=not progress)
        X = materialize(take(self.X, positions))
        steps.update()
        t0 = time.perf_counter()
        model = self._fresh_estimator().fit(X, y)
        fit_seconds = time.perf_counter() - t0
        steps.update()
        hold_pos, y_hold = self._labelled(True, label_seq)
        X_hold = materialize(take(self.X, hold_pos)) if len(hold_pos) else None
        metrics = {"n_labels": int(len(positions)), "fit_seconds": fit_seconds,
                   **self._score(model, X, y, X_hold, y_hold, cv)}
        steps.update()
        steps.close()
        name = f"{_CHECKPOINTS}/ckpt-{label_seq:08d}-{uuid.uuid4().hex[:8]}.safetensors"
        try:
            spec = estimator_spec(model)
        except SkalValueError:
            spec = None                       # not nameable: open() must be given it
        digest = save_weights(model, self.path / name, {
            "estimator": spec, "classes": self._config["classes"],
            "multilabel": self.multilabel, "label_seq": label_seq,
            "n_labels": int(len(positions)), "metrics": metrics, "created": utc_now()})
        with self._store.transaction():       # recorded only once the files are durable
            ckpt_id = self._store.insert_checkpoint(
                file=name if digest else None, sha256=digest, label_seq=label_seq,
                n_labels=int(len(positions)), metrics=metrics)
            self._store.close_rounds()
        self._model = (ckpt_id, model)
        return self._store.latest_checkpoint()

    # ------------------------------------------------------------------- query
    def pending_batch(self):
        """Ids of the open round's batch not labelled yet (empty when none)."""
        open_round = self._store.open_round()
        if open_round is None:
            return []
        labelled = self._store.current_labels()
        return [i for i in open_round["batch"] if i not in labelled]

    def next_batch(self, n, *, progress=False):
        """The ids of the next ``n`` items to label.

        Asking again before their labels arrive returns the same pending batch (what
        is left of it), so the call is safe to repeat. Before the first training the
        batch is drawn at random (seeded); afterwards the strategy scores the
        unlabelled pool with the latest model (``n_jobs`` workers when set).
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise SkalValueError(f"n must be a positive integer; got {n!r}.")
        pending = self.pending_batch()
        if pending:
            return pending
        labelled = self._store.current_labels()
        unlabelled = np.asarray([k for k, i in enumerate(self._ids) if i not in labelled],
                                dtype=np.intp)
        if len(unlabelled) == 0:
            raise SkalValueError("Every item of the pool is labelled; nothing left to ask.")
        n = min(int(n), len(unlabelled))
        rounds = self._store.rounds()
        r = len(rounds) + 1
        seed = self._config["seed"]
        checkpoint = self._store.latest_checkpoint()
        if checkpoint is None:
            rng = np.random.default_rng(round_seed(seed, r))
            chosen, scores = rng.choice(unlabelled, n, replace=False), None
            strategy, params = "random (cold start, no model yet)", {}
        else:
            from tqdm.auto import tqdm

            with tqdm(total=1, desc=f"score {len(unlabelled)} items", unit="query",
                      disable=not progress) as bar:
                chosen, scores, _ = self._query(checkpoint, unlabelled, n, r)
                bar.update()
            strategy = self._config["strategy_name"]
            params = dict(self._config["query_kwargs"])
        batch = [self._ids[k] for k in chosen]
        with self._store.transaction():
            if self._store.open_round() is not None:     # another process was faster
                number = None
            else:
                number = self._store.insert_round(
                    strategy=strategy, params={**params, "n": n}, seed=round_seed(seed, r),
                    checkpoint=None if checkpoint is None else checkpoint["id"],
                    batch=batch, scores=None if scores is None else
                    np.asarray(scores, dtype=float).tolist(),
                    n_labels=int(sum(1 for v in labelled.values() if not v[1])))
        return batch if number is not None else self.pending_batch()

    def _query(self, checkpoint, unlabelled, n, r):
        model = self.model()
        strategy = self.query_strategy

        def labelled_data():
            positions, y = self._labelled(False, checkpoint["label_seq"])
            return materialize(take(self.X, positions)), y

        learner = CampaignLearner(model, strategy, labelled_data)
        kwargs = dict(self._config["query_kwargs"])
        if self.n_jobs not in (None, 1) and accepts_keyword(strategy, "n_jobs"):
            kwargs.setdefault("n_jobs", self.n_jobs)
        return query_round(learner, self.X, unlabelled, n, seed=self._config["seed"], r=r,
                           query_kwargs=kwargs)

    # ------------------------------------------------------------------ report
    def history(self):
        """Every round: the batch proposed, strategy and parameters, seed, checkpoint
        it came from, and the metrics of the model trained after it (``None`` until
        then)."""
        checkpoints = self._store.checkpoints()
        out = []
        for row in self._store.rounds():
            after = [c for c in checkpoints if c["created"] >= row["created"]]
            out.append({**row, "metrics_after": after[0]["metrics"] if after and row["closed"]
                        else None})
        return out

    def checkpoints(self):
        """Every checkpoint: file, labels used, metrics."""
        return self._store.checkpoints()

    def status(self):
        """A summary: pool size, labels per class, rounds, pending batch, the latest
        model's metrics and the learning curve (labels, metrics) of every checkpoint."""
        current = self._store.current_labels()
        train = [lab for lab, held, _ in current.values() if not held]
        per_class = {c: 0 for c in self._config["classes"]}
        for lab in train:
            for name in (lab if self.multilabel else [lab]):
                per_class[name] += 1
        checkpoints = self._store.checkpoints()
        return {"path": str(self.path), "n_items": len(self._ids),
                "n_labelled": len(train),
                "n_holdout": sum(1 for _, held, _ in current.values() if held),
                "n_unlabelled": len(self._ids) - len(current), "per_class": per_class,
                "classes": self.classes, "multilabel": self.multilabel,
                "strategy": self._config["strategy_name"],
                "n_rounds": len(self._store.rounds()), "pending": len(self.pending_batch()),
                "n_checkpoints": len(checkpoints),
                "up_to_date": bool(checkpoints) and checkpoints[-1]["label_seq"]
                == self._store.last_label_seq(),
                "latest_metrics": checkpoints[-1]["metrics"] if checkpoints else None,
                "curve": [{"n_labels": c["n_labels"], **c["metrics"]} for c in checkpoints]}

    def plot_curve(self, path=None, metric=None):
        """Learning curve of the checkpoints' metrics (held-out or cross-validated)
        against the number of training labels; saved to ``path`` when given."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        curve = [p for p in self.status()["curve"] if p.get("source", "none") != "none"]
        if metric is None:
            metric = "auroc" if (self.multilabel or len(self.classes) == 2) else "accuracy"
        fig, ax = plt.subplots(figsize=(5, 3.5))
        xs = [p["n_labels"] for p in curve]
        ys = [p.get(metric, np.nan) for p in curve]
        ax.plot(xs, ys, marker="o")
        source = curve[-1]["source"] if curve else "no evaluation yet"
        ax.set(xlabel="training labels", ylabel=metric, title=f"{self.path.name} ({source})")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, dpi=120)
            plt.close(fig)
        return fig

    def export(self, out, *, include_history=True):
        """Write the labels (``labels.csv``: id, path, label, annotator, time, holdout),
        their full history, the rounds and the latest model (safetensors + JSON) to the
        folder ``out``. Returns the written paths."""
        from .interop import write_labels_csv

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        written = {}
        history = self._store.label_history()
        latest = {}
        for row in history:
            latest[row["id"]] = row
        rows = [latest[i] for i in self._ids if i in latest]
        written["labels"] = write_labels_csv(out / "labels.csv", self, rows)
        if include_history:
            written["history"] = write_labels_csv(out / "labels_history.csv", self, history)
        written["rounds"] = atomic_write_json(out / "rounds.json", self.history())
        checkpoint = self._store.latest_checkpoint()
        if checkpoint is not None and checkpoint["file"] is not None:
            src = self.path / checkpoint["file"]
            from ..utils.io import atomic_write_bytes

            written["model"] = atomic_write_bytes(out / "model.safetensors", src.read_bytes())
            meta = src.with_suffix(".json")
            written["model_meta"] = atomic_write_bytes(out / "model.json", meta.read_bytes())
        return {k: str(v) for k, v in written.items()}
