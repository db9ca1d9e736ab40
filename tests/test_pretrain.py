"""SimCLR pre-training, pre-trained starts of the classifiers, and simulate(pretrain=,
initial=)."""

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedShuffleSplit
from torch import nn

from skal import CNNClassifier, MultiLabelCNNClassifier
from skal.exceptions import NotFittedError, SkalTypeError, SkalValueError
from skal.nets.pretrained import small_cnn_encoder
from skal.pretrain import ImageAugmenter, SimCLR, nt_xent_loss
from skal.simulate import simulate

TINY_SIMCLR = dict(encoder_widths=(8, 16), max_epochs=2, batch_size=64, progress=False)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X.reshape(-1, 8, 8) * 255 / 16).astype(np.uint8), y


@pytest.fixture(scope="module")
def tiny_simclr(digits):
    X, _ = digits
    return SimCLR(random_state=0, **TINY_SIMCLR).fit(X[:256])


def _reference_nt_xent(z1, z2, tau):
    """Slow NT-Xent: a loop over the 2B views of the formula in Chen et al. 2020."""
    z = torch.cat([z1, z2])
    z = z / z.norm(dim=1, keepdim=True)
    n = len(z1)
    total = 0.0
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        sims = [float(z[i] @ z[k]) / tau for k in range(2 * n) if k != i]
        total += -(float(z[i] @ z[j]) / tau - np.log(np.sum(np.exp(sims))))
    return total / (2 * n)


def test_nt_xent_matches_reference():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    # float32 vs float64 summation only
    assert float(nt_xent_loss(z1, z2, 0.3)) == pytest.approx(_reference_nt_xent(z1, z2, 0.3),
                                                             rel=1e-5)


def test_pretraining_lowers_the_loss(digits):
    X, _ = digits
    model = SimCLR(random_state=0, encoder_widths=(8, 16), max_epochs=6, batch_size=128,
                   progress=False).fit(X[:512])
    # the last epoch's mean NT-Xent is clearly below the first's (log(2B-1) ~ 5.5 at chance)
    assert model.loss_curve_[-1] < model.loss_curve_[0] - 0.3
    # and on fresh views of the same images the trained model beats its own start
    untrained = SimCLR(random_state=0, encoder_widths=(8, 16), max_epochs=1, lr=1e-9,
                       batch_size=128, progress=False).fit(X[:512])
    assert model.score(X[:512]) > untrained.score(X[:512]) + 0.1


def test_linear_probe_at_least_as_good_as_pixels(digits):
    # 20 labels (2 per class), 10 stratified draws; a linear probe on the SimCLR
    # embeddings separates digits at least as well as on raw pixels (measured: 0.79 vs
    # 0.76; a 0.01 slack absorbs platform-level float differences)
    X, y = digits
    model = SimCLR(encoder_widths=(32, 64), max_epochs=20, batch_size=128, random_state=0,
                   augmenter=ImageAugmenter(crop_scale=(0.6, 1.0), blur_prob=0.0,
                                            noise_std=0.05), progress=False).fit(X)

    def probe(F):
        scores = []
        for train, test in StratifiedShuffleSplit(10, train_size=20, random_state=0).split(F, y):
            clf = LogisticRegression(max_iter=3000).fit(F[train], y[train])
            scores.append(clf.score(F[test], y[test]))
        return np.mean(scores)

    assert probe(model.transform(X)) >= probe(X.reshape(len(X), -1) / 255.0) - 0.01


def test_transform_is_l2_normalised_float32(tiny_simclr, digits):
    X, _ = digits
    E = tiny_simclr.transform(X[:20])
    assert E.dtype == np.float32 and E.shape == (20, 16)
    np.testing.assert_allclose(np.linalg.norm(E, axis=1), 1.0, atol=1e-5)


def test_determinism_under_random_state(digits):
    X, _ = digits
    a = SimCLR(random_state=3, **TINY_SIMCLR).fit(X[:128])
    b = SimCLR(random_state=3, **TINY_SIMCLR).fit(X[:128])
    c = SimCLR(random_state=4, **TINY_SIMCLR).fit(X[:128])
    assert a.loss_curve_ == b.loss_curve_
    np.testing.assert_array_equal(a.transform(X[:10]), b.transform(X[:10]))
    assert not np.allclose(a.transform(X[:10]), c.transform(X[:10]))


