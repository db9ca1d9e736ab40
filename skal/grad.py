"""The one per-sample-gradient engine of skal.

Every gradient-based strategy (expected / entropy GradNorm, BADGE, TDGF, ...) reads its
per-sample gradients from this module, in one of two scopes.

Closed-form gradients of the final linear layer (``scope="last"``)
------------------------------------------------------------------
For a network ending in ``z = W h + b`` and a loss ``L(z)``, the gradient with respect to
the final layer is ``dL/dW = a h^T`` and ``dL/db = a`` with ``a = dL/dz``. So a forward
pass that yields ``h`` and ``z`` (see ``iter_head_outputs`` of skal's classifiers) gives
every per-sample final-layer gradient, and its norms, without a backward pass:
``||dL/dW||_F = ||a|| ||h||``.

``a`` for the losses skal uses (``p = softmax(z)``; multi-label ``p = sigmoid(z)``):

* cross-entropy with class ``k``: ``a = p - e_k``;
* binary cross-entropy with multi-hot ``y``: ``a = p - y``;
* entropy ``H(p) = -sum_j p_j log p_j``: ``a_j = -p_j (log p_j + H)``;
* sum of binary entropies (multi-label): ``a_j = -p_j (1 - p_j) z_j``.

Numerics: everything is evaluated in float64 from the logits, and nothing is computed as
a difference of two numbers close to 1. With ``t`` the top class and
``s = sum_{j != t} exp(z_j - z_t)``, ``log p_j = (z_j - z_t) - log1p(s)`` and
``1 - p_t = s / (1 + s)``; every other class has ``p_c <= 1/2``, so ``1 - p_c`` is exact.
(Float32 ``1 - p_k`` keeps only ``-log2(1 - p_k)`` fewer of its 24 bits, so it loses
half its digits on confident samples with ``1 - p_k ~ 1e-4``; even float64 ``1 - p_k`` is
exactly 0 once the logit gap exceeds ~37.)
Sigmoid outputs use ``1 - sigmoid(z) = sigmoid(-z)``.

Full-network gradients (``scope="all"``)
----------------------------------------
Any per-sample loss gradient is a vector-Jacobian product: ``grad_theta L(f(x)) =
J(x)^T a`` with ``J = dz/dtheta`` and ``a = dL/dz``. :func:`per_sample_grad_norms`
computes these products for one or several cotangents ``a`` per sample (one per class
for expected GradNorm) with ``torch.func`` (``functional_call`` + ``vjp`` + ``vmap``):
one forward per sample, one backward per cotangent, batched over a chunk of samples.
The cotangents are computed from each sample's own logits inside the same call, by the
closed forms above (so they are exact to float64 before being cast to the network's
dtype). The module runs in eval mode (BatchNorm uses its running statistics, passed to
``functional_call`` as buffers, and is evaluated as the affine map it then is; dropout
is off); its training mode is restored after. Dense layers get their norms in closed
form (``||delta h^T|| = ||delta|| ||h||``, see :func:`per_sample_grad_norms`).
At most ``chunk_size`` per-sample gradients exist at once, so memory is bounded by
``chunk_size x n_parameters`` whatever the pool size (the default sizes the chunk so
that the materialised gradients take at most ``CHUNK_BUDGET`` floats).

Norms
-----
``norm="reference"``: the sum of the Frobenius norms of the per-tensor gradients,
``sum_k ||g_k||``, as in Wang et al.'s reference code (it loops over
``model.parameters()`` and sums ``torch.norm(param.grad)``); ``norm="l2"``: the global
Euclidean norm ``sqrt(sum_k ||g_k||^2)``.

References
----------
T. Wang et al., "Boosting Active Learning via Improving
Test Performance", AAAI 2022. Ash, Zhang, Krishnamurthy, Langford, Agarwal, "Deep Batch
Active Learning by Diverse, Uncertain Gradient Lower Bounds" (BADGE), ICLR 2020.
"""

