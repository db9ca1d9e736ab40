"""Nothing lost: kill -9 at seeded random moments, and writers that run at once.

The kill test runs one driver process (so the heavy imports happen once); the driver
forks a worker per cycle that labels, proposes batches and trains (checkpoint writing
included) in a loop, kills it with SIGKILL after a seeded random delay, then checks that
the campaign opens, holds every label the worker had acknowledged, and that every
recorded checkpoint file is intact. At the end the campaign resumes: it trains and
proposes a batch.
"""

import json
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

from skal import CNNClassifier
from skal.campaign import Campaign
from skal.campaign.store import CampaignStore
from skal.data import load_digits_images

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DRIVER = textwrap.dedent(r'''
    import hashlib, json, os, random, signal, sys, threading, time
    import numpy as np
    import torch
    from tqdm import tqdm
    torch.set_num_threads(1)
    # tqdm's default write lock includes a multiprocessing semaphore, which a forked
    # worker shares with this process: a worker killed while holding it would leave
    # this driver blocked forever. A thread lock is private to each process.
    tqdm.set_lock(threading.RLock())
    from skal import CNNClassifier
    from skal.campaign import Campaign

    root, n_kills, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = random.Random(seed)
    X = np.load(os.path.join(root, "pool.npy"))
    truth = np.load(os.path.join(root, "truth.npy"))
    path = os.path.join(root, "camp")
    net = CNNClassifier(module__widths=(2,), module__hidden=4, max_epochs=1, min_steps=2,
                        batch_size=64)
    # warm up once here (lazy imports of the first fit), so each forked worker trains in
    # a fraction of the kill window; one torch thread, so forking after it is safe
    warm = Campaign.create(os.path.join(root, "warm"), X[:40], net, classes=["high", "low"],
                           cv=0, progress=False)
    warm.add_labels(warm.ids, truth[:40])
    warm.train(progress=False)
    warm.close()
    Campaign.create(path, os.path.join(root, "pool.npy"), net, "margin",
                    classes=["high", "low"], cv=0, progress=False).close()

    def worker(op, w, wseed):
        local = random.Random(wseed)
        camp = Campaign.open(path, verify="none")
        ids = camp.ids
        while True:
            if op == "train" and len(camp.labels()) >= 2:
                camp.train(progress=False)
            elif op == "next":
                camp.next_batch(4)
            picked = local.sample(range(len(ids)), 3)
            labels = [str(truth[k]) for k in picked]
            camp.add_labels([ids[k] for k in picked], labels, annotator=f"w{wseed}")
            os.write(w, (json.dumps([[ids[k] for k in picked], labels]) + "\n").encode())

    acked, by_op, t0 = {}, {}, time.time()
    for cycle in range(n_kills):
        op = rng.choice(["label", "next", "train", "train"])
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            try:
                worker(op, w, seed * 1000 + cycle)
            finally:
                os._exit(1)
        os.close(w)
        time.sleep(rng.uniform(0.0, 0.35))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        with os.fdopen(r) as pipe:
            for line in pipe.read().splitlines():
                ids, labels = json.loads(line)
                acked.update(zip(ids, labels))
        by_op[op] = by_op.get(op, 0) + 1
        camp = Campaign.open(path, verify="none")        # opens after every kill
        labels = camp.labels()
        lost = [i for i, lab in acked.items() if labels.get(i) != lab]
        assert not lost, f"cycle {cycle} ({op}): acknowledged labels lost: {lost[:5]}"
        for ckpt in camp.checkpoints():
            data = open(os.path.join(path, ckpt["file"]), "rb").read()
            assert hashlib.sha256(data).hexdigest() == ckpt["sha256"], ckpt
        camp.close()
    kill_seconds = time.time() - t0
    camp = Campaign.open(path)                               # full pool check too
    n_before = len(camp.checkpoints())
    known = camp.labels()
    fresh = [k for k, i in enumerate(camp.ids) if i not in known][:2]
    camp.add_labels([camp.ids[k] for k in fresh], [str(truth[k]) for k in fresh])  # retrain
    checkpoint = camp.train(progress=False)
    batch = camp.next_batch(4)
    files = os.listdir(os.path.join(path, "checkpoints"))
    recorded = {os.path.basename(c["file"]) for c in camp.checkpoints()}
    print(json.dumps({"kills": n_kills,
                      "unrecorded_checkpoint_files": len([f for f in files if f.endswith(
                          ".safetensors") and f not in recorded]),
                      "partial_temp_files": len([f for f in files if f.endswith(".tmp")]), "by_op": by_op, "acked": len(acked),
                      "labels": len(camp.labels()), "checkpoints_before": n_before,
                      "checkpoints": len(camp.checkpoints()), "rounds": len(camp.history()),
                      "resumed_checkpoint": checkpoint["id"], "batch": len(batch),
                      "kill_seconds": kill_seconds}))
''')


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits_images()
    return (X[:80] * 255).astype(np.uint8), np.where(y[:80] < 5, "low", "high")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the kill test forks workers")