def test_rgb_float_and_dataset_input():
    g = np.random.default_rng(0)
    X = g.random((40, 3, 16, 16), dtype=np.float32)
    model = SimCLR(random_state=0, **{**TINY_SIMCLR, "batch_size": 16}).fit(X)
    assert model.in_channels_ == 3 and model.scaling_ == "none"
    ds = torch.utils.data.TensorDataset(torch.from_numpy(X))
    from_ds = SimCLR(random_state=0, **{**TINY_SIMCLR, "batch_size": 16}).fit(ds)
    np.testing.assert_allclose(from_ds.transform(X[:4]), model.transform(X[:4]), atol=1e-6)
    with pytest.raises(SkalValueError):
        model.transform(X[:4, :1])


def test_bad_input_and_params(digits):
    X, _ = digits
    with pytest.raises(NotFittedError):
        SimCLR().transform(X[:4])
    with pytest.raises(SkalValueError):
        SimCLR(temperature=0).fit(X[:10])
    with pytest.raises(SkalValueError):
        SimCLR(**TINY_SIMCLR).fit(X[:1])
    with pytest.raises(SkalValueError):
        SimCLR(**TINY_SIMCLR).fit(np.full((4, 8, 8), np.nan, np.float32))


def test_safetensors_round_trip(tiny_simclr, digits, tmp_path):
    X, _ = digits
    path = tiny_simclr.save(tmp_path / "enc.safetensors")
    clf = CNNClassifier(pretrained=str(path))
    # embed before fit = the encoder's features: identical to the in-memory encoder's
    np.testing.assert_array_equal(clf.embed(X[:30]),
                                  CNNClassifier(pretrained=tiny_simclr).embed(X[:30]))
    # the same direction as SimCLR.transform (features are normalised, then scaled)
    E = clf.embed(X[:30])
    np.testing.assert_allclose(E / np.linalg.norm(E, axis=1, keepdims=True),
                               tiny_simclr.transform(X[:30]), atol=1e-5)
    with open(path, "rb") as handle:
        assert b"pickle" not in handle.read(200)


def test_clone_keeps_a_fitted_simclr(tiny_simclr, digits):
    X, _ = digits
    copy = clone(tiny_simclr)
    np.testing.assert_array_equal(copy.transform(X[:5]), tiny_simclr.transform(X[:5]))
    assert copy.encoder_ is not tiny_simclr.encoder_
    assert not hasattr(clone(SimCLR(**TINY_SIMCLR)), "encoder_")


