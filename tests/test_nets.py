"""Networks (SmallCNN, ResNet18) and the skorch classifiers that wrap them."""

import numpy as np
import pytest
import torch
from sklearn.base import clone
from torch import nn

from conftest import FAST, TINY
from skal import CNNClassifier, MultiLabelCNNClassifier, NotFittedError, SkalValueError
from skal.data import load_digits_images
from skal.nets import ResNet18, SmallCNN


def tiny_net(**kw):
    return CNNClassifier(**{**TINY, "random_state": 0, **kw})


def tiny_multilabel(**kw):
    return MultiLabelCNNClassifier(**{**TINY, "random_state": 0, **kw})


@pytest.fixture(scope="module")
def digits():
    return load_digits_images()


@pytest.fixture(scope="module")
def binary(digits):
    """60 digits images (n, 1, 8, 8) float32 with labels 0/1 (odd/even)."""
    X, y = digits
    return X[:60], y[:60] % 2


def _images(n=24, size=8, channels=None, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    shape = (n, size, size) if channels is None else (n, channels, size, size)
    if dtype == np.uint8:
        return rng.integers(0, 256, size=shape, dtype=np.uint8)
    return rng.random(shape, dtype=np.float32)


# --------------------------------------------------------------------- modules
@pytest.mark.parametrize("size", [28, 32, 64])
@pytest.mark.parametrize("in_channels,n_outputs", [(1, 2), (3, 5)])
def test_small_cnn_output_shape(size, in_channels, n_outputs):
    net = SmallCNN(in_channels=in_channels, n_outputs=n_outputs, widths=(4, 8), hidden=8,
                   dropout=0.5).eval()
    out = net(torch.zeros(3, in_channels, size, size))
    assert out.shape == (3, n_outputs)
    assert net.features[0].in_channels == in_channels
    assert net.fc.out_features == n_outputs
    assert net.fc.in_features == 8          # hidden width
    assert net.dropout.p == 0.5


def test_small_cnn_widths_and_no_hidden():
    net = SmallCNN(in_channels=2, n_outputs=3, widths=(4, 6, 10), convs_per_block=2,
                   hidden=None, dropout=0.0)
    convs = [m for m in net.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [4, 4, 6, 6, 10, 10]
    assert net.fc.in_features == 10
    assert net(torch.zeros(2, 2, 28, 28)).shape == (2, 3)


@pytest.mark.parametrize("size", [28, 32, 64])
def test_resnet18_output_shape(size):
    net = ResNet18(in_channels=3, n_outputs=4, widths=(4, 4, 8, 8), blocks=(1, 1, 1, 1),
                   dropout=0.3).eval()
    out = net(torch.zeros(2, 3, size, size))
    assert out.shape == (2, 4)
    assert net.stem[0].in_channels == 3
    assert net.fc.in_features == 8 and net.fc.out_features == 4
    assert net.dropout.p == 0.3


def test_resnet18_default_layout():
    net = ResNet18(in_channels=1, n_outputs=2)
    assert len(net.stages) == 8                 # 2+2+2+2 basic blocks
    assert net.fc.in_features == 512
    assert net.stem[0].in_channels == 1


def test_resnet18_in_classifier():
    X = _images(16, size=28, channels=1)
    y = np.arange(16) % 2
    clf = CNNClassifier(ResNet18, **FAST, module__widths=(4, 4, 4, 4),
                        module__blocks=(1, 1, 1, 1), max_epochs=1, random_state=0).fit(X, y)
    assert clf.final_layer_ is clf.module_.fc
    assert clf.predict_proba(X).shape == (16, 2)


# ------------------------------------------------------------ input handling
@pytest.mark.parametrize("cls", [CNNClassifier, MultiLabelCNNClassifier])
@pytest.mark.parametrize("channels", [None, 1, 3])
def test_accepts_3d_and_4d(cls, channels):
    X = _images(20, channels=channels)
    y = np.arange(20) % 2
    if cls is MultiLabelCNNClassifier:
        y = np.stack([y, 1 - y, np.ones(20, int)], axis=1)
    clf = cls(**TINY, random_state=0).fit(X, y)
    assert clf.n_channels_in_ == (1 if channels is None else channels)
    assert clf.module_.features[0].in_channels == clf.n_channels_in_
    proba = clf.predict_proba(X)
    assert proba.shape == (20, y.shape[1] if y.ndim == 2 else 2)


def test_3d_input_equals_single_channel_4d(binary):
    X, y = binary
    clf = tiny_net().fit(X[:, 0], y)
    np.testing.assert_allclose(clf.predict_proba(X[:, 0]), clf.predict_proba(X), rtol=0,
                               atol=0)


def test_uint8_scaled_float_as_given():
    X8 = _images(30, dtype=np.uint8)
    y = np.arange(30) % 2
    clf = tiny_net().fit(X8, y)
    p_uint8 = clf.predict_proba(X8)
    p_scaled = clf.predict_proba(X8.astype(np.float32) / 255)
    np.testing.assert_allclose(p_uint8, p_scaled, atol=1e-6)
    # float is used as given, so float values in 0..255 given to a model fitted on
    # uint8 (scaled to 0..1) are on the wrong scale: rejected, not silently mis-scored
    with pytest.raises(SkalValueError, match="wrong scale"):
        clf.predict_proba(X8.astype(np.float32))
    # training on uint8 equals training on the /255 float version
    clf2 = tiny_net().fit(X8.astype(np.float32) / 255, y)
    np.testing.assert_allclose(clf2.predict_proba(X8), p_uint8, atol=1e-5)


# ----------------------------------------------------------------- seeding
def test_random_state_reproducible(binary):
    X, y = binary
    p1 = tiny_net(random_state=7).fit(X, y).predict_proba(X)
    p2 = tiny_net(random_state=7).fit(X, y).predict_proba(X)
    p3 = tiny_net(random_state=8).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(p1, p2)
    assert not np.allclose(p1, p3)


def test_refit_same_estimator_reproducible(binary):
    X, y = binary
    clf = tiny_net(random_state=3)
    p1 = clf.fit(X, y).predict_proba(X)
    p2 = clf.fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(p1, p2)


def test_random_state_leaves_global_rng_alone(binary):
    X, y = binary
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    np_state = np.random.get_state()[1].copy()
    clf = tiny_net(random_state=5).fit(X, y)
    clf.predict_proba(X)
    assert torch.equal(torch.random.get_rng_state(), state)
    np.testing.assert_array_equal(np.random.get_state()[1], np_state)


def test_multilabel_random_state_reproducible(binary):
    X, y = binary
    Y = np.stack([y, 1 - y], axis=1)
    p1 = tiny_multilabel(random_state=1).fit(X, Y).predict_proba(X)
    p2 = tiny_multilabel(random_state=1).fit(X, Y).predict_proba(X)
    p3 = tiny_multilabel(random_state=2).fit(X, Y).predict_proba(X)
    np.testing.assert_array_equal(p1, p2)
    assert not np.allclose(p1, p3)


# --------------------------------------------------------------- criterion
def test_criteria(binary):
    X, y = binary
    clf = tiny_net().fit(X, y)
    assert isinstance(clf.criterion_, nn.CrossEntropyLoss)
    ml = tiny_multilabel().fit(X, np.stack([y, 1 - y], axis=1))
    assert isinstance(ml.criterion_, nn.BCEWithLogitsLoss)


# ---------------------------------------------------------------- learning
def test_learns_digits(digits):
    X, y = digits
    clf = CNNClassifier(**FAST, module__widths=(16, 32), module__hidden=16, max_epochs=5,
                        lr=1e-2, batch_size=16, random_state=0)
    clf.fit(X[:200], y[:200])
    acc = (clf.predict(X[1000:1400]) == y[1000:1400]).mean()
    assert acc > 0.4, acc                      # chance is 0.1
    assert clf.history[-1, "train_loss"] < clf.history[0, "train_loss"]


def test_learns_3_vs_7_and_returns_labels(digits):
    X, y = digits
    mask = np.isin(y, [3, 7])
    Xs, ys = X[mask], y[mask]
    # 10 epochs: at 5 the accuracy depends on the seed's shuffling (0.7-0.97 over seeds)
    clf = tiny_net(max_epochs=10, lr=1e-2).fit(Xs[:150], ys[:150])
    np.testing.assert_array_equal(clf.classes_, [3, 7])
    pred = clf.predict(Xs[150:])
    assert set(np.unique(pred)) <= {3, 7}
    assert (pred == ys[150:]).mean() > 0.8


def test_string_labels(binary):
    X, y = binary
    labels = np.where(y == 1, "pneumonia", "normal")
    clf = tiny_net().fit(X, labels)
    np.testing.assert_array_equal(clf.classes_, ["normal", "pneumonia"])
    pred = clf.predict(X)
    assert pred.dtype.kind == "U"
    assert set(pred) <= {"normal", "pneumonia"}
    proba = clf.predict_proba(X)
    np.testing.assert_array_equal(pred, clf.classes_[proba.argmax(1)])


def test_fixed_classes_param(binary):
    X, y = binary
    clf = tiny_net(classes=[0, 1, 2]).fit(X, y)
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    assert clf.predict_proba(X).shape == (60, 3)


def test_predict_proba_rows_sum_to_one(binary):
    X, y = binary
    proba = tiny_net().fit(X, y).predict_proba(X)
    np.testing.assert_allclose(proba.sum(1), 1, atol=1e-5)


# --------------------------------------------------------------- multilabel
def test_multilabel_proba_and_threshold(binary):
    X, y = binary
    Y = np.stack([y, 1 - y, np.ones_like(y)], axis=1)
    ml = tiny_multilabel().fit(X, Y)
    proba = ml.predict_proba(X)
    assert proba.shape == (60, 3)
    assert proba.min() >= 0 and proba.max() <= 1
    np.testing.assert_array_equal(ml.classes_, [0, 1, 2])
    default = ml.predict(X)
    np.testing.assert_array_equal(default, (proba >= 0.5).astype(int))
    ml.set_params(threshold=0.0)
    assert (ml.predict(X) == 1).all()
    ml.set_params(threshold=1.0)     # no probability of this tiny net reaches 1.0
    assert (ml.predict(X) == 0).all()
    # per-label thresholds
    ml.set_params(threshold=[0.0, 1.0, 0.5])
    pred = ml.predict(X)
    assert (pred[:, 0] == 1).all() and (pred[:, 1] == 0).all()
    np.testing.assert_array_equal(pred[:, 2], proba[:, 2] >= 0.5)
    ml.set_params(threshold=[0.5, 0.5])
    with pytest.raises(SkalValueError):
        ml.predict(X)
    ml.set_params(threshold=2.0)       # not a probability: an error, not all-zero output
    with pytest.raises(SkalValueError, match=r"\[0, 1\]"):
        ml.predict(X)


def test_multilabel_2d_targets_keep_multilabel_mode(binary):
    X, y = binary
    Y = np.stack([y, 1 - y], axis=1)
    ml = tiny_multilabel().fit(X, Y)
    assert ml.multilabel_ is True and ml.n_outputs_ == 2
    assert ml.decision_function(X).shape == (60, 2)
    np.testing.assert_allclose(ml.predict_proba(X), 1 / (1 + np.exp(-ml.decision_function(X))),
                               rtol=1e-12)
    column = tiny_multilabel().fit(X, y[:, None])          # a 0/1 column: one label
    assert column.multilabel_ is True and column.n_outputs_ == 1
    np.testing.assert_array_equal(column.classes_, [0])
    assert column.predict(X).shape == (60, 1)
    assert column.predict_proba(X).shape == column.decision_function(X).shape == (60, 1)


# --------------------------------------------------- one-vs-rest on 1-d labels
def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def test_one_vs_rest_binary_string_labels(binary):
    X, y = binary
    labels = np.array(["even", "odd"])[y]
    ml = tiny_multilabel().fit(X, labels)
    assert ml.multilabel_ is False and ml.n_outputs_ == 1
    assert ml.final_layer_.out_features == 1               # one sigmoid, for "odd"
    np.testing.assert_array_equal(ml.classes_, ["even", "odd"])
    decision = ml.decision_function(X)
    proba = ml.predict_proba(X)
    pred = ml.predict(X)
    assert decision.shape == (60,) and proba.shape == (60, 2) and pred.shape == (60,)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-12)
    np.testing.assert_allclose(proba[:, 1], _sigmoid(decision), rtol=1e-9)
    assert set(pred) <= {"even", "odd"}
    np.testing.assert_array_equal(pred, ml.classes_[(decision >= 0).astype(int)])
    np.testing.assert_array_equal(pred, ml.classes_[proba.argmax(axis=1)])
    # the one output is trained exactly as a one-label multi-hot column "odd" (BCE)
    column = tiny_multilabel().fit(X, y[:, None])
    np.testing.assert_allclose(decision, column.decision_function(X)[:, 0], rtol=1e-6)
    # threshold applies to p(classes_[1])
    assert (ml.set_params(threshold=0.0).predict(X) == "odd").all()
    assert (ml.set_params(threshold=[1.0]).predict(X) == "even").all()
    with pytest.raises(SkalValueError, match=r"threshold must be a probability in \[0, 1\], "
                                             r"or one per output \(1\)"):
        ml.set_params(threshold=[0.5, 0.5]).predict(X)


def test_one_vs_rest_multiclass(digits):
    X, y = digits[0][:90], digits[1][:90] % 3
    labels = np.array(["a", "b", "c"], dtype=object)[y]
    ml = tiny_multilabel().fit(X, labels)
    assert ml.multilabel_ is False and ml.n_outputs_ == 3
    np.testing.assert_array_equal(ml.classes_, ["a", "b", "c"])
    decision = ml.decision_function(X)
    proba = ml.predict_proba(X)
    assert decision.shape == proba.shape == (90, 3)
    # OneVsRestClassifier.predict_proba: the sigmoid marginals normalised per row
    marginals = _sigmoid(decision)
    np.testing.assert_allclose(proba, marginals / marginals.sum(1, keepdims=True), rtol=1e-9)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-12)
    pred = ml.predict(X)
    np.testing.assert_array_equal(pred, ml.classes_[decision.argmax(axis=1)])
    np.testing.assert_array_equal(pred, ml.classes_[proba.argmax(axis=1)])
    # binarized as LabelBinarizer does: the same training as the one-hot multi-hot target
    onehot = tiny_multilabel().fit(X, np.eye(3, dtype=int)[y])
    np.testing.assert_allclose(decision, onehot.decision_function(X), rtol=1e-5, atol=1e-6)
    # threshold is validated but the most probable class is predicted
    np.testing.assert_array_equal(ml.set_params(threshold=[0.0, 0.9, 0.9]).predict(X), pred)
    for bad in ("high", float("nan"), [[0.5]], True):
        with pytest.raises(SkalValueError, match="threshold"):
            ml.set_params(threshold=bad).predict(X)


