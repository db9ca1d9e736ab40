"""modAL-style active learners: :class:`ActiveLearner` and :class:`Committee`.

They keep modAL's interface (``query`` returns ``(indices, X_pool[indices])``, ``teach``
adds labels and retrains, strategies are ``strategy(learner, X_pool, *args, **kw)``
called with exactly the arguments given to ``query``) and modAL's names (after ``teach``,
``X_training`` / ``y_training`` hold all labelled data and ``estimator`` the fitted
model), and add what modAL lacks: scikit-learn's estimator contract (``get_params``,
``clone``), training data that grow in place instead of being re-stacked on every
``teach``, clear errors on bad input, and state left untouched by any call that fails.
The learner/strategy protocol is described in ``docs/design.md``.
"""

import copy
import inspect
import warnings

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.metrics import accuracy_score
from sklearn.pipeline import Pipeline

from . import finetune
from .data.pool import is_dataset, materialize, pool_length, take
from .exceptions import NotFittedError, QueryResultError, SkalTypeError, SkalValueError
from .labels import output_kind
from .query.base import fitted_estimator
from .query.disagreement import vote_entropy_sampling
from .query.synthesis import Synthesized
from .query.uncertainty import uncertainty_sampling
from .utils.buffer import GrowableArray
from .utils.seeding import resolve_seed
from .utils.validation import (check_consistent_length, check_finite, check_images,
                               check_n_instances)

__all__ = ["ActiveLearner", "Committee", "BaseLearner"]

_POOL_NDIMS = (2, 3, 4)

# Keyword arguments a modAL user may pass where skal would forward them to the
# estimator's ``fit`` (for a skorch net: to the module's ``forward``), with what to do
# instead.
_MODAL_ONLY_ARGS = {
    "force_all_finite": "skal always rejects NaN and infinite values; clean or impute "
                        "the data first (there is no switch to accept them)",
    "bootstrap_init": "pass it to the learner itself: ActiveLearner(..., bootstrap_init=True)",
    "on_transformed": "pass it to the learner itself: ActiveLearner(..., on_transformed=True) "
                      "or Committee(..., on_transformed=True)",
    "random_tie_break": "it is an argument of modAL's strategies: give it to query(...); "
                        "skal's strategies break ties with random_state=...",
    "n_instances": "it is an argument of query(...), not of teach or fit",
}

# Parameters that are also modAL's live attributes (see ActiveLearner's Notes).
_LIVE_PARAMS = ("estimator", "X_training", "y_training")


def _check_fit_kwargs(fit_kwargs, where):
    for name in fit_kwargs:
        if name in _MODAL_ONLY_ARGS:
            raise SkalTypeError(
                f"{name}= is a modAL argument, not an argument of the estimator's fit, so "
                f"skal does not pass it on to {where}: {_MODAL_ONLY_ARGS[name]}."
            )


def _is_fitted(estimator):
    """Whether ``estimator`` is a fitted model, by scikit-learn's rule (its
    ``__sklearn_is_fitted__``, else a learned attribute ending in ``_``) without
    requiring scikit-learn's tags (modAL-era and duck-typed estimators lack them)."""
    if estimator is None or isinstance(estimator, type) or not hasattr(estimator, "fit"):
        return False
    is_fitted = getattr(estimator, "__sklearn_is_fitted__", None)
    if callable(is_fitted):
        return bool(is_fitted())
    return any(name.endswith("_") and not name.startswith("__")
               for name in getattr(estimator, "__dict__", {}))


def _read_only(array):
    """A read-only view: the learner's buffers change only through ``teach``."""
    if array is None:
        return None
    view = array.view()
    view.flags.writeable = False
    return view


def _split_query_result(result):
    """Accept ``indices``, ``(indices, scores)`` or a :class:`~skal.query.Synthesized`
    (returned as is, with its scores) from a strategy."""
    if isinstance(result, Synthesized):
        return result, result.scores
    if isinstance(result, tuple) and len(result) == 2 and (
            result[1] is None or np.ndim(result[0]) >= 1 or np.ndim(result[1]) == 0):
        return result[0], result[1]
    return result, None


def _check_query_indices(indices, n_pool, n_instances, strategy):
    name = getattr(strategy, "__name__", type(strategy).__name__)
    indices = np.atleast_1d(np.asarray(indices))
    if indices.ndim != 1 or (indices.size and indices.dtype.kind not in "iu"):
        raise QueryResultError(
            f"The query strategy {name} returned {indices!r}; a strategy must return a "
            "1-d array of integer pool indices (or (indices, scores))."
        )
    if indices.size == 0 or (n_instances is not None and indices.size > n_instances):
        raise QueryResultError(
            f"The query strategy {name} returned {indices.size} indices for "
            f"n_instances={n_instances}."
        )
    if indices.min() < 0 or indices.max() >= n_pool:
        raise QueryResultError(
            f"The query strategy {name} returned indices outside the pool "
            f"[0, {n_pool}): {indices[(indices < 0) | (indices >= n_pool)][:5].tolist()}."
        )
    if len(np.unique(indices)) != len(indices):
        raise QueryResultError(f"The query strategy {name} returned duplicate indices.")
    return indices.astype(np.intp)