import contextlib
import inspect

import torch
from torch import nn
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode
from torch.func import functional_call, vjp, vmap

from .exceptions import SkalValueError
from .nets.head import this_thread_only

__all__ = [
    "logit_gradient",
    "class_logit_gradients",
    "class_gradient_sqnorms",
    "predicted_labels",
    "last_layer_norm",
    "combine_norms",
    "per_sample_gradients",
    "per_sample_grad_norms",
    "NORMS",
]

NORMS = ("reference", "l2")
DEFAULT_CHUNK_SIZE = None     # automatic: see _chunk_step
MAX_AUTO_CHUNK = 256          # per-sample gradients per vmap call, at most (automatic)
CHUNK_BUDGET = 2 ** 24        # floats of materialised per-sample gradients (64 MiB fp32)


# --------------------------------------------------------------------- closed forms
def _check_norm(norm):
    if norm not in NORMS:
        raise SkalValueError(f"norm must be 'reference' or 'l2'; got {norm!r}.")


def _stable_softmax(z):
    """``p``, ``log p`` and ``1 - p`` of a softmax, in float64, without cancellation.

    Returns ``(p, log_p, one_minus_p)``, each of shape ``(n, C)``.
    """
    z64 = z.detach().to(torch.float64)
    n_classes = z64.shape[1]
    top = z64.argmax(dim=1, keepdim=True)
    is_top = torch.arange(n_classes, device=z64.device) == top
    shifted = z64 - z64.gather(1, top)                            # <= 0, 0 at the top
    others = torch.where(is_top, 0.0, shifted.exp()).sum(dim=1, keepdim=True)
    log_p = shifted - torch.log1p(others)
    p = log_p.exp()
    one_minus_p = torch.where(is_top, others / (1.0 + others), 1.0 - p)
    return p, log_p, one_minus_p


def _probabilities(z, multilabel):
    if multilabel:
        return torch.sigmoid(z.detach().to(torch.float64))
    return _stable_softmax(z)[0]


def predicted_labels(z, *, multilabel=False):
    """Pseudo-labels from logits: the top class ``(n,)``, or for multi-label models the
    multi-hot decisions ``sigmoid(z) >= 0.5`` (i.e. ``z >= 0``) as float ``(n, C)``."""
    if multilabel:
        return (z.detach() >= 0).to(torch.float64)
    return z.detach().argmax(dim=1)


def logit_gradient(z, target=None, *, loss="ce", multilabel=False):
    """Per-sample ``a = dL/dz`` (float64), shape ``(n, C)``.

    Parameters
    ----------
    z : torch.Tensor of shape (n, C)
        Logits.
    target : torch.Tensor, "predicted" or None
        ``loss="ce"``: class indices ``(n,)`` (softmax) or multi-hot ``(n, C)`` labels
        (multi-label, binary cross-entropy); ``"predicted"`` uses the model's own hard
        prediction (:func:`predicted_labels`), as BADGE and TDGF do. Ignored for
        ``loss="entropy"``.
    loss : {"ce", "entropy"}
        Cross-entropy against ``target`` (BCE summed over labels when ``multilabel``), or
        the predictive entropy of the model itself (summed binary entropies when
        ``multilabel``).
    multilabel : bool
        Sigmoid outputs (one binary problem per label) instead of softmax.

    Notes
    -----
    Evaluated without cancellation (see the module docstring): for ``target = k`` the
    entry ``a_k = -(1 - p_k)`` is exact even when ``p_k`` rounds to 1.
    """
    z64 = z.detach().to(torch.float64)
    if loss == "entropy":
        if multilabel:
            return -torch.sigmoid(z64) * torch.sigmoid(-z64) * z64
        p, log_p, _ = _stable_softmax(z64)
        H = -(p * log_p).sum(dim=1, keepdim=True)
        return -p * (log_p + H)
    if loss != "ce":
        raise SkalValueError(f"loss must be 'ce' or 'entropy'; got {loss!r}.")
    if target is None:
        raise SkalValueError("loss='ce' needs a target (labels or 'predicted').")
    if isinstance(target, str):
        if target != "predicted":
            raise SkalValueError(f"target must be a tensor or 'predicted'; got {target!r}.")
        target = predicted_labels(z64, multilabel=multilabel)
    if multilabel:
        y = target.to(torch.float64)
        # p - y with 1 - sigmoid(z) taken as sigmoid(-z); soft labels fall back to p - y.
        return torch.where(y == 1, -torch.sigmoid(-z64),
                           torch.where(y == 0, torch.sigmoid(z64), torch.sigmoid(z64) - y))
    p, _, one_minus_p = _stable_softmax(z64)
    is_target = torch.arange(z64.shape[1], device=z64.device) == target.long().view(-1, 1)
    return torch.where(is_target, -one_minus_p, p)


