"""The page in a real browser: headless Chromium uploads a photo and a trimap, presses Run, waits
for the alpha and takes a screenshot.

python tests/browser_check_app.py --config CFG --checkpoint CKPT --image PHOTO --trimap TRIMAP \
    --screenshot app.png [--width 1000]

It starts app.py on a free local port, drives Debian's Chromium (/usr/bin/chromium, or
--chromium) through Playwright (pip install playwright; no `playwright install` needed), and
writes the screenshot scaled to --width px. tests/test_app.py runs check_page against a page it
serves itself. Exit code 0 when the page showed an alpha of the photo's size.
"""
import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from typing import List, Optional

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM = "/usr/bin/chromium"
# Quiet and offline: no sandbox (containers), no GPU, no background calls home.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def check_page(url: str, image: str, trimap: str, screenshot: str, chromium: str = CHROMIUM,
               timeout_s: float = 120) -> np.ndarray:
    """Uploads `image` and `trimap` on the page at `url`, runs, saves a full-page screenshot and
    returns the alpha the page shows (H x W uint8, as fetched from its <img>)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url, timeout=timeout_s * 1000)
            page.locator("#photo input[type=file]").set_input_files(image)
            page.locator("#trimap input[type=file]").set_input_files(trimap)
            page.locator("#photo img").wait_for(timeout=timeout_s * 1000)
            page.locator("#trimap img").wait_for(timeout=timeout_s * 1000)
            page.locator("#run").click()
            shown = page.locator("#alpha img")
            shown.wait_for(timeout=timeout_s * 1000)
            page.wait_for_function("document.querySelector('#alpha img').complete", timeout=timeout_s * 1000)
            data = page.request.get(shown.get_attribute("src")).body()
            page.screenshot(path=screenshot, full_page=True)
        finally:
            browser.close()
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)


def shrink_png(path: str, width: int) -> None:
    """Scales the PNG at `path` to `width` px and saves it with 256 colours, small enough to commit."""
    from PIL import Image

    picture = Image.open(path).convert("RGB")
    height = round(picture.height * width / picture.width)
    picture.resize((width, height), Image.LANCZOS).quantize(256).save(path, optimize=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, process: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            if process.poll() is not None:
                raise SystemExit(f"error: app.py exited with code {process.returncode} before serving the page")
            if time.monotonic() > deadline:
                raise SystemExit(f"error: the page did not come up within {timeout_s:.0f} s")
            time.sleep(0.5)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--image", required=True)
    parser.add_argument("--trimap", required=True)
    parser.add_argument("--screenshot", required=True, help="PNG to write")
    parser.add_argument("--width", type=int, default=1000, help="width of the saved screenshot, px")
    parser.add_argument("--chromium", default=CHROMIUM)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    process = subprocess.Popen([sys.executable, os.path.join(ROOT, "app.py"), "--config", args.config,
                                "--checkpoint", args.checkpoint, "--device", args.device, "--port", str(port)])
    try:
        wait_for(url, process, timeout_s=120)
        alpha = check_page(url, args.image, args.trimap, args.screenshot, args.chromium)
    finally:
        process.terminate()
        process.wait(timeout=30)
    shrink_png(args.screenshot, args.width)
    photo = cv2.imread(args.image, cv2.IMREAD_UNCHANGED)
    if alpha is None or alpha.shape != photo.shape[:2]:
        print(f"error: the page showed no alpha of the photo's size {photo.shape[1]} x {photo.shape[0]}",
              file=sys.stderr)
        return 1
    print(f"the page showed a {alpha.shape[1]} x {alpha.shape[0]} alpha (mean {alpha.mean():.1f}); "
          f"screenshot: {args.screenshot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