def _weights(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("cls", [CNNClassifier, MultiLabelCNNClassifier])
@pytest.mark.parametrize("finetune", ["linear", "full"])
@pytest.mark.parametrize("source", ["simclr", "module", "path"])
def test_pretrained_sources_and_finetune_modes(cls, finetune, source, tiny_simclr, digits,
                                               tmp_path):
    X, y = digits
    pretrained = {"simclr": tiny_simclr, "module": tiny_simclr.encoder_,
                  "path": str(tiny_simclr.save(tmp_path / "e.safetensors"))}[source]
    before = _weights(tiny_simclr.encoder_)
    clf = cls(pretrained=pretrained, finetune=finetune, max_epochs=1, min_steps=5,
              random_state=0)
    clf.fit(X[:60], y[:60])
    assert clf.predict(X[:5]).shape[0] == 5
    start = tiny_simclr.encoder_.state_dict()
    trained = {k[len("encoder."):]: v for k, v in clf.module_.state_dict().items()
               if k.startswith("encoder.")}
    changed = [k for k in start if not torch.equal(start[k], trained[k])]
    if finetune == "linear":
        assert changed == []          # frozen: weights and BatchNorm statistics
    else:
        assert changed
    # the pretrained object is never modified
    for k, v in before.items():
        assert torch.equal(v, tiny_simclr.encoder_.state_dict()[k])
    assert clone(clf).get_params()["pretrained"] is not None


def test_linear_probe_trains_the_head_only(tiny_simclr, digits):
    X, y = digits
    clf = CNNClassifier(pretrained=tiny_simclr, finetune="linear", max_epochs=1, min_steps=20,
                        random_state=0)
    clf.fit(X[:60], y[:60])
    trainable = [name for name, p in clf.module_.named_parameters() if p.requires_grad]
    assert trainable == ["fc.weight", "fc.bias"]
    untrained = CNNClassifier(pretrained=tiny_simclr, finetune="linear", max_epochs=1, min_steps=0,
                              iterator_train__shuffle=False, lr=1e-12, random_state=0)
    untrained.fit(X[:60], y[:60])
    assert not torch.equal(untrained.module_.fc.weight, clf.module_.fc.weight)


def test_pretrained_from_state_dict_of_own_module(digits, tmp_path):
    X, y = digits
    from safetensors.torch import save_file

    source = CNNClassifier(max_epochs=1, min_steps=5, random_state=0).fit(X[:60], y[:60])
    state = {k: v.contiguous() for k, v in source.module_.state_dict().items()}
    for pretrained in (state, tmp_path / "own.safetensors"):
        if not isinstance(pretrained, dict):
            save_file(state, str(pretrained))
            pretrained = str(pretrained)
        clf = CNNClassifier(pretrained=pretrained, finetune="linear", max_epochs=1, min_steps=0,
                            random_state=1)
        clf.fit(X[:60], y[:60])
        # the convolutions are the source's, untouched by the linear probe
        for name, value in source.module_.state_dict().items():
            if name.startswith("features."):
                assert torch.equal(clf.module_.state_dict()[name], value)
        with pytest.raises(NotFittedError):
            CNNClassifier(pretrained=pretrained).embed(X[:3])


def test_embed_before_fit_and_determinism(tiny_simclr, digits):
    X, y = digits
    clf = CNNClassifier(pretrained=tiny_simclr, finetune="linear", max_epochs=1, min_steps=5,
                        random_state=0)
    before = clf.embed(X[:10])
    assert before.shape == (10, 16)
    a = clone(clf).fit(X[:60], y[:60]).predict_proba(X[:10])
    b = clone(clf).fit(X[:60], y[:60]).predict_proba(X[:10])
    np.testing.assert_array_equal(a, b)
    # a linear probe keeps the features: embed after fit equals embed before
    np.testing.assert_allclose(clf.fit(X[:60], y[:60]).embed(X[:10]), before, atol=1e-6)


def test_user_encoder_module(digits):
    X, y = digits
    encoder = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten())
    clf = CNNClassifier(pretrained=encoder, max_epochs=1, min_steps=3, random_state=0)
    assert clf.embed(X[:4]).shape == (4, 4 * 64)
    clf.fit(X[:40], y[:40])
    assert clf.module_.encoder is not encoder


def test_bad_pretrained(digits):
    X, y = digits
    with pytest.raises(NotFittedError):
        CNNClassifier(pretrained=SimCLR()).fit(X[:20], y[:20])
    with pytest.raises(SkalTypeError):
        CNNClassifier(pretrained=3).fit(X[:20], y[:20])
    with pytest.raises(SkalValueError):
        CNNClassifier(pretrained=small_cnn_encoder(), finetune="frozen").fit(X[:20], y[:20])
    with pytest.raises(SkalValueError):
        CNNClassifier(pretrained=small_cnn_encoder(in_channels=1)).fit(
            np.zeros((8, 3, 8, 8), np.float32), np.arange(8) % 2)
    with pytest.raises(ValueError):
        CNNClassifier(pretrained="/nonexistent/encoder.safetensors").fit(X[:20], y[:20])


SEEN = []


def _strategy_first_embedding_dim(classifier, X_pool, n_instances, random_state=None):
    """A label-free strategy: the samples with the largest first embedding coordinate."""
    SEEN.append((classifier.pretrained, len(X_pool), random_state))
    E = classifier.embed(X_pool)
    return np.argsort(-E[:, 0], kind="stable")[:n_instances], E[:, 0]


@pytest.mark.parametrize("initial", ["random", "stratified", _strategy_first_embedding_dim])
def test_simulate_with_pretrain_and_initial(initial, digits, tmp_path):
    X, y = digits
    X_pool, y_pool, X_test, y_test = X[:200], y[:200], X[200:300], y[200:300]
    est = CNNClassifier(max_epochs=1, min_steps=5)
    result = simulate(est, ["random", "margin"], X_pool, y_pool, X_test, y_test,
                      n_initial=10, batch_size=5, n_rounds=1, seeds=1, progress=False,
                      pretrain=SimCLR(**TINY_SIMCLR), pretrain_cache=tmp_path, initial=initial)
    assert np.isfinite(result.scores["accuracy"]).all()
    files = list(tmp_path.glob("*.safetensors"))
    assert len(files) == 1 and result.config["pretrained"] == str(files[0])
    if callable(initial):
        # the cold start saw the whole pool through the shared pre-trained encoder, once
        # per (strategy, seed), and no label
        assert result.config["initial"] == "_strategy_first_embedding_dim"
        assert SEEN[-2:] == [(str(files[0]), 200, 0)] * 2


