"""Continual fine-tuning policies of ActiveLearner (ACFT, Zhou et al. MedIA 2021):
restart vs continue, all / new / HQ training sets, epochs per round."""

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator, ClassifierMixin

from conftest import TINY
from skal import ActiveLearner, CNNClassifier, SkalValueError

SEEDED = dict(TINY, random_state=0)

CALLS = []      # (method, sample ids) of every training call of Recorder


class Recorder(ClassifierMixin, BaseEstimator):
    """Predicts class 0 for every sample; records which samples reach fit /
    partial_fit (sample id = the first pixel)."""

    def __init__(self, warm_start=False):
        self.warm_start = warm_start

    def _record(self, method, X, y):
        CALLS.append((method, sorted(np.asarray(X).reshape(len(X), -1)[:, 0].astype(int))))
        self.classes_ = np.array([0, 1])
        return self

    def fit(self, X, y):
        return self._record("fit", X, y)

    def partial_fit(self, X, y):
        return self._record("partial_fit", X, y)

    def predict(self, X):
        return np.zeros(len(X), dtype=int)


def ids(n, start=0):
    X = np.zeros((n, 1, 2, 2), dtype=np.float32)
    X[:, 0, 0, 0] = np.arange(start, start + n)
    return X


@pytest.fixture
def labelled():
    CALLS.clear()
    X = ids(6)
    y = np.array([0, 1, 0, 1, 1, 0])          # the model (always 0) gets 1, 3, 4 wrong
    return X, y


@pytest.mark.parametrize("policy, expected", [
    (dict(), ("fit", [0, 1, 2, 3, 4, 5, 6, 7])),                        # default: as before
    (dict(finetune_on="new"), ("fit", [6, 7])),
    (dict(finetune_on="hq"), ("fit", [1, 3, 4, 6, 7])),
    (dict(finetune_from="current"), ("partial_fit", [0, 1, 2, 3, 4, 5, 6, 7])),
    (dict(finetune_from="current", finetune_on="hq"), ("partial_fit", [1, 3, 4, 6, 7])),
])
def test_which_samples_reach_training(labelled, policy, expected):
    X, y = labelled
    learner = ActiveLearner(Recorder(), X_training=X, y_training=y, **policy).fit(X, y)
    learner.teach(ids(2, start=6), np.array([0, 1]))
    assert CALLS[-1] == expected
    assert len(learner.y_training_) == 8                     # every label is kept


def test_only_new_and_warm_start_keep_their_meaning(labelled):
    X, y = labelled
    learner = ActiveLearner(Recorder(), finetune_on="hq").fit(X, y)
    learner.teach(ids(2, start=6), np.array([0, 1]), only_new=True)
    assert CALLS[-1] == ("partial_fit", [6, 7])
    warm = ActiveLearner(Recorder(warm_start=True), finetune_on="hq").fit(X, y)
    warm.teach(ids(2, start=6), np.array([0, 1]))
    assert CALLS[-1] == ("fit", [1, 3, 4, 6, 7])              # continued via warm start


@pytest.fixture(scope="module")
def images():
    rng = np.random.RandomState(0)
    X = rng.rand(40, 1, 12, 12).astype(np.float32)
    y = (X[:, 0, :6].mean(axis=(1, 2)) > X[:, 0, 6:].mean(axis=(1, 2))).astype(int)
    return X, y


def weights(model):
    return torch.cat([p.detach().flatten() for p in model.module_.parameters()])


def test_continue_equals_partial_fit_of_the_current_model(images):
    X, y = images
    learner = ActiveLearner(CNNClassifier(**SEEDED), finetune_from="current",
                            finetune_on="new", finetune_epochs=1).fit(X[:20], y[:20])
    before = learner.estimator_
    expected = CNNClassifier(**SEEDED).fit(X[:20], y[:20])
    expected.partial_fit(X[20:26], y[20:26], epochs=1)
    learner.teach(X[20:26], y[20:26])
    assert torch.equal(weights(learner.estimator_), weights(expected))
    assert len(learner.estimator_.history) == len(before.history) + 1   # one more epoch
    assert not torch.equal(weights(before), weights(learner.estimator_))  # old one intact
    assert torch.equal(weights(before), weights(CNNClassifier(**SEEDED).fit(X[:20], y[:20])))


def test_restart_equals_a_fresh_fit_on_all_labels(images):
    X, y = images
    learner = ActiveLearner(CNNClassifier(**SEEDED), finetune_from="start",
                            finetune_epochs=3).fit(X[:20], y[:20])
    learner.teach(X[20:26], y[20:26])
    fresh = CNNClassifier(**SEEDED).fit(X[:26], y[:26], epochs=3)
    assert torch.equal(weights(learner.estimator_), weights(fresh))
    # restarting and continuing give different models
    cont = ActiveLearner(CNNClassifier(**SEEDED), finetune_from="current",
                         finetune_epochs=3).fit(X[:20], y[:20])
    cont.teach(X[20:26], y[20:26])
    assert not torch.allclose(weights(cont.estimator_), weights(fresh))


@pytest.mark.parametrize("policy, match", [
    (dict(finetune_from="scratch"), "finetune_from"), (dict(finetune_on="LQ"), "finetune_on"),
    (dict(finetune_epochs=0), "finetune_epochs"), (dict(finetune_epochs=2.5), "finetune_epochs")])
def test_bad_policy_is_rejected_and_changes_nothing(images, policy, match):
    X, y = images
    learner = ActiveLearner(CNNClassifier(**SEEDED), **policy).fit(X[:20], y[:20])
    model = learner.estimator_
    with pytest.raises(SkalValueError, match=match):
        learner.teach(X[20:26], y[20:26])
    assert learner.estimator_ is model and len(learner.y_training_) == 20


def test_epochs_need_a_network(labelled):
    X, y = labelled
    learner = ActiveLearner(Recorder(), finetune_epochs=2).fit(X, y)
    with pytest.raises(SkalValueError, match="max_epochs"):
        learner.teach(ids(2, start=6), np.array([0, 1]))


def test_continuing_rejects_unseen_classes(images):
    X, y = images
    learner = ActiveLearner(CNNClassifier(**SEEDED), finetune_from="current").fit(X[:20], y[:20])
    with pytest.raises(SkalValueError, match="never seen"):
        learner.teach(X[20:22], np.array([2, 2]))
    assert len(learner.y_training_) == 20


def test_policy_params_are_sklearn_params():
    from sklearn.base import clone
    learner = ActiveLearner(Recorder(), finetune_from="current", finetune_on="hq",
                            finetune_epochs=None)
    params = clone(learner).get_params(deep=False)
    assert params["finetune_from"] == "current" and params["finetune_on"] == "hq"
