"""What a model family declares of each file it has released (ReleasedModel), the kinds of places a
file is published at, and the two folders a user can point elsewhere: the cache (MATTING_CACHE,
else $XDG_CACHE_HOME/gca-matting) and the mirror (MATTING_MIRROR)."""
import os
import re
from dataclasses import dataclass
from typing import Dict, Iterable, Optional, Tuple
from urllib.parse import parse_qs, urlparse

CACHE_ENV = "MATTING_CACHE"
MIRROR_ENV = "MATTING_MIRROR"
CACHE_NAME = "gca-matting"
HUB_SCHEME = "hf://"
GOOGLE_DRIVE_HOST = "drive.google.com"
# Pages a program cannot download from: a browser (and, for Baidu, an access code) is needed.
BROWSER_HOSTS = {"mega.nz": "MEGA", "pan.baidu.com": "Baidu Wangpan"}
HTTP, GOOGLE_DRIVE, HUB, BROWSER = "https", "Google Drive", "the HuggingFace hub", "a browser"


@dataclass(frozen=True)
class ReleasedModel:
    """One released file (or hub folder) that a shipped config runs.

    name: what --checkpoint takes: the config's file stem, or, where one config serves several
    files, a name of its own. family: the config's model.family. config: that config, from the
    project's root. file: the file's name as published (a hub folder's name for a folder): the
    name it is kept under in the cache and looked for in MATTING_MIRROR. urls: every place it is
    published, in the order tried: https (fetched as it is), Google Drive (gdown), hf://owner/repo
    or hf://owner/repo/path (huggingface_hub), pages that need a browser (MEGA, Baidu). page: the
    publisher's page that lists it. licence: one line; non_commercial: whether the weights are for
    non-commercial use only. figures: its published figures, as reported. published_size: as the
    publisher states it ("96.5 MB"), "" where none is. size: the exact bytes, checked, None where
    not published. sha256: the hex digits its sha256 starts with (all 64, or the 8 in OpenMMLab's
    file names), None where none is published. parts: for a folder, the files in it to fetch."""
    name: str
    family: str
    config: str
    file: str
    urls: Tuple[str, ...]
    page: str
    licence: str
    non_commercial: bool
    figures: str
    published_size: str = ""
    size: Optional[int] = None
    sha256: Optional[str] = None
    parts: Tuple[str, ...] = ()

    def licence_line(self) -> str:
        """What is printed before its first download."""
        line = f"{self.name}: licence: {self.licence}"
        if self.non_commercial:
            line += f". These weights are for NON-COMMERCIAL use only; do not use {self.name} in a product"
        return line


def source_kind(url: str) -> str:
    """How a published URL is fetched: HTTP, GOOGLE_DRIVE, HUB or BROWSER; ValueError for another."""
    if url.startswith(HUB_SCHEME):
        return HUB
    parsed = urlparse(url)
    if parsed.hostname == GOOGLE_DRIVE_HOST:
        return GOOGLE_DRIVE
    if parsed.hostname in BROWSER_HOSTS:
        return BROWSER
    if parsed.scheme in ("http", "https"):
        return HTTP
    raise ValueError(f"{url}: not a place this project can fetch from or name (https, Google Drive, {HUB_SCHEME}, "
                     f"{', '.join(BROWSER_HOSTS)})")


def google_drive_id(url: str) -> str:
    """The file id of a Google Drive link (…/open?id=ID, …/uc?id=ID, …/file/d/ID/view)."""
    parsed = urlparse(url)
    ids = parse_qs(parsed.query).get("id") or re.findall(r"/file/d/([\w-]+)", parsed.path)
    if not ids:
        raise ValueError(f"{url}: a Google Drive link without a file id")
    return ids[0]


def hub_location(url: str) -> Tuple[str, Optional[str]]:
    """(repo id, the file's path in it or None for the whole folder) of an hf://owner/repo[/path] URL."""
    parts = url[len(HUB_SCHEME):].split("/", 2)
    if len(parts) < 2 or not all(parts[:2]):
        raise ValueError(f"{url}: give {HUB_SCHEME}owner/repo or {HUB_SCHEME}owner/repo/path/in/repo")
    return f"{parts[0]}/{parts[1]}", (parts[2] if len(parts) == 3 else None)


def cache_folder() -> str:
    """Where fetched files are kept: $MATTING_CACHE, else $XDG_CACHE_HOME/gca-matting, else
    ~/.cache/gca-matting."""
    if os.environ.get(CACHE_ENV):
        return os.path.expanduser(os.environ[CACHE_ENV])
    return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), CACHE_NAME)


def mirror() -> Optional[str]:
    """$MATTING_MIRROR (a base URL or a local folder), or None."""
    return os.environ.get(MIRROR_ENV) or None


def released_table(models: Iterable[ReleasedModel]) -> Dict[str, ReleasedModel]:
    """{name: model}; ValueError for two models of one name or one file name (the cache and the
    mirror know files by their names), a URL no kind of source takes, or a folder (parts) that is
    not a hub folder (hf://owner/repo)."""
    table: Dict[str, ReleasedModel] = {}
    files: Dict[str, str] = {}
    for model in models:
        for taken, by in ((model.name, table), (model.file, files)):
            if taken in by:
                raise ValueError(f"released models: {taken!r} is declared twice ({model.name})")
        folders = [url for url in model.urls if source_kind(url) == HUB and hub_location(url)[1] is None]
        if bool(folders) != bool(model.parts):
            raise ValueError(f"released model {model.name}: a hub folder (hf://owner/repo) and parts (the files in it "
                             "to fetch) go together")
        table[model.name] = model
        files[model.file] = model.name
    return table
