"""Issue 15: one regression test per defect class (each covering the class's cases).

1 Ctrl-C  2 failed fit changes state (classifier side)  3 threads  4 silent
mis-scaling  5 DICOM labels by ambiguous file name  7 bombs and hangs  8 errors that
are not skal's  9 invalid input accepted in silence  10 output files.
"""

import io
import os
import stat
import subprocess
import sys
import threading
import zipfile

import numpy as np
import pytest
import torch
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (DeflatedExplicitVRLittleEndian,
                         SecondaryCaptureImageStorage, generate_uid)
from skorch.callbacks import Callback
from torch.utils.data import Dataset as TorchDataset

import skal.nets.base as base_module
import skal.simulate as simulate_module
from conftest import FAST, TINY, write_dicom
from skal import (ActiveLearner, CNNClassifier, MultiLabelCNNClassifier, NotFittedError,
                  SkalError, SkalValueError)
from skal.cli import main
from skal.data import DicomDataset, load_digits_images
from skal.exceptions import DataFileError
from skal.nets import VAE
from skal.query import coreset_sampling
from skal.simulate import simulate



def tiny_net(**kw):
    return CNNClassifier(**{**TINY, "random_state": 0, **kw})


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits_images()          # float32 in [0, 1], (n, 8, 8)
    return X[:200], y[:200] % 2


@pytest.fixture(scope="module")
def fitted(digits):
    X, y = digits
    return tiny_net().fit(X[:60], y[:60])


class RaiseAt(Callback):
    """Raises ``exc`` inside the network's first forward pass of epoch ``epoch``
    (1-based, counted over the net's whole history), as a Ctrl-C or an error would
    arrive mid-batch. (Not from the callback itself: a callback raising
    KeyboardInterrupt is skorch's way to stop training early, e.g. EarlyStopping.)"""

    def __init__(self, epoch, exc=KeyboardInterrupt):
        self.epoch, self.exc = epoch, exc

    def on_epoch_begin(self, net, **kwargs):
        if len(net.history) == self.epoch:
            exc = self.exc

            def interrupt(module, inputs):
                handle.remove()
                raise exc()

            handle = net.module_.register_forward_pre_hook(interrupt)


def _weights(net):
    return {k: v.detach().clone() for k, v in net.module_.state_dict().items()}


