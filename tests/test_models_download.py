"""Released models by name (utils/hub, networks.families.checkpoint_path, python -m networks.models),
against an HTTP server on 127.0.0.1 in a thread that serves small generated checkpoints in each
family's released layout: download, cache hit, resume after a cut connection, hash mismatch, a web
page in the file's place, offline, HTTP errors, a full disk, MATTING_MIRROR (a URL and a folder),
Google Drive through gdown, the HuggingFace hub's own cache with HF_HUB_OFFLINE, and the README's
models table against the code's. Every connection but to 127.0.0.1 is refused."""
import errno
import hashlib
import http.server
import io
import os
import re
import socket
import threading
from dataclasses import replace
from typing import Dict

import pytest
import torch

import demo
import main
import networks.export
import app
from matting import Matter, parse_trimap_from
from networks import families, models
from networks.families import (RELEASED, build_network, checkpoint_path, config_for, load_config, load_weights,
                               model_spec)
from test_checkpoint_hints import RELEASED as LAYOUTS, zeros_like_state
from utils.config import ConfigError
from utils.hub import fetch as fetching
from utils.hub.download import FetchError
from utils.hub.released import ReleasedModel, released_table
from utils.progress import ProgressBar, mebibytes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
HTML = b"<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body>...</body></html>"
# Each family's network and released layout, from one of its configs: {family: config}.
FAMILY_CONFIGS = {"gca-matting": "config/gca-dist.toml", "mmagic": "config/mmagic-gca.toml",
                  "mmagic-dim": "config/mmagic-dim-stage3.toml", "aematter": "config/aematter.toml",
                  "aim": "config/aim.toml"}
LAYOUT_OF = {config: layout for config, layout, _ in LAYOUTS.values()}
# A hub folder of a GCA-Matting file and a JSON file.
HUB_FOLDER = ReleasedModel(name="tiny-hub", family="gca-matting", config="config/gca-dist.toml", file="tiny-gca",
                           urls=("hf://someone/tiny-gca",), page="https://huggingface.co/someone/tiny-gca",
                           licence="the test licence", non_commercial=False, figures="none",
                           parts=("config.json", "model.pth"))


@pytest.fixture(autouse=True)
def offline_but_local(monkeypatch, tmp_path):
    """No connection leaves the machine; a fresh cache; no mirror, proxy or home files."""
    real_connect = socket.socket.connect

    def connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in LOCAL_HOSTS:
            raise OSError(errno.ENETUNREACH, f"the tests reach no network ({address[0]})")
        return real_connect(sock, address)

    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if host not in LOCAL_HOSTS and host is not None:
            raise socket.gaierror(socket.EAI_NONAME, f"the tests resolve no names ({host})")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                 "MATTING_MIRROR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MATTING_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(fetching, "ANNOUNCED", set())