def test_kill_minus_nine_at_random_moments_loses_nothing(tmp_path):
    X, y = load_digits_images()             # a pool the workers cannot label in full
    np.save(tmp_path / "pool.npy", (X * 255).astype(np.uint8))
    np.save(tmp_path / "truth.npy", np.where(y < 5, "low", "high"))
    (tmp_path / "driver.py").write_text(DRIVER)
    env = {**os.environ, "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, str(tmp_path / "driver.py"), str(tmp_path), "60",
                          "7"], capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    print("kill test:", report)
    assert report["kills"] == 60 and set(report["by_op"]) == {"label", "next", "train"}
    assert report["acked"] > 0 and report["labels"] >= report["acked"]
    assert report["checkpoints"] == report["checkpoints_before"] + 1   # resumed training
    assert report["batch"] == 4


def tiny_net():
    return CNNClassifier(module__widths=(2,), module__hidden=4, max_epochs=1, min_steps=2)


def test_writers_are_serialised_by_the_database_lock(tmp_path, digits):
    X, names = digits
    camp = Campaign.create(tmp_path / "c", X, tiny_net(), classes=["high", "low"],
                           progress=False)
    holder = CampaignStore(tmp_path / "c" / "campaign.sqlite")
    other = Campaign.open(tmp_path / "c", pool=X)
    done = []
    with holder.transaction():          # another writer holds the lock ...
        holder.insert_labels([(camp.ids[0], "low", "holder", "t", False, None)])
        thread = threading.Thread(target=lambda: done.append(
            other.add_labels([camp.ids[1]], ["high"], annotator="waiter")))
        thread.start()
        thread.join(0.3)
        assert not done                 # ... so this one waits instead of failing
    thread.join(30)
    assert done == [{"added": 1, "corrected": 0, "unchanged": 0}]
    history = camp.label_history()
    assert [h["annotator"] for h in history] == ["holder", "waiter"]   # in lock order
    holder.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="uses fork")
def test_two_processes_adding_labels_at_once_lose_nothing(tmp_path, digits):
    X, names = digits
    np.save(tmp_path / "pool.npy", X)
    camp = Campaign.create(tmp_path / "c", tmp_path / "pool.npy", tiny_net(),
                           classes=["high", "low"], progress=False)
    ids = camp.ids
    children = []
    for half in (ids[:40], ids[40:]):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                mine = Campaign.open(tmp_path / "c", verify="none")
                for item in half:       # one transaction per label: maximal interleaving
                    mine.add_labels([item], [names[ids.index(item)]], annotator=str(os.getpid()))
                code = 0
            finally:
                os._exit(code)
        children.append(pid)
    assert all(os.waitpid(pid, 0)[1] == 0 for pid in children)
    labels = camp.labels()
    assert labels == {i: names[k] for k, i in enumerate(ids)}
    assert len(camp.label_history()) == 80
