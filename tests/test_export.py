import contextlib
import importlib.util
import io
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

import demo
from conftest import arch_spec, state_dict_from_key_list
from networks import export, export_form
from networks.families import family_spec
from networks.gca_matting import export as gca_export
from networks.gca_matting import family as gca_matting
from networks.gca_matting.decoders.res_gca_dec import ResGuidedCxtAtten_Dec
from networks.gca_matting.decoders.res_shortcut_dec import ResShortCut_D_Dec
from networks.gca_matting.encoders.res_gca_enc import ResGuidedCxtAtten
from networks.gca_matting.encoders.res_shortcut_enc import ResShortCut_D
from networks.gca_matting.gca import LITERAL, GuidedCxtAtten
from networks.gca_matting.generator import Generator
from networks.mmagic import network as mmagic_network
from utils.inference.predict import predict_alpha

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The GCA model with a one-hot trimap, and the baseline with a one-channel trimap.
CONFIGS = {"gca": "gca-dist.toml", "baseline": "baseline-dimaug.toml"}
ARCHS = {"gca": ("resnet_gca_encoder_29", "res_gca_decoder_22", 3),
         "baseline": ("res_shortcut_encoder_29", "res_shortcut_decoder_22", 1)}
SIZES = ((45, 70), (83, 45))  # (height, width): one wide, one tall, neither a multiple of 32
DOCS_SECTION = "## Running the file with onnxruntime alone"  # in docs/export.md
# onnxruntime alone, in a process that imports nothing of this project (nor torch)
RUN_ALONE = """
import sys
import numpy as np
import onnxruntime as ort
session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
for index in range(2):
    feed = {name: np.load(f"{sys.argv[2]}/{name}{index}.npy") for name in ("image", "trimap")}
    np.save(f"{sys.argv[2]}/alpha{index}.npy", session.run(["alpha"], feed)[0])
ours = [m for m in sys.modules if m.split(".")[0] in ("networks", "utils", "demo", "torch")]
print("imported:", ours)
"""


@pytest.fixture(scope="module")
def onnx_packages():
    for name in export.EXPORT_PACKAGES:
        pytest.importorskip(name, reason=f"{name} not installed (pip install -r requirements-export.txt)")


def small_generator(encoder: str, decoder: str, trimap_channel: int = 3) -> Generator:
    """The named architecture with one block per layer: the same modules, a quicker export.
    Spectral norms converged and BatchNorm statistics away from the identity, as trained ones are."""
    gca = "gca" in encoder
    torch.manual_seed(0)
    model = Generator((ResGuidedCxtAtten if gca else ResShortCut_D)([1, 1, 1, 1], trimap_channel),
                      (ResGuidedCxtAtten_Dec if gca else ResShortCut_D_Dec)([1, 1, 1, 1]), trimap_channel)
    with torch.no_grad():
        for _ in range(5):
            model(torch.randn(2, 3, 64, 64), torch.rand(2, trimap_channel, 64, 64))
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
    return model.eval()


def write_pair(folder, seed: int):
    """images/a.png and trimaps/a.png in `folder`, a 45 x 70 pair; (the two folders, the RGB image,
    the trimap)."""
    images, trimaps = folder / "images", folder / "trimaps"
    images.mkdir()
    trimaps.mkdir()
    image, trimap = pair(45, 70, seed)
    cv2.imwrite(str(images / "a.png"), image[:, :, ::-1])
    cv2.imwrite(str(trimaps / "a.png"), trimap)
    return str(images), str(trimaps), image, trimap


