"""Learning-curve metrics and test metrics."""

import numpy as np
import pytest

from skal.metrics import (area_under_learning_curve, evaluate_classifier,
                          label_efficiency_ratio, labels_to_target)


class FixedProba:
    def __init__(self, proba, classes):
        self.proba = np.asarray(proba, dtype=float)
        self.classes_ = np.asarray(classes)

    def predict_proba(self, X):
        return self.proba


def test_aulc_is_normalised_mean_level():
    n = np.array([10, 20, 30])
    assert area_under_learning_curve(n, [0.5, 0.5, 0.5]) == pytest.approx(0.5)
    # trapezoid: (0.5+0.7)/2*10 + (0.7+0.9)/2*10 = 14 over a range of 20
    assert area_under_learning_curve(n, [0.5, 0.7, 0.9]) == pytest.approx(0.7)
    per_seed = area_under_learning_curve(n, np.array([[0.5, 0.7, 0.9], [0.1, 0.1, 0.1]]))
    assert per_seed == pytest.approx([0.7, 0.1])


def test_labels_to_target_requires_staying_above():
    n = np.array([10, 20, 30, 40, 50])
    # a noisy first crossing at 20 does not count: the curve dips at 30
    assert labels_to_target(n, [0.6, 0.9, 0.7, 0.85, 0.9], 0.8) == 40
    assert labels_to_target(n, [0.9, 0.9, 0.9, 0.9, 0.9], 0.8) == 10
    assert labels_to_target(n, [0.9, 0.9, 0.9, 0.9, 0.7], 0.8) is None
    assert labels_to_target(n, [0.1, 0.2, 0.3, 0.4, 0.8], 0.8) == 50


def test_label_efficiency_ratio():
    assert label_efficiency_ratio(200, 100) == 2.0
    assert label_efficiency_ratio(None, 100) is None
    assert label_efficiency_ratio(100, None) is None


def test_binary_auroc_and_accuracy():
    y = np.array([0, 0, 1, 1])
    model = FixedProba([[0.9, 0.1], [0.3, 0.7], [0.35, 0.65], [0.2, 0.8]], [0, 1])
    out = evaluate_classifier(model, None, y)
    assert out["accuracy"] == pytest.approx(0.75)
    assert out["auroc"] == pytest.approx(0.75)  # one inverted pair of four


def test_multiclass_auroc_with_unseen_class_columns():
    y = np.array([0, 1, 2, 2])
    # the model has only seen classes 0 and 2
    model = FixedProba([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.3, 0.7]], [0, 2])
    out = evaluate_classifier(model, None, y, classes=[0, 1, 2])
    assert out["accuracy"] == pytest.approx(0.75)
    assert 0.0 <= out["auroc"] <= 1.0


def test_multilabel_macro_auroc_skips_constant_labels():
    y = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    proba = np.array([[0.9, 0.2, 0.1], [0.1, 0.8, 0.3], [0.7, 0.6, 0.2], [0.2, 0.1, 0.4]])
    out = evaluate_classifier(FixedProba(proba, [0, 1, 2]), None, y)
    assert out["auroc"] == pytest.approx(1.0)   # labels 0 and 1 perfectly ranked; 2 skipped
