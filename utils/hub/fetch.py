"""A released model's file, by its table entry: where the docs say to put it, the cache, or fetched
and checked into the cache.

A download goes into <cache>/.partial/ and is renamed into the cache only after its size, its sha256
(where published) and a load check pass, so the cache holds whole, checked files only: a failed
check leaves nothing; a cut connection leaves its bytes in .partial/ for the next try to resume
(HTTP Range). MATTING_MIRROR (a base URL or a folder) replaces every publisher. Google Drive's files
come through gdown, the HuggingFace hub's through huggingface_hub into its own cache (HF_HOME,
HF_HUB_OFFLINE respected): both are extras. Each failure is one FetchError line."""
import contextlib
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Iterator, List, Optional, Set
from urllib.parse import quote, urlparse

from utils.checkpoint import CheckpointError, read_checkpoint
from utils.extras import MissingExtraError, import_extra
from utils.hub.download import DiskFull, FetchError, download, shown, write_problem
from utils.hub.released import (BROWSER, BROWSER_HOSTS, GOOGLE_DRIVE, HTTP, HUB, MIRROR_ENV, ReleasedModel,
                                cache_folder, google_drive_id, hub_location, mirror, source_kind)

try:
    import fcntl
except ImportError:  # Windows: no lock; processes sharing a cache there may each fetch a file
    fcntl = None

PARTIAL = ".partial"
DRIVE_URL = "https://drive.google.com/uc?id={}"
GDRIVE_EXTRA = "pip install -r requirements-gdrive.txt"
HUB_EXTRA = "pip install -r requirements-hub.txt"
DRIVE_TIMEOUT_S = (30, 60)
ANNOUNCED: Set[str] = set()  # the models whose licence line this process has printed


def cached_path(model: ReleasedModel) -> Optional[str]:
    """The model's file in the cache, or None."""
    path = os.path.join(cache_folder(), model.file)
    return path if os.path.exists(path) else None


def local_copy(model: ReleasedModel, documented: str) -> Optional[str]:
    """The model's file where it is already on this machine, without a network: `documented`
    (where the docs say to put it), the cache, or huggingface_hub's cache; None where it is not."""
    for path in (documented, cached_path(model)):
        if path and os.path.exists(path):
            return path
    for url in model.urls:
        if source_kind(url) == HUB:
            with contextlib.suppress(FetchError):
                return fetch_hub(model, url, sys.stderr, local_only=True)
    return None


def announce(model: ReleasedModel, stream) -> None:
    """The licence line, once per model and process, before its first download."""
    if model.name not in ANNOUNCED:
        ANNOUNCED.add(model.name)
        print(model.licence_line(), file=stream, flush=True)


def mirror_url(base: str, file: str) -> str:
    """The URL of `file` in a mirror: a base URL, or a local folder (as a file:// URL)."""
    if urlparse(base).scheme in ("http", "https", "file"):
        return f"{base.rstrip('/')}/{quote(file)}"
    return Path(os.path.abspath(os.path.expanduser(base)), file).as_uri()


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2 ** 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_loadable(path: str, url: str) -> None:
    """FetchError where the file at `path` (fetched from `url`) is not what its name says: a
    checkpoint torch reads with nothing run (utils.checkpoint.read_checkpoint, which names a web
    page saved in its place), a safetensors file, or JSON."""
    try:
        if path.endswith(".json"):
            with open(path, encoding="utf-8") as f:
                json.load(f)
        elif path.endswith(".safetensors"):
            from safetensors import safe_open  # only a hub folder's weights are in this format
            safe_open(path, "pt")
        else:
            read_checkpoint(path)
    except CheckpointError as e:
        raise FetchError(f"the file at {url}: {str(e).replace(path + ': ', '')}") from None
    except Exception as e:  # json's and safetensors' errors for a damaged file are of many kinds
        raise FetchError(f"the file at {url} is not a readable {os.path.splitext(path)[1]} file ({e})") from None


def check_file(model: ReleasedModel, path: str, url: str) -> None:
    """FetchError unless the file has the published size and sha256 (where published) and loads."""
    size = os.path.getsize(path)
    if model.size is not None and size != model.size:
        raise FetchError(f"the file at {url} is not the published one ({size} bytes, not {model.size})")
    if model.sha256:
        digest = file_sha256(path)
        if not digest.startswith(model.sha256.lower()):
            raise FetchError(f"the file at {url} is not the published one (its sha256 begins {digest[:8]}, the "
                             f"published one {model.sha256[:8]})")
    check_loadable(path, url)


@contextlib.contextmanager
def fetching(model: ReleasedModel) -> Iterator[str]:
    """The model's partial path in <cache>/.partial/, held under a lock so that processes sharing
    the cache (torchrun's ranks, jobs) fetch a file once."""
    folder = os.path.join(cache_folder(), PARTIAL)
    try:
        os.makedirs(folder, exist_ok=True)
        lock = open(os.path.join(folder, f"{model.file}.lock"), "a")
    except OSError as e:
        raise FetchError(f"cannot write the cache folder {cache_folder()} ({e.strerror or e}); set MATTING_CACHE to a "
                         "folder you can write to") from None
    with lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield os.path.join(folder, model.file)


def remove(path: str) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.unlink(path)


def keep_if_checked(model: ReleasedModel, partial: str, url: str) -> str:
    """Renames the whole, downloaded `partial` into the cache once its checks pass (each part of a
    folder); removes it, leaving the cache as it was, where one fails. The cached path."""
    try:
        for path in [os.path.join(partial, part) for part in model.parts] or [partial]:
            check_file(model, path, shown(url if not model.parts else f"{url}/{quote(os.path.basename(path))}"))
    except FetchError as e:
        remove(partial)
        raise FetchError(f"{e}; nothing was cached") from None
    final = os.path.join(cache_folder(), model.file)
    os.replace(partial, final)
    return final