class Server:
    """files: {path: bytes}; cut: {path: bytes sent before the connection is cut, once}; requests:
    (path, Range header) of each GET."""

    def __init__(self):
        self.files: Dict[str, bytes] = {}
        self.cut: Dict[str, int] = {}
        self.requests = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Range")))
                body = server.files.get(self.path.split("?id=")[-1] if "?id=" in self.path else self.path)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                start = int(re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", "bytes=0-")).group(1))
                self.send_response(206 if start else 200)
                self.send_header("Content-Type", "text/html" if body.startswith(b"<") else "application/octet-stream")
                self.send_header("Content-Length", str(len(body) - start))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.end_headers()
                cut = server.cut.pop(self.path, None)
                self.wfile.write(body[start:cut])
                if cut is not None:
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def gets(self, path: str):
        return [range_ for got, range_ in self.requests if got == path]


@pytest.fixture
def server():
    server = Server()
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    """{family: (spec, network, the bytes of a file in the family's released layout)}: every tensor
    a stride-0 view of one zero, so each file is a few hundred kilobytes with the real keys and
    shapes."""
    folder = tmp_path_factory.mktemp("layouts")
    built = {}
    for family, config in FAMILY_CONFIGS.items():
        spec = model_spec(load_config(os.path.join(ROOT, config)))
        network = build_network(spec)
        path = folder / "file.pth"
        torch.save(LAYOUT_OF[config](zeros_like_state(network)), str(path))
        built[family] = (spec, network, path.read_bytes())
    return built


def served_model(server, body: bytes, name: str = "tiny", **fields) -> ReleasedModel:
    """A released model of the GCA-Matting config, published at the server, its sha256 published."""
    server.files[f"/{name}.pth"] = body
    values = dict(name=name, family="gca-matting", config="config/gca-dist.toml", file=f"{name}.pth",
                  urls=(f"{server.url}/{name}.pth",), page=server.url, licence="the test licence",
                  non_commercial=True, figures="none", sha256=hashlib.sha256(body).hexdigest())
    return ReleasedModel(**{**values, **fields})


def cache_contents(tmp_path):
    cache = tmp_path / "cache"
    return sorted(str(path.relative_to(cache)) for path in cache.rglob("*") if path.is_file() and
                  not path.name.endswith(".lock")) if cache.exists() else []


def test_download_prints_the_licence_once_shows_progress_then_hits_the_cache(server, layouts, tmp_path):
    body = layouts["gca-matting"][2]
    model = served_model(server, body)
    log = io.StringIO()
    path = fetching.fetch(model, str(tmp_path / "checkpoints" / "tiny.pth"), log)
    assert path == str(tmp_path / "cache" / "tiny.pth") and open(path, "rb").read() == body
    assert cache_contents(tmp_path) == ["tiny.pth"]
    lines = log.getvalue().splitlines()
    assert lines[0].startswith("tiny: licence: the test licence") and "NON-COMMERCIAL" in lines[0]
    size = mebibytes(len(body))
    assert re.fullmatch(rf"tiny\.pth {size}/{size} \[\d+s elapsed, \d+s left\]", lines[-1]), lines
    # the cache hit needs no server and prints nothing
    server.httpd.shutdown()
    again = io.StringIO()
    assert fetching.fetch(model, str(tmp_path / "checkpoints" / "tiny.pth"), again) == path
    assert again.getvalue() == "" and len(server.requests) == 1


def test_progress_bar_redraws_in_place_on_a_terminal_and_logs_tenths_elsewhere():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal, log = Terminal(), io.StringIO()
    for stream in (terminal, log):
        bar = ProgressBar(10 * 2 ** 20, "file.pth", stream, mebibytes, every=0.1)
        for done in range(2 ** 19, 10 * 2 ** 20 + 1, 2 ** 19):
            bar.show(done)
    assert terminal.getvalue().count("\r") == 20 and "[" + "#" * 30 + "] 10.0 MiB/10.0 MiB" in terminal.getvalue()
    lines = log.getvalue().splitlines()
    assert len(lines) == 10 and lines[0].startswith("file.pth 1.0 MiB/10.0 MiB [")


def test_a_cut_connection_leaves_the_cache_as_it_was_and_the_next_try_resumes(server, layouts, tmp_path):
    body = layouts["gca-matting"][2]
    model = served_model(server, body)
    server.cut["/tiny.pth"] = len(body) // 2
    with pytest.raises(FetchError) as error:
        fetching.fetch(model, str(tmp_path / "nowhere.pth"), io.StringIO())
    assert "stopped after" in str(error.value) and "run the same command again to resume" in str(error.value)
    assert "\n" not in str(error.value)
    assert cache_contents(tmp_path) == [".partial/tiny.pth"]
    assert os.path.getsize(tmp_path / "cache" / ".partial" / "tiny.pth") == len(body) // 2
    path = fetching.fetch(model, str(tmp_path / "nowhere.pth"), io.StringIO())
    assert open(path, "rb").read() == body and cache_contents(tmp_path) == ["tiny.pth"]
    assert server.gets("/tiny.pth") == [None, f"bytes={len(body) // 2}-"]


@pytest.mark.parametrize("served, expected", [
    (b"PK\x03\x04 another file", "is not the published one (its sha256 begins"),
    (HTML, "web page saved instead of the file, the usual result of a failed Google Drive download"),
])
def test_a_file_that_fails_its_checks_is_refused_and_nothing_is_cached(server, layouts, tmp_path, served, expected):
    body = layouts["gca-matting"][2]
    sha256 = hashlib.sha256(body).hexdigest() if served != HTML else None
    model = served_model(server, served, sha256=sha256)
    with pytest.raises(FetchError, match=re.escape(expected)) as error:
        fetching.fetch(model, str(tmp_path / "nowhere.pth"), io.StringIO())
    assert "nothing was cached" in str(error.value) and "\n" not in str(error.value)
    assert cache_contents(tmp_path) == []


def test_the_published_size_is_checked(server, layouts, tmp_path):
    body = layouts["gca-matting"][2]
    model = served_model(server, body, size=len(body) + 1)
    with pytest.raises(FetchError, match=f"not the published one \\({len(body)} bytes, not {len(body) + 1}\\)"):
        fetching.fetch(model, str(tmp_path / "nowhere.pth"), io.StringIO())
    assert cache_contents(tmp_path) == []


def test_offline_with_and_without_a_copy_and_http_errors(server, layouts, tmp_path):
    body = layouts["gca-matting"][2]
    offline = served_model(server, body, urls=(f"http://127.0.0.1:{closed_port()}/tiny.pth",))
    with pytest.raises(FetchError) as error:
        fetching.fetch(offline, str(tmp_path / "checkpoints" / "tiny.pth"), io.StringIO())
    message = str(error.value)
    assert message.startswith("tiny: cannot reach 127.0.0.1 (") and "offline?" in message and "\n" not in message
    assert f"put tiny.pth at {tmp_path / 'checkpoints' / 'tiny.pth'}" in message and "MATTING_MIRROR" in message
    assert cache_contents(tmp_path) == []
    with pytest.raises(OSError, match="the tests"):  # and nothing here reaches beyond this machine
        socket.create_connection(("203.0.113.7", 443), timeout=1)
    # a copy where the docs say to put it, or in the cache, needs no network
    documented = tmp_path / "checkpoints" / "tiny.pth"
    documented.parent.mkdir()
    documented.write_bytes(body)
    assert fetching.fetch(offline, str(documented), io.StringIO()) == str(documented)
    missing = served_model(server, body, urls=(f"{server.url}/gone.pth",))
    with pytest.raises(FetchError, match=r"/gone\.pth answered HTTP 404 Not Found"):
        fetching.fetch(missing, str(tmp_path / "nowhere.pth"), io.StringIO())
    # the publisher's other URLs are tried in turn
    second = served_model(server, body, urls=(f"{server.url}/gone.pth", f"{server.url}/tiny.pth"))
    assert open(fetching.fetch(second, str(tmp_path / "nowhere.pth"), io.StringIO()), "rb").read() == body


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full, whose writes fail with ENOSPC")
def test_a_full_disk_is_one_line_and_leaves_the_cache_as_it_was(server, layouts, tmp_path):
    model = served_model(server, layouts["gca-matting"][2])
    partial = tmp_path / "cache" / ".partial" / "tiny.pth"
    partial.parent.mkdir(parents=True)
    os.symlink("/dev/full", partial)  # every write of the download fails as on a full disk
    with pytest.raises(FetchError) as error:
        fetching.fetch(model, str(tmp_path / "nowhere.pth"), io.StringIO())
    assert re.fullmatch(r"tiny: no space left to write \S+ \(No space left on device\); free some space or set "
                        r"MATTING_CACHE to a folder on another disk; nothing was cached", str(error.value))
    assert cache_contents(tmp_path) == [] and not os.path.lexists(partial)


def test_files_no_program_can_fetch_say_where_to_get_them_and_where_to_put_them(tmp_path):
    with pytest.raises(FetchError) as error:
        checkpoint_path("aematter")
    message = str(error.value)
    assert message.startswith("aematter: AEMFIX.ckpt cannot be downloaded by a program: download it in a browser "
                              "from https://mega.nz/file/")
    assert os.path.join("checkpoints", "aematter", "AEMFIX.ckpt") in message
    assert str(tmp_path / "cache" / "AEMFIX.ckpt") in message and "\n" not in message


@pytest.mark.parametrize("as_url", [True, False], ids=["base-url", "folder"])
def test_matting_mirror_replaces_every_publisher_with_the_same_checks(server, layouts, tmp_path, monkeypatch, as_url):
    """The released models without a published hash come from a mirror (one of each family loaded
    into its network); those with one refuse a file that is not the published one."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    files = [model for model in RELEASED.values() if not model.parts]  # hub folders: the next test
    for model in files:
        body = layouts[model.family][2]
        server.files[f"/mirror/{model.file}"] = body
        (folder / model.file).write_bytes(body)
    monkeypatch.setenv("MATTING_MIRROR", f"{server.url}/mirror/" if as_url else str(folder))
    monkeypatch.chdir(tmp_path)  # no checkpoints/ folder here
    loaded = set()
    for model in files:
        if model.sha256:
            mirrored = os.path.join(os.environ["MATTING_MIRROR"], model.file)
            with pytest.raises(FetchError, match=f"the file at {re.escape(mirrored)} is not the published one"):
                checkpoint_path(model.name)
            continue
        assert checkpoint_path(model.name) == str(tmp_path / "cache" / model.file)
        if as_url and model.family not in loaded:
            spec, network = layouts[model.family][:2]
            load_weights(network, spec, model.name)
            loaded.add(model.family)
    assert cache_contents(tmp_path) == sorted(model.file for model in files if not model.sha256)
    assert bool(server.requests) == as_url


def test_a_hub_folder_comes_from_the_mirror_file_by_file(server, layouts, tmp_path, monkeypatch):
    body = layouts["gca-matting"][2]
    server.files.update({"/mirror/tiny-gca/config.json": b"{}", "/mirror/tiny-gca/model.pth": body})
    monkeypatch.setenv("MATTING_MIRROR", f"{server.url}/mirror")
    assert fetching.fetch(HUB_FOLDER, str(tmp_path / "nowhere"), io.StringIO()) == str(tmp_path / "cache" / "tiny-gca")
    assert cache_contents(tmp_path) == ["tiny-gca/config.json", "tiny-gca/model.pth"]
    server.files["/mirror/other/config.json"] = b"<html>"  # a part that fails its check: the folder is not kept
    server.files["/mirror/other/model.pth"] = body
    with pytest.raises(FetchError, match=r"other/config\.json is not a readable \.json file .*nothing was cached"):
        fetching.fetch(replace(HUB_FOLDER, file="other"), str(tmp_path / "nowhere"), io.StringIO())
    assert cache_contents(tmp_path) == ["tiny-gca/config.json", "tiny-gca/model.pth"]


@pytest.mark.parametrize("family", ["mmagic", "mmagic-dim"])
def test_a_published_sha256_fetched_file_loads_into_its_family(server, layouts, tmp_path, family):
    spec, network, body = layouts[family]
    config = FAMILY_CONFIGS[family]
    model = served_model(server, body, family=spec.family, config=config, sha256=hashlib.sha256(body).hexdigest()[:8])
    load_weights(network, spec, fetching.fetch(model, str(tmp_path / "nowhere.pth"), io.StringIO()))


def test_google_drive_files_come_through_gdown(server, layouts, tmp_path, monkeypatch):
    pytest.importorskip("gdown", reason="pip install -r requirements-gdrive.txt")
    body = layouts["aim"][2]
    monkeypatch.setattr(fetching, "DRIVE_URL", server.url + "/uc?id={}")
    drive_id = "16dd1FGMcsMTqR6EfD2T9mtRmPwxnY0zs"  # in RELEASED["aim"].urls
    server.files[drive_id] = body
    model = replace(RELEASED["aim"], sha256=hashlib.sha256(body).hexdigest())
    path = fetching.fetch(model, str(tmp_path / "nowhere.pth"), io.StringIO())
    assert path == str(tmp_path / "cache" / "aimnet_pretrained_matting.pth") and open(path, "rb").read() == body
    assert server.requests[0][0] == f"/uc?id={drive_id}"
    # Drive's web page in the file's place is refused, with the hint
    server.files[drive_id] = HTML
    with pytest.raises(FetchError, match="a failed Google Drive download") as error:
        fetching.fetch(replace(model, file="other.pth", sha256=None), str(tmp_path / "nowhere.pth"), io.StringIO())
    assert "\n" not in str(error.value) and not os.path.exists(tmp_path / "cache" / "other.pth")


def fill_hub_cache(cache, repo: str, files: Dict[str, bytes]) -> str:
    """huggingface_hub's cache layout for one commit of `repo` holding `files`; the snapshot folder."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    storage = cache / f"models--{repo.replace('/', '--')}"
    (storage / "refs").mkdir(parents=True)
    (storage / "refs" / "main").write_text(commit)
    snapshot = storage / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name, body in files.items():
        (snapshot / name).write_bytes(body)
    return str(snapshot)


def test_the_hub_path_reads_a_filled_huggingface_hub_cache_with_hf_hub_offline(layouts, tmp_path, monkeypatch):
    pytest.importorskip("huggingface_hub", reason="pip install -r requirements-hub.txt")
    import huggingface_hub.constants
    cache = tmp_path / "hf"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read when it is imported
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    body = layouts["gca-matting"][2]
    snapshot = fill_hub_cache(cache, "someone/tiny-gca", {"config.json": b"{}", "model.pth": body})
    log = io.StringIO()
    assert fetching.fetch(HUB_FOLDER, str(tmp_path / "nowhere"), log) == snapshot
    single = replace(HUB_FOLDER, file="tiny-gca.pth", urls=("hf://someone/tiny-gca/model.pth",), parts=(),
                     sha256=hashlib.sha256(body).hexdigest())
    spec, network = layouts["gca-matting"][:2]
    load_weights(network, spec, fetching.fetch(single, str(tmp_path / "nowhere"), log))
    assert log.getvalue() == ""  # from the cache: no licence line, no download
    absent = replace(HUB_FOLDER, file="absent", urls=("hf://someone/absent",))
    with pytest.raises(FetchError, match="is not in huggingface_hub's cache .* and HF_HUB_OFFLINE is set") as error:
        fetching.fetch(absent, str(tmp_path / "nowhere"), io.StringIO())
    assert "\n" not in str(error.value) and cache_contents(tmp_path) == []


def test_names_in_every_entry_point(server, layouts, tmp_path, monkeypatch, capsys):
    """Matter, AutomaticTrimap's --trimap-from, the page's and the exporter's flags and the test
    phase take a name; the config comes with it unless given."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    (folder / "gca-dist.pth").write_bytes(layouts["gca-matting"][2])
    monkeypatch.setenv("MATTING_MIRROR", str(folder))
    monkeypatch.chdir(tmp_path)
    matter = Matter(None, "gca-dist", device="cpu")
    assert matter.family.name == "gca-matting"
    spec, network = layouts["gca-matting"][:2]
    assert families.init_from_checkpoint(network, spec, "gca-dist") == "gca-dist: 578 tensors"
    assert config_for("gca-dist", None) == os.path.join(ROOT, "config", "gca-dist.toml")
    assert config_for("gca-dist", "config/other.toml") == "config/other.toml"
    with pytest.raises(ConfigError, match="not a released model's name .*give the config to run it with"):
        config_for("some/file.pth", None)
    assert parse_trimap_from("aim") == (None, "aim")
    assert app.parse_args(["--checkpoint", "aim"]).config is None
    assert networks.export.parse_args(["--checkpoint", "aim", "--output", "a.onnx"]).config is None
    config = load_config(os.path.join(ROOT, "config", "mmagic-gca.toml"))
    assert main.test_checkpoint(config) == "mmagic-gca"
    config.test.checkpoint = "best_model"
    assert main.test_checkpoint(config) == os.path.join(config.log.checkpoint_path, "best_model.pth")
    # a path is a path, even where it is also a name
    (tmp_path / "gca-dist").write_bytes(b"")
    assert checkpoint_path("gca-dist") == "gca-dist"
    # demo.py: the name's config, else its default one (from the project's folder); both reach the folder checks
    capsys.readouterr()
    monkeypatch.chdir(ROOT)
    for checkpoint in ("aim", "some/file.pth"):
        assert demo.main(["--checkpoint", checkpoint, "--image-dir", "absent", "--output", "out"]) == 2
        assert capsys.readouterr().err == "error: --image-dir absent is not a folder\n"


def test_python_m_networks_models_lists_the_table(tmp_path, monkeypatch, capsys):
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "aimnet_pretrained_matting.pth").write_bytes(b"x" * 2 ** 20)
    assert models.main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"cache: {tmp_path / 'cache'} (MATTING_CACHE); mirror: none (MATTING_MIRROR)")
    for model in RELEASED.values():
        assert f"{model.name}  ({model.family}, {model.config}): {model.file}" in out
    assert f"here: {tmp_path / 'cache' / 'aimnet_pretrained_matting.pth'} (1.0 MiB)" in out
    assert "here: not here; fetched on first use from download.openmmlab.com" in out
    assert "here: not here; download it by hand" in out
    assert out.count("licence: NON-COMMERCIAL use only;") == sum(model.non_commercial for model in RELEASED.values())
    assert models.main(["--fetch", "aematter"]) == 1
    assert capsys.readouterr().err.startswith("error: aematter: AEMFIX.ckpt cannot be downloaded by a program")


def test_the_table_each_family_declares():
    for module in families.FAMILY_MODULES:
        for model in module.RELEASED:
            config = load_config(os.path.join(ROOT, model.config))
            assert model.family == module.FAMILY.name == config.model.family, model.name
            stem = os.path.splitext(os.path.basename(model.config))[0]
            assert model.name == stem or model.name.startswith(stem + "-"), model.name
            assert model.sha256 is None or re.fullmatch(r"[0-9a-f]{8,64}", model.sha256)
            openmmlab = re.search(r"-([0-9a-f]{8})\.pth$", model.file)
            assert model.sha256 == (openmmlab.group(1) if openmmlab else None), model.name
    with pytest.raises(ValueError, match="'aim' is declared twice"):
        released_table([RELEASED["aim"], RELEASED["aim"]])
    with pytest.raises(ValueError, match="a hub folder .* and parts .* go together"):
        released_table([replace(RELEASED["aim"], urls=("hf://someone/folder",))])


def readme_rows():
    """{name: {column: cell}} of the README's models table, "the same" replaced by the cell above."""
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    table = [line for line in text.split("## Models", 1)[1].split("\n## ", 1)[0].splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in table[0].strip("|").split("|")]
    rows, above = {}, {}
    for line in table[2:]:
        cells = dict(zip(header, (cell.strip() for cell in line.strip("|").split("|"))))
        for column, cell in cells.items():
            if cell.startswith("the same") and column in ("published at", "licence"):
                cells[column] = above[column]
        above = cells
        rows[cells["name"].strip("`")] = cells
    return rows


def decimals(text: str):
    return [float(number) for number in re.findall(r"\d+\.\d+", text)]


def test_the_readme_models_table_agrees_with_the_code():
    rows = readme_rows()
    assert set(rows) - {"none"} == set(RELEASED)
    for name, model in RELEASED.items():
        row = rows[name]
        assert f"`{model.file}`" in row["file"] and model.published_size in row["file"], name
        assert row["config"] == f"`{model.config}`", name
        assert model.page in row["published at"], name
        assert ("non-commercial" in row["licence"]) == model.non_commercial, name
        figures = [cell for column, cell in row.items() if "as reported" in column][0]
        assert decimals(figures) == decimals(model.figures), name
        assert (model.sha256[:8] in row["hash"]) if model.sha256 else row["hash"].startswith("none published"), name
