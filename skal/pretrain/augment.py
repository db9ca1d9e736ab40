"""Batched random image augmentation for self-supervised pre-training (SimCLR views).

Every op works on a whole ``(B, C, H, W)`` batch at once, with its own random
parameters per sample, and draws all its randomness from one ``torch.Generator``, so a
seeded generator gives the same views on every run. Geometry goes through a single
``affine_grid`` / ``grid_sample`` per batch (random resized crop, small rotation,
optional horizontal flip); intensity jitter, colour jitter (RGB only), Gaussian noise
and Gaussian blur follow. No torchvision.

References
----------
Chen, Kornblith, Norouzi, Hinton, "A Simple Framework for Contrastive Learning of
Visual Representations", ICML 2020 (the augmentation family; Appendix A).
"""

import math
import numbers

import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator

from ..exceptions import SkalTypeError, SkalValueError

__all__ = ["ImageAugmenter"]

# ITU-R 601 luma weights: the grey value of an RGB pixel
_LUMA = (0.299, 0.587, 0.114)


def _uniform(n, low, high, generator):
    """``n`` draws of U(low, high) on the CPU (so a CPU generator serves any device)."""
    return low + (high - low) * torch.rand(n, generator=generator)


def _check_range(name, value, low, high=math.inf):
    if (not isinstance(value, numbers.Real) or isinstance(value, bool)
            or not math.isfinite(float(value)) or not low <= value <= high):
        raise SkalValueError(f"{name}={value!r} must be a number in [{low}, {high}].")


def _check_interval(name, value, low, high):
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise SkalValueError(f"{name}={value!r} must be a pair (min, max).") from None
    if not (low <= a <= b <= high):
        raise SkalValueError(
            f"{name}={value!r} must satisfy {low} <= min <= max <= {high}.")
    return a, b


