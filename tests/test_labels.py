"""skal.labels: the output kind of a model and its pseudo-labels, against each model's
own ``predict``."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from conftest import TINY
from skal import CNNClassifier, MultiLabelCNNClassifier, NotFittedError, SkalValueError
from skal.labels import (encode_labels, has_sigmoid_head, one_vs_rest_targets,
                         output_kind, predicts_label_sets, pseudo_labels,
                         resolve_multilabel)
from skal.query.base import is_multilabel
from skal.query.base import predicts_label_sets as learner_predicts_label_sets

SEEDED = dict(TINY, random_state=0)


@pytest.fixture(scope="module")
def models(tiny_images):
    X, y, Y = tiny_images
    return {"softmax": CNNClassifier(**SEEDED).fit(X, y),
            "multilabel": MultiLabelCNNClassifier(**SEEDED).fit(X, Y),
            "one-vs-rest": MultiLabelCNNClassifier(**SEEDED).fit(X, y),
            "one-vs-rest binary": MultiLabelCNNClassifier(**SEEDED).fit(X, y % 2)}


@pytest.mark.parametrize("name", ["softmax", "multilabel", "one-vs-rest", "one-vs-rest binary"])
def test_output_kind_of_fitted_classifiers(models, name):
    model = models[name]
    kind = name.split()[0]
    assert model.output_kind_ == output_kind(model) == kind
    assert predicts_label_sets(model) == learner_predicts_label_sets(model) == (kind == "multilabel")
    assert has_sigmoid_head(model) == is_multilabel(model) == (kind != "softmax")
    assert resolve_multilabel(model, read="logits") == (kind != "softmax")
    assert resolve_multilabel(model, False, read="logits") is False


def test_output_kind_unfitted_and_third_party(tiny_images):
    X, y, _ = tiny_images
    with pytest.raises(NotFittedError):
        CNNClassifier().output_kind_
    assert output_kind(MultiLabelCNNClassifier()) == "multilabel"   # what it will be on sets
    assert output_kind(LogisticRegression().fit(X.reshape(len(X), -1), y)) == "softmax"
    with pytest.raises(SkalValueError, match="read must be"):
        resolve_multilabel(CNNClassifier(), read="probabilities")


@pytest.mark.parametrize("name", ["softmax", "multilabel", "one-vs-rest", "one-vs-rest binary"])
def test_pseudo_labels_are_the_models_predictions_encoded(models, tiny_images, name):
    X = tiny_images[0]
    model = models[name]
    proba = model.predict_proba(X)
    if name != "softmax":    # a threshold away from 0.5 that changes some decisions
        model.set_params(threshold=float(np.median(proba[:, -1])))
    try:
        predicted = model.predict(X)
        if name == "softmax":
            expected = encode_labels(predicted, model.classes_)
        elif name == "multilabel":
            expected = predicted
        else:
            expected = one_vs_rest_targets(encode_labels(predicted, model.classes_),
                                           len(model.classes_))
        np.testing.assert_array_equal(pseudo_labels(model, proba), expected)
        logits = model.decision_function(X)
        np.testing.assert_array_equal(pseudo_labels(model, logits, logits=True), expected)
    finally:
        model.set_params(threshold=0.5) if name != "softmax" else None


def test_encoding_helpers():
    np.testing.assert_array_equal(encode_labels(np.array(["b", "a", "b"]), ["a", "b"]), [1, 0, 1])
    with pytest.raises(SkalValueError, match="not among the classes"):
        encode_labels(np.array(["c"]), ["a", "b"])
    np.testing.assert_array_equal(one_vs_rest_targets([0, 1], 2), [[0], [1]])
    np.testing.assert_array_equal(one_vs_rest_targets([2, 0], 3), [[0, 0, 1], [1, 0, 0]])
    with pytest.raises(SkalValueError, match="2-d"):
        pseudo_labels(CNNClassifier(), np.zeros(3))
