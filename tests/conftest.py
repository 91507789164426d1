"""Shared fixtures: shipped nets, random nets with every supported layer, autograd oracles."""
import os
import sys

# OpenMP threads sleep while they wait (as the command line sets): on a loaded machine spinning threads make the
# suite several times slower than the load explains (scripts/bench_load.py); set before torch is imported
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn as nn

import chainlab

torch.set_num_threads(2)

# the command line in a fresh process, through its console entry point (chainlab.app.cli.main)
CHAINLAB = [sys.executable, "-c", "import sys; from chainlab.app.cli import main; sys.argv[0] = 'chainlab'; main()"]


def jacobian(model, x):
    """Autograd Jacobian of the logits w.r.t. the input, as (n_input, n_output) float64."""
    model = model.double().eval()
    x = torch.as_tensor(x, dtype=torch.float64)
    J = torch.autograd.functional.jacobian(lambda v: model(v).reshape(-1), x)
    return J.reshape(J.shape[0], -1).T.numpy()


def randomize_bn(model, seed=0):
    """Give every BatchNorm non-trivial running statistics and affine parameters."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            if m.weight is not None:
                m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.data.copy_(torch.rand(n, generator=g) - 0.5)
    return model


def conv_net(seed=0):
    """A small random net with conv, stride, padding, dilation, BN, no-bias, max/avg/adaptive pools."""
    torch.manual_seed(seed)
    net = nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(2, 4, 3, padding=1)),
        ("bn1", nn.BatchNorm2d(4)),
        ("relu1", nn.ReLU()),
        ("block", nn.Sequential(OrderedDict([
            ("conv2", nn.Conv2d(4, 5, 3, stride=2, padding=1, bias=False)),
            ("relu2", nn.ReLU()),
            ("pool", nn.MaxPool2d(2, stride=1)),
        ]))),
        ("conv3", nn.Conv2d(5, 6, 2, dilation=2, padding=1)),
        ("relu3", nn.ReLU()),
        ("avg", nn.AvgPool2d(2, stride=1, padding=1, count_include_pad=False)),
        ("gap", nn.AdaptiveAvgPool2d((2, 3))),
        ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(36, 12)),
        ("bnf", nn.BatchNorm1d(12)),
        ("relu4", nn.ReLU()),
        ("drop", nn.Dropout(0.3)),
        ("fc2", nn.Linear(12, 5, bias=False)),
    ]))
    return randomize_bn(net, seed).double().eval()


def mlp(seed=0, sizes=(7, 9, 8, 6, 4)):
    torch.manual_seed(seed)
    layers = []
    for k in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[k], sizes[k + 1]))
        if k < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers).double().eval()


@pytest.fixture(scope="session")
def digits():
    return chainlab.data.load_digits()


SHIPPED = ("digits-mlp", "digits-cnn", "sixt-cifar")     # one net of each kind; the others share their code paths


@pytest.fixture(scope="session")
def scenes_test():
    return chainlab.data.test_set("scenes", 8)


@pytest.fixture(scope="session", params=SHIPPED)
def shipped(request, digits, scenes_test):
    """(name, float64 eval model, one float64 test input of its own dataset) of shipped nets."""
    name = request.param
    net = chainlab.models.load(name).double()
    images = digits.x_test if name.startswith("digits") else scenes_test[0]
    x = chainlab.data.model_input(name, images[3:4]).double()
    return name, net, x


def rel_err(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


# -- the torchvision runs of test_verify_own_torchvision.py: started with the session, beside the other tests --------
TORCHVISION_TESTS = "test_verify_own_torchvision.py"
_STARTED = []           # the session's Runs, for the terminal summary


def pytest_collection_modifyitems(items):
    """The torchvision tests last: their runs (``torchvision_runs.py``) go on in the background meanwhile."""
    items.sort(key=lambda item: item.path.name == TORCHVISION_TESTS)


@pytest.fixture(scope="session", autouse=True)
def torchvision_runs(request, tmp_path_factory):
    """The background runs (``torchvision_runs.Runs``) of the torchvision tests this session selected (None when it
    selected none), started before the first test."""
    keys = sorted({tuple(item.callspec.params[k] for k in ("arch", "variant", "size"))
                   for item in request.session.items if item.path.name == TORCHVISION_TESTS})
    if not keys:
        yield None
        return
    import torchvision_runs as tr

    runs = tr.start(tmp_path_factory.mktemp("torchvision"), keys)
    _STARTED.append(runs)
    yield runs
    runs.stop()


def pytest_terminal_summary(terminalreporter):
    """Each background torchvision run: exit status, seconds, peak memory (from its report)."""
    for runs in _STARTED:
        terminalreporter.section("chainlab verify on torchvision nets (background runs)")
        for r in runs.runs.values():
            terminalreporter.write_line(r.summary())
