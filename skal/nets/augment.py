"""Label-preserving training-time augmentation for small labelled sets."""

import torch
import torch.nn.functional as F

__all__ = ["random_shift"]


def random_shift(x, max_shift=0.1, generator=None):
    """Translate each image by a random offset of up to ``max_shift`` of its size
    (border pixels are repeated). Keeps anatomy orientation: no flips or rotations,
    which would not be label-preserving for e.g. chest X-rays (situs). Offsets are
    drawn from ``generator`` (a CPU ``torch.Generator``) when given, else from torch's
    global generator."""
    n = x.shape[0]
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = 1.0
    theta[:, 1, 1] = 1.0
    if generator is None:
        u = torch.rand(n, 2, device=x.device, dtype=x.dtype)
    else:
        u = torch.rand(n, 2, generator=generator, dtype=x.dtype).to(x.device)
    theta[:, :, 2] = (u * 2 - 1) * 2 * max_shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
