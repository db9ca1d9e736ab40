"""Generator-based hard sampling in a VAE's latent space (Mo, Wang, Dai, Zhou, Teng,
Bai, Guo, "Suggestive Labelling for Medical Image Analysis by Adaptive Latent Space
Sampling", MIDL 2020; full version arXiv:2004.02757).

Stage 1 fits a VAE (encoder ``E``, decoder ``G``) on the unlabelled images; it stays
fixed afterwards. Stage 2, at every query, takes ``s`` labelled seeds ``(x, y)``,
encodes them, ``z = mean(E(x))``, and moves ``z`` uphill on the task loss of the
current classifier ``F`` seen through the decoder,

    z <- z + eta * g / ||g||,    g = grad_z loss(F(G(z)), y),

for ``k`` steps. The moved codes describe samples the classifier finds harder than the
seeds; they become labels in one of two ways:

* ``mode="pool"`` (default): query the unlabelled pool samples nearest (Euclidean, in
  latent space) to the moved codes;
* ``mode="synthesize"``: decode ``G(z')`` into new images and ask a labelling tool (any
  callable ``X -> y``: an expert's annotation front-end, a simulator, a solver).
"""

import numbers

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial.distance import cdist
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import NotFittedError as _SklearnNotFittedError
from sklearn.utils.validation import check_is_fitted

from ..data.pool import pool_length, take
from ..exceptions import SkalTypeError, SkalValueError
from ..labels import encode_labels, one_vs_rest_targets
from ..nets.vae import VAE
from ..utils.seeding import resolve_seed
from ..utils.validation import check_n_instances
from .base import (fitted_estimator, is_multilabel, labelled_data, predicts_label_sets,
                   score_pool)
from .synthesis import Synthesized

__all__ = ["LatentHardSampling", "latent_ascent", "task_loss", "share_nearest"]

_MODES = ("pool", "synthesize")


def task_loss(logits, targets, multilabel=False):
    """Per-sample classification loss on logits: cross-entropy against class positions,
    or for multi-label models binary cross-entropy summed over labels.

    Parameters
    ----------
    logits : torch.Tensor of shape (n, n_outputs)
    targets : torch.Tensor
        ``(n,)`` class positions (int64), or ``(n, n_labels)`` multi-hot (float).
    multilabel : bool

    Returns
    -------
    loss : torch.Tensor of shape (n,)
    """
    if multilabel:
        return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").sum(1)
    return F.cross_entropy(logits, targets, reduction="none")


def latent_ascent(loss_fn, z, steps, step_size):
    """Normalised gradient ascent of per-sample losses in latent space.

    ``z <- z + step_size * g / ||g||`` with ``g = grad_z loss_fn(z)``, row by row (each
    code moves by exactly ``step_size`` per step, whatever its gradient's scale; a code
    with a zero gradient stays put). Mo et al. (2020), stage 2.

    Parameters
    ----------
    loss_fn : callable
        ``z -> loss`` of shape ``(n,)``, differentiable; the loss of row ``i`` must
        depend on ``z[i]`` only (true of a decoder and classifier in eval mode).
    z : torch.Tensor of shape (n, latent_dim)
        Starting codes (not modified).
    steps : int
        Number of steps ``k``.
    step_size : float
        Step length ``eta`` in latent units.

    Returns
    -------
    z : torch.Tensor of shape (n, latent_dim)
        The moved codes (detached).
    losses : torch.Tensor of shape (steps + 1, n)
        The loss of every code before each step and after the last one.
    """
    z = z.detach().clone()
    losses = []
    with torch.enable_grad():
        for _ in range(steps):
            z.requires_grad_(True)
            loss = loss_fn(z)
            (grad,) = torch.autograd.grad(loss.sum(), z)
            losses.append(loss.detach())
            norm = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (z.ndim - 1)))
            z = (z + step_size * grad / norm).detach()
    with torch.no_grad():
        losses.append(loss_fn(z).detach())
    return z, torch.stack(losses)