def test_one_vs_rest_label_column_and_errors(binary):
    from sklearn.exceptions import DataConversionWarning

    X, y = binary
    with pytest.warns(DataConversionWarning, match="column-vector y"):
        ml = tiny_multilabel().fit(X, (y + 1)[:, None])       # {1, 2}: labels, not 0/1
    assert ml.multilabel_ is False
    np.testing.assert_array_equal(ml.classes_, [1, 2])
    assert ml.predict(X).shape == (60,)
    with pytest.raises(SkalValueError, match="single class"):
        tiny_multilabel().fit(X, np.full(60, "cat"))
    with pytest.raises(SkalValueError, match="Unknown label type: continuous"):
        tiny_multilabel().fit(X, np.linspace(0, 1, 60))


def test_one_vs_rest_continued_training_keeps_target_kind(binary):
    X, y = binary
    labels = np.array(["even", "odd"])[y]
    ml = tiny_multilabel().fit(X, labels)
    ml.partial_fit(X[:20], labels[:20])                     # same kind: continues
    assert len(ml.history_) == 4
    with pytest.raises(SkalValueError, match="fitted on 1-d class labels but continued "
                                             "training got multi-hot"):
        ml.partial_fit(X, np.stack([y, 1 - y], axis=1))
    with pytest.raises(SkalValueError, match=r"labels \['seven'\] that are not among"):
        ml.partial_fit(X[:2], ["odd", "seven"])
    multi = tiny_multilabel(warm_start=True).fit(X, np.stack([y, 1 - y], axis=1))
    with pytest.raises(SkalValueError, match="fitted on multi-hot .* got 1-d class labels"):
        multi.fit(X, labels)                                # warm_start continues
    # a fresh fit may change the kind; partial_fit's classes declares every class
    multi.set_params(warm_start=False).fit(X, labels)
    assert multi.multilabel_ is False and multi.n_outputs_ == 1
    declared = tiny_multilabel().partial_fit(X[:10], labels[:10], classes=["even", "odd", "x"])
    np.testing.assert_array_equal(declared.classes_, ["even", "odd", "x"])
    assert declared.predict_proba(X).shape == (60, 3)


