"""skal.Campaign: persistence, labels with history, rounds, checkpoints, pool ids."""

import sqlite3

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

import skal
from skal import CNNClassifier, NotFittedError, SkalValueError
from skal.campaign import Campaign, CampaignDatabaseError, PoolChangedError
from skal.campaign.engine import round_seed
from skal.data import load_digits_images
from skal.query.base import multi_argmax
from skal.query.uncertainty import classifier_margin

CLASSES = ["high", "low"]


def flatten(X):
    """Images to rows (module level, so a pipeline using it can be stored by name)."""
    return np.asarray(X).reshape(len(X), -1)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits_images()
    X = (X[:120] * 255).astype(np.uint8)
    names = np.where(y[:120] < 5, "low", "high")
    return X, names


def tiny_net(**kw):
    return CNNClassifier(module__widths=(4,), module__hidden=8, max_epochs=1, min_steps=4,
                         **kw)


def truth(campaign, ids, names):
    return [names[campaign.ids.index(i)] for i in ids]


@pytest.fixture
def campaign(tmp_path, digits):
    X, _ = digits
    np.save(tmp_path / "pool.npy", X)
    camp = Campaign.create(tmp_path / "camp", tmp_path / "pool.npy", tiny_net(), "margin",
                           classes=CLASSES, cv=0, progress=False)
    yield camp
    camp.close()


def test_exported_from_skal():
    assert skal.Campaign is Campaign


def test_ids_are_rows_with_hashes_and_pending_batch_is_stable(campaign, digits, tmp_path):
    assert campaign.ids[:2] == ["row-000000", "row-000001"]
    batch = campaign.next_batch(6)
    assert len(batch) == 6 and len(set(batch)) == 6
    assert campaign.next_batch(6) == batch          # no labels yet: the same pending batch
    reopened = Campaign.open(campaign.path)
    assert reopened.next_batch(10) == batch         # also from another process / session
    campaign.add_labels(batch[:2], truth(campaign, batch[:2], digits[1]), annotator="a")
    assert campaign.next_batch(6) == batch[2:]      # what is left of it
    reopened.close()


def test_cold_start_batch_is_seeded(tmp_path, digits):
    X, _ = digits
    a = Campaign.create(tmp_path / "a", X, tiny_net(), "margin", classes=CLASSES,
                        random_state=3, progress=False)
    b = Campaign.create(tmp_path / "b", X, tiny_net(), "margin", classes=CLASSES,
                        random_state=3, progress=False)
    assert a.next_batch(5) == b.next_batch(5)
    assert a.history()[0]["seed"] == round_seed(3, 1)


def test_add_labels_validates_everything_before_recording(campaign, digits):
    ids = campaign.ids[:3]
    labels = truth(campaign, ids, digits[1])
    with pytest.raises(SkalValueError, match="not in this campaign"):
        campaign.add_labels(ids + ["row-999999"], labels + ["low"])
    with pytest.raises(SkalValueError, match="Unknown class 'cat'"):
        campaign.add_labels(ids, labels[:2] + ["cat"])
    with pytest.raises(SkalValueError, match="two different labels"):
        campaign.add_labels([ids[0], ids[0]], ["low", "high"])
    with pytest.raises(SkalValueError, match="ids but"):
        campaign.add_labels(ids, labels[:2])
    assert campaign.labels() == {}                  # every failed call changed nothing
    assert campaign.add_labels(ids, labels, annotator="dr_a") == {
        "added": 3, "corrected": 0, "unchanged": 0}
    assert campaign.add_labels(ids, labels) == {"added": 0, "corrected": 0, "unchanged": 3}