def _given_n_instances(strategy, query_args, query_kwargs):
    """The ``n_instances`` the caller gave to ``query`` (by keyword, or positionally
    where the strategy's signature has ``n_instances``), or None."""
    if "n_instances" in query_kwargs:
        return query_kwargs["n_instances"]
    if not query_args:
        return None
    try:
        bound = inspect.signature(strategy).bind_partial(None, None, *query_args)
    except (TypeError, ValueError):
        return None
    return bound.arguments.get("n_instances")


class BaseLearner:
    """The query side of a learner: :meth:`query` with modAL's calling and return
    conventions, shared by :class:`ActiveLearner`, :class:`Committee` and
    :class:`skal.campaign.engine.CampaignLearner` (modAL's ``BaseLearner`` and
    ``BaseCommittee`` share ``query`` the same way).

    A subclass has a ``query_strategy`` attribute (a callable
    ``strategy(learner, X_pool, *args, **kwargs)``), offers what strategies read (the
    protocol in ``docs/design.md``: ``estimator``, ``predict_proba``, ``X_training``,
    ...), and implements one hook, ``_prepare(required=True)``: bring the model up to
    date before it is used (fit it on training data given but not used yet) and
    return it; with ``required=False`` it returns ``None`` instead of raising when
    there is no model, so that strategies needing none (random sampling, a pre-trained
    encoder's embeddings) still work.

    :meth:`query` checks the pool, calls the strategy with exactly the arguments it
    was given, and checks what the strategy returned (indices in range, no repeats,
    at most ``n_instances``) before taking the samples from the pool.
    """

    def _prepare(self, required=True):
        raise NotImplementedError(
            f"{type(self).__name__} must implement _prepare(required) (see BaseLearner).")

    def query(self, X_pool, *query_args, return_metrics=False, return_labels=False,
              **query_kwargs):
        """Ask the query strategy which pool samples to label next (or, for a query
        synthesis strategy, which new samples to label).

        The strategy is called as ``query_strategy(self, X_pool, *query_args,
        **query_kwargs)``: with exactly the arguments given here, as modAL does (a
        strategy without ``n_instances`` works when none is given).

        Parameters
        ----------
        X_pool : array of shape (n, ...), np.memmap or torch Dataset
            The unlabelled pool; it is scored batch by batch.
        *query_args
            Passed to the strategy; the first is ``n_instances`` for skal's and modAL's
            strategies (``query(X_pool, 5)``).
        return_metrics : bool, default=False
            Also return the strategy's scores of the selected samples.
        return_labels : bool, default=False
            Also return labels that came with the query: those of a synthesis
            strategy's labelling tool, else ``None`` (pool samples are unlabelled).
        **query_kwargs
            Passed to the strategy (``n_instances=5``, ``random_state=0``, ...).

        Returns
        -------
        indices : ndarray of int, int, or None
            Positions of the selected samples in ``X_pool`` (a single int when the
            strategy returned one); ``None`` when the strategy synthesized new samples
            (it returned a :class:`skal.query.Synthesized`).
        X_query : ndarray or torch Subset
            ``X_pool[indices]``, or the synthesized samples.
        y_query : ndarray or None
            Only with ``return_labels=True``: the synthesized samples' labels from the
            strategy's labelling tool, or ``None``.
        metrics : ndarray or None
            Only with ``return_metrics=True`` (last, after ``y_query``).

        Notes
        -----
        The model is brought up to date first (fitted on ``X_training`` if it was
        given and not used yet; a fitted ``estimator`` given without data is used as
        is). A learner without any model can still query with a strategy that needs
        none (random sampling, embeddings of a pre-trained encoder); a strategy that
        needs one raises :class:`skal.NotFittedError`.

        Query synthesis (e.g. :class:`skal.query.LatentHardSampling` with
        ``mode="synthesize"``): the strategy returns ``Synthesized(X, y, scores)`` with
        at most ``n_instances`` samples; label them (or take ``y_query``) and
        ``teach(X_query, y)``.
        """
        if not callable(self.query_strategy):
            raise SkalTypeError(
                f"query_strategy must be callable as strategy(learner, X_pool, n_instances); "
                f"got {self.query_strategy!r}."
            )
        self._prepare(required=False)
        X_pool = check_images(X_pool, name="X_pool", ndims=_POOL_NDIMS, check_values=False)
        n_pool = pool_length(X_pool)
        n_instances = _given_n_instances(self.query_strategy, query_args, query_kwargs)
        if n_instances is not None or n_pool == 0:
            n_instances = check_n_instances(1 if n_instances is None else n_instances, n_pool)
        result = self.query_strategy(self, X_pool, *query_args, **query_kwargs)
        raw, metrics = _split_query_result(result)
        if isinstance(raw, Synthesized):
            if n_instances is not None and len(raw) > n_instances:
                raise QueryResultError(
                    f"The query strategy synthesized {len(raw)} samples for "
                    f"n_instances={n_instances}."
                )
            indices, X_query, y_query = None, raw.X, raw.y
        else:
            indices = _check_query_indices(raw, n_pool, n_instances, self.query_strategy)
            X_query, y_query = take(X_pool, indices), None
            if np.ndim(raw) == 0:       # a strategy picking one sample as a scalar
                indices, X_query = indices[0], X_query[0]
        out = (indices, X_query)
        if return_labels:
            out += (y_query,)
        if return_metrics:
            out += (metrics,)
        return out

    def _check_X(self, X, name="X"):
        return check_images(X, name=name, ndims=_POOL_NDIMS, check_values=False)


