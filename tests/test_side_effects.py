"""Importing or using skal changes nothing process-wide: no pydicom on import, the
pydicom logger left as it was, the allocator tuned only when asked, and the user's
BatchNorm modules never patched by the gradient engine."""

import json
import logging
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from conftest import REPO_ROOT
from skal import cli
from skal.grad import per_sample_grad_norms
from skal.utils import malloc

_IMPORT = textwrap.dedent("""
    import json, logging, sys
    import skal, skal.data, skal.query, skal.grad, skal.learner, skal.estimator
    print(json.dumps({
        "pydicom": sorted(m for m in sys.modules if m.split(".")[0] == "pydicom"),
        "loggers": sorted(n for n in logging.Logger.manager.loggerDict
                          if n.split(".")[0] == "pydicom"),
        "public": callable(skal.data.read_dicom) and "DicomDataset" in dir(skal.data),
    }))
""")


def test_import_skal_leaves_pydicom_alone():
    out = subprocess.run([sys.executable, "-c", _IMPORT], capture_output=True, text=True,
                         check=True, cwd=REPO_ROOT)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["pydicom"] == []          # DICOM support is imported on first use
    assert result["loggers"] == []          # nobody touched the pydicom logger
    assert result["public"] is True         # ... yet skal.data.read_dicom still works


def test_dicom_read_scopes_its_log_filter(caplog):
    pydicom_data = pytest.importorskip("pydicom.data")
    from skal.data import read_dicom

    logger = logging.getLogger("pydicom")
    before = list(logger.filters)
    image = read_dicom(pydicom_data.get_testdata_file("CT_small.dcm"))
    assert image.dtype == np.float32 and image.ndim == 2
    assert logger.filters == before
    with caplog.at_level(logging.WARNING, logger="pydicom"):
        logger.warning("a record of the application's own")
    assert "a record of the application's own" in caplog.text


def _record_tune(monkeypatch):
    calls = []
    monkeypatch.setattr(malloc, "tune_malloc", lambda *a, **k: calls.append(1) or True)
    return calls


@pytest.mark.parametrize("flag, env, expected", [
    (False, None, 0), (True, None, 1), (False, "1", 1), (False, "0", 0)])
def test_cli_tunes_the_allocator_only_when_asked(monkeypatch, tmp_path, flag, env,
                                                 expected):
    calls = _record_tune(monkeypatch)
    if env is None:
        monkeypatch.delenv("SKAL_TUNE_MALLOC", raising=False)
    else:
        monkeypatch.setenv("SKAL_TUNE_MALLOC", env)
    missing = str(tmp_path / "missing.npz")     # fails fast, after the option is read
    argv = (["--tune-malloc"] if flag else []) + ["simulate", "--data", missing,
                                                  "--out", str(tmp_path / "out")]
    assert cli.main(argv) == 2
    assert len(calls) == expected


class _BNNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x):
        return self.head(torch.relu(self.bn(self.conv(x))).flatten(1))


def _reference_norms(net, x):
    """Slow and obviously correct: one backward pass per sample through the unmodified
    eval-mode network, loss = sum_c p_c z_c with p detached (cotangent p)."""
    net.eval()
    norms = []
    for xi in x:
        net.zero_grad()
        z = net(xi[None])
        (torch.softmax(z, -1).detach() * z).sum().backward()
        norms.append(sum(p.grad.norm() for p in net.parameters()).item())
    net.train()
    return np.array(norms)


def test_batchnorm_folding_never_patches_the_users_module():
    gen = torch.Generator().manual_seed(0)
    net = _BNNet()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-1, 1, generator=gen)
        net.bn.running_var.uniform_(0.5, 2, generator=gen)
        net.bn.weight.uniform_(0.5, 1.5, generator=gen)
    x = torch.randn(6, 1, 8, 8, generator=gen)
    bn, forward = net.bn, net.bn.forward
    seen = []
    # a hook of the user's own runs inside the engine's forward passes
    handle = bn.register_forward_hook(lambda m, i, o: seen.append("forward" in vars(m)))
    norms = per_sample_grad_norms(net, x, lambda z: torch.softmax(z, -1))[0]
    handle.remove()
    assert seen and not any(seen)           # never rebound, not even during scoring
    assert net.bn is bn and "forward" not in vars(bn) and bn.forward == forward
    assert net.training                     # its mode is restored
    # float32 sums over differently ordered reductions (vmap vs one sample at a time):
    # 1e-5 relative protects against a wrong fold (off by whole percents) only
    np.testing.assert_allclose(np.asarray(norms)[:, 0], _reference_norms(net, x), rtol=1e-5)
