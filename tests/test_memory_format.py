"""``memory_format``: channels_last convolution weights (fast oneDNN convolutions on CPU)
for skal's own networks, torch's default layout for a user's module unless asked."""

import numpy as np
import pytest
import torch
from sklearn.base import clone
from torch import nn

from conftest import TINY
from skal import CNNClassifier, MultiLabelCNNClassifier, SkalValueError
from skal.query import classifier_entropy_gradnorm, classifier_expected_gradnorm

NET = dict(TINY, module__widths=(8, 8), random_state=0)


def _data(n=40, channels=3, size=8, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((n, channels, size, size), dtype=np.float32)
    return X, np.arange(n) % 3


def _conv_weights(net):
    return [m.weight for m in net.module_.modules() if isinstance(m, nn.Conv2d)]


def _is_channels_last(net):
    # every conv weight with more than one input channel (a 1-channel weight has the
    # same memory order in both layouts)
    weights = [w for w in _conv_weights(net) if w.shape[1] > 1]
    assert weights
    flags = {w.is_contiguous(memory_format=torch.channels_last)
             and not w.is_contiguous() for w in weights}
    assert len(flags) == 1, "mixed layouts"
    return flags.pop()


class FlattenNet(nn.Module):
    """A user's module using layout-agnostic ops."""

    def __init__(self, n_classes=3):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4),
                                  nn.ReLU())
        self.fc = nn.Linear(4 * 8 * 8, n_classes)

    def forward(self, x):
        return self.fc(self.conv(x).flatten(1))


class ViewNet(FlattenNet):
    """A user's module calling .view on convolution features (old-style code)."""

    def forward(self, x):
        h = self.conv(x)
        return self.fc(h.view(h.size(0), -1))


def test_auto_uses_channels_last_for_skal_nets():
    X, y = _data()
    assert _is_channels_last(CNNClassifier(**NET).fit(X, y))
    assert _is_channels_last(MultiLabelCNNClassifier(**NET).fit(X, np.eye(3)[y]))
    assert not _is_channels_last(CNNClassifier(memory_format="contiguous", **NET).fit(X, y))


def test_auto_keeps_user_module_layout_and_opt_in_works():
    X, y = _data()
    common = dict(max_epochs=1, min_steps=None, augment=None, random_state=0)
    assert not _is_channels_last(CNNClassifier(module=FlattenNet, **common).fit(X, y))
    net = CNNClassifier(module=FlattenNet, memory_format="channels_last", **common).fit(X, y)
    assert _is_channels_last(net)
    assert net.predict_proba(X).shape == (40, 3)


def test_layout_changes_no_prediction_or_gradient_score():
    """Same weights in both layouts: the same probabilities and GradNorm scores up to
    float32 rounding."""
    X, y = _data()
    net = CNNClassifier(memory_format="contiguous", **NET).fit(X, y)
    reference = {
        "proba": net.predict_proba(X),
        "embed": net.embed(X),
        "last": classifier_expected_gradnorm(net, X, scope="last"),
        "all": classifier_expected_gradnorm(net, X, scope="all"),
        "entropy_all": classifier_entropy_gradnorm(net, X, scope="all", norm="l2"),
    }
    net.module_.to(memory_format=torch.channels_last)
    assert _is_channels_last(net)
    np.testing.assert_allclose(net.predict_proba(X), reference["proba"], rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(net.embed(X), reference["embed"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(classifier_expected_gradnorm(net, X, scope="last"),
                               reference["last"], rtol=1e-5)
    np.testing.assert_allclose(classifier_expected_gradnorm(net, X, scope="all"),
                               reference["all"], rtol=1e-5)
    np.testing.assert_allclose(
        classifier_entropy_gradnorm(net, X, scope="all", norm="l2"),
        reference["entropy_all"], rtol=1e-5)
    # scoring leaves the module's own layout alone
    assert _is_channels_last(net)


def test_tabular_input_stays_contiguous():
    rng = np.random.default_rng(0)
    X, y = rng.random((30, 5), dtype=np.float32), np.arange(30) % 2
    net = CNNClassifier(**{**NET, "module__widths": (4,)}).fit(X, y)
    assert all(w.is_contiguous() for w in _conv_weights(net))


def test_in_params_and_clone():
    net = CNNClassifier(memory_format="contiguous")
    assert net.get_params()["memory_format"] == "contiguous"
    assert clone(net).memory_format == "contiguous"


@pytest.mark.parametrize("value", ["channels-last", None, torch.channels_last, 1])
def test_bad_value_is_clear_error_before_any_change(value):
    X, y = _data()
    net = CNNClassifier(memory_format="contiguous", **NET).fit(X, y)
    before = net.predict_proba(X)
    net.set_params(memory_format=value)
    with pytest.raises(SkalValueError, match="memory_format") as info:
        net.fit(X, y)
    assert isinstance(info.value, ValueError)
    np.testing.assert_array_equal(net.predict_proba(X), before)


def test_view_module_with_channels_last_gets_hint():
    X, y = _data()
    net = CNNClassifier(module=ViewNet, memory_format="channels_last", max_epochs=1,
                        min_steps=None, augment=None)
    with pytest.raises(SkalValueError, match="memory_format='contiguous'"):
        net.fit(X, y)
    # and the default keeps such a module working
    CNNClassifier(module=ViewNet, max_epochs=1, min_steps=None, augment=None).fit(X, y)
