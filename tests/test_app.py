import os
import subprocess
import sys
import time
import urllib.request

import cv2
import numpy as np
import pytest
import torch

import browser_check_app
from conftest import random_gca
from matting import Matter
from utils.trimaps.from_mask import mask_to_trimap

gr = pytest.importorskip("gradio", reason="the app's extra is not installed: pip install -r requirements-app.txt")
gradio_client = pytest.importorskip("gradio_client",
                                    reason="the app's extra is not installed: pip install -r requirements-app.txt")
pytest.importorskip("pymatting", reason="the app's cutouts need pymatting: pip install -r requirements-app.txt")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

import app  # noqa: E402

# Gradio's queue calls pandas options that pandas 3 deprecates; nothing of the page's.
pytestmark = [pytest.mark.filterwarnings("ignore:.*no_silent_downcasting"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "config", "gca-dist-all-data.toml")
MAX_SIDE = 100
HEIGHT, WIDTH = 48, 64


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A random-weight GCA model; a few training-mode forwards give it BN statistics and spectral norms."""
    model = random_gca(5)
    path = tmp_path_factory.mktemp("checkpoint") / "random.pth"
    torch.save({"state_dict": model.state_dict()}, path)
    return str(path)


@pytest.fixture(scope="module")
def matter(checkpoint):
    return Matter(CONFIG, checkpoint, device="cpu")


@pytest.fixture(scope="module")
def url(matter, tmp_path_factory):
    """The page served in this process on a free local port."""
    page = app.build_page(matter, MAX_SIDE, str(tmp_path_factory.mktemp("downloads")))
    port = browser_check_app.free_port()
    page.launch(server_name="127.0.0.1", server_port=port, share=False, prevent_thread_lock=True, quiet=True,
                ssr_mode=False)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        page.close()


@pytest.fixture(scope="module")
def client(url, tmp_path_factory):
    return Client(url, verbose=False, analytics_enabled=False, download_files=str(tmp_path_factory.mktemp("client")))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A photo (RGB array and PNG), a trimap and a mask of its size, as PNG files."""
    folder = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    image_rgb = cv2.GaussianBlur(rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8), (5, 5), 0)
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    cv2.circle(mask, (32, 24), 14, 255, -1)
    trimap = mask_to_trimap(mask, 5)
    paths = {"photo": folder / "photo.png", "trimap": folder / "trimap.png", "mask": folder / "mask.png"}
    cv2.imwrite(str(paths["photo"]), image_rgb[:, :, ::-1])
    cv2.imwrite(str(paths["trimap"]), trimap)
    cv2.imwrite(str(paths["mask"]), mask)
    return image_rgb, trimap, mask, {name: str(path) for name, path in paths.items()}, folder


def matte(client, **inputs):
    """The /matte endpoint's outputs by name; file paths wrapped for upload."""
    for name in ("photo", "trimap", "mask", "background"):
        if inputs.get(name):
            inputs[name] = handle_file(inputs[name])
    names = ("alpha", "over_checkerboard", "over_background", "offset1", "offset2", "trimap", "alpha_file",
             "rgba_file", "notes")
    return dict(zip(names, client.predict(**inputs, api_name="/matte")))


def grey(path):
    return cv2.imread(path, cv2.IMREAD_GRAYSCALE)


@pytest.mark.slow
def test_a_trimap_gives_the_python_apis_alpha(client, matter, files):
    image_rgb, trimap, _, paths, _ = files
    out = matte(client, photo=paths["photo"], guide="trimap", trimap=paths["trimap"])
    expected = matter(image_rgb, trimap)
    assert np.array_equal(grey(out["alpha"]), expected)
    assert np.array_equal(grey(out["alpha_file"]), expected)
    rgba = cv2.imread(out["rgba_file"], cv2.IMREAD_UNCHANGED)
    assert rgba.shape == (HEIGHT, WIDTH, 4) and np.array_equal(rgba[:, :, 3], expected)
    assert np.array_equal(rgba, matter.cutout(image_rgb, trimap)[:, :, [2, 1, 0, 3]])
    for name in ("over_checkerboard", "over_background", "offset1", "offset2"):
        assert cv2.imread(out[name]) is not None
    assert out["notes"] == ""