def share_nearest(distances, n_instances):
    """Distinct nearest neighbours shared out among several query points.

    Picks are made in passes: in each pass every query point (column) in turn, the
    closest (point, sample) pair first, claims its nearest sample not yet claimed,
    until ``n_instances`` samples are taken. With as many points as instances each
    point gets one sample; a point whose nearest sample was claimed by another takes
    its next-nearest.

    Parameters
    ----------
    distances : ndarray of shape (n_samples, n_points)
    n_instances : int
        At most ``n_samples``.

    Returns
    -------
    indices : ndarray of int, shape (n_instances,)
        Distinct rows, in the order they were claimed.
    owners : ndarray of int, shape (n_instances,)
        The column (query point) that claimed each row.
    """
    distances = np.asarray(distances, dtype=np.float64)
    n, m = distances.shape
    n_instances = check_n_instances(n_instances, n)
    k = min(n, n_instances)
    # A point never needs more than n_instances candidates: fewer than n_instances
    # samples are claimed before the last pick, so one of its candidates is still free.
    if k < n:
        candidates = np.argpartition(distances, k - 1, axis=0)[:k]
    else:
        candidates = np.broadcast_to(np.arange(n)[:, None], (n, m))
    rows = candidates.ravel()
    cols = np.tile(np.arange(m), k)
    order = np.lexsort((rows, cols, distances[rows, cols]))
    taken = np.zeros(n, dtype=bool)
    indices, owners = [], []
    while len(indices) < n_instances:
        served = np.zeros(m, dtype=bool)
        for t in order:
            r, c = rows[t], cols[t]
            if taken[r] or served[c]:
                continue
            taken[r] = served[c] = True
            indices.append(r)
            owners.append(c)
            if len(indices) == n_instances or served.all():
                break
    return np.asarray(indices, dtype=np.intp), np.asarray(owners, dtype=np.intp)


def _is_fitted(estimator):
    try:
        check_is_fitted(estimator)
    except _SklearnNotFittedError:
        return False
    except TypeError as exc:
        raise SkalTypeError(
            f"vae must be a skal.nets.VAE (or an estimator with fit / transform / "
            f"inverse_transform / decode); got {type(estimator).__name__}."
        ) from exc
    return True


def _check_positive_int(value, name, allow_zero=False, allow_none=False):
    if value is None and allow_none:
        return
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise SkalValueError(
            f"{name} must be an integer >= {low}{' or None' if allow_none else ''}; got "
            f"{value!r}."
        )