# ---------------------------------------------------------------- class 1: Ctrl-C
def test_ctrl_c_propagates_and_leaves_estimators_and_outputs_as_they_were(
        digits, tmp_path, monkeypatch):
    X, y = digits
    # a first fit interrupted in its second epoch: the interrupt propagates and the
    # estimator stays unfitted
    clf = tiny_net(max_epochs=4, callbacks=[("stop", RaiseAt(2))])
    with pytest.raises(KeyboardInterrupt):
        clf.fit(X[:40], y[:40])
    with pytest.raises(NotFittedError):
        clf.predict(X[:5])
    # continued training interrupted: weights, history and predictions as before
    clf = tiny_net(max_epochs=2).fit(X[:40], y[:40])
    before, proba, n_epochs = _weights(clf), clf.predict_proba(X[40:60]), len(clf.history)
    clf.set_params(callbacks=[("stop", RaiseAt(n_epochs + 1))])
    clf.initialize_callbacks()
    with pytest.raises(KeyboardInterrupt):
        clf.partial_fit(X[40:80], y[40:80])
    assert len(clf.history) == n_epochs
    for key, value in _weights(clf).items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)
    np.testing.assert_array_equal(clf.predict_proba(X[40:60]), proba)
    # the VAE as well
    vae = VAE(latent_dim=2, max_epochs=3, batch_size=16, random_state=0,
              callbacks=[("stop", RaiseAt(2))])
    with pytest.raises(KeyboardInterrupt):
        vae.fit(X[:40])
    with pytest.raises(NotFittedError):
        vae.transform(X[:3])
    # `skal simulate`: Ctrl-C in a teach of round 1 stops the command (status 130)
    # and leaves the files of the previous run byte for byte
    out = tmp_path / "out"
    args = ["simulate", "--strategies", "random", "--seeds", "1", "--initial", "10",
            "--batch", "5", "--rounds", "2", "--epochs", "1", "--min-steps", "1",
            "--out", str(out), "--no-progress"]
    assert main(args) == 0
    old = {p.name: p.read_bytes() for p in out.iterdir()}
    calls = {"n": 0}
    real = base_module.run_training

    def interrupted(net, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(net, *a, **kw)

    monkeypatch.setattr(base_module, "run_training", interrupted)
    assert main(args) == 130
    assert calls["n"] == 2                      # stopped at once, no further fit
    assert {p.name: p.read_bytes() for p in out.iterdir()} == old


# ------------------------------------------- class 2: a failed fit changes nothing
class Broken(torch.nn.Module):
    def __init__(self, in_channels=1, n_outputs=2):
        super().__init__()
        self.fc = torch.nn.Linear(3, n_outputs)     # wrong input width: fails on data

    def forward(self, x):
        return self.fc(x.flatten(1))


def test_failed_fit_leaves_no_half_built_model(digits):
    X, y = digits
    clf = tiny_net().fit(X[:40], y[:40])
    proba = clf.predict_proba(X[40:60])
    # an error inside the training loop of a refit: the old model is intact
    clf.set_params(callbacks=[("boom", RaiseAt(1, RuntimeError))])
    with pytest.raises(RuntimeError):
        clf.fit(X[:40], y[:40])
    np.testing.assert_array_equal(clf.predict_proba(X[40:60]), proba)
    # set_params that rebuilds the module, then a fit that fails: the rebuilt,
    # untrained module must not predict (it would answer with random weights)
    clf = tiny_net().fit(X[:40], y[:40])
    clf.set_params(module__hidden=8, final_layer="nope")
    with pytest.raises(NotFittedError):
        clf.predict(X[:5])
    with pytest.raises(SkalValueError):
        clf.fit(X[:40], y[:40])
    with pytest.raises(NotFittedError):
        clf.predict(X[:5])
    # a module that fails on the data: a fresh net stays unfitted
    clf = CNNClassifier(module=Broken, max_epochs=1, random_state=0, **FAST)
    with pytest.raises(SkalValueError):
        clf.fit(X[:40], y[:40])
    with pytest.raises(NotFittedError):
        clf.predict(X[:5])


# --------------------------------------------------------------- class 3: threads
def _in_threads(fn, args_list):
    results, errors = [None] * len(args_list), []

    def run(i, args):
        try:
            results[i] = fn(*args)
        except BaseException as exc:        # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, a)) for i, a in enumerate(args_list)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def test_threads_do_not_mix_features_and_seeded_fits_run_concurrently(digits, fitted):
    X, y = digits
    # concurrent embeddings of different pools on one model: each thread gets its
    # own pool's features (a shared hook would hand one thread another's features)
    pools = [X[60 + 20 * i: 80 + 20 * i] for i in range(4)]
    sequential = [fitted.embed(p, batch_size=3) for p in pools]
    for _ in range(3):
        threaded = _in_threads(lambda p: fitted.embed(p, batch_size=3), [(p,) for p in pools])
        for got, want in zip(threaded, sequential):
            # same inputs, same batches: equal up to float32 rounding; features of
            # another pool differ by far more
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # concurrent core-set queries pick what sequential ones pick
    learner = ActiveLearner(tiny_net(), coreset_sampling, X_training=X[:60], y_training=y[:60])
    want = [learner.query(p, 3)[0] for p in pools]
    got = _in_threads(lambda p: learner.query(p, 3)[0], [(p,) for p in pools])
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    # two seeded fits in threads: each equals its sequential run, and they run at the
    # same time (each waits for the other at the end of every epoch; fits serialised
    # by a lock would break the barrier instead of meeting at it)
    barrier = threading.Barrier(2, timeout=120)

    class Meet(Callback):
        def on_epoch_end(self, net, **kwargs):
            barrier.wait()

    def fit(seed, callbacks):
        kw = dict(random_state=seed, augment=0.1, module__dropout=0.5, max_epochs=3)
        return tiny_net(callbacks=callbacks, **kw).fit(X[:48], y[:48]).predict_proba(X[100:140])

    sequential = [fit(seed, None) for seed in (1, 2)]
    threaded = _in_threads(fit, [(1, [("meet", Meet())]), (2, [("meet", Meet())])])
    for got, want in zip(threaded, sequential):
        # same seed, same computation: identical up to float rounding; another
        # stream of shuffling / dropout / augmentation gives a different model
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert not np.allclose(sequential[0], sequential[1], atol=1e-3)
    # the global generator is neither read nor moved by a seeded fit
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    fit(1, None)
    torch.testing.assert_close(torch.rand(3), expected, rtol=0, atol=0)


# -------------------------------------------------- class 4: silent mis-scaling
def test_fitted_input_scale_size_and_channels_are_checked(digits, tmp_path):
    X, y = digits
    X8 = np.rint(X * 255).astype(np.uint8)
    on_uint8 = tiny_net().fit(X8[:40], y[:40])
    float_255 = X8[40:60].astype(np.float32)              # 0..255 as float
    for call in (on_uint8.predict_proba, on_uint8.predict, on_uint8.embed,
                 on_uint8.decision_function, lambda Z: on_uint8.score(Z, y[40:60]),
                 lambda Z: ActiveLearner(tiny_net(), coreset_sampling, X_training=X8[:40],
                                         y_training=y[:40]).query(Z, 2)):
        with pytest.raises(SkalValueError, match="wrong scale"):
            call(float_255)
    # the same images on the model's scale are accepted, and agree
    np.testing.assert_allclose(on_uint8.predict_proba(float_255 / 255),
                               on_uint8.predict_proba(X8[40:60]), atol=1e-6)
    # a model fitted on float 0..255 rejects uint8 (which skal would scale to 0..1)
    on_float255 = tiny_net().fit(X8[:40].astype(np.float32), y[:40])
    with pytest.raises(SkalValueError, match="wrong scale"):
        on_float255.predict(X8[40:60])
    # continued training on another scale is rejected too
    with pytest.raises(SkalValueError, match="wrong scale"):
        on_uint8.partial_fit(float_255, y[40:60])
    # another image size, another number of channels
    with pytest.raises(SkalValueError, match="size 16x16"):
        on_uint8.predict(np.kron(X8[40:45], np.ones((1, 2, 2), np.uint8)))
    with pytest.raises(SkalValueError, match="channel"):
        on_uint8.predict(np.repeat(X8[40:45], 3, axis=1))
    # simulate: a uint8 pool with a float test set is refused up front
    with pytest.raises(SkalValueError, match="one scale"):
        simulate(tiny_net(), ["random"], X8[:100], y[:100], X[100:150], y[100:150],
                 n_initial=10, batch_size=5, n_rounds=1, seeds=1, progress=False)


# -------------------------------------------- class 5: DICOM labels by file name



def test_dicom_labels_never_matched_by_an_ambiguous_file_name(tmp_path):
    root = tmp_path / "dicom"
    for rel in ("a/IM1.dcm", "b/IM1.dcm", "c/IM2.dcm"):
        pixels = np.full((8, 8), 100)
        pixels[0, 0] = 0
        write_dicom(root / rel, pixels)
    csv = tmp_path / "labels.csv"
    cases = {
        # a row only for a/IM1.dcm: b/IM1.dcm must not inherit it
        "path,label\na/IM1.dcm,1\nc/IM2.dcm,0\n": "b/IM1.dcm",
        # a bare name shared by two files of the folder
        "path,label\nIM1.dcm,1\nc/IM2.dcm,0\n": "IM1.dcm",
        # rows with other folders: the name alone does not say which file is meant
        "path,label\nx/IM1.dcm,1\nc/IM2.dcm,0\n": "IM1.dcm",
    }
    for text, named in cases.items():
        csv.write_text(text)
        with pytest.raises(DataFileError, match="ambiguous") as info:
            DicomDataset.from_folder(root, labels_csv=csv)
        assert named in str(info.value)
    # unambiguous names still match (a CSV written relative to another root)
    csv.write_text("path,label\nelsewhere/a/IM1.dcm,1\nelsewhere/b/IM1.dcm,0\nIM2.dcm,1\n")
    with pytest.raises(DataFileError):        # IM1.dcm is still ambiguous
        DicomDataset.from_folder(root, labels_csv=csv)
    csv.write_text("path,label\na/IM1.dcm,1\nb/IM1.dcm,0\nold/IM2.dcm,1\n")
    ds = DicomDataset.from_folder(root, labels_csv=csv)
    labels = {os.path.relpath(p, root): int(lab) for p, lab in zip(ds.paths, ds.labels)}
    assert labels == {"a/IM1.dcm": 1, "b/IM1.dcm": 0, "c/IM2.dcm": 1}


# --------------------------------------------------------- class 7: bombs, hangs
def _deflated(rows, cols, pixel_bytes):
    ds = Dataset()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = bytes(pixel_bytes)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


_BOUNDED_READS = r"""
import sys, tracemalloc
from skal.data import read_dicom, DicomReadError
from skal.data.npz import load_image_npz
from skal.exceptions import DataFileError
for case in sys.argv[1:]:
    kind, max_pixels, path = case.split(":", 2)
    tracemalloc.start()
    try:
        if kind == "dicom":
            read_dicom(path, max_pixels=int(max_pixels))
        else:
            load_image_npz(path)
        message = "read"
    except (DicomReadError, DataFileError) as exc:
        message = "SKAL-ERROR " + " ".join(str(exc).split())
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"{peak} {message}", flush=True)
"""
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _bounded_reads(cases):
    """Read each ``(kind, path, max_pixels)`` in one subprocess; returns, per case,
    the peak memory allocated while reading it (tracemalloc) and the outcome. A hang
    fails at the timeout (a guard against the FIFO / /dev/zero hang, not a
    measurement)."""
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([_REPO, os.environ.get("PYTHONPATH", "")]))
    args = [f"{kind}:{max_pixels}:{path}" for kind, path, max_pixels in cases]
    proc = subprocess.run([sys.executable, "-c", _BOUNDED_READS, *args],
                          capture_output=True, text=True, timeout=300, env=env)
    lines = proc.stdout.splitlines()
    assert len(lines) == len(cases), proc.stdout + proc.stderr
    return [(int(line.split(" ", 1)[0]), line.split(" ", 1)[1]) for line in lines]