def test_corrections_need_consent_and_keep_history(campaign):
    item = campaign.ids[0]
    campaign.add_labels([item], ["low"], annotator="dr_a")
    with pytest.raises(SkalValueError, match="correct=True"):
        campaign.add_labels([item, campaign.ids[1]], ["high", "low"], annotator="dr_b")
    assert campaign.labels() == {item: "low"}       # neither label of the call recorded
    assert campaign.add_labels([item], ["high"], annotator="dr_b", correct=True) == {
        "added": 0, "corrected": 1, "unchanged": 0}
    assert campaign.labels() == {item: "high"}
    history = campaign.label_history(item)
    assert [(h["label"], h["annotator"]) for h in history] == [("low", "dr_a"),
                                                               ("high", "dr_b")]
    assert history[0]["created"] <= history[1]["created"]


def test_train_checkpoint_reloads_the_same_model(campaign, digits, tmp_path):
    X, names = digits
    with pytest.raises(NotFittedError):
        campaign.model()
    with pytest.raises(SkalValueError, match="at least 2"):
        campaign.train(progress=False)
    batch = campaign.next_batch(12)
    campaign.add_labels(batch, truth(campaign, batch, names))
    checkpoint = campaign.train(progress=False)
    assert checkpoint["n_labels"] == 12
    assert (campaign.path / checkpoint["file"]).with_suffix(".json").is_file()
    assert campaign.train(progress=False)["id"] == checkpoint["id"]   # no new label: kept
    expected = campaign.model().predict_proba(X[:20])
    reopened = Campaign.open(campaign.path)
    # the weights are restored exactly (safetensors float32 round trip)
    np.testing.assert_allclose(reopened.model().predict_proba(X[:20]), expected, rtol=0,
                               atol=1e-12)
    reopened.close()


def test_next_batch_after_training_follows_the_strategy(campaign, digits):
    X, names = digits
    batch = campaign.next_batch(10)
    campaign.add_labels(batch, truth(campaign, batch, names))
    campaign.train(progress=False)
    chosen = campaign.next_batch(5)
    labelled = set(batch)
    unlabelled = [k for k, i in enumerate(campaign.ids) if i not in labelled]
    # reference: the margin of every unlabelled item under the checkpoint's model
    margins = classifier_margin(campaign.model(), X[unlabelled])
    top, _ = multi_argmax(-margins, 5, round_seed(0, 2))
    assert chosen == [campaign.ids[unlabelled[k]] for k in top]
    rounds = campaign.history()
    assert [r["strategy"] for r in rounds] == ["random (cold start, no model yet)", "margin"]
    assert rounds[0]["metrics_after"]["n_labels"] == 10
    assert rounds[1]["checkpoint"] == campaign.checkpoints()[-1]["id"]
    assert rounds[1]["metrics_after"] is None       # not trained since


def test_holdout_labels_are_never_trained_on_and_score_the_model(campaign, digits):
    X, names = digits
    hold = campaign.ids[100:120]
    campaign.add_labels(hold, truth(campaign, hold, names), holdout=True)
    batch = campaign.next_batch(10)
    assert not set(batch) & set(hold)
    campaign.add_labels(batch, truth(campaign, batch, names))
    metrics = campaign.train(progress=False)["metrics"]
    assert metrics["source"] == "holdout" and metrics["n_eval"] == 20
    assert metrics["n_labels"] == 10
    model = campaign.model()
    accuracy = np.mean(model.predict(X[100:120]) == names[100:120])
    assert metrics["accuracy"] == pytest.approx(accuracy)   # exact up to float rounding
    status = campaign.status()
    assert status["n_holdout"] == 20 and status["n_labelled"] == 10
    assert status["curve"][0]["accuracy"] == pytest.approx(accuracy)


def test_cross_validation_metrics_without_holdout(tmp_path, digits):
    X, names = digits
    camp = Campaign.create(tmp_path / "c", X, tiny_net(), "uncertainty",
                           classes=["low", "high"], cv=2, progress=False)   # not sorted
    camp.add_labels(camp.ids[:16], names[:16])
    metrics = camp.train(progress=False)["metrics"]
    assert metrics["source"] == "2-fold cv" and 0 <= metrics["accuracy"] <= 1


