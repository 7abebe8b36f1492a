import os
import pickle
import zipfile

import pytest
import torch

from conftest import BASELINE_ARCH, GCA_ARCH, arch_spec, state_dict_from_key_list
from networks.families import build_network, load_checkpoint
from utils.checkpoint import CheckpointError, extract_state_dict, read_checkpoint


def spec(arch, trimap_channel=3):
    return arch_spec("gca-matting", arch, trimap_channel)


def load_into(arch, path, trimap_channel=3):
    """A GCA-Matting network of `arch` with the checkpoint's weights, as every entry point loads one."""
    model = build_network(spec(arch, trimap_channel))
    load_checkpoint(model, spec(arch, trimap_channel), path)
    return model


@pytest.fixture(scope="module")
def gca_state():
    return state_dict_from_key_list("gca", seed=3)


def save(path, obj, **kwargs):
    torch.save(obj, str(path), **kwargs)
    return str(path)


def assert_loaded(model, state):
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


@pytest.mark.parametrize("wrap", ["released", "bare", "bare_module", "training"])
def test_accepted_layouts(tmp_path, gca_state, wrap):
    prefixed = {"module." + k: v for k, v in gca_state.items()}
    obj = {
        "released": {"state_dict": prefixed},
        "bare": gca_state,
        "bare_module": prefixed,
        "training": {"iter": 10, "loss": 0.5, "state_dict": gca_state, "opt_state_dict": {}, "lr_state_dict": {}},
    }[wrap]
    assert_loaded(load_into(GCA_ARCH, save(tmp_path / "ckpt.pth", obj)), gca_state)


def test_only_one_module_prefix_is_removed():
    state = extract_state_dict({"state_dict": {"module.module.a": torch.zeros(1), "b": torch.ones(1)}})
    assert set(state) == {"module.a", "b"}


def test_legacy_serialisation_of_torch_1_x(tmp_path, gca_state):
    path = save(tmp_path / "legacy.pth", {"state_dict": gca_state}, _use_new_zipfile_serialization=False)
    assert_loaded(load_into(GCA_ARCH, path), gca_state)


