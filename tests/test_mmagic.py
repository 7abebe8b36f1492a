"""MMagic's GCA family: its released checkpoints' layout (made here from a transcription of MMagic's
module tree with torch's own spectral norm, random weights, converged spectral norms, random
BatchNorm statistics and mmengine-style extras) loads unchanged, with no code run and no mmengine,
and gives the transcription's alpha."""
import hashlib
import os
import sys
import types

import cv2
import numpy as np
import pytest
import torch

import demo
import mmagic_transcription as mm
from conftest import arch_spec, config_for_test_phase, randomise_batch_norms, write_eval_folders
from matting import Matter
from networks.families import build_network, load_checkpoint
from networks.mmagic.layout import mmagic_key
from networks.mmagic.network import TorchSpectralNorm
from utils.checkpoint import CheckpointError, read_checkpoint

ARCH = {True: ("resnet_gca_encoder_29", "res_gca_decoder_22"), False: ("res_shortcut_encoder_29", "res_shortcut_decoder_22")}
CONFIGS = {(True, 6): "mmagic-gca", (False, 6): "mmagic-baseline", (True, 4): "mmagic-gca-dimaug",
           (False, 4): "mmagic-baseline-dimaug"}
MARKER = "code_ran_on_load"


def random_mattor(gca: bool, in_channels: int, seed: int = 0) -> mm.Mattor:
    """The transcription with random weights: training-mode forwards converge torch's spectral norms
    (its u, v start random), then BatchNorm statistics and weights are randomised."""
    torch.manual_seed(seed)
    mattor = mm.Mattor(gca, in_channels)
    with torch.no_grad():
        for _ in range(5):
            image = torch.randn(2, 3, 32, 32)
            trimap = torch.nn.functional.one_hot(torch.randint(0, 3, (2, 32, 32)), 3).permute(0, 3, 1, 2).float()
            mattor.backbone(torch.cat([image, trimap if in_channels == 6 else trimap.argmax(1, keepdim=True)], 1))
    randomise_batch_norms(mattor)
    return mattor.eval()


class HistoryBuffer:
    """Stands for mmengine's, pickled under mmengine's module name; unpickling it for real would
    run its __setstate__."""

    def __init__(self):
        self._log_history = np.arange(4.0)

    def __setstate__(self, state):
        open(MARKER, "w").close()


class RunsCode:
    def __reduce__(self):
        return os.system, (f"touch {MARKER}",)


def fake_mmengine() -> dict:
    modules = {name: types.ModuleType(name) for name in ("mmengine", "mmengine.logging",
                                                         "mmengine.logging.history_buffer")}
    modules["mmengine.logging.history_buffer"].HistoryBuffer = HistoryBuffer
    return modules


def save_mmagic_checkpoint(mattor: mm.Mattor, path: str, legacy: bool = False) -> str:
    """As MMagic saves: the tensors under state_dict with the prefix backbone., beside mmengine's
    meta, message_hub (HistoryBuffers, numpy values) and param_schedulers."""
    HistoryBuffer.__module__ = "mmengine.logging.history_buffer"
    contents = {
        "meta": {"mmengine_version": "0.7.4", "epoch": 0, "iter": 200000, "seed": np.int64(42),
                 "dataset_meta": {"classes": None}},
        "state_dict": {"backbone." + k: v for k, v in mattor.backbone.state_dict().items()},
        "message_hub": {"log_scalars": {"train/loss": HistoryBuffer()}, "runtime_info": {"iter": np.float64(2e5)}},
        "param_schedulers": [{"base_lrs": [4e-4], "last_step": 200000}],
        "extra": RunsCode(),
    }
    modules = fake_mmengine()
    sys.modules.update(modules)
    try:
        torch.save(contents, path, _use_new_zipfile_serialization=not legacy)
    finally:
        for name in modules:
            del sys.modules[name]
    return path


@pytest.fixture(scope="module")
def mattors():
    return {key: random_mattor(*key, seed=index) for index, key in enumerate(CONFIGS)}


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.slow
def test_the_key_map_is_one_to_one_onto_mmagics_names(mattors):
    for (gca, in_channels), mattor in mattors.items():
        network = build_network(arch_spec("mmagic", ARCH[gca], in_channels - 3))
        ours = list(network.state_dict())
        theirs = {"backbone." + k: v.shape for k, v in mattor.backbone.state_dict().items()}
        assert len(ours) == len(theirs) == (578 if gca else 538)
        assert {mmagic_key(k): network.state_dict()[k].shape for k in ours} == theirs


