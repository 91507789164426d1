"""Model and weights files are data: a pickle that would run a command is refused on every entry point.

The malicious files are real: the test ends by showing that an unguarded unpickler does run their command
(so the refusals above it are refusals of a live exploit, not of a harmless file).
"""
import os

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from chainlab.app.cli import app
from chainlab.errors import ModelFileError
from chainlab.nets import models
from chainlab.nets.storage import load_weights, read_state_dict
from chainlab.nets.zoo import resnet_tiny


class Evil:
    """Unpickling calls os.system(command) — here: create a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def evil_files(tmp_path):
    marker = tmp_path / "PWNED"
    files = {}
    p = tmp_path / "evil.pt"                              # torch's zip format, a pickled object inside
    torch.save({"fc1.weight": torch.zeros(2), "payload": Evil(marker)}, p)
    files["zip"] = p
    q = tmp_path / "evil_legacy.pth"                      # torch's legacy (plain pickle) format
    with open(q, "wb") as fh:
        torch.save(Evil(marker), fh, _use_new_zipfile_serialization=False)
    files["legacy"] = q
    r = tmp_path / "evil.npz"                             # a .npz with an object array
    np.savez(r, __arch__=np.array("digits-mlp"), w=np.array([Evil(marker)], dtype=object))
    files["npz"] = r
    return marker, files


def test_malicious_pickles_are_refused_everywhere_and_never_run(evil_files, tmp_path):
    marker, files = evil_files
    runner = CliRunner()
    for kind, path in files.items():
        with pytest.raises(ModelFileError, match=str(path.name)):
            models.load(str(path))                                    # a model file
        with pytest.raises(ModelFileError, match=str(path.name)):
            models.load("digits-mlp", weights=path)                  # a state dict for a shipped architecture
        with pytest.raises(ModelFileError, match=str(path.name)):
            models.load("resnet-tiny", weights=path)                 # … and for a zoo architecture
        with pytest.raises(ModelFileError, match=str(path.name)):
            load_weights(resnet_tiny(seed=0), path)
        with pytest.raises(ModelFileError, match=str(path.name)):
            read_state_dict(path)
        for args in (["--model", str(path)], ["--model", "digits-mlp", "--weights", str(path)]):
            out = tmp_path / f"{kind}.h5"
            res = runner.invoke(app, ["extract", *args, "-r", "gradient", "-o", str(out)])
            assert res.exit_code == 2, (kind, args, res.output)
            lines = res.output.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("chainlab: error: ") and path.name in lines[0]
            assert not out.exists()
        assert not marker.exists(), f"{kind}: the payload ran"
    # the refusal says how to save weights safely
    with pytest.raises(ModelFileError, match=r"torch\.save\(model\.state_dict\(\), path\)"):
        read_state_dict(files["zip"])
    # and the files are live exploits: an unguarded load runs the command
    for load in (lambda: torch.load(files["zip"], weights_only=False),
                 lambda: torch.load(files["legacy"], weights_only=False),
                 lambda: np.load(files["npz"], allow_pickle=True)["w"]):
        load()
        assert marker.exists()
        marker.unlink()


def test_garbage_and_mismatched_weight_files_are_named(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a torch file" * 40)
    with pytest.raises(ModelFileError, match=r"garbage\.pt.*not a torch"):
        models.load("digits-mlp", weights=garbage)
    # a chainlab model file whose tensor does not fit: the message names the entry and both shapes
    arrays = {"__arch__": np.array("digits-mlp")}
    arrays.update({k: v.numpy() for k, v in models.build("digits-mlp").state_dict().items()})
    arrays["fc1.weight"] = np.zeros((3, 3), np.float32)
    np.savez(tmp_path / "wrong.npz", **arrays)
    with pytest.raises(ModelFileError, match=r"wrong\.npz: weights do not fit architecture 'digits-mlp': "
                                             r"size mismatch for fc1\.weight.*\[3, 3\].*\[128, 64\]"):
        models.load(str(tmp_path / "wrong.npz"))
    with pytest.raises(ModelFileError, match=r"module\.pt is not a plain state dict: it holds pickled objects"):
        read_state_dict(_pickle_module(tmp_path))


def _pickle_module(tmp_path):
    """A whole nn.Module saved with torch.save (the usual mistake): refused with the how-to."""
    p = tmp_path / "module.pt"
    torch.save(torch.nn.Linear(2, 2), p)
    return p
