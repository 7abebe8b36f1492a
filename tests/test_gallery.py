"""The failure gallery: pictures of the worst images, index.html, its folder rules, and its sorting
in a real browser (headless Chromium through Playwright, where both are installed)."""
import os
import re
import shutil

import cv2
import numpy as np
import pytest

from utils.evaluation.evaluate import main
from utils.evaluation.gallery import GENERATOR, PANEL_SIDE
from utils.evaluation.metrics import all_metrics

NAMES = ("cat.png", "dog.png", "fern.png", "hair.png", "odd.png")
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def evaluation_set(tmp_path, rng):
    """Predictions of growing error; odd.png's trimap has no 128, so its MSE is undefined."""
    dirs = {d: tmp_path / d for d in ("pred", "alpha", "trimap", "image")}
    for d in dirs.values():
        d.mkdir()
    sads = {}
    for k, name in enumerate(NAMES):
        alpha = cv2.GaussianBlur(rng.integers(0, 256, (40, 60)).astype(np.uint8), (7, 7), 3)
        pred = np.clip(alpha.astype(int) + rng.integers(-10 * k - 5, 10 * k + 6, alpha.shape), 0, 255).astype(np.uint8)
        trimap = np.full(alpha.shape, 255 if name == "odd.png" else 128, np.uint8)
        trimap[:5] = 0
        for key, image in (("pred", pred), ("alpha", alpha), ("trimap", trimap),
                           ("image", rng.integers(0, 256, alpha.shape + (3,)).astype(np.uint8))):
            cv2.imwrite(str(dirs[key] / name), image)
        sads[name] = all_metrics(pred, alpha, trimap)["sad"]
    return {k: str(v) for k, v in dirs.items()}, sads


def run(dirs, gallery, *extra):
    return main(["--pred-dir", dirs["pred"], "--alpha-dir", dirs["alpha"], "--trimap-dir", dirs["trimap"],
                 "--gallery", gallery, "--workers", "1", *extra])


def table_names(page_html):
    return re.findall(r"<tr><td data-value='([^']*)'>", page_html)


def test_gallery_pictures_and_index(evaluation_set, tmp_path, capsys):
    dirs, sads = evaluation_set
    gallery = str(tmp_path / "gallery")
    assert run(dirs, gallery, "--worst", "2", "--image-dir", dirs["image"]) == 1  # odd.png's MSE is undefined
    worst = sorted(sads, key=sads.get, reverse=True)
    pictures = sorted(n for n in os.listdir(gallery) if n.endswith(".png"))
    assert pictures == [f"worst001_{worst[0][:-4]}.png", f"worst002_{worst[1][:-4]}.png"]
    page = open(os.path.join(gallery, "index.html"), encoding="utf-8").read()
    assert GENERATOR in page and table_names(page) == worst  # every image, largest SAD first
    assert page.count("<a href='worst") == 2 and f"<a href='{pictures[0]}'>{worst[0]}</a>" in page
    assert "<td data-value=''>-</td>" in page  # odd.png's MSE
    picture = cv2.imread(os.path.join(gallery, pictures[0]))
    # five panels (image | trimap | ground truth | prediction | |error|) of 60 px, 4 px apart
    assert picture.shape[1] == 5 * (60 + 4) and picture.shape[0] > 40
    assert (picture[:5] == 255).mean() > 0.8  # the white band with the name and the figures
    assert f"gallery: {os.path.join(gallery, 'index.html')}" in capsys.readouterr().out


def test_large_images_are_shrunk_and_a_missing_photo_only_leaves_its_panel_out(evaluation_set, tmp_path, capsys):
    dirs, sads = evaluation_set
    big = cv2.resize(cv2.imread(os.path.join(dirs["alpha"], "cat.png"), 0), (900, 600))
    for key in ("pred", "alpha", "trimap"):
        cv2.imwrite(os.path.join(dirs[key], "cat.png"), big)
    os.remove(os.path.join(dirs["image"], "cat.png"))
    gallery = str(tmp_path / "gallery")
    run(dirs, gallery, "--worst", "5", "--image-dir", dirs["image"])
    assert "note: cat.png: no photo in the gallery picture: no cat.* in" in capsys.readouterr().err
    cat = next(n for n in os.listdir(gallery) if n.endswith("_cat.png"))
    assert cv2.imread(os.path.join(gallery, cat)).shape[1] == 4 * (PANEL_SIDE + 4)