@pytest.mark.slow
def test_a_mask_gives_the_python_apis_alpha(client, matter, files):
    image_rgb, _, mask, paths, _ = files
    out = matte(client, photo=paths["photo"], guide="mask", mask=paths["mask"], unknown_width=4)
    assert np.array_equal(grey(out["alpha"]), matter(image_rgb, mask=mask, unknown_width=4))
    assert np.array_equal(grey(out["trimap"]), mask_to_trimap(mask, 4))


def test_the_background_colour_fills_the_composite(client, files):
    _, _, _, paths, _ = files
    out = matte(client, photo=paths["photo"], guide="trimap", trimap=paths["trimap"], colour="#00ff00")
    over = cv2.imread(out["over_background"])
    assert tuple(over[0, 0]) == (0, 255, 0)


@pytest.mark.parametrize("spec", ["#00ff00", "rgb(0, 255, 0)", "rgba(0, 255, 0, 1)", "rgba(0.2, 254.6, 0, 0.5)"])
def test_colour_picker_values_are_read(spec):
    assert app.colour_background(spec).colour_bgr == (0, 255, 0)


def test_a_painted_trimap_is_read_by_brush_colour(client, matter, files):
    image_rgb, trimap, _, paths, folder = files
    layer = np.zeros((HEIGHT, WIDTH, 4), np.uint8)
    for grey_value, (colour, _) in zip((255, 128, 0), (app.BRUSHES["foreground"], app.BRUSHES["unknown"],
                                                       app.BRUSHES["background"])):
        layer[trimap == grey_value] = (*colour, 255)
    layer[trimap == 0] = 0  # unpainted: background, the page's default
    path = folder / "layer.png"
    cv2.imwrite(str(path), cv2.cvtColor(layer, cv2.COLOR_RGBA2BGRA))
    painted = {"background": handle_file(paths["photo"]), "layers": [handle_file(str(path))], "composite": None}
    out = matte(client, photo=paths["photo"], guide="paint", painted=painted)
    assert np.array_equal(grey(out["trimap"]), trimap)
    assert np.array_equal(grey(out["alpha"]), matter(image_rgb, trimap))


def test_painted_trimap_takes_the_nearest_brush_and_later_layers_on_top():
    first = np.zeros((2, 3, 4), np.uint8)
    first[0, 0] = (*app.BRUSHES["foreground"][0], 255)
    first[0, 1] = (*app.BRUSHES["unknown"][0], 40)
    first[1, 2] = (200, 60, 40, 255)  # near the background brush's red
    second = np.zeros_like(first)
    second[0, 0] = (*app.BRUSHES["unknown"][0], 255)
    assert app.painted_trimap([first], "unknown").tolist() == [[255, 128, 128], [128, 128, 0]]
    assert app.painted_trimap([first, second], "background").tolist() == [[128, 128, 0], [0, 0, 0]]


@pytest.mark.parametrize("unpainted, message", [
    ("background", "no unknown pixel"),
    ("unknown", "no foreground"),
])
def test_a_painting_with_nothing_to_matte_gets_a_message(client, files, unpainted, message):
    _, _, _, paths, folder = files
    layer = np.zeros((HEIGHT, WIDTH, 4), np.uint8)
    brush = "foreground" if unpainted == "background" else "background"
    layer[10:20, 10:20] = (*app.BRUSHES[brush][0], 255)
    path = folder / f"layer_{unpainted}.png"
    cv2.imwrite(str(path), cv2.cvtColor(layer, cv2.COLOR_RGBA2BGRA))
    painted = {"background": handle_file(paths["photo"]), "layers": [handle_file(str(path))], "composite": None}
    with pytest.raises(AppError, match=message):
        matte(client, photo=paths["photo"], guide="paint", painted=painted, unpainted=unpainted)


