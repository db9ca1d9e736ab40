"""skal.nets.VAE: fitting, transform / inverse_transform / sample, seeding, the
scikit-learn contract and bad input."""

import copy

import numpy as np
import pytest
import torch
from sklearn.base import clone

from skal.data import load_digits_images
from skal.exceptions import NotFittedError, SkalError, SkalValueError
from skal.nets import VAE, ConvVAE


def small_vae(**kwargs):
    params = dict(latent_dim=8, max_epochs=25, batch_size=32, random_state=0,
                  module__widths=(16, 32))
    params.update(kwargs)
    return VAE(**params)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits_images()
    return X[:300], X[300:400]


@pytest.fixture(scope="module")
def fitted(digits):
    return small_vae().fit(digits[0])


def test_reconstructs_better_than_mean_image(digits, fitted):
    X_train, X_test = digits
    recon = fitted.inverse_transform(fitted.transform(X_test))
    mse = float(((recon - X_test) ** 2).mean())
    baseline = float(((X_train.mean(axis=0) - X_test) ** 2).mean())
    assert mse < 0.85 * baseline
    # training lowered the negative ELBO, and score reports the ELBO (higher = better)
    losses = fitted.history_[:, "train_loss"]
    assert losses[-1] < losses[0]
    assert np.isfinite(fitted.score(X_test)) and fitted.score(X_test) < 0


def test_shapes_dtypes_and_range(digits, fitted):
    Z = fitted.transform(digits[1])
    assert Z.shape == (100, 8) and Z.dtype == np.float32
    mu, logvar = fitted.transform(digits[1][:5], return_logvar=True)
    # 5 images and 100 images go through the encoder in different batches, whose
    # float32 kernels may sum in another order: equal up to float32 rounding, which
    # still catches a transform that mixes up rows or returns logvar for mu
    np.testing.assert_allclose(mu, Z[:5], rtol=1e-5, atol=1e-6)
    assert logvar.shape == (5, 8)
    X = fitted.inverse_transform(Z)
    assert X.shape == (100, 1, 8, 8) and X.dtype == np.float32
    assert X.min() >= 0.0 and X.max() <= 1.0
    samples = fitted.sample(6)
    assert samples.shape == (6, 1, 8, 8) and samples.min() >= 0 and samples.max() <= 1


def test_transform_streams_in_batches(digits, fitted):
    whole = fitted.transform(digits[1])
    batched = copy.deepcopy(fitted)
    batched.predict_batch_size = 7
    np.testing.assert_allclose(batched.transform(digits[1]), whole, atol=1e-5)


def test_decode_is_differentiable(fitted):
    z = torch.zeros(3, 8, requires_grad=True)
    fitted.module_.eval()
    fitted.decode(z).sum().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_uint8_scaled_like_the_classifiers(digits, fitted):
    X_u8 = np.rint(digits[1][:20] * 255).astype(np.uint8)
    np.testing.assert_allclose(fitted.transform(X_u8),
                               fitted.transform(X_u8.astype(np.float32) / 255), atol=1e-6)
    # (n, H, W) works too
    np.testing.assert_allclose(fitted.transform(digits[1][:20, 0]),
                               fitted.transform(digits[1][:20]), atol=1e-6)


def test_same_random_state_same_model(digits, fitted):
    again = small_vae().fit(digits[0])
    np.testing.assert_array_equal(again.transform(digits[1]), fitted.transform(digits[1]))
    np.testing.assert_array_equal(fitted.sample(4), fitted.sample(4))
    assert not np.array_equal(fitted.sample(4, random_state=1), fitted.sample(4))
    other = small_vae(random_state=1, max_epochs=2).fit(digits[0])
    assert not np.allclose(other.transform(digits[1]), fitted.transform(digits[1]))