def class_logit_gradients(z):
    """``a_c = p - e_c`` for every class ``c`` at once (softmax / cross-entropy).

    Returns
    -------
    A : torch.Tensor of shape (n, C, C), float64
        ``A[i, c]`` is ``dCE(z_i, c)/dz``.
    """
    p, _, one_minus_p = _stable_softmax(z)
    n_classes = p.shape[1]
    eye = torch.eye(n_classes, dtype=torch.bool, device=p.device)
    return torch.where(eye, -one_minus_p.unsqueeze(2), p.unsqueeze(1))


def class_gradient_sqnorms(z):
    """``||p - e_c||^2`` for every class ``c``, shape ``(n, C)``, float64, in O(nC).

    ``||p - e_c||^2 = sum_{j != c} p_j^2 + (1 - p_c)^2``; for the top class the first
    sum is taken term by term (never as ``sum_j p_j^2 - p_c^2``) and ``1 - p_c`` from
    the other classes, so a sample with logit gap 40 gets ``~sqrt(2) e^-40``, not 0.
    """
    p, _, one_minus_p = _stable_softmax(z)
    sq = p * p
    top = p.argmax(dim=1, keepdim=True)
    is_top = torch.arange(p.shape[1], device=p.device) == top
    others_top = torch.where(is_top, 0.0, sq).sum(dim=1, keepdim=True)
    # For c != top, sum_j p_j^2 - p_c^2 still contains p_top^2 >= p_c^2: no cancellation.
    others = torch.where(is_top, others_top, sq.sum(dim=1, keepdim=True) - sq)
    return others + one_minus_p * one_minus_p


def last_layer_norm(a_sqnorm, h_sqnorm, *, norm="reference", bias=True):
    """Norm of the final-layer gradient ``[a h^T, a]`` from ``||a||^2`` and ``||h||^2``.

    ``norm="reference"``: the sum of per-tensor Frobenius norms (Wang et al.'s code),
    ``||a|| ||h|| + ||a||``; ``norm="l2"``: the global norm ``||a|| sqrt(||h||^2 + 1)``.
    ``bias=False`` drops the bias term (a final layer without bias). Inputs broadcast.
    """
    _check_norm(norm)
    a_norm = torch.sqrt(torch.as_tensor(a_sqnorm, dtype=torch.float64))
    h_sqnorm = torch.as_tensor(h_sqnorm, dtype=torch.float64)
    b_term = 1.0 if bias else 0.0
    if norm == "reference":
        return a_norm * torch.sqrt(h_sqnorm) + b_term * a_norm
    return a_norm * torch.sqrt(h_sqnorm + b_term)


def combine_norms(tensor_sqnorms, *, norm="reference"):
    """Combine per-tensor squared norms ``(..., n_tensors)`` into one norm (float64):
    ``sum_k sqrt(s_k)`` (``"reference"``) or ``sqrt(sum_k s_k)`` (``"l2"``)."""
    _check_norm(norm)
    s = tensor_sqnorms.to(torch.float64).clamp_min(0.0)
    if norm == "reference":
        return s.sqrt().sum(dim=-1)
    return s.sum(dim=-1).sqrt()