def test_a_trimap_of_half_the_size_is_resized_with_a_note(client, matter, files):
    image_rgb, trimap, _, paths, folder = files
    small = cv2.resize(trimap, (WIDTH // 2, HEIGHT // 2), interpolation=cv2.INTER_NEAREST)
    path = folder / "small_trimap.png"
    cv2.imwrite(str(path), small)
    out = matte(client, photo=paths["photo"], guide="trimap", trimap=str(path))
    assert "was resized to the photo's 64 x 48 px" in out["notes"]
    resized = cv2.resize(small, (WIDTH, HEIGHT), interpolation=cv2.INTER_NEAREST)
    assert np.array_equal(grey(out["alpha"]), matter(image_rgb, resized))


def write_bad_inputs(folder):
    """name -> (path, what the page must say about it)."""
    rng = np.random.default_rng(1)
    big = folder / "big.png"
    cv2.imwrite(str(big), rng.integers(0, 256, (40, MAX_SIDE + 20, 3), dtype=np.uint8))
    other_shape = folder / "other_shape.png"
    cv2.imwrite(str(other_shape), np.full((HEIGHT, HEIGHT), 128, np.uint8))
    broken = folder / "broken.png"
    broken.write_bytes(b"not an image at all")
    empty_mask = folder / "empty_mask.png"
    cv2.imwrite(str(empty_mask), np.zeros((HEIGHT, WIDTH), np.uint8))
    return {"big": str(big), "other_shape": str(other_shape), "broken": str(broken), "empty_mask": str(empty_mask)}


@pytest.mark.parametrize("case, message", [
    ("big photo", f"at most {MAX_SIDE} px on the long side"),
    ("broken photo", r"the photo \(broken.png\): not a readable image"),
    ("broken trimap", r"the trimap \(broken.png\): not a readable image"),
    ("trimap of another shape", "48 x 48 px but the photo is 64 x 48 px, another shape"),
    ("empty mask", "nothing to matte: the mask is empty"),
    ("no trimap", "no trimap uploaded"),
    ("no photo", "no photo"),
    ("bad colour", "not a colour"),
])
def test_bad_input_gets_a_message(client, files, case, message):
    _, _, _, paths, folder = files
    bad = write_bad_inputs(folder)
    inputs = {
        "big photo": dict(photo=bad["big"], guide="trimap", trimap=paths["trimap"]),
        "broken photo": dict(photo=bad["broken"], guide="trimap", trimap=paths["trimap"]),
        "broken trimap": dict(photo=paths["photo"], guide="trimap", trimap=bad["broken"]),
        "trimap of another shape": dict(photo=paths["photo"], guide="trimap", trimap=bad["other_shape"]),
        "empty mask": dict(photo=paths["photo"], guide="mask", mask=bad["empty_mask"]),
        "no trimap": dict(photo=paths["photo"], guide="trimap"),
        "no photo": dict(guide="trimap", trimap=paths["trimap"]),
        "bad colour": dict(photo=paths["photo"], guide="trimap", trimap=paths["trimap"], colour="chartreuse-ish"),
    }[case]
    with pytest.raises(AppError, match=message):
        matte(client, **inputs)


def test_a_photo_that_runs_out_of_memory_gets_a_message_naming_its_size(matter, files, monkeypatch):
    _, _, _, paths, _ = files
    monkeypatch.setattr(matter, "predict_bgr", lambda *args, **kwargs: (_ for _ in ()).throw(RuntimeError(
        "DefaultCPUAllocator: can't allocate memory: you tried to allocate 3221225472 bytes. Error code 12")))
    with pytest.raises(app.PageError, match=r"^the photo: out of memory on this 64x48 image \(it tried to allocate "
                                            r"3.0 GiB more\); scale it down"):
        app.matte(matter, app.Inputs(paths["photo"], trimap=paths["trimap"]), MAX_SIDE)


def test_a_trimap_with_too_little_known_gets_a_note(matter, files):
    _, _, _, paths, folder = files
    unknown = folder / "all_unknown.png"
    cv2.imwrite(str(unknown), np.full((HEIGHT, WIDTH), 128, np.uint8))
    results = app.matte(matter, app.Inputs(paths["photo"], trimap=str(unknown)), MAX_SIDE)
    assert any(note.startswith("Only 0 % of the trimap is known foreground or background, under the 1 %")
               for note in results.notes), results.notes


def test_a_web_page_saved_as_the_checkpoint_is_one_line_and_exit_2(capsys, tmp_path):
    page = tmp_path / "gca-dist-all-data.pth"
    page.write_text("<!DOCTYPE html>\n<html><head><title>Google Drive</title></head></html>")
    assert app.main(["--config", CONFIG, "--checkpoint", str(page), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {page}: not a PyTorch checkpoint (it looks like a web page")


def test_the_page_offers_fp16_only_on_cuda_and_bf16_only_with_amx(client):
    endpoint = next(e for e in client.view_api(print_info=False, return_format="dict")["named_endpoints"].items()
                    if e[0] == "/matte")[1]
    precision = next(p for p in endpoint["parameters"] if p["parameter_name"] == "precision")
    assert "fp16" not in precision["type"].get("enum", ["fp16"])
    from utils.inference.predict import cpu_has_amx
    assert ("bf16" in precision["type"].get("enum", [])) == cpu_has_amx()


def test_missing_gradio_is_one_line_and_exit_2(monkeypatch, capsys, checkpoint):
    monkeypatch.setitem(sys.modules, "gradio", None)
    assert app.main(["--config", CONFIG, "--checkpoint", checkpoint]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install -r requirements-app.txt" in err


@pytest.mark.parametrize("flags, message", [
    (["--config", "nope.toml"], "nope.toml"),
    (["--checkpoint", "nope.pth"], "nope.pth"),
    (["--max-side", "8"], "--max-side"),
])
def test_bad_command_lines_are_one_line_and_exit_2(capsys, checkpoint, flags, message):
    args = {"--config": CONFIG, "--checkpoint": checkpoint, "--device": "cpu"}
    args.update(dict(zip(flags[::2], flags[1::2])))
    assert app.main([item for pair in args.items() for item in pair]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err


def test_host_and_port_reach_launch_and_share_stays_off(monkeypatch, checkpoint):
    calls = []
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kwargs: calls.append(kwargs))
    monkeypatch.setattr(gr.Blocks, "block_thread", lambda self: calls.append("served"))
    assert app.main(["--config", CONFIG, "--checkpoint", checkpoint, "--device", "cpu", "--host", "0.0.0.0",
                     "--port", "7999"]) == 0
    assert calls[0]["server_name"] == "0.0.0.0" and calls[0]["server_port"] == 7999 and calls[0]["share"] is False
    # quiet: no "To create a public link, set share=True" for a page that never makes one
    assert calls[0]["quiet"] is True and calls[1] == "served"


def listening_addresses(port: int) -> set:
    """The local addresses (hex, as the kernel lists them) of the TCP sockets listening on `port`."""
    addresses = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if os.path.exists(table):
            with open(table) as f:
                for line in f.readlines()[1:]:
                    local, state = line.split()[1], line.split()[3]
                    address, local_port = local.split(":")
                    if state == "0A" and int(local_port, 16) == port:
                        addresses.add(address)
    return addresses


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="reads the listening sockets from Linux's /proc")
def test_the_command_serves_on_localhost_without_a_share_link(checkpoint, tmp_path):
    port = browser_check_app.free_port()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", OMP_NUM_THREADS="2", PYTHONUNBUFFERED="1")
    process = subprocess.Popen([sys.executable, os.path.join(ROOT, "app.py"), "--config", CONFIG, "--checkpoint",
                                checkpoint, "--device", "cpu", "--port", str(port)], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                    assert response.status == 200
                break
            except OSError:
                assert process.poll() is None, process.stdout.read()
                assert time.monotonic() < deadline, "the page did not come up within 60 s"
                time.sleep(0.3)
        assert listening_addresses(port) == {"0100007F"}  # 127.0.0.1 only
        # The page answers before launch() has returned and app.py has printed its address line:
        # read up to that line (or the end) before stopping it, or a loaded machine loses the race.
        seen = []
        while not seen or (seen[-1] and "Running on local URL" not in seen[-1]):
            seen.append(process.stdout.readline())
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    output = "".join(seen) + output
    assert "gradio.live" not in output
    # the address, and nothing that suggests a public link can be had
    assert f"* Running on local URL:  http://127.0.0.1:{port}/ (no public share link" in output
    assert "share=True" not in output and "public link" not in output


@pytest.mark.slow
def test_the_page_works_in_a_real_browser(url, matter, files, tmp_path):
    pytest.importorskip("playwright", reason="the browser check needs playwright: pip install playwright")
    if not os.access(browser_check_app.CHROMIUM, os.X_OK):
        pytest.skip(f"the browser check needs Chromium at {browser_check_app.CHROMIUM} (apt install chromium)")
    image_rgb, trimap, _, paths, _ = files
    screenshot = tmp_path / "page.png"
    shown = browser_check_app.check_page(url, paths["photo"], paths["trimap"], str(screenshot))
    assert np.array_equal(shown, matter(image_rgb, trimap))
    assert cv2.imread(str(screenshot)) is not None
