"""skal.query.LatentHardSampling (Mo et al., MIDL 2020): the latent ascent, pool and
synthesize modes, the synthesized-query contract of ActiveLearner.query, determinism,
the scikit-learn contract and bad input."""

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression

from skal import ActiveLearner, CNNClassifier, MultiLabelCNNClassifier
from skal.data import load_digits_images
from skal.exceptions import SkalTypeError, SkalValueError
from skal.nets import VAE
from skal.query import LatentHardSampling, Synthesized
from skal.query.latent import latent_ascent, share_nearest


def tiny_net(seed=0, cls=CNNClassifier):
    return cls(module__widths=(8, 16), module__hidden=16, max_epochs=30, batch_size=32,
               min_steps=None, augment=None, random_state=seed)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits_images()
    return X[:80], y[:80], X[80:280], y[80:280]


@pytest.fixture(scope="module")
def vae(digits):
    X0, _, pool, _ = digits
    return VAE(latent_dim=8, max_epochs=25, batch_size=32, random_state=0,
               module__widths=(16, 32)).fit(np.concatenate([X0, pool]))


@pytest.fixture(scope="module")
def trained(digits):
    X0, y0, _, _ = digits
    learner = ActiveLearner(tiny_net(), X_training=X0, y_training=y0)
    learner.predict(X0[:1])
    return learner


def with_strategy(learner, strategy):
    learner.query_strategy = strategy
    return learner


# ------------------------------------------------------------------ ascent
def test_latent_ascent_moves_along_normalised_gradient():
    w = torch.tensor([3.0, 4.0])
    z0 = torch.zeros(2, 2)
    z, losses = latent_ascent(lambda z: z @ w, z0, steps=4, step_size=0.5)
    np.testing.assert_allclose(z.numpy(), np.tile([1.2, 1.6], (2, 1)), atol=1e-6)
    np.testing.assert_allclose(losses[:, 0].numpy(), [0, 2.5, 5, 7.5, 10], atol=1e-5)
    assert torch.equal(z0, torch.zeros(2, 2))          # the start is not modified
    # zero gradient: no move; zero steps: one loss evaluation
    z, losses = latent_ascent(lambda z: (z * 0).sum(1), z0, steps=3, step_size=1.0)
    assert torch.equal(z, z0) and losses.shape == (4, 2)
    assert latent_ascent(lambda z: z.sum(1), z0, 0, 1.0)[1].shape == (1, 2)


def test_ascent_increases_the_task_loss(trained, digits, vae):
    strategy = LatentHardSampling(vae=vae, n_seeds=20, steps=8, step_size=0.3,
                                  random_state=0)
    with_strategy(trained, strategy).query(digits[2], n_instances=10)
    path = strategy.loss_path_
    assert path.shape == (9, 20)
    assert np.mean(path[-1] > path[0]) >= 0.8
    assert path[-1].mean() > path[0].mean() + 0.2
    # each step has length step_size, so a code ends at most steps * step_size away
    moved = np.linalg.norm(strategy.latent_moved_ - strategy.latent_start_, axis=1)
    assert np.all(moved <= 8 * 0.3 + 1e-4) and np.median(moved) > 8 * 0.3 * 0.5
    # the seeds are labelled samples, encoded by their posterior mean
    np.testing.assert_allclose(
        strategy.latent_start_,
        vae.transform(trained.X_training_[strategy.seed_indices_]), atol=1e-6)


def test_ascent_on_multilabel_classifier(digits, vae):
    X0, y0, pool, _ = digits
    Y0 = np.stack([y0 % 2, (y0 > 4).astype(int)], axis=1)
    learner = ActiveLearner(tiny_net(cls=MultiLabelCNNClassifier),
                            LatentHardSampling(vae=vae, steps=5, step_size=0.3,
                                               random_state=0),
                            X_training=X0, y_training=Y0)
    indices, _ = learner.query(pool, n_instances=6)
    path = learner.query_strategy.loss_path_
    assert len(set(indices.tolist())) == 6 and np.mean(path[-1] > path[0]) >= 0.8