# -------------------------------------------------------------- full-network engine
@contextlib.contextmanager
def _eval_mode(module):
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def _affine_batchnorm_forward(x, running_mean, running_var, weight, bias, eps):
    """Eval-mode BatchNorm as the affine map it is: ``x * s + t`` with
    ``s = weight / sqrt(running_var + eps)`` and ``t = bias - running_mean * s``."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    scale = torch.rsqrt(running_var + eps)
    if weight is not None:
        scale = scale * weight
    shift = -running_mean * scale
    if bias is not None:
        shift = shift + bias
    return x * scale.reshape(shape) + shift.reshape(shape)


_BATCH_NORM_SIGNATURE = inspect.signature(F.batch_norm)


class _AffineBatchNorm(TorchFunctionMode):
    """Within the block (this thread only), every eval-mode batch norm with running
    statistics, ``F.batch_norm(x, running_mean, running_var, ..., training=False)``, is
    evaluated as the explicit elementwise affine map it is (same values, same
    parameters and buffers, read through ``functional_call``). torch's fused
    ``native_batch_norm`` backward is slow under ``vmap``; the elementwise form is not
    (benchmarks/README.md, "Per-sample gradients").

    A torch function mode replaces the *function*, so the user's modules are never
    touched: no ``forward`` is rebound, nothing needs restoring. It is entered around
    each forward computation only, never across a ``yield``."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.batch_norm:
            bound = _BATCH_NORM_SIGNATURE.bind(*args, **kwargs)
            bound.apply_defaults()
            a = bound.arguments
            if (not a["training"] and a["running_mean"] is not None
                    and a["running_var"] is not None):
                return _affine_batchnorm_forward(a["input"], a["running_mean"],
                                                 a["running_var"], a["weight"], a["bias"],
                                                 a["eps"])
        return func(*args, **kwargs)


def _standard_layout(p):
    """A detached parameter, 4-d weights copied to torch's default layout: vmap's
    per-sample convolutions are slower with the channels_last weights that make batched
    inference fast (benchmarks/README.md, "Per-sample gradients"). (A clone, not ``.contiguous()``: a ``(16, 1, 3, 3)`` weight
    counts as contiguous in both layouts, and its channels_last strides would still
    steer the convolutions.)"""
    p = p.detach()
    return p.clone(memory_format=torch.contiguous_format) if p.ndim == 4 else p


def _split_parameters(module, parameters):
    """Differentiated parameters, the others (frozen or not chosen), and buffers."""
    named = dict(module.named_parameters())
    if parameters is None:
        chosen = [name for name, p in named.items() if p.requires_grad]
    else:
        chosen = list(parameters)
        unknown = [name for name in chosen if name not in named]
        if unknown:
            raise SkalValueError(
                f"Unknown parameter names {unknown[:5]}; choose from {list(named)[:10]}..."
            )
    if not chosen:
        raise SkalValueError("The module has no trainable parameters to differentiate.")
    params = {name: _standard_layout(named[name]) for name in chosen}
    rest = {name: _standard_layout(p) for name, p in named.items() if name not in params}
    rest.update(dict(module.named_buffers()))
    return params, rest


def _as_cotangent(a, n_outputs):
    """Cotangents as ``(K, C)`` for one sample (``(C,)`` means ``K = 1``)."""
    if a.ndim == 1:
        a = a.unsqueeze(0)
    if a.ndim != 2 or a.shape[1] != n_outputs:
        raise SkalValueError(
            f"The cotangent function returned shape {tuple(a.shape)} for one sample; "
            f"expected (K, {n_outputs}) or ({n_outputs},)."
        )
    return a