def test_multilabel_campaign(tmp_path, digits):
    X, names = digits
    classes = ["effusion", "nodule", "mass"]
    camp = Campaign.create(tmp_path / "m", X, None, "entropy", classes=classes,
                           multilabel=True, cv=0, progress=False)
    assert type(camp.estimator).__name__ == "MultiLabelCNNClassifier"
    camp.add_labels(camp.ids[:4], [["nodule", "effusion"], "mass", [], "effusion;mass"])
    assert camp.labels()[camp.ids[0]] == ["effusion", "nodule"]   # class order, no dupes
    assert camp.labels()[camp.ids[2]] == []
    with pytest.raises(SkalValueError, match="Unknown class"):
        camp.add_labels([camp.ids[5]], [["nodule", "tumour"]])
    camp.estimator.set_params(module__widths=(4,), module__hidden=8, max_epochs=1,
                              min_steps=2)
    camp.train(progress=False)
    proba = camp.model().predict_proba(X[:3])
    assert proba.shape == (3, 3)
    reopened = Campaign.open(camp.path, pool=X)   # the checkpoint names its architecture
    np.testing.assert_allclose(reopened.model().predict_proba(X[:3]), proba, atol=1e-12)
    assert len(camp.next_batch(4)) == 4
    assert camp.status()["per_class"] == {"effusion": 2, "nodule": 1, "mass": 2}


def test_strategy_and_estimator_are_rebuilt_by_name(campaign):
    reopened = Campaign.open(campaign.path)
    assert reopened.query_strategy.__name__ == "margin_sampling"
    assert reopened.estimator.get_params()["module__widths"] == (4,)
    reopened.close()


def test_unnamed_strategy_must_be_passed_again(tmp_path, digits):
    X, names = digits
    camp = Campaign.create(tmp_path / "u", tmp_path_npy(tmp_path, X), tiny_net(),
                           lambda learner, X, n_instances=1, **kw: np.arange(n_instances),
                           classes=CLASSES, cv=0, progress=False)
    camp.add_labels(camp.ids[:6], names[:6])
    camp.train(progress=False)
    reopened = Campaign.open(camp.path)
    with pytest.raises(SkalValueError, match="pass it again"):
        reopened.next_batch(2)
    again = Campaign.open(camp.path, query_strategy=lambda learner, X, n_instances=1, **kw:
                          np.arange(n_instances))
    assert again.next_batch(2) == camp.ids[6:8]


def tmp_path_npy(tmp_path, X):
    np.save(tmp_path / "pool.npy", X)
    return tmp_path / "pool.npy"


def test_estimator_without_torch_weights_is_refitted_from_its_labels(tmp_path, digits):
    X, names = digits
    pipe = make_pipeline(FunctionTransformer(flatten), LogisticRegression(max_iter=200))
    camp = Campaign.create(tmp_path / "p", tmp_path_npy(tmp_path, X), pipe, "uncertainty",
                           classes=CLASSES, cv=0, progress=False)
    camp.add_labels(camp.ids[:30], names[:30])
    checkpoint = camp.train(progress=False)
    assert checkpoint["file"] is None
    expected = camp.model().predict_proba(X)
    np.testing.assert_allclose(Campaign.open(camp.path).model().predict_proba(X), expected)


def test_changed_or_moved_array_pool_is_reported(tmp_path, digits):
    X, _ = digits
    pool = tmp_path_npy(tmp_path, X)
    camp = Campaign.create(tmp_path / "c", pool, tiny_net(), classes=CLASSES, progress=False)
    camp.close()
    changed = X.copy()
    changed[7, 0, 3, 3] ^= 1
    np.save(pool, changed)
    with pytest.raises(PoolChangedError, match="1 changed.*row-000007"):
        Campaign.open(tmp_path / "c")
    Campaign.open(tmp_path / "c", verify="quick").close()   # shapes only: opens
    moved = tmp_path / "elsewhere.npy"
    np.save(moved, X)
    pool.unlink()
    with pytest.raises(PoolChangedError, match="gone"):
        Campaign.open(tmp_path / "c")
    Campaign.open(tmp_path / "c", pool=moved).close()       # relocated after a full check
    assert Campaign.open(tmp_path / "c").pool_root == moved.resolve()