def test_one_vs_rest_clone_and_params(binary):
    X, y = binary
    ml = tiny_multilabel(threshold=0.4).fit(X, np.array(["even", "odd"])[y])
    params = ml.get_params()
    assert params["threshold"] == 0.4
    assert not any(name.startswith(("multilabel", "classes")) for name in params)
    cloned = clone(ml)
    assert not hasattr(cloned, "multilabel_") and not hasattr(cloned, "classes_")
    assert cloned.get_params()["threshold"] == 0.4
    np.testing.assert_array_equal(cloned.fit(X, np.array(["even", "odd"])[y]).predict_proba(X),
                                  ml.predict_proba(X))


# ------------------------------------------------------------- embeddings
def test_embed_equals_hooked_input_of_final_layer(binary):
    X, y = binary
    clf = tiny_net().fit(X, y)
    emb = clf.embed(X)
    assert emb.shape == (60, 16)                # hidden=16 feeds fc
    captured = []
    handle = clf.final_layer_.register_forward_pre_hook(
        lambda _m, inp: captured.append(inp[0].detach().clone()))
    try:
        clf.module_.eval()
        with torch.no_grad():
            logits = clf.module_(torch.from_numpy(X))
    finally:
        handle.remove()
    np.testing.assert_allclose(emb, captured[0].numpy(), atol=1e-6)
    # binary decision_function is scikit-learn's log-odds of classes_[1]: z1 - z0
    np.testing.assert_allclose(clf.decision_function(X),
                               (logits[:, 1] - logits[:, 0]).numpy(), atol=1e-6)
    # embed is batched but independent of the batch size
    np.testing.assert_allclose(clf.embed(X, batch_size=7), emb, atol=1e-6)