class LatentHardSampling(BaseEstimator):
    """Adaptive latent-space hard sampling (Mo et al., MIDL 2020), pool or synthesis.

    A callable query strategy, ``strategy(learner, X_pool, n_instances)``. At each
    query it draws ``s`` labelled seeds from the learner's training data, encodes them
    with a VAE (``z = mu(x)``), moves the codes uphill on the classifier's loss
    through the decoder (``k`` normalised gradient steps of length ``eta``), and
    turns the moved codes into queries:

    * ``mode="pool"``: the ``n_instances`` unlabelled pool samples nearest to the moved
      codes in latent space (distinct; shared out among the codes by
      :func:`share_nearest`, so a code whose nearest sample is taken gets its
      next-nearest). Returns ``(indices, scores)`` like every pool strategy.
    * ``mode="synthesize"``: the decoded images ``G(z')`` themselves, labelled by
      ``labeling_tool`` if one is given. Returns a :class:`skal.query.Synthesized`;
      :meth:`skal.ActiveLearner.query` then returns ``(None, X_synth)`` (and the
      tool's labels with ``return_labels=True``), ready for ``teach``.

    Parameters
    ----------
    vae : skal.nets.VAE or None, default=None
        The generator. A fitted VAE is used as is (never refitted; skal's own copies,
        :func:`skal.query.registry.fresh_copy`, keep it; wrap it in
        ``sklearn.frozen.FrozenEstimator`` to keep it fitted through a plain ``clone``,
        which otherwise gives an unfitted copy). An unfitted VAE is cloned and fitted on the
        pool at the first query; ``None`` does the same with ``VAE(random_state=
        random_state)``. The fitted VAE is kept as ``vae_`` and reused by every later
        query (of any learner) until ``vae`` is changed. Its images must have the
        shape of the pool's.
    n_seeds : int or None, default=None
        Labelled seeds moved per query, ``s``; ``None`` means ``n_instances``. Seeds
        are drawn at random without replacement; when ``s`` exceeds the labelled set
        the draw starts over, and a seed drawn again starts from a sample of its
        posterior ``q(z|x)`` instead of its mean so that it moves elsewhere.
        *(choice)* In pool mode the ``n_instances`` queried samples are shared out
        among the ``s`` moved codes; in synthesize mode ``n_instances`` images are
        made, cycling through the ``s`` seeds.
    steps : int, default=10
        Gradient steps ``k`` (0 queries the neighbours of the seeds themselves).
    step_size : float, default=0.1
        Step length ``eta`` in latent units. *(choice)*: the paper leaves ``eta`` and
        ``k`` to the user; the defaults move a code by at most ``k * eta = 1``, one
        standard deviation of the ``N(0, I)`` prior. Larger moves raise the loss more
        but can leave the data manifold (pool mode then returns the samples nearest to
        an implausible code).
    mode : {"pool", "synthesize"}, default="pool"
    labeling_tool : callable or None, default=None
        ``X -> y`` for synthesize mode: receives the synthesized images (in the layout
        and dtype of the learner's training data) and returns one label per image (a
        class label, or a multi-hot row for multi-label learners). Ignored in pool
        mode.
    random_state : int, RandomState or None, default=None
        Seeds the choice of seeds (and posterior samples), and the default VAE. A
        ``random_state`` passed to the call (as :func:`skal.simulate.simulate` does
        each round) takes precedence for the seeds.
    batch_size : int or None, default=None
        Batch size of the pool encoding loop (256 when ``None``).

    Attributes
    ----------
    vae_ : VAE
        The fitted generator.
    seed_indices_ : ndarray of int
        Positions in the learner's training data of the last query's seeds (one per
        moved code).
    latent_start_, latent_moved_ : ndarray of shape (n_codes, latent_dim)
        The codes before and after the ascent, for the last query.
    loss_path_ : ndarray of shape (steps + 1, n_codes)
        Task loss of each code, ``loss(F(G(z)), y)``, before each step and after the
        last: the ascent's trace.
    distances_ : ndarray of shape (n_instances,)
        Pool mode: latent distance of each queried sample to the code it was matched
        to.

    Notes
    -----
    The classifier ``F`` is the learner's fitted network (``fitted_estimator(learner)
    .module_``: a skorch net such as :class:`skal.CNNClassifier`), in eval mode, fed
    the decoded float images in [0, 1] (what skal's nets see for uint8 images). Its
    loss is cross-entropy against the labels' positions in ``classes_``, or
    binary cross-entropy summed over labels for multi-label nets.

    The returned scores (``return_metrics=True``) are the task loss of the moved code
    behind each query, ``loss(F(G(z')), y)``: higher is harder.

    Pool mode runs in modAL's ``ActiveLearner`` too; synthesize mode needs skal's
    learner, which understands :class:`~skal.query.Synthesized`.

    References
    ----------
    Mo, Y., Wang, S., Dai, C., Zhou, R., Teng, Z., Bai, W., Guo, Y. "Suggestive
    Labelling for Medical Image Analysis by Adaptive Latent Space Sampling", MIDL 2020;
    arXiv:2004.02757.

    Examples
    --------
    >>> from skal import ActiveLearner, CNNClassifier
    >>> from skal.nets import VAE
    >>> from skal.query import LatentHardSampling
    >>> vae = VAE(latent_dim=16, random_state=0).fit(X_pool)           # doctest: +SKIP
    >>> learner = ActiveLearner(CNNClassifier(), LatentHardSampling(vae=vae),
    ...                         X_training=X0, y_training=y0)          # doctest: +SKIP
    >>> idx, X_query = learner.query(X_pool, n_instances=10)           # doctest: +SKIP
    """

    def __init__(self, vae=None, n_seeds=None, steps=10, step_size=0.1, mode="pool",
                 labeling_tool=None, random_state=None, batch_size=None):
        self.vae = vae
        self.n_seeds = n_seeds
        self.steps = steps
        self.step_size = step_size
        self.mode = mode
        self.labeling_tool = labeling_tool
        self.random_state = random_state
        self.batch_size = batch_size

    # ------------------------------------------------------------ validation
    def _check_params(self):
        if self.mode not in _MODES:
            raise SkalValueError(f"mode must be one of {_MODES}; got {self.mode!r}.")
        _check_positive_int(self.n_seeds, "n_seeds", allow_none=True)
        _check_positive_int(self.steps, "steps", allow_zero=True)
        _check_positive_int(self.batch_size, "batch_size", allow_none=True)
        if (isinstance(self.step_size, bool) or not isinstance(self.step_size, numbers.Real)
                or not np.isfinite(self.step_size) or self.step_size < 0):
            raise SkalValueError(
                f"step_size must be a non-negative number; got {self.step_size!r}."
            )
        if self.labeling_tool is not None and not callable(self.labeling_tool):
            raise SkalTypeError(
                f"labeling_tool must be a callable X -> y or None; got {self.labeling_tool!r}."
            )

    def fitted_vae(self, X_pool=None):
        """The generator, fitting it on ``X_pool`` first if needed (see ``vae``).

        Parameters
        ----------
        X_pool : images, optional
            Needed only when the VAE is not fitted yet.

        Returns
        -------
        vae : VAE
        """
        if getattr(self, "vae_", None) is not None and self._vae_given is self.vae:
            return self.vae_
        vae = VAE(random_state=self.random_state) if self.vae is None else self.vae
        if not _is_fitted(vae):
            if X_pool is None:
                raise SkalValueError("The VAE is not fitted; pass the pool to fit it on.")
            vae = clone(vae).fit(X_pool)
        self.vae_, self._vae_given = vae, self.vae
        return vae

    @staticmethod
    def _classifier(learner):
        estimator = fitted_estimator(learner)
        module = getattr(estimator, "module_", None)
        if not isinstance(module, torch.nn.Module):
            raise SkalTypeError(
                "LatentHardSampling needs a fitted torch classifier (a skorch net such as "
                f"skal.CNNClassifier, with module_); got {type(estimator).__name__}."
            )
        return estimator, module

    @staticmethod
    def _targets(estimator, y, multilabel):
        y = np.asarray(y)
        if multilabel and predicts_label_sets(estimator):
            return torch.as_tensor(y, dtype=torch.float32)
        classes = getattr(estimator, "classes_", None)
        if classes is None:
            raise SkalTypeError(
                f"{type(estimator).__name__} has no classes_; LatentHardSampling needs a "
                "fitted classifier."
            )
        positions = encode_labels(y, classes)
        if multilabel:      # sigmoid head fitted one-vs-rest on 1-d labels
            return torch.as_tensor(one_vs_rest_targets(positions, len(classes)))
        return torch.as_tensor(positions)

    # ----------------------------------------------------------------- query
    def __call__(self, learner, X_pool, n_instances=1, *, random_state=None):
        """Query ``n_instances`` samples (see the class docstring).

        Parameters
        ----------
        learner : skal or modAL ActiveLearner
            Fitted; its training data provide the seeds.
        X_pool : images (array, memmap or torch Dataset)
            The unlabelled pool (encoded batch by batch in pool mode; used to fit the
            VAE when it is not fitted yet).
        n_instances : int, default=1
        random_state : int, RandomState or None
            Seed of this query's seed draw; ``None`` uses the strategy's
            ``random_state``.

        Returns
        -------
        (indices, scores)
            Pool mode: distinct pool positions and the hardness (final task loss) of
            the code each was matched to.
        Synthesized
            Synthesize mode: the images, the labelling tool's labels (or ``None``) and
            their hardness.
        """
        self._check_params()
        pool = self.mode == "pool"
        n_instances = check_n_instances(
            n_instances, pool_length(X_pool) if pool else float("inf"))
        estimator, module = self._classifier(learner)
        X_lab, y_lab = labelled_data(learner)
        multilabel = is_multilabel(learner)
        vae = self.fitted_vae(X_pool)

        rng = np.random.default_rng(resolve_seed(
            self.random_state if random_state is None else random_state))
        n_seeds = self.n_seeds or n_instances
        picks, repeat = _draw_seeds(rng, len(y_lab), n_seeds,
                                    n_seeds if pool else n_instances)
        mu, logvar = vae.transform(take(X_lab, picks), return_logvar=True)
        z0 = mu.copy()
        noise = rng.standard_normal(mu.shape).astype(np.float32)
        z0[repeat] += (np.exp(0.5 * logvar) * noise)[repeat]
        targets = self._targets(estimator, np.asarray(y_lab)[picks], multilabel)

        z_moved, losses = self._ascend(vae, module, z0, targets, multilabel)
        self.seed_indices_ = picks
        self.latent_start_ = z0
        self.latent_moved_ = z_moved
        self.loss_path_ = losses
        hardness = losses[-1]
        if pool:
            distances = score_pool(lambda batch: cdist(vae.transform(batch), z_moved),
                                   X_pool, self.batch_size)
            indices, owners = share_nearest(distances, n_instances)
            self.distances_ = distances[indices, owners]
            return indices, hardness[owners]
        return self._synthesize(vae, z_moved, X_lab, hardness)

    def _ascend(self, vae, module, z0, targets, multilabel):
        device = next(module.parameters()).device
        vae_device = next(vae.module_.parameters()).device
        targets = targets.to(device)
        was_training = (module.training, vae.module_.training)
        module.eval()
        vae.module_.eval()
        try:
            z, losses = latent_ascent(
                lambda z: task_loss(module(vae.decode(z).to(device)), targets, multilabel),
                torch.as_tensor(z0, device=vae_device), self.steps, float(self.step_size))
        finally:
            module.train(was_training[0])
            vae.module_.train(was_training[1])
        return (z.cpu().numpy().astype(np.float32),
                losses.cpu().numpy().astype(np.float64))

    def _synthesize(self, vae, z_moved, X_lab, hardness):
        images = vae.inverse_transform(z_moved)
        reference = np.asarray(X_lab[:1])
        if reference.dtype == np.uint8:
            images = np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8)
        elif reference.dtype.kind == "f":
            images = images.astype(reference.dtype, copy=False)
        if reference.ndim == 3:
            images = images[:, 0]
        y = None
        if self.labeling_tool is not None:
            y = self.labeling_tool(images)
            if isinstance(y, torch.Tensor):
                y = y.detach().cpu().numpy()
        return Synthesized(images, y, hardness)


def _draw_seeds(rng, n_labelled, n_seeds, n_codes):
    """Positions of the labelled seeds behind ``n_codes`` codes, and which of them
    repeat an earlier position.

    ``n_seeds`` distinct draws (starting a new permutation when the labelled set is
    exhausted), cycled to ``n_codes``.
    """
    if n_labelled == 0:
        raise SkalValueError("The learner has no labelled samples to seed the search.")
    draws = []
    while len(draws) < n_seeds:
        draws.extend(rng.permutation(n_labelled).tolist())
    seeds = np.asarray(draws[:n_seeds], dtype=np.intp)
    picks = np.resize(seeds, n_codes)
    _, first = np.unique(picks, return_index=True)
    repeat = np.ones(n_codes, dtype=bool)
    repeat[first] = False
    return picks, repeat