def test_a_folder_of_the_users_is_refused_and_an_own_gallery_is_replaced(evaluation_set, tmp_path, capsys):
    dirs, _ = evaluation_set
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    assert run(dirs, str(theirs)) == 2
    assert "--gallery " in capsys.readouterr().err and (theirs / "notes.txt").read_text() == "mine"
    assert os.listdir(theirs) == ["notes.txt"]
    gallery = str(tmp_path / "gallery")
    run(dirs, gallery, "--worst", "3")
    (tmp_path / "gallery" / "worst050_mine.png").write_bytes(b"the user's")  # named like ours, not linked
    run(dirs, gallery, "--worst", "1")
    assert sorted(n for n in os.listdir(gallery) if n.endswith(".png"))[1:] == ["worst050_mine.png"]
    assert len([n for n in os.listdir(gallery) if n.endswith(".png")]) == 2


@pytest.mark.parametrize("flag, value", [("--image-dir", None), ("--worst", "3")])
def test_gallery_options_need_a_gallery(evaluation_set, capsys, flag, value):
    dirs, _ = evaluation_set
    assert main(["--pred-dir", dirs["pred"], "--alpha-dir", dirs["alpha"], "--trimap-dir", dirs["trimap"],
                 flag, value or dirs["image"]]) == 2
    assert f"{flag} is used only in a gallery: add --gallery DIR" in capsys.readouterr().err


def test_a_photo_of_another_size_is_shown_with_a_note(evaluation_set, tmp_path, capsys):
    dirs, _ = evaluation_set
    cv2.imwrite(os.path.join(dirs["image"], "cat.png"), np.zeros((30, 30, 3), np.uint8))
    run(dirs, str(tmp_path / "gallery"), "--worst", "5", "--image-dir", dirs["image"])
    assert "cat.png: 30x30, not the matte's 60x40; shown resized" in capsys.readouterr().err


def browser():
    """A started Playwright and Debian's headless Chromium, or a skip with the reason."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -r requirements-browser.txt")
    executable = shutil.which("chromium") or (CHROMIUM if os.path.exists(CHROMIUM) else None)
    if executable is None:
        pytest.skip("no Chromium: apt-get install chromium")
    playwright = sync_api.sync_playwright().start()
    args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"]
    return playwright, playwright.chromium.launch(executable_path=executable, args=args)


def test_the_table_sorts_by_a_click_in_a_real_browser(evaluation_set, tmp_path, capsys):
    dirs, sads = evaluation_set
    gallery = tmp_path / "gallery"
    run(dirs, str(gallery), "--worst", "2")
    mses = {}
    for name in NAMES:
        mses[name] = all_metrics(*(cv2.imread(os.path.join(dirs[k], name), 0) for k in ("pred", "alpha", "trimap")))["mse"]
    playwright, chromium = browser()
    try:
        page = chromium.new_page(viewport={"width": 1100, "height": 500})
        page.goto((gallery / "index.html").as_uri())

        def names():
            return page.eval_on_selector_all("#figures tbody tr", "rows => rows.map(r => r.cells[0].dataset.value)")

        assert names() == sorted(sads, key=sads.get, reverse=True)
        page.click("#figures th:text-is('SAD')")
        assert names() == sorted(sads, key=sads.get)
        assert page.get_attribute("#figures th:text-is('SAD')", "aria-sort") == "ascending"
        page.click("#figures th:text-is('SAD')")
        assert names() == sorted(sads, key=sads.get, reverse=True)
        page.click("#figures th:text-is('name')")
        assert names() == sorted(NAMES)
        defined = [n for n in NAMES if n != "odd.png"]
        page.click("#figures th:text-is('MSE')")
        assert names() == sorted(defined, key=mses.get) + ["odd.png"]  # no figure: last either way
        page.click("#figures th:text-is('MSE')")
        assert names() == sorted(defined, key=mses.get, reverse=True) + ["odd.png"]
        page.click("#figures a")  # a worst image's name opens its picture
        assert page.url.endswith(".png")
        page.go_back()
        page.screenshot(path=str(tmp_path / "gallery.png"))
        assert os.path.getsize(tmp_path / "gallery.png") > 1000
    finally:
        chromium.close()
        playwright.stop()