def __getattr__(name):
    # ``_QueryMixin``: the former name of BaseLearner (skal.campaign subclassed it)
    if name == "_QueryMixin":
        warnings.warn("skal.learner._QueryMixin is deprecated; use skal.learner.BaseLearner.",
                      DeprecationWarning, stacklevel=2)
        return BaseLearner
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _transform(estimator, X):
    """modAL's ``transform_without_estimating`` for one model: the features its final
    step sees (all steps of a Pipeline but the last; a skal net's penultimate
    embedding), else ``X`` itself."""
    if isinstance(estimator, Pipeline):
        return estimator[:-1].transform(X)
    if callable(getattr(estimator, "embed", None)):
        return estimator.embed(X)
    return X


class ActiveLearner(BaseLearner, BaseEstimator):
    """Pool-based active learner around any scikit-learn-compatible classifier.

    Parameters
    ----------
    estimator : estimator
        The model to train, e.g. :class:`skal.CNNClassifier`. It is not modified: each
        (re)training works on a clone. A *fitted* estimator given without training
        data is used as is from the start (``query`` at once; the cold start of a
        pre-trained model).
    query_strategy : callable, default=uncertainty_sampling
        ``strategy(learner, X_pool, *args, **kw) -> indices`` or
        ``(indices, scores)``: skal's and modAL's strategies both work.
    X_training, y_training : array-like, optional
        Initial labelled data. The model is fitted on them on first use (``query``,
        ``predict``, ...), so ``__init__`` only stores parameters.
    bootstrap_init : bool, default=False
        Fit the first model on a bootstrap resample of the initial data (bagging, as
        modAL's ``bootstrap_init``).
    on_transformed : bool, default=False
        Whether strategies that compare samples (modAL's ranked batch mode) should do
        so on :meth:`transform_without_estimating` features.
    random_state : int, RandomState or None, default=None
        Seeds the bootstrap resamples (``bootstrap_init``, ``teach(bootstrap=True)``,
        :meth:`rebag`). The estimator has its own ``random_state``.
    finetune_from : {None, "start", "current"}, default=None
        Continual fine-tuning (Zhou et al., ACFT, MedIA 2021; :mod:`skal.finetune`):
        each ``teach`` retrains from the start weights (a fresh clone: scratch, or the
        pre-trained weights the estimator starts from) or continues from the current
        weights. ``None``: as before (continue only with ``warm_start`` / ``only_new``).
    finetune_on : {"all", "new", "hq"}, default="all"
        Train on all labelled data, on the new samples only, or on the new samples plus
        the labelled samples the current model misclassifies (ACFT's "HQ").
    finetune_epochs : int or None, default=None
        Epochs per round (skorch / skal nets); ``None``: the estimator's own.
    **fit_kwargs
        Extra keyword arguments for ``estimator.fit``. modAL-only names
        (``force_all_finite``, ...) are rejected with the skal equivalent.

    Attributes
    ----------
    estimator_ : estimator
        The fitted model (also what ``estimator`` reads once there is one).
    X_training_, y_training_ : ndarray
        All labelled data so far (read-only views of buffers that grow in place);
        fitting lazily on first access, as ``predict`` does.
    classes_, n_classes_
        The fitted model's classes and their number.

    Notes
    -----
    **modAL's names.** ``estimator``, ``X_training`` and ``y_training`` are both the
    constructor parameters and modAL's live state. Reading them gives the live state:
    the fitted model (fitting lazily on the initial data, if not yet done) and *all*
    labelled data so far; before any model exists they read as given. The values given
    to the constructor are kept apart, so ``get_params`` and ``clone`` see exactly
    what was passed, whatever was taught since. Assigning one of them (directly or by
    ``set_params``) to a fitted learner drops its model: the labelled data so far
    become its initial data (unless replaced by the assignment) and a model is fitted
    on them at next use. Change the template's settings with
    ``set_params(estimator__max_epochs=...)``.

    **Retraining.** ``teach`` refits a fresh clone of the estimator on all labelled
    data. If the estimator has ``warm_start=True`` (skorch nets), training continues
    from the current weights instead; with ``only_new=True`` it continues on the new
    samples only (``partial_fit`` when the estimator has it).
    """

    def __init__(self, estimator, query_strategy=uncertainty_sampling, X_training=None,
                 y_training=None, bootstrap_init=False, on_transformed=False,
                 random_state=None, *, finetune_from=None, finetune_on="all",
                 finetune_epochs=None, **fit_kwargs):
        self.estimator = estimator
        self.query_strategy = query_strategy
        self.X_training = X_training
        self.y_training = y_training
        self.bootstrap_init = bootstrap_init
        self.on_transformed = on_transformed
        self.random_state = random_state
        self.finetune_from = finetune_from
        self.finetune_on = finetune_on
        self.finetune_epochs = finetune_epochs
        self.fit_kwargs = fit_kwargs

    # ------------------------------------------- modAL's live names / params
    def _param(self, name):
        """The constructor value of ``estimator`` / ``X_training`` / ``y_training``."""
        return self.__dict__.get(name)

    def _assign(self, name, value):
        if "estimator_" in self.__dict__:
            X, y = self.X_training, self.y_training
            if X is not None:
                self.__dict__["X_training"], self.__dict__["y_training"] = X.copy(), y.copy()
            for attr in ("estimator_", "_X_buffer", "_y_buffer"):
                self.__dict__.pop(attr, None)
        self.__dict__[name] = value

    @property
    def estimator(self):
        """The model in use: the fitted model once there is one (modAL's meaning;
        reading it fits the initial data if that was not done yet), else the
        estimator given."""
        model = self._prepare(required=False)
        return self._param("estimator") if model is None else model

    @estimator.setter
    def estimator(self, value):
        self._assign("estimator", value)

    @property
    def X_training(self):
        """All labelled samples so far (read-only); before the first fit, the initial
        data as given; ``None`` when there are none."""
        if "_X_buffer" in self.__dict__:
            return _read_only(self._X_buffer.view)
        return None if "estimator_" in self.__dict__ else self._param("X_training")

    @X_training.setter
    def X_training(self, value):
        self._assign("X_training", value)

    @property
    def y_training(self):
        """All labels so far (read-only), aligned with :attr:`X_training`."""
        if "_y_buffer" in self.__dict__:
            return _read_only(self._y_buffer.view)
        return None if "estimator_" in self.__dict__ else self._param("y_training")

    @y_training.setter
    def y_training(self, value):
        self._assign("y_training", value)

    # --------------------------------------------------- scikit-learn params
    def get_params(self, deep=True):
        params = {}
        for key in self._get_param_names():
            value = self._param(key) if key in _LIVE_PARAMS else getattr(self, key)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                params.update((f"{key}__{k}", v) for k, v in value.get_params().items())
            params[key] = value
        params.update(self.fit_kwargs)
        return params

    def set_params(self, **params):
        fit_updates = {k: params.pop(k) for k in list(params) if k in self.fit_kwargs}
        self.fit_kwargs = {**self.fit_kwargs, **fit_updates}
        return super().set_params(**params) if params else self

    # ---------------------------------------------------------------- state
    def __sklearn_is_fitted__(self):
        return "estimator_" in self.__dict__ or (
            self._param("X_training") is None and _is_fitted(self._param("estimator")))

    @property
    def X_training_(self):
        """All labelled images so far (fits lazily on the initial data)."""
        self._prepare()
        return self.X_training

    @property
    def y_training_(self):
        """All labels so far (fits lazily on the initial data)."""
        self._prepare()
        return self.y_training

    @property
    def classes_(self):
        """The fitted model's classes (label indices for multi-label models)."""
        return self._prepare().classes_

    @property
    def n_classes_(self):
        """``len(classes_)``."""
        return len(self.classes_)

    def _prepare(self, required=True):
        """The model in use, after fitting the initial data or adopting a fitted
        estimator if that was not done yet; ``None`` (or NotFittedError when
        ``required``) when there is no model."""
        model = self.__dict__.get("estimator_")
        if model is not None:
            return model
        X, y = self._param("X_training"), self._param("y_training")
        if X is not None or y is not None:
            if X is None or y is None:
                raise SkalValueError("Pass both X_training and y_training, or neither.")
            self.fit(X, y, bootstrap=self.bootstrap_init)
            return self.estimator_
        template = self._param("estimator")
        if _is_fitted(template):
            # modAL's habit (and the cold start of a pre-trained model): a fitted
            # estimator given without data is used as is (a copy: `estimator` is a
            # parameter, never modified by training).
            self.estimator_ = copy.deepcopy(template)
            return self.estimator_
        if required:
            raise NotFittedError(
                "This ActiveLearner has no fitted model yet: pass X_training and "
                "y_training, or a fitted estimator, or call fit(X, y) or teach(X, y) first."
            )
        return None

    def _snapshot(self):
        state = {name: self.__dict__.get(name)
                 for name in ("estimator_", "_X_buffer", "_y_buffer", "_bootstrap_rng")}
        buffers = [(b, b.state()) for b in (state["_X_buffer"], state["_y_buffer"]) if b]
        rng = state["_bootstrap_rng"]
        return state, buffers, (rng.bit_generator.state if rng is not None else None)

    def _restore(self, snapshot):
        state, buffers, rng_state = snapshot
        for name, value in state.items():
            if value is None:
                self.__dict__.pop(name, None)
            else:
                self.__dict__[name] = value
        for buffer, buffer_state in buffers:
            buffer.restore(buffer_state)
        if rng_state is not None:
            state["_bootstrap_rng"].bit_generator.state = rng_state

    # ------------------------------------------------------------ validation
    def _validate_training(self, X, y, reset):
        X = check_images(X, ndims=_POOL_NDIMS, check_values=False)
        if is_dataset(X):
            X = materialize(X)
        X = np.asarray(X)
        check_finite(X, "X")
        if y is None:
            raise SkalValueError("y is None; teach needs one label per sample.")
        y = np.asarray(y)
        if y.ndim == 0 or y.ndim > 2:
            raise SkalValueError(f"y has shape {y.shape}; expected (n,) or (n, n_labels).")
        if y.dtype.kind == "f" and not np.isfinite(y).all():
            raise SkalValueError("y contains NaN or infinite labels.")
        check_consistent_length(X, y)
        if not reset:
            self._X_buffer.check_compatible(X, "X")
            self._y_buffer.check_compatible(y, "y")
            stored = self._X_buffer.view.dtype
            if (X.dtype == np.uint8) != (stored == np.uint8):
                # uint8 images mean 0..255 (scaled by 1/255 by skal's nets); mixing them
                # with float images in one buffer would silently upcast the stored rows
                # to float without scaling them.
                raise SkalValueError(
                    f"X has dtype {X.dtype} but the training data have dtype {stored}; "
                    "uint8 images (0-255) and float images cannot be mixed. Convert the "
                    "new images to the training data's dtype and scale."
                )
            y = self._match_label_dtype(y, self._y_buffer.view.dtype)
        return X, y

    @staticmethod
    def _match_label_dtype(y, stored):
        """New labels in the stored labels' dtype, so that appending never changes
        the labels already stored (int64 labels would become float64, large integers
        would lose their value)."""
        if (y.dtype.kind in "biuf") != (stored.kind in "biuf"):
            # numpy would silently turn the stored numeric labels into strings
            # (0 -> '0'), changing every class label the model predicts.
            raise SkalValueError(
                f"y has dtype {y.dtype} but the training labels have dtype {stored}; "
                "numeric and string labels cannot be mixed."
            )
        if stored.kind in "biu" and y.dtype != stored and y.dtype.kind in "biuf":
            cast = y.astype(stored)
            if not np.array_equal(cast, y):
                raise SkalValueError(
                    f"y has labels {np.asarray(y)[cast != y][:5].tolist()} that are not "
                    f"values of the training labels' dtype {stored}; give labels of the "
                    "same kind as before."
                )
            return cast
        return y

    def _check_new_classes(self, y, only_new):
        estimator = self.estimator_
        classes = getattr(estimator, "classes_", None)
        if classes is None or y.ndim != 1 or output_kind(estimator) == "multilabel":
            return
        fixed = getattr(estimator, "classes", None) is not None
        continuing = only_new or getattr(estimator, "warm_start", False)
        if fixed or continuing:
            known = np.asarray(classes)
            if not fixed and "_y_buffer" in self.__dict__:
                # the model was trained on every label stored so far (skorch's own
                # classifiers forget earlier classes_ on partial_fit)
                known = np.union1d(known, self._y_buffer.view)
            unseen = np.setdiff1d(np.unique(y), known)
            if unseen.size:
                how = ("the estimator's classes are fixed by its `classes` parameter" if fixed
                       else "training continues from the current model (warm_start or "
                            "only_new), whose output layer cannot grow")
                raise SkalValueError(
                    f"teach received labels {unseen.tolist()} never seen before, but {how}. "
                    "Declare every class up front with classes=[...], or retrain from "
                    "scratch (only_new=False, warm_start=False)."
                )

    # --------------------------------------------------------------- training
    def _fit_kwargs(self, extra):
        kwargs = {**self.fit_kwargs, **extra}
        _check_fit_kwargs(kwargs, f"{type(self._param('estimator')).__name__}.fit")
        return kwargs

    def _bootstrap(self, X, y):
        """A bootstrap resample of ``(X, y)`` (same size, drawn with replacement)."""
        rng = self.__dict__.get("_bootstrap_rng")
        if rng is None:
            rng = self.__dict__["_bootstrap_rng"] = np.random.default_rng(
                resolve_seed(self.random_state))
        rows = rng.integers(0, len(y), size=len(y))
        return X[rows], y[rows]

    def _new_model(self):
        template = self._param("estimator")
        if template is None or not callable(getattr(template, "fit", None)):
            raise SkalTypeError(
                f"estimator must be a classifier with a fit method; got {template!r}.")
        return clone(template, safe=False)

    def fit(self, X, y, bootstrap=False, **fit_kwargs):
        """Fit a clone of ``estimator`` on ``(X, y)`` (a bootstrap resample of them with
        ``bootstrap=True``), which become the training data (any previous training
        data are dropped)."""
        fit_kwargs = self._fit_kwargs(fit_kwargs)
        X, y = self._validate_training(X, y, reset=True)
        estimator = self._new_model()
        estimator.fit(*(self._bootstrap(X, y) if bootstrap else (X, y)), **fit_kwargs)
        self._X_buffer, self._y_buffer = GrowableArray(X), GrowableArray(y)
        self.estimator_ = estimator
        return self

    def teach(self, X, y, bootstrap=False, only_new=False, **fit_kwargs):
        """Add labelled samples and retrain. A failed or interrupted call leaves the
        learner as it was.

        Parameters
        ----------
        X : array-like or torch Dataset
            The newly labelled samples (e.g. ``X_pool[indices]`` from ``query``).
        y : array-like
            Their labels.
        bootstrap : bool, default=False
            Train on a bootstrap resample (of all labelled data, or of the new samples
            with ``only_new``), as modAL does for bagging.
        only_new : bool, default=False
            Continue training on the new samples only (``partial_fit`` if available)
            instead of retraining on everything labelled so far.
        """
        fit_kwargs = self._fit_kwargs(fit_kwargs)
        if self._prepare(required=False) is None:
            return self.fit(X, y, bootstrap=bootstrap, **fit_kwargs)
        has_data = "_X_buffer" in self.__dict__
        X, y = self._validate_training(X, y, reset=not has_data)
        self._check_new_classes(y, only_new)
        snapshot = self._snapshot()
        try:
            if has_data:
                self._X_buffer.append(X)
                self._y_buffer.append(y)
            else:       # a fitted estimator given without data: its first labels
                self._X_buffer, self._y_buffer = GrowableArray(X), GrowableArray(y)
            self.estimator_ = self._retrain(X, y, only_new, bootstrap, fit_kwargs)
        except BaseException:
            self._restore(snapshot)
            raise
        return self

    def rebag(self, **fit_kwargs):
        """Refit on a bootstrap resample of all labelled data (bagging)."""
        fit_kwargs = self._fit_kwargs(fit_kwargs)
        self._prepare()
        if self.X_training is None:
            raise SkalValueError("rebag needs labelled data; teach some samples first.")
        snapshot = self._snapshot()
        try:
            self.estimator_ = self._retrain(None, None, False, True, fit_kwargs)
        except BaseException:
            self._restore(snapshot)
            raise
        return self

    def _retrain(self, X_new, y_new, only_new, bootstrap, fit_kwargs):
        if not bootstrap and (self.finetune_from, self.finetune_on,
                              self.finetune_epochs) != (None, "all", None):
            return finetune.retrain(self, X_new, y_new, only_new, fit_kwargs)
        if only_new:
            X, y = (self._bootstrap(X_new, y_new) if bootstrap else (X_new, y_new))
            estimator = copy.deepcopy(self.estimator_)
            before = getattr(estimator, "classes_inferred_", None)
            if hasattr(estimator, "partial_fit"):
                estimator.partial_fit(X, y, **fit_kwargs)
            else:
                estimator.fit(X, y, **fit_kwargs)
            if before is not None and getattr(estimator, "classes", 0) is None:
                # skorch's NeuralNetClassifier infers classes_ from each partial_fit's
                # labels only; its output layer still knows the earlier ones
                estimator.classes_inferred_ = np.union1d(before, estimator.classes_inferred_)
            return estimator
        X, y = self._X_buffer.view, self._y_buffer.view
        if bootstrap:
            X, y = self._bootstrap(X, y)
        if getattr(self.estimator_, "warm_start", False):
            estimator = copy.deepcopy(self.estimator_)
        else:
            estimator = self._new_model()
        estimator.fit(X, y, **fit_kwargs)
        return estimator

    # -------------------------------------------------------------- inference
    def predict(self, X, **predict_kwargs):
        """Predictions of the current model."""
        return self._prepare().predict(self._check_X(X), **predict_kwargs)

    def predict_proba(self, X, **predict_proba_kwargs):
        """Class (or per-label) probabilities of the current model."""
        return self._prepare().predict_proba(self._check_X(X), **predict_proba_kwargs)

    def score(self, X, y, **score_kwargs):
        """The current model's ``score`` (accuracy for classifiers)."""
        return self._prepare().score(self._check_X(X), y, **score_kwargs)

    def transform_without_estimating(self, X):
        """The features the model's final step sees (modAL's name, read by strategies
        when ``on_transformed=True``): a Pipeline's transforms, a skal net's
        penultimate embedding (``embed``), else ``X`` unchanged."""
        return _transform(self._prepare(), X)


