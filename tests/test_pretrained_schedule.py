"""``finetune="auto"`` (a linear head on small labelled sets, full fine-tuning from
``AUTO_FULL_FINETUNE_FROM`` samples) and ``lr="auto"`` of skal's classifiers."""

import numpy as np
import pytest
import torch
from sklearn.base import clone

from conftest import FAST
from skal import CNNClassifier, MultiLabelCNNClassifier
from skal.exceptions import SkalValueError
from skal.nets.pretrained import AUTO_FULL_FINETUNE_FROM, small_cnn_encoder
from skal.nets.training import AUTO_LR

ONE_EPOCH = dict(FAST, max_epochs=1, batch_size=16)


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    n = AUTO_FULL_FINETUNE_FROM + 10
    X = rng.integers(0, 256, size=(n, 1, 12, 12), dtype=np.uint8)
    y = np.arange(n) % 2
    return X, y


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return small_cnn_encoder(widths=(4, 8))


def _encoder_weights(net):
    return {name: p.detach().clone() for name, p in net.module_.named_parameters()
            if not name.startswith(net.final_layer_name_ + ".")}


def _encoder_changed(before, net):
    after = _encoder_weights(net)
    return any(not torch.equal(before[name], after[name]) for name in before)


@pytest.mark.parametrize("cls", [CNNClassifier, MultiLabelCNNClassifier])
def test_auto_switches_to_full_finetuning_at_the_threshold(cls, images, encoder):
    X, y = images
    small, large = AUTO_FULL_FINETUNE_FROM - 1, AUTO_FULL_FINETUNE_FROM
    start = {name: p.detach().clone() for name, p in encoder.named_parameters()}

    linear = cls(pretrained=encoder, finetune="auto", random_state=0, **ONE_EPOCH).fit(
        X[:small], y[:small])
    assert linear.finetune_ == "linear"
    assert linear.resolved_lr() == AUTO_LR["linear"]
    assert linear.optimizer_.param_groups[0]["lr"] == AUTO_LR["linear"]
    # the encoder is frozen: its weights are still the pre-trained ones
    for name, value in linear.module_.encoder.named_parameters():
        assert torch.equal(value.detach(), start[name])

    full = cls(pretrained=encoder, finetune="auto", random_state=0, **ONE_EPOCH).fit(
        X[:large], y[:large])
    assert full.finetune_ == "full"
    assert full.optimizer_.param_groups[0]["lr"] == AUTO_LR["network"]
    assert any(not torch.equal(value.detach(), start[name])
               for name, value in full.module_.encoder.named_parameters())
    # the user's encoder is never modified
    for name, value in encoder.named_parameters():
        assert torch.equal(value.detach(), start[name])


def test_explicit_modes_ignore_the_labelled_set_size(images, encoder):
    X, y = images
    n = AUTO_FULL_FINETUNE_FROM
    assert CNNClassifier(pretrained=encoder, finetune="linear", **ONE_EPOCH).fit(
        X[:n], y[:n]).finetune_ == "linear"
    assert CNNClassifier(pretrained=encoder, finetune="full", **ONE_EPOCH).fit(
        X[:10], y[:10]).finetune_ == "full"


def test_continuing_switches_once_and_never_back(images, encoder):
    X, y = images
    net = CNNClassifier(pretrained=encoder, finetune="auto", warm_start=True, random_state=0,
                        **ONE_EPOCH).fit(X[:20], y[:20])
    assert net.finetune_ == "linear"
    before = _encoder_weights(net)
    net.fit(X[:AUTO_FULL_FINETUNE_FROM], y[:AUTO_FULL_FINETUNE_FROM])   # continues, now full
    assert net.finetune_ == "full"
    assert net.optimizer_.param_groups[0]["lr"] == AUTO_LR["network"]
    assert _encoder_changed(before, net)
    before = _encoder_weights(net)
    net.partial_fit(X[:10], y[:10])   # a small continuing fit stays full
    assert net.finetune_ == "full"
    assert _encoder_changed(before, net)


