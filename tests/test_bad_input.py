"""Bad input gives a clear error naming what is wrong; the stabilizer keeps every matrix finite."""
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn as nn

import chainlab
from chainlab import UnsupportedLayerError
from conftest import CHAINLAB, conv_net, mlp


def test_unsupported_module_names_path_type_and_supported_layers():
    net = nn.Sequential(OrderedDict([("fc", nn.Linear(4, 4)),
                                     ("block", nn.Sequential(nn.ReLU(), nn.Linear(4, 3), nn.Tanh())),
                                     ("out", nn.Linear(3, 2))]))
    with pytest.raises(UnsupportedLayerError) as e:
        chainlab.extract(net, torch.rand(1, 4), "gradient")
    msg = str(e.value)
    assert "block.2" in msg and "Tanh" in msg and "Conv2d" in msg and "MaxPool2d" in msg


def test_branch_that_is_not_a_residual_sum_is_refused_with_the_node_named():
    # residual sums x + f(x) are supported since issue 8 (chainlab.residual); a product of branches is not
    class Gate(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.out = nn.Linear(4, 2)

        def forward(self, x):
            return self.out(x * torch.relu(self.fc(x)))

    with pytest.raises(UnsupportedLayerError, match="'mul'"):
        chainlab.extract(Gate().eval(), torch.rand(1, 4), "gradient")


def test_plain_chain_module_with_functional_relu_and_view_is_accepted():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)
            self.fc = nn.Linear(8, 3)

        def forward(self, x):
            x = torch.relu(self.conv(x))
            x = x.view(x.size(0), -1)
            return self.fc(x)

    net = Net().double()
    x = torch.rand(1, 1, 4, 4, dtype=torch.float64)
    chain = chainlab.extract(net, x, "gradient")
    assert chain.names == ["conv", "fc"]
    J = torch.autograd.functional.jacobian(lambda v: net(v).reshape(-1), x).reshape(3, -1).T
    np.testing.assert_allclose(chain.to_dense(), J.numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("shape", [(1, 3, 9, 9), (1, 1, 2, 9, 9), (1, 2, 2, 2), (9, 9)])
def test_wrong_input_shape_says_what_is_expected(shape):
    with pytest.raises(ValueError, match=r"expect"):
        chainlab.extract(conv_net(), torch.rand(shape, dtype=torch.float64), "gradient")


def test_wrong_shape_for_shipped_net_names_the_expected_shape():
    net = chainlab.models.load("sixt-cifar")
    with pytest.raises(ValueError, match=r"\(1, 3, 32, 32\)"):
        chainlab.extract(net, torch.rand(1, 3, 16, 16), "zplus")


def test_batch_of_two_is_refused():
    with pytest.raises(ValueError, match="batch dimension 1"):
        chainlab.extract(mlp(), torch.rand(2, 7, dtype=torch.float64), "gradient")


def test_unbatched_input_gets_the_batch_dimension():
    net = conv_net()
    x = torch.rand(2, 9, 9, dtype=torch.float64)
    chain = chainlab.extract(net, x, "gradient")
    assert chain.input_shape == (1, 2, 9, 9)
    assert chain.explain().shape == (1, 2, 9, 9)
    assert chainlab.extract(mlp(), np.random.rand(7), "zplus").input_shape == (1, 7)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_or_inf_input_is_refused(bad):
    x = torch.rand(1, 7, dtype=torch.float64)
    x[0, 3] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        chainlab.extract(mlp(), x, "gradient")


def test_alpha_beta_must_differ_by_one():
    with pytest.raises(ValueError, match="alpha - beta = 1"):
        chainlab.extract(mlp(), torch.rand(1, 7, dtype=torch.float64), "alpha-beta", alpha=3, beta=1)


def test_zero_denominators_give_the_stabilizer_never_nan():
    net = conv_net(1)
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
            nn.init.zeros_(m.bias)
        if isinstance(m, nn.BatchNorm2d):
            m.bias.data.zero_()
            m.running_mean.zero_()
    x = torch.zeros(1, 2, 9, 9, dtype=torch.float64)  # every pre-activation is exactly 0
    for rule, opts in [("lrp-0", {}), ("zplus", {}), ("alpha-beta", {}), ("gamma", {}), ("lrp-epsilon", {}),
                       ("zbox", {"low": 0.0, "high": 0.0}), ("gradient", {})]:
        chain = chainlab.extract(net, x, rule, **opts)
        for op in chain:
            M = op.to_dense()
            assert np.all(np.isfinite(M)), (rule, op)
        assert np.all(np.isfinite(chain.explain()))


@pytest.mark.parametrize("layers", [
    [nn.BatchNorm1d(4), nn.Linear(4, 2)],
    [nn.Linear(4, 4), nn.ReLU(), nn.BatchNorm1d(4), nn.Linear(4, 2)],
])
def test_batchnorm_without_preceding_linear_is_refused(layers):
    with pytest.raises(UnsupportedLayerError, match="BatchNorm '.*' .*directly preceding Linear or Conv2d"):
        chainlab.extract(nn.Sequential(*layers).eval(), torch.rand(1, 4), "gradient")


def test_training_mode_is_extracted_in_eval_mode_and_restored_with_a_warning():
    net = conv_net(2).train()
    x = torch.rand(1, 2, 9, 9, dtype=torch.float64)
    with pytest.warns(UserWarning, match="training mode"):
        chain = chainlab.extract(net, x, "gradient")
    assert net.training and all(m.training for m in net.modules())
    ref = chainlab.extract(net.eval(), x, "gradient")
    np.testing.assert_array_equal(chain.to_dense(), ref.to_dense())


def test_unknown_rule_and_unknown_option_are_named():
    x = torch.rand(1, 7, dtype=torch.float64)
    with pytest.raises(ValueError, match="unknown rule 'zplsu'.*zplus"):
        chainlab.extract(mlp(), x, "zplsu")
    with pytest.raises(ValueError, match="unknown option.*'alhpa'.*alpha"):
        chainlab.extract(mlp(), x, "alpha-beta", alhpa=2)
    with pytest.raises(ValueError, match="option bias of rule 'zplus' must be one of"):
        chainlab.extract(mlp(), x, "zplus", bias="some")
    with pytest.raises(ValueError, match="zbox' needs low= and high="):
        chainlab.extract(mlp(), x, "zbox")


def test_composite_mixing_spaces_is_refused():
    with pytest.raises(ValueError, match="mixes gradient-space and relevance-space"):
        chainlab.extract(mlp(), torch.rand(1, 7, dtype=torch.float64), {0: "gradient", "default": "zplus"})


def test_apply_with_wrong_rows_names_the_operator():
    chain = chainlab.extract(mlp(), torch.rand(1, 7, dtype=torch.float64), "zplus")
    with pytest.raises(ValueError, match=r"needs R with 8 rows .*operator 1"):
        chain.apply(np.ones(3), 0, 2)
    np.testing.assert_allclose(chain.apply(np.ones(8), 0, 2), chain[0] @ (chain[1] @ np.ones(8)))


# -- issue 14's smaller defects ------------------------------------------------------------------
def test_recurrent_layer_is_named_as_the_module_not_getitem():
    class Recurrent(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(4, 3, batch_first=True)
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            out, _ = self.lstm(x)
            return self.fc(out[:, -1])

    with pytest.raises(UnsupportedLayerError, match=r"module 'lstm' of type LSTM is not supported") as e:
        chainlab.extract(Recurrent().eval(), torch.rand(1, 5, 4), "gradient")
    assert "getitem" not in str(e.value)


def test_explain_targets_must_be_integer_logit_indices():
    chain = chainlab.extract(mlp(), torch.rand(1, 7, dtype=torch.float64), "gradient")
    for bad in (1.99, "3", True, 2.0, -1, chain.n_output):
        with pytest.raises(chainlab.InputError, match="target"):
            chain.explain(bad)
    assert np.array_equal(chain.explain(np.int64(1)), chain.explain(1))


def test_extract_of_something_that_is_not_a_module():
    for bad in (None, "digits-mlp", np.eye(3)):
        with pytest.raises(chainlab.InputError, match="model must be a torch.nn.Module"):
            chainlab.extract(bad, torch.rand(1, 7), "gradient")


def test_half_precision_model_is_refused_with_the_conversion_to_use():
    net = mlp().half()
    with pytest.raises(chainlab.InputError, match=r"float16.*float32 or float64.*model\.float\(\)"):
        chainlab.extract(net, torch.rand(1, 7).half(), "gradient")


# -- bad files and arguments on the command line (issue 22): one `chainlab: error:` line, exit 2 -------------
import pickle  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import warnings  # noqa: E402
import zipfile  # noqa: E402

from typer.testing import CliRunner  # noqa: E402

from chainlab.app.cli import app, parse_range  # noqa: E402
from chainlab.errors import InputError, ModelFileError, OptionError  # noqa: E402
from chainlab.nets import models  # noqa: E402
from chainlab.nets.storage import read_state_dict  # noqa: E402



def one_error_line(output, *fragments):
    lines = [ln for ln in output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("chainlab: error: "), output[-1500:]
    for f in fragments:
        assert f in lines[0], (f, lines[0])


def cli(*args):
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == 2, (res.exit_code, res.output[-1500:], res.exception)
    return res.output


def test_image_ranges_are_checked_before_a_list_is_built():
    """Stops beyond every index were an OverflowError (0:10^20) or a list of 10^9 ints built before the check."""
    for spec in ("0:100000000000000000000", "0:1000000000", "5:400", "-1:3", "3:1", "400", "1,2,999", "",
                 "-100000000000000000000:0"):
        with pytest.raises(InputError, match=r"there are 360 test images"):
            parse_range(spec, 360)
    for spec in ("a:b", "1:2:3", "1.5", "1;2"):
        with pytest.raises(InputError, match="bad image range"):
            parse_range(spec, 360)
    assert parse_range("355:", 360) == [355, 356, 357, 358, 359] and parse_range(":2", 360) == [0, 1]
    one_error_line(cli("extract", "-m", "digits-mlp", "-r", "gradient", "--images", "0:100000000000000000000",
                       "-o", "never.h5"), "0:100000000000000000000", "360")


def test_a_huge_image_range_under_a_memory_limit_is_one_error_line(tmp_path):
    """The issue's case: `--images 0:1000000000` under a 3 GB address-space limit (MemoryError, exit 3, before)."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
    p = subprocess.run(CHAINLAB + ["extract", "-m", "digits-mlp", "-r", "gradient", "--images", "0:1000000000",
                                   "-o", str(tmp_path / "x.h5")], capture_output=True, text=True, preexec_fn=limit,
                       timeout=300)
    assert p.returncode == 2, (p.returncode, p.stderr[-1500:])
    one_error_line(p.stderr, "0:1000000000")


def test_empty_and_zip_files_as_weights_or_models_are_named(tmp_path):
    """An empty --weights file was an IndexError; a plain zip renamed .npz a TypeError (bytes, not an array)."""
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    plain = tmp_path / "plain.npz"
    with zipfile.ZipFile(plain, "w") as z:
        z.writestr("hello.txt", "hi")
    strings = tmp_path / "strings.npz"                   # real arrays, but of strings
    np.savez(strings, __arch__=np.array("digits-mlp"), **{"fc1.weight": np.array(["a", "b"])})
    for f in (empty, tmp_path / "empty.npz", plain, strings):
        if not f.exists():
            f.write_bytes(b"")
        for load in (lambda: models.load("digits-mlp", weights=f), lambda: read_state_dict(f)):
            with pytest.raises(ModelFileError, match=f.name):
                load()
        one_error_line(cli("extract", "-m", "digits-mlp", "--weights", f, "-r", "gradient", "-o", tmp_path / "o.h5"),
                       f.name)
        if f.suffix == ".npz":
            with pytest.raises(ModelFileError, match=f.name):
                models.load(str(f))
            one_error_line(cli("extract", "-m", f, "-r", "gradient", "-o", tmp_path / "o.h5"), f.name)
    assert not (tmp_path / "o.h5").exists()


def test_a_protocol_4_pickle_as_weights_is_one_line_without_torchs_warning(tmp_path):
    p4 = tmp_path / "p4.pth"
    with open(p4, "wb") as fh:
        pickle.dump({"fc1.weight": [1.0, 2.0]}, fh, protocol=4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ModelFileError, match="p4.pth"):
            read_state_dict(p4)
    assert not caught, [str(w.message) for w in caught]
    p = subprocess.run(CHAINLAB + ["extract", "-m", "digits-mlp", "--weights", str(p4), "-r", "gradient",
                                   "-o", str(tmp_path / "o.h5")], capture_output=True, text=True, timeout=300)
    assert p.returncode == 2, (p.returncode, p.stderr[-1500:])
    one_error_line(p.stderr, "p4.pth")


@pytest.mark.parametrize("case", ["object arrays", "missing entry", "wrong shape", "labels out of range",
                                  "not a zip"])
def test_a_bad_digits_file_in_chainlab_data_is_named(tmp_path, monkeypatch, case):
    """CHAINLAB_DATA pointing at a folder whose digits.npz holds object arrays was an uncaught ValueError."""
    src = models.data_dir()
    shutil.copy(src / "digits-mlp.npz", tmp_path / "digits-mlp.npz")
    with np.load(src / "digits.npz") as z:
        good = {k: z[k] for k in z.files}
    bad = dict(good)
    if case == "object arrays":
        bad["x_test"] = np.array([np.zeros(64, np.uint8)] * 3 + [None], dtype=object)
    elif case == "missing entry":
        del bad["y_test"]
    elif case == "wrong shape":
        bad["x_test"] = np.zeros((5, 7), np.uint8)
    elif case == "labels out of range":
        bad["y_test"] = np.full_like(good["y_test"], 12)
    if case == "not a zip":
        (tmp_path / "digits.npz").write_text("hello")
    else:
        np.savez(tmp_path / "digits.npz", **bad)
    monkeypatch.setenv("CHAINLAB_DATA", str(tmp_path))
    with pytest.raises(InputError, match="digits.npz"):
        chainlab.data.load_digits()
    one_error_line(cli("extract", "-m", "digits-mlp", "-r", "gradient", "-o", tmp_path / "o.h5"), "digits.npz")


def test_zbox_low_above_high_is_refused():
    net = chainlab.models.load("digits-mlp")
    x = chainlab.data.model_input("digits-mlp", chainlab.data.load_digits().x_test[:1])
    for low, high in ((5, -5), (0.5, 0.4), (np.zeros(64), np.r_[np.ones(63), -1.0])):
        with pytest.raises(OptionError, match=r"zbox.*low.*high"):
            chainlab.extract(net, x, "zbox", low=low, high=high)
    with pytest.raises(OptionError, match="broadcast"):
        chainlab.extract(net, x, "zbox", low=np.zeros(3), high=np.ones(4))
    one_error_line(cli("extract", "-m", "digits-mlp", "-r", "zbox", "-O", "low=5", "-O", "high=-5", "-o", "never.h5"),
                   "low", "high")
    assert chainlab.extract(net, x, "zbox", low=0.0, high=1.0) is not None     # the shipped box is fine


def test_output_that_is_a_directory_says_so(tmp_path):
    for extra in ([], ["--resume"], ["--overwrite"]):
        one_error_line(cli("extract", "-m", "digits-mlp", "-r", "gradient", "-o", tmp_path, *extra),
                       str(tmp_path), "is a directory")