def _npz_with(path, images_header_shape, images_bytes, n_labels=10):
    """An npz whose images.npy declares ``images_header_shape`` (uint8) and stores
    ``images_bytes`` zero bytes, written in chunks (never held in memory)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("images.npy", "w", force_zip64=True) as fh:
            np.lib.format.write_array_header_1_0(
                fh, {"descr": "|u1", "fortran_order": False, "shape": images_header_shape})
            chunk, left = bytes(1 << 22), images_bytes
            while left:
                fh.write(chunk[:min(left, len(chunk))])
                left -= min(left, len(chunk))
        labels = io.BytesIO()
        np.save(labels, np.zeros(n_labels, np.int64))
        archive.writestr("labels.npy", labels.getvalue())


def test_bombs_and_special_files_are_refused_within_bounds(tmp_path):
    side = 6000                                   # 36 MB of 8-bit pixels
    # a deflated DICOM whose header declares 36 million pixels: max_pixels sees it
    # before anything is inflated
    bomb = tmp_path / "bomb.dcm"
    bomb.write_bytes(_deflated(side, side, side * side))
    # a deflated DICOM that declares 16 x 16 but inflates to 36 MB
    liar = tmp_path / "liar.dcm"
    liar.write_bytes(_deflated(16, 16, side * side))
    assert bomb.stat().st_size < 100_000 and liar.stat().st_size < 100_000
    # FIFO and /dev/zero: refused at once instead of hanging
    fifo = tmp_path / "fifo.dcm"
    os.mkfifo(fifo)
    # an npz inflating 80 MB of zeros from 80 KB: refused from the zip directory
    npz = tmp_path / "bomb.npz"
    _npz_with(npz, (10, 8000, 1000), 80_000_000)
    assert npz.stat().st_size < 1_000_000
    # an .npy header declaring 1.8 GB over 800 stored bytes: refused from the header
    liar_npz = tmp_path / "liar.npz"
    _npz_with(liar_npz, (28800, 250, 250), 800)
    cases = {(("dicom", bomb, 10**6)): "max_pixels",
             (("dicom", liar, 2**28)): "inflates to more",
             (("dicom", fifo, 2**28)): "not a regular file",
             (("dicom", "/dev/zero", 2**28)): "not a regular file",
             (("npz", npz, 0)): "decompression bomb",
             (("npz", liar_npz, 0)): "declares"}
    for (case, expected), (peak, outcome) in zip(cases.items(), _bounded_reads(list(cases))):
        assert outcome.startswith("SKAL-ERROR") and expected in outcome, (case, outcome)
        # every input above inflates to 36 MB or more: a read that allocated under
        # 8 MB refused it before inflating
        assert peak < 8 << 20, (case, peak)


# ------------------------------------------------ class 8: errors that are skal's
class _Items(TorchDataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def test_foreign_errors_become_skal_errors(digits, fitted, tmp_path, capsys, monkeypatch):
    X, y = digits
    # unusual but valid dtypes give the same answer as native float32
    pool = X[60:80]
    want = fitted.predict_proba(pool)
    for dtype in (">f4", ">f8", np.longdouble, "<f2"):
        np.testing.assert_allclose(fitted.predict_proba(pool.astype(dtype)), want,
                                   atol=2e-3)     # float16 rounding of the pixels
    bad_calls = {
        "ragged Dataset": lambda: fitted.predict(_Items([X[0], X[1, :4, :4]])),
        "None items": lambda: fitted.predict(_Items([X[0], None])),
        "negative seed": lambda: tiny_net(random_state=-1).fit(X[:20], y[:20]),
        "string seed": lambda: tiny_net(random_state="0").fit(X[:20], y[:20]),
        "batch_size=0": lambda: tiny_net(batch_size=0).fit(X[:20], y[:20]),
        "lr=nan": lambda: tiny_net(lr=float("nan")).fit(X[:20], y[:20]),
        "predict_batch_size=0": lambda: tiny_net(predict_batch_size=0).fit(X[:20], y[:20]),
        "VAE batch_size=0": lambda: VAE(batch_size=0).fit(X[:20]),
        "simulate negative seed": lambda: simulate(
            tiny_net(), ["random"], X[:100], y[:100], X[100:], y[100:], seeds=[-1],
            n_initial=4, batch_size=2, n_rounds=1, progress=False),
    }
    singleton = tmp_path / "singleton.npz"
    np.savez(singleton, images=np.zeros((20, 4, 4), np.uint8), labels=(np.arange(20) == 0))
    from skal.data.campaign import load_campaign_data
    bad_calls["stratified split with a 1-sample class"] = lambda: load_campaign_data(singleton)
    for name, call in bad_calls.items():
        with pytest.raises(SkalError) as info:
            call()
        assert isinstance(info.value, (ValueError, TypeError)), name
    # CLI values: one line, status 2, no traceback; checked before any work
    monkeypatch.setattr(simulate_module, "simulate", lambda *a, **k: pytest.fail("ran"))
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    cli_cases = [["--test-fraction", "1.5"], ["--n-jobs", "0"], ["--seeds", "0"],
                 ["--out", str(not_a_folder)], ["--out", str(not_a_folder / "sub")],
                 ["--epochs", "0"], ["--device", "nonsense"]]
    if not torch.cuda.is_available():
        cli_cases.append(["--device", "cuda"])
    for extra in cli_cases:
        code = main(["simulate", "--no-progress", "--out", str(tmp_path / "o"), *extra])
        err = capsys.readouterr().err
        assert code == 2, extra
        assert err.startswith("skal: error:") and err.count("\n") == 1, (extra, err)
        assert "Traceback" not in err


# ------------------------------------- class 9: invalid input accepted in silence
def test_invalid_values_are_rejected_not_silently_used(digits, fitted, capsys, tmp_path):
    X, y = digits
    cases = {
        "complex array": lambda: fitted.predict(X[:4].astype(np.complex64)),
        "complex tensor": lambda: fitted.predict(torch.from_numpy(X[:4]).to(torch.complex64)),
        "complex fit": lambda: tiny_net().fit(X[:20].astype(np.complex128), y[:20]),
        "threshold=2.0": lambda: MultiLabelCNNClassifier(
            **TINY, threshold=2.0).fit(X[:20], np.stack([y[:20], 1 - y[:20]], 1)),
        "classes=[0, 1, 1]": lambda: tiny_net(classes=[0, 1, 1]).fit(X[:20], y[:20]),
        "max_epochs=-1": lambda: tiny_net(max_epochs=-1).fit(X[:20], y[:20]),
        "fractional n_initial": lambda: simulate(
            tiny_net(), ["random"], X[:100], y[:100], X[100:], y[100:], n_initial=2.5,
            batch_size=2, n_rounds=1, seeds=1, progress=False),
        "duplicate seeds": lambda: simulate(
            tiny_net(), ["random"], X[:100], y[:100], X[100:], y[100:], n_initial=4,
            batch_size=2, n_rounds=1, seeds=[0, 0], progress=False),
    }
    for name, call in cases.items():
        with pytest.raises(SkalValueError):
            call()
    assert main(["simulate", "--strategies", "random,random", "--no-progress",
                 "--out", str(tmp_path)]) == 2
    assert "more than once" in capsys.readouterr().err


# ---------------------------------------------------------- class 10: output files
def test_results_and_plot_are_written_as_a_pair_with_the_umask(tmp_path, monkeypatch):
    from skal.simulate import SimulationResult
    import skal.plotting as plotting

    shape = (1, 2, 2)
    result = SimulationResult(
        strategies=["random"], seeds=[0, 1], n_labels=np.array([10, 20]),
        scores={"accuracy": np.full(shape, 0.5), "auroc": np.full(shape, 0.6)},
        fit_time=np.zeros(shape), query_time=np.zeros(shape),
        queried=np.zeros((1, 2, 1, 10), dtype=np.int64), metric="accuracy")
    out = tmp_path / "out"
    out.mkdir()
    old_umask = os.umask(0o027)
    try:
        json_path, png_path = result.save(out)
    finally:
        os.umask(old_umask)
    for path in (json_path, png_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o640      # 0666 minus the umask
    old = {p.name: p.read_bytes() for p in out.iterdir()}
    # a failure or Ctrl-C while the pair is being produced: neither file changes, no
    # temporary file is left behind
    result.scores["accuracy"][:] = 0.9
    for exc in (RuntimeError, KeyboardInterrupt):
        def fail(fig, exc=exc):
            raise exc()
        monkeypatch.setattr(plotting, "png_bytes", fail)
        with pytest.raises(exc):
            result.save(out)
        assert {p.name: p.read_bytes() for p in out.iterdir()} == old
    real_replace, calls = os.replace, []

    def second_rename_fails(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_replace(src, dst)

    monkeypatch.undo()
    monkeypatch.setattr(os, "replace", second_rename_fails)
    with pytest.raises(KeyboardInterrupt):
        result.save(out)
    # the temporary files are removed even then
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