def _closed_form_layer(layer):
    """Whether the per-sample weight gradient norms of ``layer`` are formed from its
    output gradient and input: a plain ``nn.Linear``. (The same is possible for
    convolutions with patches, ``sum_l delta_l u_l^T``, but measured slower on CPU than
    ``vmap``'s own per-sample convolution gradients, so they are left to ``vmap``.)"""
    return isinstance(layer, nn.Linear) and type(layer).forward is nn.Linear.forward


def _layer_plan(module, x1, params, enabled):
    """Run one sample through the module (no gradient) and find the layers whose
    per-sample gradient norms are formed from their output gradient and input (see
    :func:`_closed_form_sqnorms`): closed-form layer type, differentiated weight,
    parameters not tied to another module, called exactly once per forward pass.

    Returns ``(z0, plan)`` with ``plan = {layer name: (weight name, bias name or None,
    per-sample output shape)}``.
    """
    calls, shapes, hooks = {}, {}, []
    if enabled:
        uses = {}
        for _, p in module.named_parameters(remove_duplicate=False):
            uses[id(p)] = uses.get(id(p), 0) + 1
        for name, layer in module.named_modules():
            prefix = f"{name}." if name else ""
            tied = any(uses.get(id(p), 0) > 1 for p in layer.parameters(recurse=False))
            if _closed_form_layer(layer) and f"{prefix}weight" in params and not tied:
                def record(_mod, _inp, out, name=name):
                    calls[name] = calls.get(name, 0) + 1
                    shapes[name] = tuple(out.shape)
                hooks.append(layer.register_forward_hook(this_thread_only(record)))
    try:
        with torch.no_grad():
            z0 = module(x1)
    finally:
        for hook in hooks:
            hook.remove()
    plan = {}
    for name, count in calls.items():
        if count == 1:
            prefix = f"{name}." if name else ""
            bias = f"{prefix}bias" if f"{prefix}bias" in params else None
            plan[name] = (f"{prefix}weight", bias, shapes[name])
    return z0, plan


def _closed_form_sqnorms(layer, delta, h, has_bias):
    """Squared norms of a dense layer's per-sample weight (and bias) gradients from its
    output gradients ``delta`` ``(K, *out_shape)`` and its input ``h`` (one sample):
    ``||delta h^T||^2 = ||delta||^2 ||h||^2`` for one row of features, and
    ``||sum_r delta_r h_r^T||^2`` when the layer is applied to several rows."""
    k, n_out, n_in = delta.shape[0], delta.shape[-1], h.shape[-1]
    rows = h.numel() // n_in
    if rows == 1:
        d_sq = delta.reshape(k, -1).pow(2).sum(dim=1)
        parts = [d_sq * h.pow(2).sum()]
        if has_bias:
            parts.append(d_sq)
        return parts
    d = delta.reshape(k, rows, n_out)
    g = torch.einsum("kro,rd->kod", d, h.reshape(rows, n_in))
    parts = [g.pow(2).sum(dim=(1, 2))]
    if has_bias:
        parts.append(d.sum(dim=1).pow(2).sum(dim=1))
    return parts