def test_clone_and_get_params(fitted):
    params = fitted.get_params()
    assert params["latent_dim"] == 8 and params["beta"] == 1.0
    assert params["reconstruction"] == "bce" and params["module__widths"] == (16, 32)
    fresh = clone(fitted)
    assert not hasattr(fresh, "module_")
    assert fresh.get_params()["random_state"] == 0
    with pytest.raises(NotFittedError):
        fresh.transform(np.zeros((2, 1, 8, 8), np.float32))
    fresh.set_params(latent_dim=3, beta=0.5)
    assert fresh.latent_dim == 3 and fresh.beta == 0.5


@pytest.mark.parametrize("shape", [(1, 13, 17), (3, 28, 28), (1, 33, 64)])
def test_any_image_size(shape):
    rng = np.random.default_rng(0)
    X = rng.random((12,) + shape, dtype=np.float32)
    vae = VAE(latent_dim=4, max_epochs=1, random_state=0, module__widths=(8, 8)).fit(X)
    assert vae.inverse_transform(vae.transform(X)).shape == X.shape
    assert isinstance(vae.module_, ConvVAE)


def test_one_image_last_batch_and_default_widths(digits):
    # default widths on 8 x 8 images leave a 1 x 1 map, where BatchNorm cannot train on
    # a single image: the one-image last batch (65 = 64 + 1) is dropped
    vae = VAE(max_epochs=1, random_state=0).fit(digits[0][:65])
    assert vae.module_.bottom_shape == (1, 1)
    assert "_params_to_validate" not in vae.get_params()


def test_mse_reconstruction_and_beta(digits):
    vae = small_vae(reconstruction="mse", beta=0.1, max_epochs=2).fit(digits[0][:64])
    assert np.isfinite(vae.history_[-1, "train_loss"])
    assert vae.criterion_.reconstruction == "mse" and vae.criterion_.beta == 0.1


# ---------------------------------------------------------------- bad input
def test_unfitted_errors():
    vae = small_vae()
    X = np.zeros((2, 1, 8, 8), np.float32)
    for call in (lambda: vae.transform(X), lambda: vae.inverse_transform(np.zeros((2, 8))),
                 lambda: vae.sample(2), lambda: vae.score(X)):
        with pytest.raises(NotFittedError, match="not fitted"):
            call()


@pytest.mark.parametrize("X, match", [
    (np.zeros((5, 64), np.float32), "dimensions"),
    (np.full((5, 1, 8, 8), 2.0, np.float32), r"\[0, 1\]"),
    (np.full((5, 1, 8, 8), np.nan, np.float32), "NaN"),
    (np.zeros((0, 1, 8, 8), np.float32), "empty"),
    (np.zeros((1, 1, 8, 8), np.float32), "at least 2"),
])
def test_fit_rejects_bad_images(X, match):
    with pytest.raises(SkalValueError, match=match):
        small_vae(max_epochs=1).fit(X)


@pytest.mark.parametrize("params, match", [
    ({"reconstruction": "l1"}, "reconstruction"),
    ({"latent_dim": 0}, "latent_dim"),
    ({"beta": -1.0}, "beta"),
])
def test_fit_rejects_bad_params(digits, params, match):
    with pytest.raises(SkalValueError, match=match):
        small_vae(max_epochs=1, **params).fit(digits[0][:10])


def test_inference_rejects_wrong_shapes(fitted):
    with pytest.raises(SkalValueError, match="fitted on"):
        fitted.transform(np.zeros((2, 1, 10, 10), np.float32))
    with pytest.raises(SkalValueError, match="fitted on"):
        fitted.transform(np.zeros((2, 3, 8, 8), np.float32))
    with pytest.raises(SkalValueError, match=r"\(n, 8\)"):
        fitted.inverse_transform(np.zeros((2, 5), np.float32))
    with pytest.raises(SkalValueError, match="NaN"):
        fitted.inverse_transform(np.full((2, 8), np.inf))
    with pytest.raises(SkalError):
        fitted.inverse_transform("not latents")
    with pytest.raises(SkalValueError, match="n_samples"):
        fitted.sample(0)
