"""skorch's habits on skal's classifiers: keeping a model with save_params /
load_params (safetensors), and callbacks that need a validation split."""

import numpy as np
import pytest
from skorch.callbacks import EarlyStopping
from skorch.dataset import ValidSplit

from conftest import TINY
from skal import CNNClassifier, MultiLabelCNNClassifier, NotFittedError, SkalValueError
from skal.data import load_digits_images

SEEDED = dict(TINY, random_state=0)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits_images()
    return X[:90], y[:90] % 3


@pytest.mark.parametrize("cls,target", [
    (CNNClassifier, "classes"),
    (MultiLabelCNNClassifier, "multi-hot"),
    (MultiLabelCNNClassifier, "classes"),        # one-vs-rest on 1-d labels
])
def test_save_then_initialize_and_load_gives_the_same_model(digits, tmp_path, cls, target):
    X, y = digits
    y = np.array(["a", "b", "c"])[y] if target == "classes" else np.c_[y == 0, y == 1] * 1
    net = cls(**SEEDED).fit(X[:60], y[:60])
    path = tmp_path / "model.safetensors"
    net.save_params(f_params=path, use_safetensors=True)
    loaded = cls(**SEEDED)
    loaded.initialize()                               # skorch's recipe
    loaded.load_params(f_params=path, use_safetensors=True)
    pool = X[60:]
    np.testing.assert_array_equal(loaded.predict(pool), net.predict(pool))
    # the same weights and the same float64 softmax/sigmoid: equal up to rounding only
    np.testing.assert_allclose(loaded.predict_proba(pool), net.predict_proba(pool),
                               rtol=0, atol=1e-12)
    np.testing.assert_array_equal(loaded.classes_, net.classes_)
    np.testing.assert_allclose(loaded.embed(pool), net.embed(pool), rtol=0, atol=1e-6)


def test_loading_into_another_kind_of_net_is_an_error(digits, tmp_path):
    X, y = digits
    path = tmp_path / "model.safetensors"
    CNNClassifier(**SEEDED).fit(X[:40], y[:40]).save_params(f_params=path, use_safetensors=True)
    with pytest.raises(SkalValueError, match="CNNClassifier"):
        MultiLabelCNNClassifier(**SEEDED).load_params(f_params=path, use_safetensors=True)


def test_saving_an_unfitted_net_is_an_error(tmp_path):
    with pytest.raises(NotFittedError):
        CNNClassifier(**SEEDED).save_params(f_params=tmp_path / "m.safetensors",
                                          use_safetensors=True)


def test_validation_callback_without_split_is_a_clear_error(digits):
    X, y = digits
    with pytest.raises(SkalValueError, match="train_split=skorch.dataset.ValidSplit"):
        CNNClassifier(**SEEDED, callbacks=[EarlyStopping()]).fit(X[:40], y[:40])


def test_validation_split_makes_early_stopping_work(digits):
    X, y = digits
    net = CNNClassifier(**{**SEEDED, "max_epochs": 3}, callbacks=[EarlyStopping(patience=2)],
                        train_split=ValidSplit(0.25)).fit(X[:60], y[:60])
    assert all(np.isfinite(row["valid_loss"]) for row in net.history)


def test_early_stopping_ends_training_normally(digits):
    # skorch's EarlyStopping ends training by raising KeyboardInterrupt; skal must read
    # that as a normal end of training (not as Ctrl-C, which it propagates)
    X, y = digits
    stopper = EarlyStopping(monitor="train_loss", patience=1, threshold=1e9,
                            threshold_mode="abs", lower_is_better=True)
    net = CNNClassifier(**{**SEEDED, "max_epochs": 8, "min_steps": 0},
                        callbacks=[stopper]).fit(X[:40], y[:40])
    assert len(net.history) < 8
    assert net.predict(X[:5]).shape == (5,)