def test_final_layer_builtin(binary):
    X, y = binary
    clf = tiny_net().fit(X, y)
    assert clf.final_layer_ is clf.module_.fc
    assert clf.final_layer_name_ == "fc"


def test_unfitted_raises_not_fitted(binary):
    X, _ = binary
    import sklearn.exceptions
    for clf in (tiny_net(), tiny_multilabel()):
        with pytest.raises(NotFittedError):
            clf.predict_proba(X)
        with pytest.raises(sklearn.exceptions.NotFittedError):
            clf.embed(X)


# --------------------------------------------------- bring your own module
class OwnNet(nn.Module):
    """A user's module: takes only its own arguments; the final Linear is nested."""

    received = []

    def __init__(self, num_classes=2):
        super().__init__()
        OwnNet.received.append(num_classes)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU())
        self.head = nn.Sequential(nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, num_classes))

    def forward(self, x):
        return self.head(self.body(x))


class RecordingNet(nn.Module):
    """Accepts arbitrary kwargs so anything skal passes would be visible."""

    received = []

    def __init__(self, num_classes=2, **kwargs):
        super().__init__()
        RecordingNet.received.append(dict(kwargs, num_classes=num_classes))
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        return self.fc(x.flatten(1))


class SigmoidEnd(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 2)

    def forward(self, x):
        return torch.sigmoid(self.fc(x.flatten(1)))


