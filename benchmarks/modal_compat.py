"""How much of modAL runs on skal with only the import changed.

Runs, from a modAL checkout outside this project (never copied into it):

* each of modAL's classification examples (``examples/*.py``), with
  ``from modAL.models import ActiveLearner, Committee`` replaced by
  ``from skal import ActiveLearner, Committee`` and nothing else of the logic
  changed; data are shrunk so that each runs in about a minute on a laptop CPU
  (MNIST, which needs a download, is replaced by scikit-learn's digits scaled to
  28x28; plots go to a non-interactive backend);
* modAL's own ``TestActiveLearner`` and ``TestCommittee`` (``tests/core_tests.py``)
  with ``modAL.models.learners.ActiveLearner`` / ``Committee`` resolving to skal's.

Usage::

    python benchmarks/modal_compat.py /path/to/modAL-checkout [--skal-path PATH]
        [--target skal|modal]

``--target modal`` runs the same unchanged (modAL's own learners: the baseline);
``--skal-path`` points at another skal checkout (e.g. to measure before a change).
Prints one line per example / test and writes ``benchmarks/results/modal_compat.json``.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Classification examples that use modAL's ActiveLearner / Committee. Not run:
# regression (active_regression, ensemble_regression), Bayesian optimisation
# (bayesian_optimization*), Keras models (keras_integration,
# deep_bayesian_active_learning: Keras is not installed), runtime_comparison (needs
# libact/acton/alp), information_density (no learner).
# 150x150 instead of 500x500 pixels to classify (the shape is still 50 px from the edge)
_SMALL_IMAGE = [(r"im_width = 500", "im_width = 150"), (r"im_height = 500", "im_height = 150"),
                (r"\b100:", "50:"), (r"- 100\]", "- 50]"), (r"- 100,", "- 50,")]

EXAMPLES = {
    "bagging.py": [(r"size=1000", "size=300")],
    "cost_effective_active_learning.py": [(r"N_QUERIES\s*=\s*\d+", "N_QUERIES = 3")],
    "custom_query_strategies.py": [],
    "ensemble.py": [],
    "multilabel_svm.py": [],
    "pool-based_sampling.py": [],
    "pytorch_integration.py": [(r"\b50000\b", "1500"), (r"reshape\(10000,", "reshape(-1,"),
                               (r"n_initial = 1000", "n_initial = 100"),
                               (r"n_instances=100", "n_instances=10"),
                               (r"n_queries = 10", "n_queries = 2"),
                               (r"max_epochs=\d+", "max_epochs=2")],
    "pytorch_mc_dropout.py": [(r"\b50000\b", "1500"), (r"reshape\(10000,", "reshape(-1,"),
                              (r"n_initial = 1000", "n_initial = 100"),
                              (r"n_instances=100", "n_instances=10"),
                              (r"n_queries = 10", "n_queries = 2"),
                              (r"num_cycles=10", "num_cycles=2"),
                              (r"max_epochs=\d+", "max_epochs=2")],
    "query_by_committee.py": [],
    "ranked_batch_mode.py": [],
    "shape_learning.py": [(r"n_queries = 100", "n_queries = 10"), *_SMALL_IMAGE],
    "sklearn_workflow.py": [],
    "stream-based_sampling.py": _SMALL_IMAGE,
}

# Imported by every run (as sitecustomize): no display, matplotlib's renamed seaborn
# styles, and small stand-ins for the MNIST loaders of Keras and torchvision (neither
# is installed; both would download the data).
SHIM = r'''
import sys, types
import numpy as np
# modAL 0.4.2.1 against today's numpy and scikit-learn (modAL's incompatibilities, not
# the learners'): np.float is gone (modAL.expected_error), and check_X_y / check_array
# renamed force_all_finite to ensure_all_finite (modAL's teach).
if not hasattr(np, "float"):
    np.float = float
import sklearn.utils, sklearn.utils.validation as _validation
def _renamed(function):
    def wrapper(*args, force_all_finite=None, **kwargs):
        if force_all_finite is not None:
            kwargs.setdefault("ensure_all_finite", force_all_finite)
        return function(*args, **kwargs)
    return wrapper
for _name in ("check_X_y", "check_array"):
    _wrapped = _renamed(getattr(_validation, _name))
    setattr(_validation, _name, _wrapped)
    setattr(sklearn.utils, _name, _wrapped)
import matplotlib
matplotlib.use("Agg")
import matplotlib.style as _style
for _old in ("seaborn-white", "seaborn-whitegrid", "seaborn"):
    _new = "seaborn-v0_8" + _old[len("seaborn"):]
    if _new in _style.library:
        _style.library[_old] = _style.library[_new]

def _digits_28(n=1800):
    from sklearn.datasets import load_digits
    d = load_digits()
    X = np.kron(d.images[:n], np.ones((3, 3)))          # 8x8 -> 24x24
    X = np.pad(X, ((0, 0), (2, 2), (2, 2)))             # -> 28x28
    return (X * (255 / 16)).astype(np.uint8), d.target[:n].astype(np.int64)

try:
    import keras.datasets.mnist  # noqa
except ImportError:
    keras = types.ModuleType("keras"); datasets = types.ModuleType("keras.datasets")
    mnist = types.ModuleType("keras.datasets.mnist")
    def load_data():
        X, y = _digits_28()
        return (X[:1500], y[:1500]), (X[1500:], y[1500:])
    mnist.load_data = load_data
    keras.datasets, datasets.mnist = datasets, mnist
    sys.modules.update({"keras": keras, "keras.datasets": datasets,
                        "keras.datasets.mnist": mnist})

try:
    import torchvision  # noqa
except ImportError:
    import torch
    tv = types.ModuleType("torchvision"); tvd = types.ModuleType("torchvision.datasets")
    tvt = types.ModuleType("torchvision.transforms")
    class ToTensor:
        def __call__(self, image):
            return torch.as_tensor(np.asarray(image), dtype=torch.float32)[None] / 255.0
    class MNIST(torch.utils.data.Dataset):
        def __init__(self, root, train=True, download=False, transform=None):
            self.X, self.y = _digits_28()
            self.transform = transform
        def __len__(self):
            return len(self.y)
        def __getitem__(self, i):
            x = self.X[i] if self.transform is None else self.transform(self.X[i])
            return x, int(self.y[i])
    tvd.MNIST, tvt.ToTensor = MNIST, ToTensor
    tv.datasets, tv.transforms = tvd, tvt
    sys.modules.update({"torchvision": tv, "torchvision.datasets": tvd,
                        "torchvision.transforms": tvt})
'''

CONFTEST = r'''
import modAL.models, modAL.models.learners
import skal
modAL.models.learners.ActiveLearner = modAL.models.ActiveLearner = skal.ActiveLearner
modAL.models.learners.Committee = modAL.models.Committee = skal.Committee
'''

_IMPORT = re.compile(r"^from modAL\.models import ([^\n]+)$", re.M)


def to_skal(source):
    """Only the import of modAL's learners changes (``DeepActiveLearner`` is an
    ``ActiveLearner`` in skal)."""
    def replace(match):
        names = [n.strip() for n in match.group(1).split(",")]
        names = ["ActiveLearner as DeepActiveLearner" if n == "DeepActiveLearner" else n
                 for n in names]
        return "from skal import " + ", ".join(names)
    return _IMPORT.sub(replace, source)


def run_examples(modal_src, workdir, env, target, timeout):
    results = {}
    for name, shrink in EXAMPLES.items():
        source = (modal_src / "examples" / name).read_text()
        for pattern, replacement in shrink:
            source = re.sub(pattern, replacement, source)
        if target == "skal":
            source = to_skal(source)
        script = workdir / name
        script.write_text(source)
        start = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, str(script)], cwd=workdir, env=env,
                                  capture_output=True, text=True, timeout=timeout)
            ok, tail = proc.returncode == 0, (proc.stderr.strip().splitlines() or [""])[-1]
        except subprocess.TimeoutExpired:
            ok, tail = False, f"timeout after {timeout} s"
        results[name] = {"ok": ok, "seconds": round(time.perf_counter() - start, 1),
                         "error": None if ok else tail[:300]}
        print(f"{'PASS' if ok else 'FAIL'}  {name:40s} {results[name]['seconds']:6.1f} s"
              + ("" if ok else f"  {tail[:160]}"), flush=True)
    return results


def run_core_tests(modal_src, workdir, env, target, timeout):
    tests = workdir / "modal_tests"
    tests.mkdir()
    for name in ("core_tests.py", "mock.py"):
        (tests / name).write_text((modal_src / "tests" / name).read_text())
    if target == "skal":
        (tests / "conftest.py").write_text(CONFTEST)
    report = tests / "report.xml"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                    "core_tests.py::TestActiveLearner", "core_tests.py::TestCommittee",
                    f"--junitxml={report}"], cwd=tests, env=env, capture_output=True,
                   text=True, timeout=timeout)
    results = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        failure = case.find("failure")
        if failure is None:
            failure = case.find("error")
        name = f"{case.get('classname').split('.')[-1]}.{case.get('name')}"
        results[name] = {"ok": failure is None,
                         "error": None if failure is None else (failure.get("message") or "")[:300]}
        print(f"{'PASS' if failure is None else 'FAIL'}  {name:55s}"
              + ("" if failure is None else f"  {results[name]['error'][:140]}"), flush=True)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modal_src", type=Path, help="a modAL checkout (examples/, tests/)")
    parser.add_argument("--skal-path", type=Path, default=REPO)
    parser.add_argument("--target", choices=("skal", "modal"), default="skal")
    parser.add_argument("--timeout", type=int, default=240)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "modal_compat.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        shim = workdir / "shim"
        shim.mkdir()
        (shim / "sitecustomize.py").write_text(SHIM)
        env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1",
               "PYTHONPATH": os.pathsep.join([str(shim), str(args.skal_path.resolve())])}
        examples = run_examples(args.modal_src, workdir, env, args.target, args.timeout)
        tests = run_core_tests(args.modal_src, workdir, env, args.target, 20 * args.timeout)
    summary = {"target": args.target,
               "examples_passed": sum(r["ok"] for r in examples.values()),
               "examples_run": len(examples),
               "tests_passed": sum(r["ok"] for r in tests.values()),
               "tests_run": len(tests), "examples": examples, "tests": tests}
    print(f"\n{args.target}: examples {summary['examples_passed']}/{summary['examples_run']}, "
          f"TestActiveLearner+TestCommittee {summary['tests_passed']}/{summary['tests_run']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


if __name__ == "__main__":
    main()