def fetch_url(model: ReleasedModel, url: str, partial: str, stream) -> str:
    """The model from a plain URL (its publisher's, or the mirror's: each part of a folder under
    the folder's URL), through `partial`."""
    announce(model, stream)
    if model.parts:
        os.makedirs(partial, exist_ok=True)
        for part in model.parts:
            download(f"{url}/{quote(part)}", os.path.join(partial, part), f"{model.file}/{part}", stream)
    else:
        download(url, partial, model.file, stream)
    return keep_if_checked(model, partial, url)


def fetch_google_drive(model: ReleasedModel, url: str, partial: str, stream) -> str:
    """The model from Google Drive, through gdown (which resumes its own partial file beside ours)."""
    try:
        gdown = import_extra("gdown", f"its Google Drive downloads need gdown: {GDRIVE_EXTRA}")
    except MissingExtraError as e:
        raise FetchError(str(e)) from None
    announce(model, stream)
    try:
        gdown.download(url=DRIVE_URL.format(google_drive_id(url)), output=partial, quiet=False, resume=True,
                       timeout=DRIVE_TIMEOUT_S)
    except OSError as e:
        if isinstance(e, (ConnectionError, TimeoutError)) or e.errno is None:  # requests' errors are OSErrors
            raise FetchError(f"cannot reach {GOOGLE_DRIVE} ({first_line(e)}): offline?") from None
        for leftover in Path(partial).parent.glob(f"{Path(partial).name}*.part"):
            leftover.unlink()
        raise write_problem(partial, e) from None
    except Exception as e:  # gdown's own errors (a quota page, a file it cannot find), requests' others
        raise FetchError(f"{GOOGLE_DRIVE} did not give the file at {url} ({first_line(e)})") from None
    return keep_if_checked(model, partial, url)


def first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def fetch_hub(model: ReleasedModel, url: str, stream, local_only: bool = False) -> str:
    """The model's file or folder in huggingface_hub's own cache: found there, else (unless
    `local_only`) downloaded into it, where HF_HUB_OFFLINE is not set."""
    missing = f"its HuggingFace hub downloads need huggingface_hub: {HUB_EXTRA}"
    try:
        hub, errors, constants = (import_extra(module, missing) for module in
                                  ("huggingface_hub", "huggingface_hub.errors", "huggingface_hub.constants"))
    except MissingExtraError as e:
        raise FetchError(str(e)) from None
    repo, path = hub_location(url)

    def get(local_files_only: bool) -> str:
        if path is None:
            return hub.snapshot_download(repo, allow_patterns=list(model.parts) or None,
                                         local_files_only=local_files_only)
        return hub.hf_hub_download(repo, path, local_files_only=local_files_only)

    try:
        return get(local_files_only=True)
    except errors.LocalEntryNotFoundError:
        if local_only:
            raise FetchError(f"{url} is not in huggingface_hub's cache") from None
    if constants.HF_HUB_OFFLINE:
        raise FetchError(f"{url} is not in huggingface_hub's cache ({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE "
                         "is set: unset it to download")
    announce(model, stream)
    try:
        local = get(local_files_only=False)
    except Exception as e:  # the hub's errors: offline, not found, gated, its own HTTP errors
        raise FetchError(f"{url}: {first_line(e)}") from None
    if path is not None:
        check_file(model, local, url)
    return local


def by_hand(model: ReleasedModel, documented: str) -> str:
    """Where to get a file no program can fetch, and where to put it."""
    pages = ", ".join(f"{url} ({BROWSER_HOSTS[urlparse(url).hostname]})" for url in model.urls)
    return (f"{model.name}: {model.file} cannot be downloaded by a program: download it in a browser from {pages} and "
            f"put it at {documented} or {os.path.join(cache_folder(), model.file)} (or set {MIRROR_ENV})")


def fetch(model: ReleasedModel, documented: str, stream=None) -> str:
    """The path of the model's file (a folder for a hub folder): `documented` (where the docs say to
    put it) or the cache's copy where there; else fetched: from MATTING_MIRROR where it is set, else
    from the places it is published, in order. FetchError, one line, where none gives it."""
    stream = stream or sys.stderr
    found = local_copy(model, documented)
    if found:
        return found
    base = mirror()
    urls = [mirror_url(base, model.file)] if base else [url for url in model.urls if source_kind(url) != BROWSER]
    if not urls:
        raise FetchError(by_hand(model, documented))
    problems: List[str] = []
    with fetching(model) as partial:
        if cached_path(model):  # another process fetched it while this one waited
            return cached_path(model)
        for url in urls:
            kind = HTTP if base else source_kind(url)
            try:
                if kind == HUB:
                    return fetch_hub(model, url, stream)
                if kind == GOOGLE_DRIVE:
                    return fetch_google_drive(model, url, partial, stream)
                return fetch_url(model, url, partial, stream)
            except DiskFull as e:
                remove(partial)
                raise FetchError(f"{model.name}: {e}; nothing was cached") from None
            except FetchError as e:
                problems.append(str(e))
    elsewhere = "" if base else f", or set {MIRROR_ENV} to a mirror (a URL or a folder)"
    raise FetchError(f"{model.name}: {'; '.join(problems)}; or put {model.file} at {documented}{elsewhere}")