def test_tensors_saved_on_cuda_load_on_a_cpu_only_machine(tmp_path, gca_state):
    # torch.save records each storage's device in the pickle; rewrite 'cpu' to 'cuda:0' as a
    # GPU-saved file has it (the released checkpoints were saved from CUDA).
    cpu_path = save(tmp_path / "cpu.pth", {"state_dict": {k: gca_state[k] for k in list(gca_state)[:3]}})
    cuda_path = str(tmp_path / "cuda.pth")
    with zipfile.ZipFile(cpu_path) as src, zipfile.ZipFile(cuda_path, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename.endswith("data.pkl"):
                assert b"X\x03\x00\x00\x00cpu" in data
                data = data.replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0")
            dst.writestr(item, data)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(cuda_path, weights_only=True)
    state = read_checkpoint(cuda_path)["state_dict"]
    assert all(v.device.type == "cpu" for v in state.values())
    assert torch.equal(state["encoder.conv1.module.weight_u"], gca_state["encoder.conv1.module.weight_u"])


class RunsCode:
    def __reduce__(self):
        return (os.system, ("touch pwned-by-checkpoint",))


@pytest.mark.parametrize("legacy", [False, True])
def test_a_pickle_that_would_run_code_loads_its_tensors_and_runs_nothing(tmp_path, monkeypatch, gca_state, legacy):
    monkeypatch.chdir(tmp_path)
    path = save(tmp_path / "evil.pth", {"state_dict": gca_state, "payload": RunsCode()},
                _use_new_zipfile_serialization=not legacy)
    assert_loaded(load_into(GCA_ARCH, path), gca_state)
    assert not os.path.exists(tmp_path / "pwned-by-checkpoint")


def test_a_pickle_that_would_run_code_without_tensors_is_refused_for_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = save(tmp_path / "evil.pth", RunsCode())
    with pytest.raises(CheckpointError, match="expected a dict"):
        extract_state_dict(read_checkpoint(path), path)
    assert not os.path.exists(tmp_path / "pwned-by-checkpoint")


def test_other_architecture_names_keys_and_model_arch(tmp_path):
    path = save(tmp_path / "baseline.pth", {"state_dict": state_dict_from_key_list("baseline")})
    with pytest.raises(CheckpointError) as e:
        load_into(GCA_ARCH, path)
    message = str(e.value)
    assert "missing keys: encoder.guidance_head" in message
    assert "model.arch" in message and "res_shortcut_encoder_29" in message


def test_gca_checkpoint_into_baseline_model(tmp_path, gca_state):
    path = save(tmp_path / "gca.pth", {"state_dict": gca_state})
    with pytest.raises(CheckpointError, match="unexpected keys: encoder.guidance_head.*resnet_gca_encoder_29"):
        load_into(BASELINE_ARCH, path)


def test_trimap_channel_mismatch_points_at_the_config(tmp_path, gca_state):
    path = save(tmp_path / "gca.pth", {"state_dict": gca_state})
    with pytest.raises(CheckpointError, match="model.trimap_channel = 3"):
        load_into(GCA_ARCH, path, trimap_channel=1)


def truncated_zip(tmp_path):
    data = open(save(tmp_path / "whole.pth", {"state_dict": {"w": torch.zeros(1000)}}), "rb").read()
    return data[:len(data) // 2]


def truncated_legacy(tmp_path):
    data = open(save(tmp_path / "whole.pth", {"w": torch.zeros(10)}, _use_new_zipfile_serialization=False),
                "rb").read()
    return data[:len(data) // 2]


def zip_without_pickle(tmp_path):
    path = tmp_path / "folder.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("gca/readme.txt", "the weights are elsewhere")
    return path.read_bytes()


# What a user can end up with instead of a checkpoint, and what the one line must say.
NOT_CHECKPOINTS = {
    "empty": (lambda tmp_path: b"", "the file is empty"),
    "text": (lambda tmp_path: b"hello world\n", "it is a text file, starting 'hello world"),
    "one letter": (lambda tmp_path: b"e", "it is a text file"),
    "html": (lambda tmp_path: b"<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title>",
             "it looks like a web page saved instead of the file, the usual result of a failed Google Drive download"),
    "html with a byte-order mark": (lambda tmp_path: "\ufeff\n <html><body>Sign in</body></html>".encode(),
                                    "it looks like a web page"),
    "json": (lambda tmp_path: b'{"error": {"code": 404}}', "it is a JSON text file"),
    "json list": (lambda tmp_path: b"[1, 2, 3]", "it is a JSON text file"),
    "truncated zip": (truncated_zip, "a zip archive cut short: the download or copy stopped before the end"),
    "zip of something else": (zip_without_pickle, "a zip archive without the data.pkl of torch.save's files"),
    "truncated legacy file": (truncated_legacy, "a Python pickle (protocol 2) cut short or not written by torch.save"),
    "plain pickle": (lambda tmp_path: pickle.dumps({"a": 1}, protocol=2), "a Python pickle (protocol 2)"),
    "binary": (lambda tmp_path: b"\0\1\2\3" * 40,
               "neither a zip archive nor a pickle; it starts with bytes 00 01 02 03"),
}


@pytest.mark.parametrize("kind", list(NOT_CHECKPOINTS))
def test_a_file_that_is_not_a_checkpoint_gets_one_line_saying_what_it_is(tmp_path, kind):
    make, reason = NOT_CHECKPOINTS[kind]
    path = tmp_path / "gca-dist.pth"
    path.write_bytes(make(tmp_path))
    with pytest.raises(CheckpointError) as e:
        read_checkpoint(str(path))
    message = str(e.value)
    assert message.startswith(f"{path}: not a PyTorch checkpoint (") and reason in message
    assert "\n" not in message and "Weights only load failed" not in message


def test_missing_file_and_non_checkpoint_content(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(str(tmp_path / "none.pth"))
    with pytest.raises(CheckpointError, match="holds no state dict"):
        extract_state_dict({"state_dict": {"a": 3}, "x": 1}, "f.pth")