def test_encoder_cache_is_reused(digits, tmp_path):
    X, y = digits
    args = (CNNClassifier(max_epochs=1, min_steps=2), ["random"], X[:120], y[:120],
            X[200:260], y[200:260])
    kwargs = dict(n_initial=10, batch_size=5, n_rounds=1, seeds=1, progress=False,
                  pretrain_cache=tmp_path)
    first = simulate(*args, pretrain=SimCLR(random_state=0, **TINY_SIMCLR), **kwargs)
    # initial="auto" with pre-training: a label-free TypiClust cold start
    assert first.config["initial"] == "typiclust"
    (path,) = tmp_path.glob("*.safetensors")
    stamp = path.stat().st_mtime_ns
    simulate(*args, pretrain=SimCLR(random_state=0, **TINY_SIMCLR), **kwargs)
    assert list(tmp_path.glob("*.safetensors")) == [path]
    assert path.stat().st_mtime_ns == stamp          # read, not re-trained
    # other parameters, or another pool, pre-train again
    simulate(*args, pretrain=SimCLR(random_state=1, **TINY_SIMCLR), **kwargs)
    assert len(list(tmp_path.glob("*.safetensors"))) == 2


def test_simulate_pretrain_needs_pretrained_param(digits):
    from sklearn.linear_model import LogisticRegression as LR

    X, y = digits
    with pytest.raises(SkalValueError):
        simulate(LR(), ["random"], X[:60].reshape(60, -1), y[:60], X[60:90].reshape(30, -1),
                 y[60:90], n_initial=10, batch_size=5, n_rounds=1, seeds=1, progress=False,
                 pretrain=SimCLR(**TINY_SIMCLR), pretrain_cache=False)
    with pytest.raises(SkalValueError):
        simulate(CNNClassifier(), ["random"], X[:60], y[:60], X[60:90], y[60:90],
                 n_initial=10, batch_size=5, n_rounds=1, seeds=1, progress=False,
                 initial="no_such_strategy")


def test_cli_pretrain_and_cold_start(tmp_path, capsys):
    from skal.cli import main

    rng = np.random.RandomState(0)
    y = np.arange(80) % 2
    X = rng.randint(0, 120, (80, 16, 16)).astype(np.uint8)
    X[y == 1, 4:12, 4:12] += 120
    np.savez(tmp_path / "toy.npz", images=X, labels=y)
    args = ["simulate", "--data", str(tmp_path / "toy.npz"), "--strategies", "random,margin",
            "--seeds", "1", "--initial", "6", "--batch", "4", "--rounds", "1",
            "--min-steps", "3", "--pretrain", "simclr", "--pretrain-epochs", "1",
            "--initial-selection", "typiclust", "--cache-dir", str(tmp_path / "cache"),
            "--out", str(tmp_path / "out"), "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "(typiclust)" in out and "pre-training simclr" in out
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 1
    import json
    config = json.loads((tmp_path / "out" / "results.json").read_text())["config"]
    assert config["initial"] == "typiclust" and config["pretrained"].endswith(".safetensors")


def test_pretrained_classifier_round_trips_through_skorch_save_load(tiny_simclr, digits, tmp_path):
    # skorch's recipe (initialize(), then load_params) must also work for a classifier
    # with a pre-trained start, whose head size is only known after fit
    X, y = digits
    clf = CNNClassifier(pretrained=tiny_simclr, max_epochs=1, min_steps=5, random_state=0)
    clf.fit(X[:60], y[:60])
    path = tmp_path / "model.safetensors"
    clf.save_params(f_params=path, use_safetensors=True)
    loaded = CNNClassifier(pretrained=tiny_simclr, max_epochs=1, min_steps=5, random_state=0)
    loaded.initialize()
    loaded.load_params(f_params=path, use_safetensors=True)
    np.testing.assert_array_equal(loaded.classes_, clf.classes_)
    # the same weights and inputs: equal up to float32 rounding
    np.testing.assert_allclose(loaded.predict_proba(X[60:80]), clf.predict_proba(X[60:80]),
                               atol=1e-6)
