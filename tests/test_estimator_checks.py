"""scikit-learn's own estimator checks on skal's estimators.

The battery runs with small training settings (``CHECK``); that the default settings
are valid is checked once, below (``test_default_settings_are_valid``). The few checks
that cannot apply are declared, with their reasons, by
:func:`skal.utils.estimator_checks.expected_failed_checks` (marked xfail here).
"""

import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.utils.estimator_checks import (check_get_params_invariance,
                                            check_parameters_default_constructible,
                                            check_set_params, parametrize_with_checks)

from conftest import TINY
from skal import (ActiveLearningClassifier, CNNClassifier, MultiLabelCNNClassifier,
                  SkalTypeError, SkalValueError)
from skal.preprocessing import ImageScaler, ImageStandardizer
from skal.utils.estimator_checks import expected_failed_checks

# A small net, a few epochs and at least CHECK_STEPS optimizer steps at a higher learning
# rate: enough for the checks' accuracy floors (check_classifiers_train asks > 0.83) at
# a fraction of the defaults' 30 epochs / 200 steps per fit.
CHECK = dict(module__widths=(8,), module__hidden=16, max_epochs=3, min_steps=50, lr=5e-3)


@parametrize_with_checks(
    [CNNClassifier(**CHECK), MultiLabelCNNClassifier(**CHECK),
     ActiveLearningClassifier(CNNClassifier(**CHECK)),
     ActiveLearningClassifier(MultiLabelCNNClassifier(**CHECK)),
     ImageScaler(), ImageStandardizer()],
    expected_failed_checks=expected_failed_checks,
)
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        # budgets given as fractions are clipped, with a warning, on the checks'
        # tiny data sets; skorch warns about set_params fuzzing
        warnings.simplefilter("ignore", UserWarning)
        check(estimator)


# each estimator's defaults once (the meta-estimator around a multi-label net adds no
# default of its own: it runs the battery above)
DEFAULTS = [CNNClassifier(), MultiLabelCNNClassifier(), ActiveLearningClassifier()]


@pytest.mark.parametrize("estimator", DEFAULTS, ids=lambda e: type(e).__name__)
def test_default_settings_are_valid(estimator):
    """The defaults (30 epochs, 200 steps, augmentation) construct, clone, round-trip
    their parameters and fit: once, on a small tabular set."""
    name = type(estimator).__name__
    check_parameters_default_constructible(name, estimator)
    check_get_params_invariance(name, estimator)
    check_set_params(name, estimator)
    assert clone(estimator).get_params().keys() == estimator.get_params().keys()
    X, y = _tabular(n=30)
    if isinstance(estimator, MultiLabelCNNClassifier):
        y = np.stack([y, 1 - y], axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)    # fractions clipped on 30 rows
        fitted = clone(estimator).fit(X, y)
    assert fitted.predict(X).shape == np.shape(y)


@pytest.mark.parametrize("estimator", [CNNClassifier(), MultiLabelCNNClassifier(),
                                       ActiveLearningClassifier(),
                                       ActiveLearningClassifier(MultiLabelCNNClassifier())])
def test_expected_failures_are_few_and_explained(estimator):
    failed = expected_failed_checks(estimator)
    assert len(failed) <= 2
    assert all(isinstance(reason, str) and len(reason) > 40 for reason in failed.values())


def test_multilabel_net_has_the_single_label_nets_expected_failures():
    # one-vs-rest on 1-d targets: no check is expected to fail for being multi-label
    assert expected_failed_checks(MultiLabelCNNClassifier()) == expected_failed_checks(
        CNNClassifier())
    assert expected_failed_checks(ActiveLearningClassifier(MultiLabelCNNClassifier())) == (
        expected_failed_checks(ActiveLearningClassifier()))


def test_expected_failures_of_foreign_estimators_are_empty():
    from sklearn.linear_model import LogisticRegression
    assert expected_failed_checks(LogisticRegression()) == {}
    assert expected_failed_checks(ImageScaler()) == {}
    assert expected_failed_checks(ActiveLearningClassifier(LogisticRegression())) == {}