def test_ascent_on_one_vs_rest_classifier(digits, vae):
    """A sigmoid head fitted on 1-d (string) labels: the seeds' targets are their
    classes binarized as the model is trained."""
    X0, y0, pool, _ = digits
    labels = np.array(["low", "mid", "high"])[y0 % 3]
    strategy = LatentHardSampling(vae=vae, n_seeds=6, steps=5, step_size=0.3,
                                  random_state=0)
    learner = ActiveLearner(tiny_net(cls=MultiLabelCNNClassifier), strategy,
                            X_training=X0, y_training=labels)
    indices, _ = learner.query(pool, n_instances=6)
    assert len(set(indices.tolist())) == 6
    net = learner.estimator_
    targets = torch.as_tensor(np.eye(3, dtype=np.float32)[
        np.searchsorted(net.classes_, labels[strategy.seed_indices_])])
    module = net.module_.eval()
    vae.module_.eval()
    with torch.no_grad():
        logits = module(vae.decode(torch.as_tensor(strategy.latent_start_)))
    start = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, targets, reduction="none").sum(1)
    np.testing.assert_allclose(strategy.loss_path_[0], start.numpy(), rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------- pool mode
def test_share_nearest_distinct_and_next_nearest():
    # both points are nearest to sample 0; the farther one takes its next-nearest
    d = np.array([[0.1, 0.2], [5.0, 0.3], [0.4, 9.0], [7.0, 7.0]])
    indices, owners = share_nearest(d, 2)
    assert indices.tolist() == [0, 1] and owners.tolist() == [0, 1]
    # fewer points than instances: passes round-robin over the points
    indices, owners = share_nearest(d, 4)
    assert sorted(indices.tolist()) == [0, 1, 2, 3] and owners.tolist()[:2] == [0, 1]
    indices, owners = share_nearest(d[:, :1], 3)
    assert indices.tolist() == [0, 2, 1]


def test_pool_mode_valid_distinct_unlabelled_indices(digits, vae):
    X0, y0, pool, pool_y = digits
    learner = ActiveLearner(tiny_net(), LatentHardSampling(vae=vae, random_state=0),
                            X_training=X0, y_training=y0)
    labelled = np.zeros(len(pool), bool)
    for n in (7, 12):
        unlabelled = np.flatnonzero(~labelled)
        indices, X_query, scores = learner.query(pool[unlabelled], n_instances=n,
                                                 return_metrics=True)
        assert indices.shape == (n,) and len(set(indices.tolist())) == n
        assert indices.min() >= 0 and indices.max() < len(unlabelled)
        assert scores.shape == (n,) and np.isfinite(scores).all()
        chosen = unlabelled[indices]
        assert not labelled[chosen].any()
        np.testing.assert_array_equal(X_query, pool[chosen])
        labelled[chosen] = True
        learner.teach(X_query, pool_y[chosen])
    strategy = learner.query_strategy
    # each queried sample is the nearest free pool sample of its code, so its distance
    # is at most that of any sample nobody else took
    Z = vae.transform(pool[unlabelled])
    d = np.linalg.norm(Z[:, None] - strategy.latent_moved_[None], axis=2)
    assert np.allclose(strategy.distances_, np.sort(strategy.distances_))
    assert strategy.distances_[0] == pytest.approx(d.min(), abs=1e-4)


def test_n_seeds_other_than_n_instances(trained, digits, vae):
    strategy = LatentHardSampling(vae=vae, n_seeds=3, steps=2, random_state=0)
    indices, _ = with_strategy(trained, strategy).query(digits[2], n_instances=9)
    assert len(set(indices.tolist())) == 9 and strategy.latent_moved_.shape == (3, 8)
    # more seeds than labelled samples: repeats start from posterior samples
    strategy = LatentHardSampling(vae=vae, n_seeds=100, steps=1, random_state=0)
    indices, _ = with_strategy(trained, strategy).query(digits[2], n_instances=4)
    assert len(indices) == 4
    starts = strategy.latent_start_
    assert len(np.unique(starts.round(5), axis=0)) == 100


def test_streamed_pool_scoring_does_not_depend_on_batch_size(trained, digits, vae):
    a = with_strategy(trained, LatentHardSampling(vae=vae, random_state=3)).query(
        digits[2], n_instances=5)[0]
    b = with_strategy(trained, LatentHardSampling(vae=vae, random_state=3, batch_size=9)
                      ).query(digits[2], n_instances=5)[0]
    np.testing.assert_array_equal(a, b)


def test_pool_mode_in_a_torch_dataset_pool(trained, digits, vae):
    dataset = torch.utils.data.TensorDataset(torch.from_numpy(digits[2]))
    strategy = LatentHardSampling(vae=vae, random_state=1)
    indices, subset = with_strategy(trained, strategy).query(dataset, n_instances=4)
    array_indices, _ = trained.query(digits[2], n_instances=4)
    np.testing.assert_array_equal(indices, array_indices)
    assert len(subset) == 4


# ---------------------------------------------------------- synthesize mode
class RecordingTool:
    """A labelling tool standing in for an expert: labels by a fixed classifier."""

    def __init__(self, learner):
        self.learner = learner
        self.calls = []

    def __call__(self, X):
        self.calls.append(X)
        return self.learner.predict(X)


def test_synthesize_mode_labels_and_teaches(trained, digits, vae):
    X0, y0, pool, _ = digits
    tool = RecordingTool(trained)
    strategy = LatentHardSampling(vae=vae, mode="synthesize", labeling_tool=tool,
                                  steps=5, random_state=0)
    learner = ActiveLearner(tiny_net(), strategy, X_training=X0, y_training=y0)
    indices, X_new, y_new, scores = learner.query(pool, n_instances=6, return_labels=True,
                                                  return_metrics=True)
    assert indices is None
    assert len(tool.calls) == 1 and tool.calls[0] is X_new
    assert X_new.shape == (6, 1, 8, 8) and X_new.dtype == np.float32
    assert X_new.min() >= 0 and X_new.max() <= 1
    assert y_new.shape == (6,) and set(y_new.tolist()) <= set(range(10))
    assert scores.shape == (6,)
    # the images are the decoded moved codes
    np.testing.assert_allclose(X_new, vae.inverse_transform(strategy.latent_moved_),
                               atol=1e-6)
    n_before = len(learner.y_training_)
    learner.teach(X_new, y_new)
    assert len(learner.y_training_) == n_before + 6
    np.testing.assert_array_equal(learner.X_training_[-6:], X_new)
    # the plain two-value form: (None, X_synth)
    indices, X_again = learner.query(pool, n_instances=2)
    assert indices is None and X_again.shape == (2, 1, 8, 8)


def test_synthesize_matches_training_layout_and_dtype(digits, vae):
    X0, y0, pool, _ = digits
    X0_u8 = np.rint(X0[:, 0] * 255).astype(np.uint8)                  # (n, H, W) uint8
    strategy = LatentHardSampling(vae=vae, mode="synthesize", steps=2, random_state=0)
    learner = ActiveLearner(tiny_net(), strategy, X_training=X0_u8, y_training=y0)
    indices, X_new, y_new = learner.query(pool, n_instances=3, return_labels=True)
    assert indices is None and y_new is None                          # no labelling tool
    assert X_new.shape == (3, 8, 8) and X_new.dtype == np.uint8
    learner.teach(X_new, np.array([0, 1, 2]))
    assert learner.X_training_.shape == (83, 8, 8)


def test_pool_queries_return_no_labels(trained, digits, vae):
    with_strategy(trained, LatentHardSampling(vae=vae, random_state=0))
    indices, X_query, y_query = trained.query(digits[2], n_instances=2, return_labels=True)
    assert y_query is None and len(indices) == 2


def test_learner_checks_synthesized_results(trained, digits):
    def too_many(learner, X_pool, n_instances=1):
        return Synthesized(np.zeros((n_instances + 1, 1, 8, 8), np.float32))

    with_strategy(trained, too_many)
    with pytest.raises(SkalValueError, match="synthesized 3 samples for n_instances=2"):
        trained.query(digits[2], n_instances=2)
    with pytest.raises(SkalValueError, match="one label"):
        Synthesized(np.zeros((2, 1, 8, 8), np.float32), y=[1, 2, 3])
    with pytest.raises(SkalValueError):
        Synthesized(np.zeros((2,), np.float32))


# ------------------------------------------------------------- determinism
def test_same_random_state_same_query(trained, digits, vae):
    results = []
    for _ in range(2):
        strategy = LatentHardSampling(vae=vae, steps=4, random_state=7)
        indices, _ = with_strategy(trained, strategy).query(digits[2], n_instances=6)
        results.append((indices, strategy.latent_moved_))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])
    # the call's random_state takes precedence over the strategy's
    strategy = LatentHardSampling(vae=vae, steps=4, random_state=7)
    with_strategy(trained, strategy).query(digits[2], n_instances=6, random_state=8)
    assert not np.array_equal(strategy.latent_moved_, results[0][1])