def _member_classes(member):
    return getattr(member.estimator, "classes_", None)


class Committee(BaseLearner, BaseEstimator):
    """A committee of learners for query by committee.

    Members usually share the estimator class and differ in ``random_state`` (an
    ensemble, Beluch et al. CVPR 2018), in architecture, or in the bootstrap resample
    they were trained on (bagging, Abe & Mamitsuka ICML 1998: ``bootstrap_init``,
    ``teach(bootstrap=True)``, :meth:`rebag`). ``teach`` teaches every member; if any
    member fails, every member is restored.

    A committee is a sequence of its members: ``len(committee)``,
    ``for learner in committee``, ``committee[0]``.

    Parameters
    ----------
    learner_list : list of ActiveLearner
        Distinct learners (the same object twice is an error: it would be taught
        twice and vote twice). Other objects with ``estimator``, ``predict`` and
        ``predict_proba`` (e.g. modAL's learners) are accepted for voting. Members
        may have seen different subsets of the classes (their votes are aligned on
        the union of their classes, as in modAL) but must solve the same kind of
        task: all single-label with comparable class labels, or all multi-label with
        the same number of labels; otherwise a clear error is raised on first use.
    query_strategy : callable, default=vote_entropy_sampling
        A committee strategy (``vote_entropy_sampling``, ``consensus_entropy_sampling``,
        ``max_disagreement_sampling``) or any ``strategy(committee, X_pool, ...)``.
    on_transformed : bool, default=False
        As in :class:`ActiveLearner`.
    """

    def __init__(self, learner_list, query_strategy=vote_entropy_sampling,
                 on_transformed=False):
        self.learner_list = learner_list
        self.query_strategy = query_strategy
        self.on_transformed = on_transformed

    @classmethod
    def from_estimator(cls, estimator, n_members=5, *, bootstrap=False, n_jobs=None,
                       random_state=None, query_strategy=vote_entropy_sampling,
                       X_training=None, y_training=None, **fit_kwargs):
        """A deep ensemble (Beluch et al. CVPR 2018) of ``n_members`` clones of
        ``estimator`` with seeds ``random_state + k``; ``bootstrap=True`` also trains
        each on its own (class-stratified) bootstrap resample of the labelled data
        (:class:`skal.ensemble.Bootstrapped`). Members are trained in ``n_jobs`` joblib
        workers (:class:`skal.ensemble.EnsembleCommittee`, a Committee); when
        ``X_training`` / ``y_training`` are given they are fitted at once. ``fit_kwargs``
        go to every member's ``fit``."""
        from .ensemble import committee_from_estimator
        return committee_from_estimator(
            estimator, n_members, bootstrap=bootstrap, n_jobs=n_jobs,
            random_state=random_state, query_strategy=query_strategy,
            X_training=X_training, y_training=y_training, **fit_kwargs)

    def _check_members(self):
        if not isinstance(self.learner_list, (list, tuple)) or not self.learner_list:
            raise SkalValueError("learner_list must be a non-empty list of ActiveLearner.")
        seen = {}
        for position, member in enumerate(self.learner_list):
            if not isinstance(member, ActiveLearner) and not (
                    inspect.getattr_static(member, "estimator", None) is not None
                    and callable(getattr(member, "predict", None))
                    and callable(getattr(member, "predict_proba", None))):
                raise SkalTypeError(
                    f"Committee members must be ActiveLearner instances; got "
                    f"{type(member).__name__}."
                )
            if id(member) in seen:
                raise SkalValueError(
                    f"learner_list holds the same learner at positions {seen[id(member)]} "
                    f"and {position}; it would be taught twice and vote twice. Give each "
                    "member its own ActiveLearner (e.g. with clone(estimator))."
                )
            seen[id(member)] = position
        return self.learner_list

    def __len__(self):
        return len(self.learner_list)

    def __iter__(self):
        return iter(self.learner_list)

    def __getitem__(self, index):
        return self.learner_list[index]

    def __sklearn_is_fitted__(self):
        # ready to predict: every member has a model, or initial data to fit on first
        # use (so a committee can be the fitted estimator of an ActiveLearner, as in
        # modAL's ensemble example)
        return all(_is_fitted(m) or m.get_params(deep=False)["X_training"] is not None
                   if isinstance(m, ActiveLearner) else True for m in self.learner_list)

    def _prepare(self, required=True):
        members = self._check_members()
        for member in members:
            if isinstance(member, ActiveLearner):
                member._prepare(required=required)
        if required or all(_is_fitted(m) for m in members if isinstance(m, ActiveLearner)):
            self._check_tasks()
        return members

    def _check_tasks(self):
        """Every member solves the same kind of task (see ``learner_list``)."""
        members = self.learner_list
        kinds = [output_kind(fitted_estimator(m)) == "multilabel" for m in members]
        if len(set(kinds)) > 1:
            raise SkalValueError(
                "The committee mixes members that predict label sets (multi-label) with "
                f"members that predict one class (positions {np.flatnonzero(kinds).tolist()} "
                "are multi-label); every member must solve the same task.")
        classes = [_member_classes(m) for m in members]
        classes = [np.asarray(c) for c in classes if c is not None]
        if kinds[0]:
            sizes = {len(c) for c in classes}
            if len(sizes) > 1:
                raise SkalValueError(
                    f"The committee's multi-label members have different numbers of labels "
                    f"({sorted(sizes)}); every member must predict the same labels.")
        elif len({c.dtype.kind in "biuf" for c in classes}) > 1:
            raise SkalValueError(
                "The committee's members have class labels of different kinds (numbers "
                "and strings); every member must solve the same task.")

    @property
    def _multilabel(self):
        # members predicting label sets (multi-hot); one-vs-rest members fitted on 1-d
        # labels vote and average classes as single-label members do
        return output_kind(fitted_estimator(self.learner_list[0])) == "multilabel"

    @property
    def classes_(self):
        """Union of the members' classes (label indices for multi-label members)."""
        members = self._prepare()
        if self._multilabel:
            return np.asarray(_member_classes(members[0]))
        classes = [np.asarray(c) for c in map(_member_classes, members) if c is not None]
        if not classes:
            raise NotFittedError("No member of the committee has classes_ yet.")
        return np.unique(np.concatenate(classes))

    @property
    def n_classes_(self):
        """``len(classes_)``."""
        return len(self.classes_)

    def _snapshot_member(self, member):
        if isinstance(member, ActiveLearner):
            return member._snapshot()
        return copy.deepcopy(member.__dict__)

    def _restore_member(self, member, snapshot):
        if isinstance(member, ActiveLearner):
            member._restore(snapshot)
        else:
            member.__dict__.clear()
            member.__dict__.update(snapshot)

    def _all_members(self, method):
        members = self._check_members()
        snapshots = [self._snapshot_member(m) for m in members]
        try:
            for member in members:
                method(member)
        except BaseException:
            for member, snapshot in zip(members, snapshots):
                self._restore_member(member, snapshot)
            raise
        return self

    def fit(self, X, y, **fit_kwargs):
        """Fit every member on ``(X, y)``, which replace the data they had."""
        _check_fit_kwargs(fit_kwargs, "the members' fit")
        return self._all_members(lambda m: m.fit(X, y, **fit_kwargs))

    def teach(self, X, y, bootstrap=False, only_new=False, **fit_kwargs):
        """Teach every member the new samples (all or none are changed); with
        ``bootstrap=True`` each member trains on its own bootstrap resample."""
        _check_fit_kwargs(fit_kwargs, "the members' fit")
        self._prepare(required=False)
        return self._all_members(lambda m: m.teach(X, y, bootstrap=bootstrap,
                                                   only_new=only_new, **fit_kwargs))

    def rebag(self, **fit_kwargs):
        """Refit every member on a bootstrap resample of its own labelled data."""
        _check_fit_kwargs(fit_kwargs, "the members' fit")
        self._prepare()
        return self._all_members(lambda m: m.rebag(**fit_kwargs))

    def vote(self, X, **predict_kwargs):
        """Each member's prediction: ``(n, n_members)`` (``(n, n_members, n_labels)``
        for multi-label members)."""
        members = self._prepare()
        X = self._check_X(X)
        return np.stack([np.asarray(m.predict(X, **predict_kwargs)) for m in members], axis=1)

    def vote_proba(self, X, **predict_proba_kwargs):
        """Each member's probabilities aligned to ``classes_``: ``(n, n_members, C)``."""
        members = self._prepare()
        X = self._check_X(X)
        if self._multilabel:
            return np.stack([m.predict_proba(X, **predict_proba_kwargs) for m in members],
                            axis=1)
        classes = self.classes_
        out = np.zeros((pool_length(X), len(members), len(classes)))
        for j, member in enumerate(members):
            columns = np.searchsorted(classes, _member_classes(member))
            out[:, j, columns] = member.predict_proba(X, **predict_proba_kwargs)
        return out

    def predict_proba(self, X, **predict_proba_kwargs):
        """Consensus probabilities: the members' mean."""
        return self.vote_proba(X, **predict_proba_kwargs).mean(axis=1)

    def predict(self, X, **predict_proba_kwargs):
        """Consensus prediction: the most probable class of the mean probabilities, or
        for multi-label members the labels whose mean probability reaches the members'
        mean ``threshold`` (0.5 for members without one)."""
        proba = self.predict_proba(X, **predict_proba_kwargs)
        if self._multilabel:
            return (proba >= self._consensus_threshold(proba.shape[1])).astype(np.int64)
        return self.classes_[proba.argmax(axis=1)]

    def _consensus_threshold(self, n_labels):
        thresholds = []
        for member in self.learner_list:
            t = np.asarray(getattr(member.estimator, "threshold", 0.5), dtype=float)
            if t.ndim > 1 or (t.ndim == 1 and len(t) != n_labels):
                raise SkalValueError(
                    f"A member's threshold has shape {t.shape}; expected a float or one "
                    f"value per label ({n_labels}).")
            thresholds.append(np.broadcast_to(t, (n_labels,)))
        return np.mean(thresholds, axis=0)

    def score(self, X, y):
        """Accuracy of the consensus prediction."""
        return accuracy_score(np.asarray(y), self.predict(X))

    def transform_without_estimating(self, X):
        """The members' :meth:`ActiveLearner.transform_without_estimating` features,
        side by side (modAL's committee transform)."""
        self._prepare()
        return np.hstack([np.asarray(m.transform_without_estimating(X)).reshape(len(X), -1)
                          for m in self.learner_list])
