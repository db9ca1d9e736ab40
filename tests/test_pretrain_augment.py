"""ImageAugmenter: shapes, per-sample randomness, determinism, op semantics."""

import math

import numpy as np
import pytest
import torch
from sklearn.base import clone

from skal.exceptions import SkalTypeError, SkalValueError
from skal.pretrain import ImageAugmenter

# Every op off: the identity transform (up to grid_sample's bilinear resampling).
IDENTITY = dict(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), max_rotation=0.0,
                brightness=0.0, contrast=0.0, saturation=0.0, grayscale_prob=0.0,
                noise_std=0.0, blur_prob=0.0)


def _images(n=6, c=1, size=16, seed=0):
    return torch.rand(n, c, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("channels", [1, 3])
def test_shape_dtype_device_kept_and_views_differ(channels):
    x = _images(c=channels)
    out = ImageAugmenter()(x, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    # each sample gets its own transform: identical inputs give different views
    same = x[:1].expand(4, -1, -1, -1).contiguous()
    views = ImageAugmenter()(same, torch.Generator().manual_seed(2))
    for i in range(1, 4):
        assert not torch.allclose(views[0], views[i])


def test_deterministic_given_generator():
    x = _images()
    aug = ImageAugmenter()
    a = aug(x, torch.Generator().manual_seed(7))
    b = clone(aug)(x, torch.Generator().manual_seed(7))
    c = aug(x, torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_identity_settings_return_input():
    x = _images()
    out = ImageAugmenter(**IDENTITY)(x, torch.Generator().manual_seed(0))
    # align_corners=False sampling at pixel centres reproduces the pixels exactly up
    # to float rounding
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)


def test_rotation_conserves_a_centred_square():
    # a small rotation of a centred square keeps its mass (up to bilinear smoothing of
    # its edges) but moves pixels
    x = torch.zeros(1, 1, 15, 15)
    x[..., 5:10, 5:10] = 1.0
    out = ImageAugmenter(**{**IDENTITY, "max_rotation": 45.0})(x, torch.Generator().manual_seed(3))
    # mass is conserved up to bilinear smoothing of the square's edges
    assert abs(out.sum().item() - x.sum().item()) < 0.15 * x.sum().item()
    assert not torch.allclose(out, x)


def test_hflip_reference():
    x = _images(n=64)
    aug = ImageAugmenter(**{**IDENTITY, "hflip": True})
    out = aug(x, torch.Generator().manual_seed(0))
    flipped = torch.flip(x, dims=[3])
    is_flip = [torch.allclose(o, f, atol=1e-5) for o, f in zip(out, flipped)]
    is_same = [torch.allclose(o, s, atol=1e-5) for o, s in zip(out, x)]
    assert all(a or b for a, b in zip(is_flip, is_same))
    assert 10 < sum(is_flip) < 54          # about half flipped
    # default: no flips ever
    out = ImageAugmenter(**IDENTITY)(x, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)


def test_crop_zooms_in():
    # a crop of a quarter of the area, centred or not, shows a region at 2x zoom: a
    # horizontal ramp's range shrinks to about half
    ramp = torch.linspace(0, 1, 32).expand(1, 1, 32, 32).repeat(8, 1, 1, 1)
    out = ImageAugmenter(**{**IDENTITY, "crop_scale": (0.25, 0.25)})(
        ramp, torch.Generator().manual_seed(0))
    ranges = out.amax(dim=(1, 2, 3)) - out.amin(dim=(1, 2, 3))
    torch.testing.assert_close(ranges, torch.full_like(ranges, 0.5), atol=0.05, rtol=0)


def test_contrast_keeps_mean_and_brightness_scales():
    x = _images(n=32)
    out = ImageAugmenter(**{**IDENTITY, "contrast": 0.5, "jitter_prob": 1.0})(
        x, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out.mean(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)),
                               atol=1e-5, rtol=0)
    out = ImageAugmenter(**{**IDENTITY, "brightness": 0.5, "jitter_prob": 1.0})(
        x, torch.Generator().manual_seed(0))
    factor = out.sum(dim=(1, 2, 3)) / x.sum(dim=(1, 2, 3))
    # one factor per image (pixel-wise equality up to float rounding), within [0.5, 1.5]
    torch.testing.assert_close(out, x * factor.view(-1, 1, 1, 1), atol=1e-5, rtol=0)
    assert factor.min() >= 0.5 - 1e-5 and factor.max() <= 1.5 + 1e-5
    assert factor.std() > 0.05


def test_colour_ops_only_on_rgb():
    grey = _images(c=1)
    out = ImageAugmenter(**{**IDENTITY, "saturation": 1.0, "grayscale_prob": 1.0,
                            "jitter_prob": 1.0})(grey, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, grey, atol=1e-5, rtol=0)
    rgb = _images(c=3)
    out = ImageAugmenter(**{**IDENTITY, "grayscale_prob": 1.0})(
        rgb, torch.Generator().manual_seed(0))
    # greyscale: the three channels are equal and equal the luma of the input
    luma = (rgb * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1)
    for ch in range(3):
        torch.testing.assert_close(out[:, ch], luma, atol=1e-5, rtol=0)


def test_blur_matches_reference_gaussian():
    x = _images(n=2, size=12)
    aug = ImageAugmenter(**{**IDENTITY, "blur_prob": 1.0, "blur_sigma": (1.0, 1.0)})
    out = aug(x, torch.Generator().manual_seed(0))
    # slow reference: 2-d Gaussian (sigma 1, radius 2) with reflect padding
    r = 2
    offs = np.arange(-r, r + 1)
    k1 = np.exp(-offs ** 2 / 2.0)
    k1 /= k1.sum()
    padded = np.pad(x.numpy(), ((0, 0), (0, 0), (r, r), (r, r)), mode="reflect")
    ref = np.zeros_like(x.numpy())
    for i in range(12):
        for j in range(12):
            patch = padded[:, :, i:i + 2 * r + 1, j:j + 2 * r + 1]
            ref[:, :, i, j] = (patch * np.outer(k1, k1)).sum(axis=(2, 3))
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-5)


def test_noise_std_bounded():
    x = torch.zeros(16, 1, 32, 32)
    out = ImageAugmenter(**{**IDENTITY, "noise_std": 0.1})(x, torch.Generator().manual_seed(0))
    stds = out.flatten(1).std(dim=1)
    assert stds.max() < 0.1 * 1.2 and stds.min() < stds.max()


def test_channels_last_layout_kept():
    x = _images(c=3).contiguous(memory_format=torch.channels_last)
    out = ImageAugmenter()(x, torch.Generator().manual_seed(0))
    assert out.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("params", [dict(crop_scale=(0.9, 0.5)), dict(max_rotation=-1),
                                    dict(noise_std=math.nan), dict(blur_prob=2.0)])
def test_bad_params_rejected(params):
    with pytest.raises(SkalValueError):
        ImageAugmenter(**params)(_images())


def test_bad_input_rejected():
    with pytest.raises(SkalTypeError):
        ImageAugmenter()(np.zeros((2, 1, 8, 8), np.float32))
    with pytest.raises(SkalValueError):
        ImageAugmenter()(torch.zeros(2, 8, 8))
    with pytest.raises(SkalValueError):
        ImageAugmenter()(torch.zeros(2, 1, 8, 8, dtype=torch.uint8))