# ------------------------------------------- what the checks required of the nets
SEEDED = dict(TINY, random_state=0)


def _tabular(n=40, d=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    return X, (X[:, 0] > 0).astype(int)


def test_tabular_rows_are_one_row_images():
    X, y = _tabular()
    net = CNNClassifier(**SEEDED).fit(X, y)
    assert net.n_features_in_ == 5 and net.n_channels_in_ == 1
    assert net.predict(X).shape == (40,)
    assert net.embed(X).shape == (40, 16)
    with pytest.raises(SkalValueError, match="X has 4 features, but CNNClassifier is expecting 5"):
        net.predict(X[:, :4])
    with pytest.raises(SkalValueError, match="fitted on tabular data"):
        net.predict(X.reshape(40, 1, 1, 5))
    images = np.random.default_rng(0).random((40, 1, 8, 8), dtype=np.float32)
    net.fit(images, y)                                  # refit on images: kind changes
    assert not hasattr(net, "n_features_in_")
    with pytest.raises(SkalValueError, match="2 dimensions.*batch axis"):
        net.predict(images[0, 0])                       # one (8, 8) image without batch axis


def test_decision_function_and_proba_follow_sklearn():
    X, y = _tabular()
    net = CNNClassifier(**SEEDED).fit(X, y)
    decision = net.decision_function(X)
    assert decision.shape == (40,) and decision.dtype == np.float64
    np.testing.assert_array_equal(net.classes_[(decision > 0).astype(int)], net.predict(X))
    proba = net.predict_proba(X)
    assert proba.dtype == np.float64
    np.testing.assert_allclose(proba[:, 1], 1 / (1 + np.exp(-decision)), rtol=1e-9)
    three = CNNClassifier(**SEEDED).fit(X, np.arange(40) % 3)
    assert three.decision_function(X).shape == (40, 3)
    Y = np.stack([y, 1 - y], axis=1)
    assert MultiLabelCNNClassifier(**SEEDED).fit(X, Y).decision_function(X).shape == (40, 2)


def test_single_sample_batches_and_sets():
    X, y = _tabular(n=33)                              # 33 = 2 x 16 + 1: last batch dropped
    CNNClassifier(**SEEDED).fit(X, y)
    with pytest.raises(SkalValueError, match="n_samples=1"):      # one 1x1 value
        CNNClassifier(**SEEDED, classes=[0, 1]).fit(X[:1, :1], y[:1])
    images = np.random.default_rng(0).random((1, 1, 8, 8), dtype=np.float32)
    CNNClassifier(**SEEDED, classes=[0, 1]).fit(images, [1])     # 8x8: BatchNorm copes


def test_targets_and_inputs_sklearn_style():
    from scipy import sparse
    from sklearn.exceptions import DataConversionWarning

    X, y = _tabular()
    net = CNNClassifier(**SEEDED)
    with pytest.raises(SkalValueError, match="requires y to be passed"):
        net.fit(X, None)
    with pytest.raises(SkalValueError, match="Unknown label type: continuous"):
        net.fit(X, X[:, 0])
    with pytest.warns(DataConversionWarning, match="column-vector y"):
        net.fit(X, y[:, None])
    with pytest.raises(SkalTypeError, match="sparse input is not supported"):
        net.fit(sparse.csr_matrix(X), y)
    with pytest.raises(SkalValueError, match="Complex data not supported"):
        net.fit(X + 1j, y)
    with pytest.raises(SkalTypeError, match="sample_weight"):
        net.fit(X, y, sample_weight=np.ones(40))
    net.fit(X.astype(object), y)                        # numeric object arrays convert
    with pytest.raises(SkalValueError, match="must contain only 0 and 1"):
        MultiLabelCNNClassifier(**SEEDED).fit(X, np.stack([y, 2 * y], axis=1))