def test_own_module_class_nested_head(binary):
    X, y = binary
    OwnNet.received.clear()
    clf = CNNClassifier(OwnNet, **FAST, module__num_classes=2, max_epochs=2,
                        random_state=0).fit(X, y)
    assert OwnNet.received == [2]
    assert clf.final_layer_name_ == "head.2"
    assert clf.final_layer_ is clf.module_.head[2]
    assert clf.embed(X).shape == (60, 12)
    assert clf.predict(X).shape == (60,)


def test_own_module_gets_no_in_channels_or_n_outputs(binary):
    X, y = binary
    RecordingNet.received.clear()
    CNNClassifier(RecordingNet, **FAST, module__num_classes=2, max_epochs=1,
                  random_state=0).fit(X, y)
    assert RecordingNet.received, "module was never built"
    for kwargs in RecordingNet.received:
        assert "in_channels" not in kwargs and "n_outputs" not in kwargs
        assert kwargs == {"num_classes": 2}


def test_own_module_instance(binary):
    X, y = binary
    module = OwnNet(num_classes=2)
    clf = CNNClassifier(module, **FAST, max_epochs=2, random_state=0).fit(X, y)
    assert clf.final_layer_name_ == "head.2"
    assert clf.predict_proba(X).shape == (60, 2)


