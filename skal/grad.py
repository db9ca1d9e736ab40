"""The one per-sample-gradient engine of skal.

Closed-form gradients of the final linear layer
-----------------------------------------------
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

Numerics: ``||p - e_k||^2 = (1 - p_k)^2 + sum_{j != k} p_j^2`` is evaluated in float64
with ``1 - p_k`` taken as ``sum_{j != k} p_j`` (float32 ``1 - p_k`` loses half its digits
on confident samples, as ALGORITHMS.md section 3 warns).
"""

import torch

__all__ = [
    "logit_gradient",
    "last_layer_norm",
]


def _probabilities(z, multilabel):
    z = z.to(torch.float64)
    return torch.sigmoid(z) if multilabel else torch.softmax(z, dim=1)


def logit_gradient(z, target=None, *, loss="ce", multilabel=False):
    """Per-sample ``a = dL/dz`` (float64), shape ``(n, C)``.

    Parameters
    ----------
    z : torch.Tensor of shape (n, C)
        Logits.
    target : torch.Tensor or None
        ``loss="ce"``: class indices ``(n,)`` (softmax) or multi-hot ``(n, C)`` labels
        (multi-label, binary cross-entropy). Ignored for ``loss="entropy"``.
    loss : {"ce", "entropy"}
        Cross-entropy against ``target`` (BCE when ``multilabel``), or the predictive
        entropy of the model itself.
    multilabel : bool
        Sigmoid outputs (one binary problem per label) instead of softmax.
    """
    z64 = z.detach().to(torch.float64)
    p = _probabilities(z64, multilabel)
    if loss == "entropy":
        if multilabel:
            return -p * (1.0 - p) * z64
        log_p = torch.log_softmax(z64, dim=1)
        H = -(p * log_p).sum(dim=1, keepdim=True)
        return -p * (log_p + H)
    if loss != "ce":
        raise ValueError(f"loss must be 'ce' or 'entropy'; got {loss!r}.")
    if target is None:
        raise ValueError("loss='ce' needs a target.")
    if multilabel:
        return p - target.to(torch.float64)
    a = p.clone()
    idx = target.long().view(-1, 1)
    # 1 - p_k as the sum of the other probabilities: exact where p_k is close to 1.
    one_minus_pk = p.sum(dim=1, keepdim=True) - p.gather(1, idx)
    a.scatter_(1, idx, -one_minus_pk)
    return a


def last_layer_norm(a_sqnorm, h_sqnorm, *, norm="reference", bias=True):
    """Norm of the final-layer gradient ``[a h^T, a]`` from ``||a||^2`` and ``||h||^2``.

    ``norm="reference"``: the sum of per-tensor Frobenius norms (Wang et al.'s code),
    ``||a|| ||h|| + ||a||``; ``norm="l2"``: the global norm ``||a|| sqrt(||h||^2 + 1)``.
    ``bias=False`` drops the bias term (a final layer without bias).
    """
    a_norm = torch.sqrt(a_sqnorm)
    b_term = 1.0 if bias else 0.0
    if norm == "reference":
        return a_norm * torch.sqrt(h_sqnorm) + b_term * a_norm
    if norm == "l2":
        return a_norm * torch.sqrt(h_sqnorm + b_term)
    raise ValueError(f"norm must be 'reference' or 'l2'; got {norm!r}.")