def pair(height: int, width: int, seed: int):
    """A random RGB image; a trimap of background above, foreground below and between them an
    unknown band, part of it grey values around both thresholds (85, 170)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    trimap = np.full((height, width), 128, np.uint8)
    trimap[: height // 4], trimap[-(height // 4):] = 0, 255
    trimap[height // 3: height // 2] = rng.integers(60, 200, (height // 2 - height // 3, width))
    return image, trimap


def demo_recipe(model: Generator):
    return gca_matting.recipes(family_spec("gca-matting", {"model.trimap_channel": model.trimap_channel}))[0]


def demo_alpha(model: Generator, image_rgb: np.ndarray, trimap: np.ndarray) -> np.ndarray:
    return predict_alpha(model, demo_recipe(model), np.ascontiguousarray(image_rgb[:, :, ::-1]), trimap,
                         torch.device("cpu"))[0]


def within_one_level(alpha: np.ndarray, expected: np.ndarray) -> float:
    return float((np.abs(alpha.astype(int) - expected.astype(int)) <= 1).mean())


@pytest.fixture(scope="module")
def exported(onnx_packages, tmp_path_factory):
    """{arch: (small model, .onnx path, the exporter's stdout)}: each exported by the command
    line from its config and a checkpoint, the config's network built with one block per layer."""
    folder = tmp_path_factory.mktemp("export")
    files = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gca_matting, "build_generator", small_generator)
        for arch, config in CONFIGS.items():
            model = small_generator(*ARCHS[arch])
            checkpoint, output = str(folder / f"{arch}.pth"), str(folder / f"{arch}.onnx")
            torch.save({"state_dict": model.state_dict()}, checkpoint)
            stdout = io.StringIO()
            with contextlib.redirect_stdout(stdout):
                code = export.main(["--config", os.path.join(ROOT, "config", config), "--checkpoint", checkpoint,
                                    "--output", output])
            assert code == 0
            files[arch] = (model, output, stdout.getvalue())
    return files


@pytest.mark.parametrize("grid", [(4, 6), (6, 4), (2, 2), (3, 7)])
def test_scanned_attention_is_the_published_one(grid):
    torch.manual_seed(0)
    literal = GuidedCxtAtten().eval()
    literal.block = LITERAL
    scanned = gca_export.ScannedGCA()
    scanned.load_state_dict(literal.state_dict())
    h, w = grid
    guidance, alpha = torch.randn(1, 128, 2 * h, 2 * w), torch.randn(1, 128, 2 * h, 2 * w)
    masks = [(torch.rand(1, 1, 2 * h, 2 * w) > 0.5).float(), torch.ones(1, 1, 2 * h, 2 * w),
             torch.zeros(1, 1, 2 * h, 2 * w)]
    for unknown in masks:
        with torch.no_grad():
            expected, _, scales = literal.attend(guidance, alpha, unknown)
            out, offsets, scanned_scales = scanned.attend(guidance, alpha, unknown)
        assert torch.allclose(out, expected, atol=1e-4) and torch.equal(scanned_scales, scales)
        assert offsets is None


def test_phased_conv_transpose_is_the_transposed_convolution():
    torch.manual_seed(0)
    conv = torch.nn.ConvTranspose2d(8, 5, kernel_size=4, stride=2, padding=1, bias=True)
    x = torch.randn(1, 8, 5, 7)
    with torch.no_grad():
        assert torch.allclose(export_form.PhasedConvTranspose(conv)(x), conv(x), atol=1e-5)
    other = torch.nn.ConvTranspose2d(8, 5, kernel_size=2, stride=2)
    assert export_form._phased(other) is other


@pytest.mark.slow
@pytest.mark.parametrize("arch", list(CONFIGS))
def test_exported_form_in_pytorch_gives_the_demo_alpha(arch):
    model = small_generator(*ARCHS[arch])
    graph = export.DemoGraph(gca_export.exportable(model), demo_recipe(model))
    for index, (height, width) in enumerate(SIZES):
        image, trimap = pair(height, width, index)
        with torch.no_grad():
            alpha = graph(torch.from_numpy(image), torch.from_numpy(trimap)).numpy()
        assert within_one_level(alpha, demo_alpha(model, image, trimap)) >= export.AGREEMENT


@pytest.mark.slow
@pytest.mark.parametrize("arch", list(CONFIGS))
def test_onnxruntime_alone_gives_the_demo_alpha(exported, arch, tmp_path):
    model, path, stdout = exported[arch]
    assert "checked with onnxruntime" in stdout and stdout.count("within 1/255") == 2
    expected = []
    for index, (height, width) in enumerate(SIZES):
        image, trimap = pair(height, width, index)
        np.save(tmp_path / f"image{index}.npy", image)
        np.save(tmp_path / f"trimap{index}.npy", trimap)
        expected.append(demo_alpha(model, image, trimap))
    done = subprocess.run([sys.executable, "-I", "-c", RUN_ALONE, path, str(tmp_path)], cwd=str(tmp_path),
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "imported: []" in done.stdout
    for index, (height, width) in enumerate(SIZES):
        alpha = np.load(tmp_path / f"alpha{index}.npy")
        assert alpha.shape == (height, width) and alpha.dtype == np.uint8
        assert within_one_level(alpha, expected[index]) >= export.AGREEMENT
        assert (alpha[: height // 4] == 0).all() and (alpha[-(height // 4):] == 255).all()


@pytest.mark.slow
def test_graph_interface(exported):
    import onnx
    model = onnx.load(exported["gca"][1])
    uint8 = onnx.TensorProto.UINT8

    def interface(values):
        return [(v.name, v.type.tensor_type.elem_type,
                 [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]) for v in values]
    assert interface(model.graph.input) == [("image", uint8, ["height", "width", 3]),
                                            ("trimap", uint8, ["height", "width"])]
    assert interface(model.graph.output) == [("alpha", uint8, ["height", "width"])]
    assert any(node.op_type == "Scan" for node in model.graph.node)
    assert not any(node.op_type == "ConvTranspose" for node in model.graph.node)


@pytest.mark.slow
def test_demo_runs_the_exported_file(exported, tmp_path, capsys):
    model, path, _ = exported["gca"]
    images, trimaps, image, trimap = write_pair(tmp_path, seed=0)
    out = str(tmp_path / "out")
    assert demo.main(["--onnx", path, "--image-dir", str(images), "--trimap-dir", str(trimaps), "--output", out]) == 0
    save_dir = os.path.join(out, "onnx_gca.onnx")
    assert os.listdir(save_dir) == ["a.png"]
    written = cv2.imread(os.path.join(save_dir, "a.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(written, export.OnnxMatting(path)(image, trimap))
    assert within_one_level(written, demo_alpha(model, image, trimap)) >= export.AGREEMENT
    for flags, message in ((["--tta", "flip"], "--tta runs on PyTorch only"),
                           (["--precision", "bf16"], "drop --precision")):
        code = demo.main(["--onnx", path, "--image-dir", str(images), "--trimap-dir", str(trimaps), "--output", out,
                          *flags])
        assert code == 2 and message in capsys.readouterr().err
    missing = str(tmp_path / "missing.onnx")
    assert demo.main(["--onnx", missing, "--image-dir", str(images), "--trimap-dir", str(trimaps),
                      "--output", out]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{missing}: no such file" in err


@pytest.mark.slow
def test_the_docs_example_runs_with_onnxruntime_alone(exported, tmp_path):
    docs = open(os.path.join(ROOT, "docs", "export.md")).read()
    section = docs[docs.index(DOCS_SECTION):]
    code = section[section.index("```python\n") + len("```python\n"):section.index("```\n", section.index("```python"))]
    assert len([line for line in code.splitlines() if line.strip()]) <= 10
    model, path, _ = exported["gca"]
    shutil.copy(path, tmp_path / "gca-dist-all-data.onnx")
    image, trimap = pair(45, 70, 0)
    (tmp_path / "demo" / "trimap_lowres" / "Trimap3").mkdir(parents=True)
    (tmp_path / "demo" / "input_lowres").mkdir()
    cv2.imwrite(str(tmp_path / "demo" / "input_lowres" / "troll.png"), image[:, :, ::-1])
    cv2.imwrite(str(tmp_path / "demo" / "trimap_lowres" / "Trimap3" / "troll.png"), trimap)
    done = subprocess.run([sys.executable, "-I", "-c", code], cwd=str(tmp_path), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    alpha = cv2.imread(str(tmp_path / "troll_alpha.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(alpha, export.OnnxMatting(path)(image, trimap))
    assert within_one_level(alpha, demo_alpha(model, image, trimap)) >= export.AGREEMENT


def run_cli(argv, capsys):
    code = export.main(argv)
    captured = capsys.readouterr()
    return code, captured.err


def test_a_checkpoint_of_the_other_architecture(onnx_packages, tmp_path, capsys):
    checkpoint = str(tmp_path / "baseline.pth")
    torch.save({"state_dict": state_dict_from_key_list("baseline")}, checkpoint)
    output = str(tmp_path / "model.onnx")
    code, err = run_cli(["--config", os.path.join(ROOT, "config", "gca-dist.toml"), "--checkpoint", checkpoint,
                         "--output", output], capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ")
    assert checkpoint in err and 'encoder = "res_shortcut_encoder_29"' in err
    assert not os.path.exists(output)


@pytest.mark.parametrize("content", [b"hello world\n", b"", b'{"error": 404}'], ids=["text", "empty", "json"])
def test_a_file_that_is_not_a_checkpoint(onnx_packages, tmp_path, capsys, content):
    checkpoint = tmp_path / "gca-dist.pth"
    checkpoint.write_bytes(content)
    output = str(tmp_path / "model.onnx")
    code, err = run_cli(["--config", os.path.join(ROOT, "config", "gca-dist.toml"), "--checkpoint", str(checkpoint),
                         "--output", output], capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith(f"error: {checkpoint}: not a PyTorch checkpoint (")
    assert not os.path.exists(output)


def test_an_output_that_cannot_be_written(onnx_packages, tmp_path, capsys):
    config = os.path.join(ROOT, "config", "gca-dist.toml")
    blocker = tmp_path / "file"
    blocker.write_text("")
    cases = [(str(tmp_path / "missing" / "model.onnx"), "does not exist"),
             (str(blocker / "model.onnx"), "is a file, not a folder"),
             (str(tmp_path), "is a folder")]
    for output, message in cases:
        code, err = run_cli(["--config", config, "--checkpoint", "unused.pth", "--output", output], capsys)
        assert code == 2 and err.count("\n") == 1 and message in err and output in err


def test_a_missing_onnx_package(monkeypatch, tmp_path, capsys):
    real = importlib.util.find_spec
    absent = ("onnx", "onnxruntime")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in absent else real(name, *a))
    code, err = run_cli(["--config", os.path.join(ROOT, "config", "gca-dist.toml"), "--checkpoint", "unused.pth",
                         "--output", str(tmp_path / "model.onnx")], capsys)
    hint = " not installed; ONNX export and --onnx need: pip install -r requirements-export.txt\n"
    assert code == 2 and err.startswith("error: onnx, onnxruntime") and err.endswith(hint) and err.count("\n") == 1
    (tmp_path / "images").mkdir()
    code = demo.main(["--onnx", str(tmp_path / "model.onnx"), "--image-dir", str(tmp_path / "images"),
                      "--trimap-dir", str(tmp_path / "images"), "--output", str(tmp_path / "out")])
    assert code == 2 and capsys.readouterr().err == "error: onnxruntime" + hint


def test_a_bad_opset(tmp_path, capsys):
    code, err = run_cli(["--config", "unused.toml", "--checkpoint", "unused.pth", "--output",
                         str(tmp_path / "model.onnx"), "--opset", "11"], capsys)
    assert code == 2 and "--opset 11: choose 18..23" in err


def demo_alphas_both_ways(tmp_path, onnx_file: str, config: str, checkpoint: str):
    """demo.py's alpha of one image with --onnx and with PyTorch (the config and checkpoint)."""
    images, trimaps, _, _ = write_pair(tmp_path, seed=3)
    out = str(tmp_path / "out")
    assert demo.main(["--onnx", onnx_file, "--image-dir", str(images), "--trimap-dir", str(trimaps),
                      "--output", out]) == 0
    assert demo.main(["--config", config, "--checkpoint", checkpoint, "--image-dir", str(images), "--trimap-dir",
                      str(trimaps), "--output", out, "--device", "cpu"]) == 0
    version = os.path.splitext(os.path.basename(config))[0]
    read = lambda folder: cv2.imread(os.path.join(out, folder, "a.png"), cv2.IMREAD_UNCHANGED)  # noqa: E731
    return read(f"onnx_{os.path.basename(onnx_file)}"), read(f"{version}_{os.path.basename(checkpoint)}")


# Two of the four MMagic configs cover the four graphs: mmagic-gca exports MMagic's recipe with the
# three-channel trimap around its GCA network, mmagic-baseline-dimaug the one-channel trimap around
# the baseline network. mmagic-gca-dimaug's graph is mmagic-gca's network in the one-channel recipe,
# mmagic-baseline's the baseline network in the three-channel one. An export costs 30 to 100 s.
@pytest.mark.slow
@pytest.mark.parametrize("config", ["mmagic-gca.toml", "mmagic-baseline-dimaug.toml"])
def test_an_mmagic_model_is_exported_in_its_own_recipe(onnx_packages, tmp_path, monkeypatch, capsys, config):
    # MMagic's recipe (normalisation, exact trimap greys, bottom/right padding, rounding), torch's
    # spectral norm and MMagic's attention, in the graph; demo.py --onnx reads the recipe's family.
    encoder, decoder = ARCHS["baseline" if "baseline" in config else "gca"][:2]
    channels = 1 if "dimaug" in config else 3
    monkeypatch.setattr(mmagic_network, "build_generator", small_generator)
    torch.manual_seed(1)
    model = mmagic_network.build_mmagic_generator(arch_spec("mmagic", (encoder, decoder), channels))
    with torch.no_grad():
        for _ in range(5):
            model(torch.randn(2, 3, 64, 64), torch.rand(2, channels, 64, 64))
    checkpoint, output = str(tmp_path / "mmagic.pth"), str(tmp_path / "mmagic.onnx")
    torch.save({"state_dict": model.state_dict(), "config": {"model": {"family": "mmagic"}}}, checkpoint)
    assert export.main(["--config", os.path.join(ROOT, "config", config), "--checkpoint", checkpoint,
                        "--output", output]) == 0
    assert "checked with onnxruntime" in capsys.readouterr().out
    onnx, pytorch = demo_alphas_both_ways(tmp_path, output, os.path.join(ROOT, "config", config), checkpoint)
    assert within_one_level(onnx, pytorch) >= export.AGREEMENT
    assert export.OnnxMatting(output).recipe.name == "mmagic"


@pytest.mark.slow
def test_a_dim_model_is_exported_with_its_pooling_indices(onnx_packages, tmp_path, capsys):
    # MaxPool's indices and the max-unpooling (ScatterND) in the graph, MMagic's recipe with the
    # trimap as grey / 255; a checkpoint of this project trained as the family loads as it is.
    from networks.families import build_network
    torch.manual_seed(2)
    model = build_network(family_spec("mmagic-dim", {"model.arch.refiner": "plain_refiner"}))
    with torch.no_grad():  # He-normal weights, so that the alpha varies
        for conv in model.modules():
            if isinstance(conv, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(conv.weight)
                conv.bias.uniform_(-0.1, 0.1)
    config = os.path.join(ROOT, "config", "mmagic-dim-stage3.toml")
    checkpoint, output = str(tmp_path / "dim.pth"), str(tmp_path / "dim.onnx")
    torch.save({"state_dict": model.state_dict(), "config": {"model": {"family": "mmagic-dim"}}}, checkpoint)
    assert export.main(["--config", config, "--checkpoint", checkpoint, "--output", output]) == 0
    printed = capsys.readouterr()
    assert "checked with onnxruntime" in printed.out and "Attribute type is ambiguous" not in printed.err
    onnx, pytorch = demo_alphas_both_ways(tmp_path, output, config, checkpoint)
    assert within_one_level(onnx, pytorch) >= export.AGREEMENT and len(np.unique(pytorch)) > 20
    assert export.OnnxMatting(output).recipe.name == "mmagic-dim"