def test_explicit_final_layer(binary):
    X, y = binary
    clf = CNNClassifier(OwnNet, **FAST, module__num_classes=2, final_layer="head.2",
                        max_epochs=1, random_state=0).fit(X, y)
    assert clf.final_layer_ is clf.module_.head[2]
    assert clf.embed(X).shape == (60, 12)


@pytest.mark.parametrize("name", ["head.1", "does_not_exist"])
def test_bad_explicit_final_layer(binary, name):
    X, y = binary
    clf = CNNClassifier(OwnNet, **FAST, module__num_classes=2, final_layer=name, max_epochs=1)
    with pytest.raises(SkalValueError, match="final_layer"):
        clf.fit(X, y)


def test_module_ending_in_nonlinearity(binary):
    X, y = binary
    with pytest.raises(SkalValueError, match="final_layer"):
        CNNClassifier(SigmoidEnd, **FAST, max_epochs=1).fit(X, y)


def test_module_ending_in_nonlinearity_with_explicit_final_layer(binary):
    X, y = binary
    clf = CNNClassifier(SigmoidEnd, **FAST, final_layer="fc", max_epochs=1,
                        random_state=0).fit(X, y)
    assert clf.final_layer_ is clf.module_.fc


def test_wrong_n_outputs_is_skal_error(binary):
    X, y = binary
    with pytest.raises(SkalValueError, match="outputs"):
        CNNClassifier(OwnNet, **FAST, module__num_classes=3, max_epochs=1).fit(X, y)
    Y = np.stack([y, 1 - y, y], axis=1)
    with pytest.raises(SkalValueError, match="outputs"):
        MultiLabelCNNClassifier(OwnNet, **FAST, module__num_classes=2, max_epochs=1).fit(X, Y)