def test_lr_auto_without_pretraining_and_explicit_lr(images):
    X, y = images
    net = CNNClassifier(**ONE_EPOCH).fit(X[:20], y[:20])
    assert net.get_params()["lr"] == "auto" and clone(net).lr == "auto"
    assert net.resolved_lr() == AUTO_LR["network"]
    assert net.optimizer_.param_groups[0]["lr"] == AUTO_LR["network"]
    net = CNNClassifier(lr=0.005, **ONE_EPOCH).fit(X[:20], y[:20])
    assert net.resolved_lr() == 0.005 and net.optimizer_.param_groups[0]["lr"] == 0.005
    # set_params(lr="auto") on a fitted net leaves a number in the live optimizer
    net.set_params(lr="auto")
    assert net.optimizer_.param_groups[0]["lr"] == AUTO_LR["network"]
    net.partial_fit(X[:20], y[:20])
    assert np.isfinite(net.predict_proba(X[:4])).all()


def test_bad_finetune_and_lr_are_clear(images, encoder):
    X, y = images
    with pytest.raises(SkalValueError, match="'auto'"):
        CNNClassifier(pretrained=encoder, finetune="partial", **ONE_EPOCH).fit(X[:20], y[:20])
    with pytest.raises(ValueError, match="lr must be a positive finite number or 'auto'"):
        CNNClassifier(lr="fast", **ONE_EPOCH).fit(X[:20], y[:20])


def test_wants_pretraining_rule():
    from sklearn.linear_model import LogisticRegression

    from skal.simulate import AUTO_PRETRAIN_MIN_POOL, wants_pretraining

    n = AUTO_PRETRAIN_MIN_POOL
    images = np.zeros((n, 8, 8), dtype=np.uint8)
    assert wants_pretraining(CNNClassifier(), images)
    assert wants_pretraining(MultiLabelCNNClassifier(), images[:, None])
    assert not wants_pretraining(CNNClassifier(), images[:-1])            # too few images
    assert not wants_pretraining(CNNClassifier(), images.reshape(n, -1))  # tabular rows
    assert not wants_pretraining(CNNClassifier(pretrained="enc.safetensors"), images)
    assert not wants_pretraining(LogisticRegression(), images)


def test_simulate_pretrains_by_default_on_a_large_image_pool(monkeypatch, tmp_path):
    """``simulate``'s default ``pretrain="auto"`` fits SimCLR once on a large image pool
    (here a 1-epoch one, patched in for speed), and not on a small pool."""
    import skal.pretrain
    from skal.simulate import AUTO_PRETRAIN_MIN_POOL, simulate

    fitted = []

    class QuickSimCLR(skal.pretrain.SimCLR):
        def __init__(self, random_state=None):
            super().__init__(encoder_widths=(4, 8), max_epochs=1, batch_size=256,
                             progress=False, random_state=random_state)

        def fit(self, X, y=None):
            fitted.append(len(X))
            return super().fit(X, y)

    monkeypatch.setattr(skal.pretrain, "SimCLR", QuickSimCLR)
    rng = np.random.default_rng(0)
    n = AUTO_PRETRAIN_MIN_POOL
    X = rng.integers(0, 256, size=(n + 40, 8, 8), dtype=np.uint8)
    y = np.arange(n + 40) % 2
    net = CNNClassifier(**ONE_EPOCH)
    kwargs = dict(n_initial=4, batch_size=2, n_rounds=1, seeds=1, progress=False,
                  pretrain_cache=tmp_path)
    result = simulate(net, ["random"], X[:n], y[:n], X[n:], y[n:], **kwargs)
    assert fitted == [n]   # once, on the pool images only
    assert result.config["pretrained"].startswith(str(tmp_path))
    assert result.config["initial"] == "typiclust"   # the cold start of the pre-trained recipe
    small = simulate(net, ["random"], X[:200], y[:200], X[n:], y[n:], **kwargs)
    assert fitted == [n] and small.config["pretrained"] is None
