"""Simulated campaigns, their summaries, plots and the CLI."""

import json

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from skal import CNNClassifier, SkalValueError
from skal.cli import main
from skal.data import load_digits_images
from skal.simulate import initial_indices, simulate


@pytest.fixture(scope="module")
def digits_split():
    X, y = load_digits_images()
    rng = np.random.RandomState(0)
    order = rng.permutation(len(y))
    keep = order[:500]
    return X[keep[:400]], y[keep[:400]], X[keep[400:]], y[keep[400:]]


def tiny_net():
    return CNNClassifier(module__widths=(8,), module__hidden=16, max_epochs=3, min_steps=20)


def test_initial_indices_balanced_and_paired():
    y = np.array([0] * 50 + [1] * 10 + [2] * 5)
    idx = initial_indices(y, 9, random_state=3)
    assert len(np.unique(idx)) == 9
    assert np.bincount(y[idx], minlength=3).tolist() == [3, 3, 3]
    assert np.array_equal(idx, initial_indices(y, 9, random_state=3))
    assert not np.array_equal(np.sort(idx), np.sort(initial_indices(y, 9, random_state=4)))


def test_simulate_records_curves_times_and_is_paired(digits_split):
    X_pool, y_pool, X_test, y_test = digits_split
    result = simulate(tiny_net(), ["random", "margin"], X_pool, y_pool, X_test, y_test,
                      n_initial=10, batch_size=5, n_rounds=2, seeds=[0, 1], progress=False)
    assert result.strategies == ["random", "margin"]
    assert result.n_labels.tolist() == [10, 15, 20]
    assert result.metric == "accuracy"                       # multi-class default
    for metric in ("accuracy", "auroc"):
        assert result.scores[metric].shape == (2, 2, 3)
        assert np.isfinite(result.scores[metric]).all()
    assert (result.fit_time > 0).all()
    assert (result.query_time[..., 1:] > 0).all() and (result.query_time[..., 0] == 0).all()
    # paired seeds: the initial fit (same labelled set, same weights) is identical
    assert np.allclose(result.scores["accuracy"][0, :, 0], result.scores["accuracy"][1, :, 0])
    # queried indices are distinct and never in the initial set
    for s in range(2):
        for k, seed in enumerate(result.seeds):
            picked = result.queried[s, k].ravel()
            start = initial_indices(y_pool, 10, seed)
            assert len(np.unique(picked)) == picked.size
            assert not np.intersect1d(picked, start).size


def test_simulate_is_deterministic_and_independent_of_n_jobs(digits_split):
    X_pool, y_pool, X_test, y_test = digits_split
    kwargs = dict(n_initial=10, batch_size=5, n_rounds=1, seeds=[0, 1], progress=False)
    a = simulate(tiny_net(), ["entropy"], X_pool, y_pool, X_test, y_test, **kwargs)
    b = simulate(tiny_net(), ["entropy"], X_pool, y_pool, X_test, y_test, n_jobs=2, **kwargs)
    assert np.array_equal(a.queried, b.queried)
    assert np.allclose(a.scores["accuracy"], b.scores["accuracy"])


def test_summary_paired_difference_and_target():
    from skal.simulate import SimulationResult

    acc = np.array([
        [[0.5, 0.6, 0.7], [0.4, 0.5, 0.6]],      # random, 2 seeds
        [[0.5, 0.7, 0.8], [0.4, 0.7, 0.7]],      # margin
    ])
    zeros = np.zeros_like(acc)
    result = SimulationResult(["random", "margin"], [0, 1], np.array([10, 20, 30]),
                              {"accuracy": acc, "auroc": acc}, zeros, zeros,
                              np.zeros((2, 2, 2, 1), dtype=int), "accuracy")
    summary = result.summary()
    assert summary["target"] == pytest.approx(0.65)
    random_row, margin_row = summary["rows"]
    assert random_row["labels_to_target"] == 30
    assert margin_row["labels_to_target"] == 20
    assert margin_row["ratio"] == pytest.approx(1.5)
    # AULC per seed: random 0.6, 0.5; margin 0.675, 0.625 -> diffs 0.075, 0.125
    assert margin_row["aulc_diff"] == pytest.approx(0.1)
    assert margin_row["aulc_diff_se"] == pytest.approx(np.std([0.075, 0.125], ddof=1) / np.sqrt(2))
    assert random_row["aulc_diff"] == 0.0


def test_simulate_works_with_sklearn_estimator_and_json_plot(tmp_path, digits_split):
    X_pool, y_pool, X_test, y_test = digits_split
    flat = lambda X: X.reshape(len(X), -1)  # noqa: E731
    result = simulate(LogisticRegression(max_iter=200), ["random", "uncertainty"],
                      flat(X_pool), y_pool, flat(X_test), y_test, n_initial=20,
                      batch_size=10, n_rounds=2, seeds=2, progress=False)
    result.to_json(tmp_path / "r.json")
    payload = json.loads((tmp_path / "r.json").read_text())
    assert payload["strategies"] == ["random", "uncertainty"]
    assert len(payload["scores"]["accuracy"][0][0]) == 3
    assert {"aulc", "final", "labels_to_target", "ratio"} <= set(payload["summary"]["rows"][1])
    result.plot(tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_simulate_bad_budget_and_names(digits_split):
    X_pool, y_pool, X_test, y_test = digits_split
    with pytest.raises(SkalValueError, match="needs"):
        simulate(tiny_net(), ["random"], X_pool, y_pool, X_test, y_test, n_initial=10,
                 batch_size=100, n_rounds=10, progress=False)
    with pytest.raises(SkalValueError, match="Unknown strategy"):
        simulate(tiny_net(), ["nope"], X_pool, y_pool, X_test, y_test, progress=False)


def test_cli_simulate_writes_json_and_png(tmp_path, capsys):
    code = main(["simulate", "--strategies", "random,margin", "--seeds", "2", "--initial",
                 "10", "--batch", "5", "--rounds", "1", "--epochs", "2", "--min-steps", "10",
                 "--out", str(tmp_path), "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    assert "AULC" in out and "margin" in out and "ratio vs random" in out
    assert (tmp_path / "results.json").exists()
    assert (tmp_path / "learning_curves.png").stat().st_size > 1000


def test_cli_medmnist(tmp_path, capsys, data_file):
    path = data_file("medmnist/breastmnist.npz")
    code = main(["simulate", "--data", str(path), "--strategies", "random,entropy",
                 "--seeds", "1", "--initial", "10", "--batch", "10", "--rounds", "1",
                 "--epochs", "1", "--min-steps", "5", "--out", str(tmp_path), "--no-progress"])
    assert code == 0
    assert "AUROC" in capsys.readouterr().out


def test_cli_reports_errors_cleanly(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not an npz")
    assert main(["simulate", "--data", str(bad), "--out", str(tmp_path)]) == 2
    assert "not a readable npz" in capsys.readouterr().err