def test_in_memory_pool_must_be_passed_again_and_match(tmp_path, digits):
    X, _ = digits
    camp = Campaign.create(tmp_path / "c", X, tiny_net(), classes=CLASSES, progress=False)
    camp.close()
    with pytest.raises(SkalValueError, match="pass it again"):
        Campaign.open(tmp_path / "c").X
    with pytest.raises(PoolChangedError, match="rows"):
        Campaign.open(tmp_path / "c", pool=X[:50])
    assert len(Campaign.open(tmp_path / "c", pool=X).X) == 120


def test_foreign_corrupt_and_newer_databases_are_refused(tmp_path, campaign):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    sqlite3.connect(foreign / "campaign.sqlite").execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(CampaignDatabaseError, match="not a skal campaign"):
        Campaign.open(foreign)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "campaign.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(CampaignDatabaseError, match="not a readable skal campaign"):
        Campaign.open(corrupt)
    with pytest.raises(CampaignDatabaseError, match="No campaign database"):
        Campaign.open(tmp_path / "missing")
    campaign.close()
    conn = sqlite3.connect(campaign.path / "campaign.sqlite")
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(CampaignDatabaseError, match="newer skal"):
        Campaign.open(campaign.path)


def test_create_refuses_existing_folder_and_bad_classes(tmp_path, digits, campaign):
    X, _ = digits
    with pytest.raises(SkalValueError, match="already exists"):
        Campaign.create(campaign.path, X, tiny_net(), classes=CLASSES)
    with pytest.raises(SkalValueError, match="at least two"):
        Campaign.create(tmp_path / "x", X, tiny_net(), classes=["only"])
    with pytest.raises(SkalValueError, match="Unknown strategy"):
        Campaign.create(tmp_path / "y", X, tiny_net(), "nope", classes=CLASSES)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_export_writes_labels_history_and_model(campaign, digits, tmp_path):
    batch = campaign.next_batch(8)
    campaign.add_labels(batch, truth(campaign, batch, digits[1]), annotator="dr_a")
    campaign.add_labels(batch[:1], ["low" if truth(campaign, batch[:1], digits[1])[0] ==
                                    "high" else "high"], annotator="dr_b", correct=True)
    campaign.train(progress=False)
    written = campaign.export(tmp_path / "out")
    from safetensors.numpy import load_file

    assert load_file(written["model"])                      # readable without pickle
    lines = open(written["labels"]).read().splitlines()
    assert lines[0] == "id,label,annotator,created,holdout,round" and len(lines) == 9
    assert len(open(written["history"]).read().splitlines()) == 10


def test_damaged_checkpoint_is_reported_not_loaded(campaign, digits):
    campaign.add_labels(campaign.ids[:8], digits[1][:8])
    checkpoint = campaign.train(progress=False)
    path = campaign.path / checkpoint["file"]
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(SkalValueError, match="does not match the sha256"):
        Campaign.open(campaign.path).model()


def test_busy_database_is_recognised_by_its_error_code(tmp_path):
    """The store retries when another connection holds the database, recognised by
    sqlite's error code (errors by type), not by other operational errors."""
    from skal.campaign.store import is_busy_error

    path = tmp_path / "db.sqlite"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        with pytest.raises(sqlite3.OperationalError) as busy:
            other.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError) as missing:
            other.execute("SELECT * FROM no_such_table")
    finally:
        holder.execute("ROLLBACK")
        other.close()
        holder.close()
    assert is_busy_error(busy.value)
    assert not is_busy_error(missing.value)