def _chunk_step(chunk_size, n_cotangents, n_materialised):
    """Samples per ``vmap`` call: ``chunk_size`` per-sample gradients (samples x
    cotangents), or, when ``None``, as many as fit ``CHUNK_BUDGET`` floats of
    materialised gradients, at most ``MAX_AUTO_CHUNK``."""
    if chunk_size is None:
        chunk_size = min(MAX_AUTO_CHUNK, CHUNK_BUDGET // max(1, n_materialised))
    return max(1, int(chunk_size) // n_cotangents)


def _engine(module, x, cotangent, cot_args, chunk_size, parameters, reduce,
            closed_form=False):
    """Yield ``(start, reduce(per-sample grads) [+ closed-form linear sqnorms], logits)``
    chunk by chunk (see :func:`per_sample_gradients` and :func:`per_sample_grad_norms`).
    """
    if not isinstance(x, torch.Tensor):
        raise SkalValueError("x must be a torch.Tensor batch (convert it with "
                             "skal.utils.validation.to_image_tensor).")
    if chunk_size is not None and (isinstance(chunk_size, bool) or int(chunk_size) < 1):
        raise SkalValueError(
            f"chunk_size must be a positive integer or None; got {chunk_size!r}.")
    cot_args = tuple(torch.as_tensor(arg, device=x.device) for arg in cot_args)
    for arg in cot_args:
        if len(arg) != len(x):
            raise SkalValueError("Every extra cotangent argument needs one row per sample.")
    n = len(x)
    if n == 0:
        return
    with _eval_mode(module):
        params, rest = _split_parameters(module, parameters)
        with _AffineBatchNorm():
            z0, plan = _layer_plan(module, x[:1], params, closed_form)
        # The number of cotangents per sample K sizes the chunks: at most chunk_size
        # per-sample gradients (samples x cotangents) exist at once.
        k = _as_cotangent(cotangent(z0, *(arg[:1] for arg in cot_args))[0],
                          z0.shape[-1]).shape[0]
        closed = {w for w, _, _ in plan.values()} | {b for _, b, _ in plan.values() if b}
        rest = {**rest, **{name: params[name] for name in closed}}
        params = {name: p for name, p in params.items() if name not in closed}
        step = _chunk_step(chunk_size, k, sum(p.numel() for p in params.values()))
        layers = {name: module.get_submodule(name) for name in plan}
        state = {}

        def probe_hook(name):
            # Adds a zero "probe" to the layer's output (its gradient is the layer's
            # output gradient delta) and records the layer's input h.
            def hook(_module, inputs, output):
                state["inputs"][name] = inputs[0]
                return output + state["probes"][name]
            return hook

        def forward(p, probes, xi):
            state["probes"], state["inputs"] = probes, {}
            z = functional_call(module, (p, rest), (xi.unsqueeze(0),)).squeeze(0)
            return z, state.pop("inputs")

        def one_sample(p, xi, *args):
            probes = {name: torch.zeros(shape, dtype=z0.dtype, device=z0.device)
                      for name, (_, _, shape) in plan.items()}
            z, pullback, inputs = vjp(lambda q, r: forward(q, r, xi), p, probes,
                                      has_aux=True)
            a = cotangent(z.detach().unsqueeze(0), *(arg.unsqueeze(0) for arg in args))
            a = _as_cotangent(a.squeeze(0), z.shape[-1]).to(z.dtype)
            if a.shape[0] == 1:
                grads, deltas = pullback(a[0])
                grads = {key: g.unsqueeze(0) for key, g in grads.items()}
                deltas = {key: d.unsqueeze(0) for key, d in deltas.items()}
            else:
                grads, deltas = vmap(pullback)(a)
            out = reduce(grads)
            if plan:
                parts = [out] if out is not None else []
                for name, (_, bias, _) in plan.items():
                    parts += [s.unsqueeze(1) for s in _closed_form_sqnorms(
                        layers[name], deltas[name], inputs[name], bias is not None)]
                out = torch.cat(parts, dim=1)
            return out, z

        batched = vmap(one_sample, in_dims=(None, 0) + (0,) * len(cot_args))
        # prepend: the probe is added to the layer's own output, before any user hook
        handles = [module.get_submodule(name).register_forward_hook(
                       this_thread_only(probe_hook(name)), prepend=True)
                   for name in plan]
        try:
            for start in range(0, n, step):
                stop = min(n, start + step)
                with _AffineBatchNorm():
                    reduced, z = batched(params, x[start:stop],
                                         *(arg[start:stop] for arg in cot_args))
                yield start, reduced, z
        except RuntimeError as exc:
            if "vmap" in str(exc) or "functorch" in str(exc):
                raise SkalValueError(
                    f"Per-sample gradients of {type(module).__name__} failed under "
                    f"torch.func.vmap: {exc}. The module's forward must be functional "
                    "(no .item(), no in-place writes to buffers, no data-dependent Python "
                    "control flow); or use the closed-form final-layer scope "
                    "(scope='last')."
                ) from exc
            raise
        finally:
            for handle in handles:
                handle.remove()


def per_sample_gradients(module, x, cotangent, *cot_args, chunk_size=DEFAULT_CHUNK_SIZE,
                         parameters=None):
    """Stream per-sample gradients ``J(x_i)^T a_ik`` of the whole network, by chunks.

    Parameters
    ----------
    module : torch.nn.Module
        The network; run in eval mode (BatchNorm with its running statistics, no dropout).
    x : torch.Tensor of shape (n, ...)
        One batch of inputs, already converted as the model expects and on its device.
    cotangent : callable
        ``cotangent(z, *args) -> (1, K, C)`` or ``(1, C)``: the loss gradient(s)
        ``dL/dz`` of one sample from its logits ``z`` of shape ``(1, C)`` (and its rows
        of ``cot_args``), e.g. ``lambda z: logit_gradient(z, loss="entropy")``. It is
        called inside ``torch.func.vmap``, so it must use torch operations only.
    *cot_args : tensors with one row per sample
        Extra per-sample inputs of ``cotangent`` (e.g. labels).
    chunk_size : int or None
        Most per-sample gradients (samples x cotangents) held at once. ``None`` (default)
        fits ``CHUNK_BUDGET`` (2^24) floats of gradients, at most 256 per call.
    parameters : list of str or None
        Names of the parameters to differentiate; default: every parameter with
        ``requires_grad``.

    Yields
    ------
    start : int
        Index of the chunk's first sample in ``x``.
    grads : dict of str to torch.Tensor of shape (m, K, *param.shape)
        Per-sample, per-cotangent gradients of the chunk's ``m`` samples.
    z : torch.Tensor of shape (m, C)
        Their logits.
    """
    yield from _engine(module, x, cotangent, cot_args, chunk_size, parameters,
                       reduce=lambda grads: grads)


def _tensor_sqnorms(grads):
    if not grads:
        return None
    return torch.stack([g.flatten(1).pow(2).sum(dim=1) for g in grads.values()], dim=1)


def per_sample_grad_norms(module, x, cotangent, *cot_args, norm="reference",
                          chunk_size=DEFAULT_CHUNK_SIZE, parameters=None,
                          closed_form=True):
    """Norms of the whole-network per-sample gradients ``J(x_i)^T a_ik``.

    Same arguments as :func:`per_sample_gradients`; the gradients of a chunk are reduced
    to per-tensor squared norms inside ``vmap`` and dropped, so memory stays bounded by
    ``chunk_size`` per-sample gradients.

    Parameters
    ----------
    norm : {"reference", "l2"}
        Sum of per-tensor Frobenius norms (Wang et al.'s code) or the global L2 norm.
    closed_form : bool, default=True
        For each ``nn.Linear`` layer called once per forward pass, take the norms of its
        per-sample gradient ``delta h^T`` from ``||delta|| ||h||`` (``delta`` = the
        layer's output gradient, read through a zero "probe" added to its output inside
        the same ``vjp``; ``h`` = its input) instead of materialising the ``out x in``
        matrix per sample. Exact; it removes most of the memory traffic of networks
        whose parameters sit in dense layers. ``False`` materialises every gradient.

    Returns
    -------
    norms : torch.Tensor of shape (n, K), float64
    z : torch.Tensor of shape (n, C)
        The logits of every sample (from the same forward passes).
    """
    _check_norm(norm)
    norms, logits = [], []
    for _, sq, z in _engine(module, x, cotangent, cot_args, chunk_size, parameters,
                            reduce=_tensor_sqnorms, closed_form=closed_form):
        norms.append(combine_norms(sq, norm=norm))
        logits.append(z)
    return torch.cat(norms), torch.cat(logits)