class ImageAugmenter(BaseEstimator):
    """Random views of a batch of images, each sample with its own transform.

    Parameters
    ----------
    crop_scale : (float, float), default=(0.5, 1.0)
        Area of the random crop as a fraction of the image (then resized back to the
        full size): SimCLR's random resized crop.
    crop_ratio : (float, float), default=(3/4, 4/3)
        Aspect ratio range of the crop.
    max_rotation : float, default=10.0
        Rotation of up to +-``max_rotation`` degrees.
    hflip : bool, default=False
        Random horizontal flips (off by default: flips change laterality on chest
        X-rays).
    brightness, contrast : float, default=0.4
        Multiplicative brightness factor in ``[1 - brightness, 1 + brightness]`` and
        contrast factor (around each image's mean) in ``[1 - contrast, 1 + contrast]``.
    saturation : float, default=0.4
        Colour saturation jitter, applied to 3-channel images only.
    jitter_prob : float, default=0.8
        Probability that a sample gets intensity / colour jitter.
    grayscale_prob : float, default=0.2
        Probability that a 3-channel sample is turned grey (SimCLR's random grayscale).
    noise_std : float, default=0.03
        Gaussian noise of standard deviation drawn in ``[0, noise_std]`` per sample
        (in model-input units; uint8 images scaled by 1/255 live in [0, 1]).
    blur_prob : float, default=0.5
        Probability of a Gaussian blur.
    blur_sigma : (float, float), default=(0.1, 1.0)
        Blur standard deviation range, in pixels.

    Notes
    -----
    ``__call__(x, generator=None)`` takes a float ``(B, C, H, W)`` tensor in model-input
    scale and returns a tensor of the same shape, dtype and device. Parameters are
    validated at call time, as scikit-learn estimators do in ``fit``.
    """

    def __init__(self, crop_scale=(0.5, 1.0), crop_ratio=(3 / 4, 4 / 3), max_rotation=10.0,
                 hflip=False, brightness=0.4, contrast=0.4, saturation=0.4, jitter_prob=0.8,
                 grayscale_prob=0.2, noise_std=0.03, blur_prob=0.5, blur_sigma=(0.1, 1.0)):
        self.crop_scale = crop_scale
        self.crop_ratio = crop_ratio
        self.max_rotation = max_rotation
        self.hflip = hflip
        self.brightness = brightness
        self.contrast = contrast
        self.saturation = saturation
        self.jitter_prob = jitter_prob
        self.grayscale_prob = grayscale_prob
        self.noise_std = noise_std
        self.blur_prob = blur_prob
        self.blur_sigma = blur_sigma

    # -------------------------------------------------------------- validation
    def _validated(self):
        scale = _check_interval("crop_scale", self.crop_scale, 1e-3, 1.0)
        ratio = _check_interval("crop_ratio", self.crop_ratio, 1e-2, 1e2)
        sigma = _check_interval("blur_sigma", self.blur_sigma, 0.0, 10.0)
        _check_range("max_rotation", self.max_rotation, 0.0, 180.0)
        for name in ("brightness", "contrast", "saturation"):
            _check_range(name, getattr(self, name), 0.0, 1.0)
        for name in ("jitter_prob", "grayscale_prob", "blur_prob"):
            _check_range(name, getattr(self, name), 0.0, 1.0)
        _check_range("noise_std", self.noise_std, 0.0)
        if not isinstance(self.hflip, (bool,)):
            raise SkalTypeError(f"hflip={self.hflip!r} must be True or False.")
        return scale, ratio, sigma

    @staticmethod
    def _check_input(x, generator):
        if not isinstance(x, torch.Tensor):
            raise SkalTypeError(
                f"ImageAugmenter expects a torch.Tensor (B, C, H, W); got {type(x).__name__}."
                " Convert images with skal.utils.validation.to_image_tensor first.")
        if x.ndim != 4 or not x.is_floating_point():
            raise SkalValueError(
                f"ImageAugmenter expects a float tensor (B, C, H, W); got dtype {x.dtype} "
                f"and shape {tuple(x.shape)}.")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise SkalTypeError(
                f"generator must be a torch.Generator or None; got {type(generator).__name__}.")
        if generator is not None and generator.device.type != "cpu":
            raise SkalValueError("generator must be a CPU torch.Generator (random parameters "
                                 "are drawn on the CPU, then moved to the images' device).")

    # ---------------------------------------------------------------- the ops
    def _geometry(self, x, scale, ratio, generator):
        """Random resized crop + rotation (+ flip) in one ``grid_sample``."""
        n = x.shape[0]
        area = _uniform(n, scale[0], scale[1], generator)
        log_ratio = _uniform(n, math.log(ratio[0]), math.log(ratio[1]), generator)
        aspect = torch.exp(log_ratio)
        # crop width / height as fractions of the image side (the grid spans [-1, 1])
        w = torch.sqrt(area * aspect).clamp(max=1.0)
        h = torch.sqrt(area / aspect).clamp(max=1.0)
        cx = _uniform(n, -1.0, 1.0, generator) * (1.0 - w)
        cy = _uniform(n, -1.0, 1.0, generator) * (1.0 - h)
        angle = _uniform(n, -1.0, 1.0, generator) * math.radians(float(self.max_rotation))
        flip = torch.rand(n, generator=generator) < 0.5
        if self.hflip:
            w = torch.where(flip, -w, w)
        cos, sin = torch.cos(angle), torch.sin(angle)
        # input coordinate = R(angle) @ diag(w, h) @ output coordinate + centre
        theta = torch.stack([torch.stack([w * cos, -h * sin, cx], dim=1),
                             torch.stack([w * sin, h * cos, cy], dim=1)], dim=1)
        theta = theta.to(device=x.device, dtype=x.dtype)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection",
                             align_corners=False)

    def _intensity(self, x, generator):
        """Brightness / contrast (and saturation, greyscale on RGB) jitter."""
        n, c = x.shape[:2]
        shape = (n, 1, 1, 1)
        apply = (torch.rand(n, generator=generator) < self.jitter_prob).to(x.dtype)
        b = 1 + _uniform(n, -self.brightness, self.brightness, generator) * apply
        k = 1 + _uniform(n, -self.contrast, self.contrast, generator) * apply
        s = 1 + _uniform(n, -self.saturation, self.saturation, generator) * apply
        grey_draw = torch.rand(n, generator=generator) < self.grayscale_prob
        to = dict(device=x.device, dtype=x.dtype)
        x = x * b.to(**to).view(shape)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * k.to(**to).view(shape) + mean
        if c == 3:
            luma = torch.tensor(_LUMA, **to).view(1, 3, 1, 1)
            grey = (x * luma).sum(dim=1, keepdim=True)
            s = torch.where(grey_draw, torch.zeros_like(s), s)
            x = grey + (x - grey) * s.to(**to).view(shape)
        return x

    def _noise(self, x, generator):
        n = x.shape[0]
        std = _uniform(n, 0.0, float(self.noise_std), generator).view(n, 1, 1, 1)
        noise = torch.randn(x.shape, generator=generator)
        return x + (noise * std).to(device=x.device, dtype=x.dtype)

    def _blur(self, x, sigma_range, generator):
        """Separable Gaussian blur, one sigma per sample (identity where not blurred)."""
        n, c, height, width = x.shape
        apply = torch.rand(n, generator=generator) < self.blur_prob
        sigma = _uniform(n, sigma_range[0], sigma_range[1], generator)
        radius = max(1, math.ceil(2 * sigma_range[1]))
        radius = min(radius, (min(height, width) - 1) // 2)
        if radius < 1 or not bool(apply.any()):
            return x
        offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
        kernel = torch.exp(-offsets[None] ** 2 / (2 * sigma.clamp(min=1e-3)[:, None] ** 2))
        kernel = kernel / kernel.sum(dim=1, keepdim=True)
        identity = (offsets == 0).to(torch.float32).expand(n, -1)
        kernel = torch.where(apply[:, None], kernel, identity)
        kernel = kernel.to(device=x.device, dtype=x.dtype).repeat_interleave(c, dim=0)
        size = 2 * radius + 1
        flat = x.reshape(1, n * c, height, width)
        flat = F.pad(flat, (radius, radius, 0, 0), mode="reflect")
        flat = F.conv2d(flat, kernel.view(n * c, 1, 1, size), groups=n * c)
        flat = F.pad(flat, (0, 0, radius, radius), mode="reflect")
        flat = F.conv2d(flat, kernel.view(n * c, 1, size, 1), groups=n * c)
        return flat.reshape(n, c, height, width)

    def __call__(self, x, generator=None):
        """Return one random view of each image of ``x`` (same shape, dtype, device).

        Parameters
        ----------
        x : torch.Tensor of shape (B, C, H, W), floating point
            Images in model-input scale.
        generator : torch.Generator or None
            CPU generator all random draws come from; ``None`` uses torch's global one.
        """
        scale, ratio, sigma = self._validated()
        self._check_input(x, generator)
        if x.shape[0] == 0:
            return x.clone()
        memory_format = (torch.channels_last if x.is_contiguous(memory_format=torch.channels_last)
                         and not x.is_contiguous() else torch.contiguous_format)
        out = self._geometry(x, scale, ratio, generator)
        out = self._intensity(out, generator)
        out = self._blur(out, sigma, generator)
        out = self._noise(out, generator)
        return out.contiguous(memory_format=memory_format)
