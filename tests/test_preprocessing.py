"""Image preprocessing transformers, and pipelines of them with ActiveLearningClassifier
under GridSearchCV and cross_validate."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, cross_validate
from sklearn.pipeline import Pipeline

from conftest import TINY
from skal import ActiveLearningClassifier, CNNClassifier, SkalTypeError, SkalValueError
from skal.data import load_digits_images
from skal.preprocessing import ImageResizer, ImageScaler, ImageStandardizer



@pytest.fixture(scope="module")
def digits_uint8():
    X, y = load_digits_images()
    return (X[:90] * 255).round().astype(np.uint8), y[:90] % 2


def _images(shape, seed=0):
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


# ----------------------------------------------------------------------- scaler
def test_scaler_uint8_and_minmax():
    X8 = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)
    scaler = ImageScaler().fit(X8)
    assert scaler.method_ == "uint8"
    out = scaler.transform(X8)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, X8 / 255.0, rtol=1e-6)

    X = _images((4, 2, 5, 5)) * 300 - 100                 # e.g. Hounsfield-like range
    scaler = ImageScaler().fit(X)
    assert scaler.method_ == "minmax"
    out = scaler.transform(X)
    assert out.min() == pytest.approx(0) and out.max() == pytest.approx(1)
    # new data beyond the training range: not clipped unless asked
    assert scaler.transform(X * 2).max() > 1
    assert ImageScaler(clip=True).fit(X).transform(X * 2).max() == pytest.approx(1)


def test_scaler_per_image():
    X = np.stack([_images((6, 6), 1) * 10, _images((6, 6), 2) + 5])
    out = ImageScaler(method="minmax", per_image=True).fit(X).transform(X)
    np.testing.assert_allclose(out.reshape(2, -1).min(1), 0, atol=1e-6)
    np.testing.assert_allclose(out.reshape(2, -1).max(1), 1, atol=1e-6)
    flat = ImageScaler(method="minmax", per_image=True).fit_transform(np.ones((2, 3, 3)))
    assert np.isfinite(flat).all()


# ------------------------------------------------------------------ standardizer
def test_standardizer_per_channel_and_per_image():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(5, 2, (20, 1, 4, 4)), rng.normal(-3, 0.5, (20, 1, 4, 4))],
                       axis=1)
    std = ImageStandardizer().fit(X)
    assert std.mean_.shape == (2,) and std.scale_.shape == (2,)
    out = std.transform(X)
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(0, 2, 3)), 1, atol=1e-4)
    per = ImageStandardizer(per_image=True).fit_transform(X)
    np.testing.assert_allclose(per.mean(axis=(2, 3)), 0, atol=1e-5)
    with pytest.raises(SkalValueError, match="channel"):
        std.transform(X[:, :1])


# ----------------------------------------------------------------------- resizer
def test_resizer_shapes_and_dtypes():
    X = (_images((3, 2, 16, 12)) * 255).astype(np.uint8)
    out = ImageResizer((8, 6)).fit_transform(X)
    assert out.shape == (3, 2, 8, 6) and out.dtype == np.uint8
    up = ImageResizer((32, 32)).fit_transform(_images((2, 16, 16)))
    assert up.shape == (2, 32, 32) and up.dtype == np.float32
    same = _images((2, 5, 5))
    np.testing.assert_allclose(ImageResizer((5, 5)).fit_transform(same), same)
    # each image is resized on its own
    single = ImageResizer((8, 6)).fit_transform(X[1:2])
    np.testing.assert_array_equal(single[0], out[1])


def test_resizer_anti_aliasing():
    checker = (np.indices((64, 64)).sum(axis=0) % 2).astype(np.float32)[None]
    smooth = ImageResizer((8, 8), anti_aliasing=True).fit_transform(checker)
    aliased = ImageResizer((8, 8), anti_aliasing=False, order=0).fit_transform(checker)
    assert np.abs(smooth - 0.5).max() < 0.1           # the pattern averages to grey
    assert np.abs(aliased - 0.5).min() > 0.4          # nearest sampling aliases to 0/1


@pytest.mark.parametrize("params", [dict(output_shape=(0, 4)), dict(output_shape=8),
                                    dict(order=7)])
def test_resizer_bad_parameters(params):
    with pytest.raises(SkalValueError):
        ImageResizer(**params).fit(_images((2, 8, 8)))


def test_transformers_reject_bad_input():
    import torch
    from torch.utils.data import TensorDataset
    with pytest.raises(SkalTypeError, match="Dataset"):
        ImageScaler().fit(TensorDataset(torch.zeros(3, 1, 4, 4)))
    with pytest.raises(SkalValueError, match="dimensions"):
        ImageResizer().fit(_images((3, 16)))
    with pytest.raises(SkalValueError, match="NaN"):
        ImageStandardizer().fit(np.full((2, 4, 4), np.nan))
    with pytest.raises(SkalValueError, match="dimensions"):
        ImageScaler().fit(_images((3, 4, 4))).transform(_images((3, 1, 4, 4)))


# --------------------------------------------------------------------- pipelines
def _pipeline(**al):
    return Pipeline([
        ("resize", ImageResizer((12, 12))),
        ("scale", ImageScaler()),
        ("al", ActiveLearningClassifier(CNNClassifier(**TINY), n_initial=10, n_queries=1,
                                        batch_size=10, random_state=0, **al)),
    ])


def test_pipeline_under_grid_search(digits_uint8):
    X, y = digits_uint8
    search = GridSearchCV(_pipeline(), {"al__query_strategy": ["random", "margin"],
                                        "scale__method": ["uint8", "minmax"]}, cv=2)
    search.fit(X, y)
    assert len(search.cv_results_["params"]) == 4
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert search.best_estimator_.predict(X[:3]).shape == (3,)
    assert search.best_estimator_[-1].estimator_.n_channels_in_ == 1


def test_pipeline_under_cross_validate(digits_uint8):
    X, y = digits_uint8
    result = cross_validate(_pipeline(query_strategy="entropy"), X, y, cv=3,
                            scoring=["accuracy", "roc_auc"], return_estimator=True)
    assert np.isfinite(result["test_accuracy"]).all()
    assert np.isfinite(result["test_roc_auc"]).all()      # binary decision_function (n,)
    assert all(len(p[-1].labeled_indices_) == 20 for p in result["estimator"])
    assert clone(_pipeline()).get_params()["al__n_queries"] == 1