@pytest.mark.parametrize("legacy", [False, True])
def test_a_file_with_mmengine_objects_loads_without_mmengine_and_runs_no_code(in_tmp, mattors, legacy):
    path = save_mmagic_checkpoint(mattors[(True, 6)], str(in_tmp / "gca.pth"), legacy)
    assert "mmengine" not in sys.modules
    checkpoint = read_checkpoint(path)
    assert not os.path.exists(MARKER), "unpickling ran code from the file"
    assert "mmengine" not in sys.modules
    assert len(checkpoint["state_dict"]) == 578 and checkpoint["meta"]["iter"] == 200000


@pytest.mark.parametrize("key", list(CONFIGS))
def test_demo_gives_mmagics_alpha(tmp_path, mattors, key):
    path = save_mmagic_checkpoint(mattors[key], str(tmp_path / "mmagic.pth"))
    config = tmp_path / "literal.toml"
    source = open(os.path.join("config", CONFIGS[key] + ".toml")).read()
    config.write_text(source.replace('alpha_path = "prediction"', 'alpha_path = "prediction"\ngca_block = -1'))
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (45, 70, 3), dtype=np.uint8)
    trimap = np.full((45, 70), 128, np.uint8)
    trimap[:10], trimap[-10:], trimap[20:24, :30] = 0, 255, 77  # 77: no class in MMagic's recipe
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        expected = mattors[key].predict(image, trimap).numpy()
        literal = Matter(str(config), path, device="cpu")(image[:, :, ::-1].copy(), trimap)
        blocked = Matter(os.path.join("config", CONFIGS[key] + ".toml"), path, device="cpu")(
            image[:, :, ::-1].copy(), trimap)
    finally:
        torch.set_num_threads(threads)
    assert np.array_equal(literal, expected)
    levels = np.abs(blocked.astype(int) - expected)
    assert levels.max() <= 1 and (levels == 0).mean() > 0.999
    assert len(np.unique(expected[10:-10])) > 20  # the network's alpha, not only the forced regions


def test_transposed_spectral_norms_need_torchs_dim_1(tmp_path, mattors):
    # The five square transposed convs load either way; with the published dim 0 sigma is wrong.
    path = save_mmagic_checkpoint(mattors[(False, 6)], str(tmp_path / "baseline.pth"))
    spec = arch_spec("mmagic", ARCH[False], 3)
    network = build_network(spec)
    load_checkpoint(network, spec, path)
    transposed = [m for m in network.modules() if isinstance(m, TorchSpectralNorm) and m.dim == 1]
    assert len(transposed) == 5
    with torch.no_grad():
        right = [m.normalized_weight() for m in transposed]
        for m in transposed:
            m.dim = 0
        wrong = [m.normalized_weight() for m in transposed]
    assert all(not torch.allclose(a, b, rtol=1e-3) for a, b in zip(right, wrong))


def test_a_dimaug_file_with_a_three_channel_config_names_trimap_channel(tmp_path, mattors):
    path = save_mmagic_checkpoint(mattors[(True, 4)], str(tmp_path / "dimaug.pth"))
    with pytest.raises(CheckpointError, match=r"model.trimap_channel = 1\): use config/mmagic-gca-dimaug.toml"):
        Matter("config/mmagic-gca.toml", path, device="cpu")
    path = save_mmagic_checkpoint(mattors[(True, 6)], str(tmp_path / "gca.pth"))
    with pytest.raises(CheckpointError, match=r"model.trimap_channel = 3\): use config/mmagic-gca.toml"):
        Matter("config/mmagic-gca-dimaug.toml", path, device="cpu")


def test_an_mmagic_file_with_a_gca_matting_config_names_the_mmagic_config(tmp_path, mattors):
    path = save_mmagic_checkpoint(mattors[(False, 6)], str(tmp_path / "baseline.pth"))
    with pytest.raises(CheckpointError, match=r"an MMagic baseline checkpoint .* use config/mmagic-baseline.toml"):
        Matter("config/baseline.toml", path, device="cpu")