def test_vae_fitted_on_the_pool_at_first_query_and_reused(trained, digits):
    template = VAE(latent_dim=4, max_epochs=2, random_state=0, module__widths=(8,))
    strategy = LatentHardSampling(vae=template, steps=1, random_state=0)
    with_strategy(trained, strategy).query(digits[2], n_instances=2)
    fitted = strategy.vae_
    assert fitted is not template and not hasattr(template, "module_")
    assert fitted.transform(digits[2][:1]).shape == (1, 4)
    trained.query(digits[2][:50], n_instances=2)
    assert strategy.vae_ is fitted                                    # reused
    strategy.set_params(vae=None, random_state=0)
    assert strategy.fitted_vae(digits[2][:40]) is not fitted          # vae changed: refit


# ------------------------------------------------------------ sklearn contract
def test_get_params_clone_and_frozen_vae(trained, digits, vae):
    strategy = LatentHardSampling(vae=vae, n_seeds=4, steps=3, step_size=0.1,
                                  mode="synthesize", random_state=2)
    params = strategy.get_params(deep=False)
    assert params == {"vae": vae, "n_seeds": 4, "steps": 3, "step_size": 0.1,
                      "mode": "synthesize", "labeling_tool": None, "random_state": 2,
                      "batch_size": None}
    assert strategy.get_params()["vae__latent_dim"] == 8
    copy = clone(strategy)
    assert copy.get_params(deep=False)["steps"] == 3
    assert not hasattr(copy.vae, "module_")                # clone unfits the VAE ...
    frozen = clone(LatentHardSampling(vae=FrozenEstimator(vae), random_state=0))
    indices, _ = with_strategy(trained, frozen).query(digits[2], n_instances=3)
    assert frozen.vae_.estimator is vae                    # ... FrozenEstimator keeps it
    direct, _ = with_strategy(trained, LatentHardSampling(vae=vae, random_state=0)).query(
        digits[2], n_instances=3)
    np.testing.assert_array_equal(indices, direct)
    copy.set_params(steps=5, vae__beta=0.5)
    assert copy.steps == 5 and copy.vae.beta == 0.5