def test_wrong_channels_for_module_is_skal_error(binary):
    X, y = binary
    # OwnNet expects 64 features = 1x8x8; 3 channels cannot flow through it
    X3 = np.repeat(X, 3, axis=1)
    with pytest.raises(SkalValueError):
        CNNClassifier(OwnNet, **FAST, max_epochs=1).fit(X3, y)


# ---------------------------------------------------------------- sklearn API
@pytest.mark.parametrize("cls", [CNNClassifier, MultiLabelCNNClassifier])
def test_get_set_params_clone(cls, binary):
    X, y = binary
    est = cls(module__widths=(8,), module__hidden=16, max_epochs=1, random_state=4,
              final_layer=None, predict_batch_size=10)
    params = est.get_params()
    for key, value in [("module__widths", (8,)), ("module__hidden", 16), ("max_epochs", 1),
                       ("random_state", 4), ("predict_batch_size", 10)]:
        assert params[key] == value
    assert params["criterion"] is (nn.CrossEntropyLoss if cls is CNNClassifier
                                   else nn.BCEWithLogitsLoss)
    est.set_params(random_state=9, module__hidden=12, max_epochs=2)
    assert est.random_state == 9 and est.max_epochs == 2
    assert est.get_params()["module__hidden"] == 12
    Y = y if cls is CNNClassifier else np.stack([y, 1 - y], axis=1)
    est.fit(X, Y)
    assert est.module_.fc.in_features == 12
    cloned = clone(est)
    assert cloned is not est
    assert cloned.get_params()["module__hidden"] == 12
    assert cloned.random_state == 9
    assert not hasattr(cloned, "module_")
    with pytest.raises(NotFittedError):
        cloned.predict_proba(X)
    # the clone reproduces the original's fit
    np.testing.assert_array_equal(cloned.fit(X, Y).predict_proba(X), est.predict_proba(X))


def test_multilabel_threshold_in_params():
    ml = MultiLabelCNNClassifier(threshold=0.3)
    assert ml.get_params()["threshold"] == 0.3
    assert clone(ml).threshold == 0.3


def test_score_is_accuracy(binary):
    X, y = binary
    clf = tiny_net().fit(X, y)
    assert clf.score(X, y) == pytest.approx((clf.predict(X) == y).mean())


# ------------------------------------------------------- min_steps / augment
def test_min_steps_raises_epochs(binary):
    X, y = binary                                     # 60 samples, batch 16: 4 steps/epoch
    assert len(tiny_net(max_epochs=2).fit(X, y).history_) == 2
    clf = tiny_net(max_epochs=2, min_steps=20).fit(X, y)
    assert len(clf.history_) == 5                     # ceil(20 / 4)
    assert sum(len(epoch["batches"]) for epoch in clf.history_) >= 20
    assert len(tiny_net(max_epochs=6, min_steps=20).fit(X, y).history_) == 6


def test_defaults_include_min_steps_and_augment():
    params = CNNClassifier().get_params()
    assert params["min_steps"] == 200 and params["augment"] == 0.1
    assert MultiLabelCNNClassifier().get_params()["min_steps"] == 200


def test_augment_changes_training_not_prediction(binary):
    X, y = binary
    plain = tiny_net(random_state=0).fit(X, y)
    augmented = tiny_net(random_state=0, augment=0.2).fit(X, y)
    assert not np.allclose(plain.predict_proba(X), augmented.predict_proba(X))
    # prediction is deterministic: no augmentation at inference
    np.testing.assert_array_equal(augmented.predict_proba(X), augmented.predict_proba(X))
    again = tiny_net(random_state=0, augment=0.2).fit(X, y)
    np.testing.assert_array_equal(again.predict_proba(X), augmented.predict_proba(X))


def test_random_shift():
    from skal.nets.augment import random_shift
    x = torch.rand(4, 1, 8, 8)
    np.testing.assert_allclose(random_shift(x, 0.0), x, atol=1e-6)
    shifted = random_shift(x, 0.25)
    assert shifted.shape == x.shape
    assert not torch.allclose(shifted, x)