def test_a_gca_matting_file_with_an_mmagic_config_names_the_gca_matting_settings(tmp_path):
    torch.manual_seed(0)
    network = build_network(arch_spec("gca-matting", ARCH[True], 3))
    path = str(tmp_path / "gca-dist.pth")
    torch.save({"state_dict": {"module." + k: v for k, v in network.state_dict().items()}}, path)
    with pytest.raises(CheckpointError, match=r'not an MMagic checkpoint.*GCA-Matting GCA checkpoint.*'
                                              r'model.family = "gca-matting".*config/gca-dist.toml'):
        Matter("config/mmagic-gca.toml", path, device="cpu")


@pytest.mark.slow
def test_an_mmagic_file_is_fine_tuned_and_its_checkpoint_runs(tmp_path, mattors):
    import main
    from dataloader.toy import make_toy_dataset
    from test_finetune import write_config
    toy = str(tmp_path / "toy")
    make_toy_dataset(toy, num_fg=2, num_bg=4, num_test=1, fg_size=(96, 128), bg_size=(80, 100), seed=3)
    source = save_mmagic_checkpoint(mattors[(True, 6)], str(tmp_path / "mmagic.pth"))
    config = write_config(str(tmp_path), toy, name="tuned", total_step=2, init_checkpoint=source)
    with open(config) as f:
        text = f.read().replace("[model]\n", '[model]\nfamily = "mmagic"\n', 1)
    with open(config, "w") as f:
        f.write(text)
    assert main.main(["--config", config]) == 0
    tuned = str(tmp_path / "ckpt" / "tuned" / "latest_model.pth")
    assert read_checkpoint(tuned)["config"]["model"]["family"] == "mmagic"
    image = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    trimap = np.full((40, 50), 128, np.uint8)
    trimap[:10] = 0
    assert Matter("config/mmagic-gca.toml", tuned, device="cpu")(image, trimap).shape == (40, 50)
    with pytest.raises(CheckpointError, match='was trained with model.family = "mmagic"'):
        Matter("config/gca-dist.toml", tuned, device="cpu")


@pytest.mark.slow
@pytest.mark.parametrize("key", list(CONFIGS))
def test_every_entry_point_runs_each_mmagic_config(tmp_path, mattors, key, capsys):
    import app
    import main
    images, trimaps, alphas = write_eval_folders(tmp_path)
    checkpoint = save_mmagic_checkpoint(mattors[key], str(tmp_path / "mmagic.pth"))
    config = os.path.join("config", CONFIGS[key] + ".toml")
    out = str(tmp_path / "out")
    assert demo.main(["--config", config, "--checkpoint", checkpoint, "--image-dir", images, "--trimap-dir", trimaps,
                      "--output", out, "--device", "cpu"]) == 0
    written = cv2.imread(os.path.join(out, f"{CONFIGS[key]}_mmagic.pth", "p0.png"), cv2.IMREAD_UNCHANGED)
    image, trimap = cv2.imread(os.path.join(images, "p0.png")), cv2.imread(os.path.join(trimaps, "p0.png"), 0)
    expected = mattors[key].predict(image, trimap).numpy()
    assert np.abs(written.astype(int) - expected).max() <= 1
    matter = Matter(config, checkpoint, device="cpu")
    page = app.matte(matter, app.Inputs(os.path.join(images, "p0.png"), trimap=os.path.join(trimaps, "p0.png")), 4096)
    assert np.array_equal(page.alpha, written)
    test_config = config_for_test_phase(tmp_path, config, checkpoint, (images, trimaps, alphas))
    capsys.readouterr()
    assert main.main(["--config", test_config, "--phase", "test"]) == 0
    predicted = cv2.imread(str(tmp_path / "prediction" / CONFIGS[key] / "p0.png"), cv2.IMREAD_UNCHANGED)
    assert np.abs(predicted.astype(int) - expected).max() <= 1  # MMagic's recipe in the test phase too
    assert f"{CONFIGS[key]} on 2 images" in capsys.readouterr().out


def test_a_released_file_whose_contents_do_not_match_its_name_is_named_damaged(tmp_path, mattors):
    name = "baseline_r34_4x10_200k_comp1k_SAD-34.61_20220620-{}.pth"
    path = save_mmagic_checkpoint(mattors[(False, 6)], str(tmp_path / name.format("00000000")))
    with pytest.raises(CheckpointError, match="not 00000000 as its name says: the file is incomplete or damaged"):
        read_checkpoint(path)
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()[:8]
    renamed = str(tmp_path / name.format(digest))
    os.rename(path, renamed)
    assert len(read_checkpoint(renamed)["state_dict"]) == 538