def test_runs_in_modal_learner(digits, vae):
    modal = pytest.importorskip("modAL.models")
    X0, y0, pool, _ = digits
    learner = modal.ActiveLearner(estimator=tiny_net(),
                                  query_strategy=LatentHardSampling(vae=vae, random_state=0),
                                  X_training=X0, y_training=y0)
    indices, X_query = learner.query(pool, n_instances=3)
    assert len(set(np.asarray(indices).tolist())) == 3
    np.testing.assert_array_equal(X_query, pool[indices])


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("params, error, match", [
    ({"mode": "generate"}, SkalValueError, "mode"),
    ({"steps": -1}, SkalValueError, "steps"),
    ({"n_seeds": 0}, SkalValueError, "n_seeds"),
    ({"step_size": float("nan")}, SkalValueError, "step_size"),
    ({"labeling_tool": "expert"}, SkalTypeError, "labeling_tool"),
    ({"vae": "my-vae"}, SkalTypeError, "vae"),
])
def test_bad_parameters(trained, digits, vae, params, error, match):
    strategy = LatentHardSampling(**{"vae": vae, **params})
    with pytest.raises(error, match=match):
        with_strategy(trained, strategy).query(digits[2], n_instances=2)


def test_bad_learner_pool_and_tool(digits, vae, trained):
    X0, y0, pool, _ = digits
    flat = ActiveLearner(LogisticRegression(max_iter=50),
                         LatentHardSampling(vae=vae), X_training=X0.reshape(80, -1),
                         y_training=y0)
    with pytest.raises(SkalTypeError, match="torch classifier"):
        flat.query(pool.reshape(200, -1), n_instances=2)
    # pool of another image size than the VAE's
    with_strategy(trained, LatentHardSampling(vae=vae))
    with pytest.raises(SkalValueError, match="fitted on"):
        trained.query(np.zeros((10, 1, 12, 12), np.float32), n_instances=2)
    # a labelling tool that answers with the wrong number of labels; state unchanged
    n_before = len(trained.y_training_)
    with_strategy(trained, LatentHardSampling(vae=vae, mode="synthesize",
                                              labeling_tool=lambda X: [0]))
    with pytest.raises(SkalValueError, match="one label"):
        trained.query(pool, n_instances=3)
    assert len(trained.y_training_) == n_before
    # n_instances is checked against the pool in pool mode
    with_strategy(trained, LatentHardSampling(vae=vae))
    with pytest.raises(SkalValueError, match="larger than the pool"):
        trained.query(pool[:3], n_instances=4)


def test_one_copy_policy_keeps_a_prefitted_vae(digits, vae):
    """``fresh_copy`` (used by the registry, ``simulate`` and ActiveLearningClassifier)
    drops a strategy's state but keeps a pre-fitted VAE: the meta-estimator's campaign
    queries with the given VAE instead of refitting an unfitted clone on its pool."""
    from skal import ActiveLearningClassifier
    from skal.query.registry import fresh_copy

    X0, y0, _, _ = digits
    strategy = LatentHardSampling(vae=vae, steps=2, random_state=0)
    strategy.fitted_vae()                                   # state: vae_
    fresh = fresh_copy(strategy)
    assert fresh is not strategy and fresh.vae is vae and not hasattr(fresh, "vae_")
    assert fresh.get_params(deep=False) == strategy.get_params(deep=False)
    unfitted = LatentHardSampling(vae=clone(vae))
    assert fresh_copy(unfitted).vae is not unfitted.vae    # unfitted parts are cloned

    model = ActiveLearningClassifier(
        tiny_net().set_params(max_epochs=2), query_strategy=strategy, n_initial=20,
        n_queries=1, batch_size=5, random_state=0, record_scores=False).fit(X0, y0)
    used = model.learner_.query_strategy
    assert used is not strategy and used.vae_ is vae       # queried with the given VAE
