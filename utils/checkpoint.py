"""Reading checkpoints safely: the released files, training checkpoints, bare state dicts and
transformers hub folders (config.json with model.safetensors or pytorch_model.bin).

Nothing in a checkpoint ever runs: files of tensors and plain containers load through
torch.load(weights_only=True); files that also hold other Python objects (OpenMMLab's mmengine
logs, numpy values) load through an unpickler that rebuilds tensors and turns every other object
into an inert placeholder, without importing or calling anything the file names."""
import hashlib
import json
import logging
import os
import pickle
import re
import types
import zipfile
from collections import OrderedDict
from typing import Dict, List, Optional, Set, Tuple

import torch
import torch.nn as nn

from utils.atomic import atomic_file

MODULE_PREFIX = "module."
logger = logging.getLogger(__name__)
UNPICKLER_ERROR = "WeightsUnpickler error:"
# A transformers hub folder: its model's config, its processor's, and its weights file (either name).
HUB_CONFIG, HUB_PREPROCESSOR = "config.json", "preprocessor_config.json"
HUB_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
SAFETENSORS = ".safetensors"
OPENMMLAB_NAME = re.compile(r"_\d{8}(?:_\d{6})?-([0-9a-f]{8})\.pth$")
# What the tensors of a torch.save file are rebuilt with (storages are torch's own affair).
TENSOR_GLOBALS = {
    "torch._utils._rebuild_tensor": torch._utils._rebuild_tensor,
    "torch._utils._rebuild_tensor_v2": torch._utils._rebuild_tensor_v2,
    "torch._utils._rebuild_parameter": torch._utils._rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": torch._utils._rebuild_parameter_with_state,
    "collections.OrderedDict": OrderedDict,
    "torch.Size": torch.Size,
}


class CheckpointError(RuntimeError):
    pass


def read_checkpoint(path: str) -> Dict:
    """The checkpoint's contents on the CPU, with nothing in it run: a hub folder's through
    read_hub_checkpoint, a torch.save file's through read_torch_file."""
    return read_hub_checkpoint(path) if is_hub_checkpoint(path) else read_torch_file(path)


def read_torch_file(path: str) -> Dict:
    """A torch.save file's contents: torch.load(weights_only=True), or for a file holding other
    objects besides tensors, load_tensors_only. Any other file torch cannot read is one
    CheckpointError, "<path>: not a PyTorch checkpoint (what the file looks like)"."""
    if os.path.isdir(path):
        found = sorted(os.path.join(path, name) for name in os.listdir(path) if name.endswith(".pth"))
        inside = f"the .pth files in it: {_few(found)}" if found else "it holds no .pth file"
        raise CheckpointError(f"checkpoint {path} is a folder; give the checkpoint's .pth file ({inside})")
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    check_name_hash(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        reason = _torch_reason(e)
        if "GLOBAL" not in reason:
            raise CheckpointError(f"{path}: not a PyTorch checkpoint ({file_kind(path, reason)})") from None
    except MemoryError:
        raise
    except OSError as e:
        raise CheckpointError(f"{path}: cannot be read ({e.strerror or e})") from None
    except Exception as e:  # torch's legacy reader fails on text with KeyError, IndexError and the like
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({file_kind(path, _torch_reason(e))})") from None
    try:
        checkpoint, ignored = load_tensors_only(path)
    except MemoryError:
        raise
    except Exception as e:  # a pickle cut short or built oddly fails in as many ways
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({file_kind(path, _torch_reason(e))})") from None
    logger.info("%s: loaded its tensors; %d kinds of other objects in it were left out: %s", path, len(ignored),
                ", ".join(sorted(ignored)))
    return checkpoint


def is_hub_checkpoint(path: str) -> bool:
    """Whether `path` is a transformers hub folder (a config.json beside model.safetensors or
    pytorch_model.bin), the weights file of one, or any .safetensors file."""
    path = os.path.normpath(path)
    if os.path.isdir(path):
        return os.path.isfile(os.path.join(path, HUB_CONFIG)) and any(
            os.path.isfile(os.path.join(path, name)) for name in HUB_WEIGHTS)
    if path.endswith(SAFETENSORS):
        return os.path.isfile(path)
    return os.path.basename(path) in HUB_WEIGHTS and os.path.isfile(os.path.join(os.path.dirname(path), HUB_CONFIG))


def read_hub_checkpoint(path: str) -> Dict:
    """A hub folder's (or its weights file's) contents: {"state_dict": the tensors, HUB_CONFIG: the
    folder's config.json, HUB_PREPROCESSOR: its preprocessor_config.json}, each None where absent.
    safetensors files are read with the safetensors package (tensors only, nothing run),
    pytorch_model.bin with read_torch_file."""
    path = os.path.normpath(path)
    folder, weights = os.path.dirname(path), path
    if os.path.isdir(path):
        folder = path
        weights = next(os.path.join(path, name) for name in HUB_WEIGHTS if os.path.isfile(os.path.join(path, name)))
    if weights.endswith(SAFETENSORS):
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            state_dict = load_file(weights, device="cpu")
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{weights}: not a readable safetensors file ({e})") from None
    else:
        state_dict = extract_state_dict(read_torch_file(weights), weights)
    contents = {"state_dict": state_dict}
    for name in (HUB_CONFIG, HUB_PREPROCESSOR):
        file = os.path.join(folder, name)
        contents[name] = read_json(file) if os.path.isfile(file) else None
    return contents


def read_json(path: str) -> Dict:
    """A JSON file's object; CheckpointError for a file that holds none."""
    try:
        with open(path, encoding="utf-8") as f:
            contents = json.load(f)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot be read as JSON ({e})") from None
    if not isinstance(contents, dict):
        raise CheckpointError(f"{path}: holds a JSON {type(contents).__name__}, not an object")
    return contents


def check_name_hash(path: str) -> None:
    """OpenMMLab names its released files ..._<date>[_<time>]-<first 8 hex digits of the sha256>.pth:
    a file so named whose contents do not hash to that prefix (an interrupted or damaged download)
    gets a CheckpointError saying so."""
    match = OPENMMLAB_NAME.search(os.path.basename(path))
    if match is None:
        return
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2 ** 20), b""):
            digest.update(block)
    if not digest.hexdigest().startswith(match.group(1)):
        raise CheckpointError(
            f"{path}: its sha256 begins {digest.hexdigest()[:8]}, not {match.group(1)} as its name says: the file is "
            "incomplete or damaged (an interrupted download?); download it again")


class Inert:
    """What every non-tensor object of a checkpoint becomes: it takes any arguments and any state,
    and does nothing with them."""

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state) -> None:
        pass


def load_tensors_only(path: str) -> Tuple[Dict, Set[str]]:
    """torch.load whose unpickler rebuilds tensors and gives Inert for every other global the file
    names (classes, functions: none is imported or called), and the names it replaced."""
    ignored: Set[str] = set()

    class TensorsOnlyUnpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str):
            full_name = f"{module}.{name}"
            if full_name in TENSOR_GLOBALS:
                return TENSOR_GLOBALS[full_name]
            ignored.add(full_name)
            return Inert

    tensors_only = types.ModuleType("tensors_only_pickle")
    tensors_only.Unpickler = TensorsOnlyUnpickler
    tensors_only.load = lambda f, **kwargs: TensorsOnlyUnpickler(f, **kwargs).load()
    checkpoint = torch.load(path, map_location="cpu", weights_only=False, pickle_module=tensors_only)
    return checkpoint, ignored


def _torch_reason(error: Exception) -> str:
    """The specific line of a torch.load error, without its boilerplate about weights_only."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if line.startswith(UNPICKLER_ERROR):
            return line[len(UNPICKLER_ERROR):].strip()
    specific = [line for line in lines if not line.startswith(("Weights only load failed", "Check the documentation",
                                                               "Please file an issue", "(1) ", "(2) "))]
    return (specific or lines or [type(error).__name__])[0]


ZIP_MAGIC = b"PK\x03\x04"
PICKLE_PROTOCOL = b"\x80"  # a pickle of protocol 2 or later starts with PROTO, then the protocol number
PICKLE_PROTOCOLS = range(2, pickle.HIGHEST_PROTOCOL + 1)
HEAD_BYTES = 512


def file_kind(path: str, torch_reason: str) -> str:
    """What a file that torch.load could not read looks like, for the error message: empty, a
    truncated or foreign zip archive, a pickle, a web page, JSON, other text, or unknown bytes."""
    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
    if not head:
        return "the file is empty; download or copy it again"
    if head.startswith(ZIP_MAGIC):
        if not zipfile.is_zipfile(path):
            return "a zip archive cut short: the download or copy stopped before the end; fetch it again"
        with zipfile.ZipFile(path) as archive:
            if not any(name.endswith("data.pkl") for name in archive.namelist()):
                return ("a zip archive without the data.pkl of torch.save's files; if it packs a checkpoint, unpack it "
                        "and give the .pth inside")
        return f"a zip archive in torch.save's layout but damaged; fetch it again; torch said: {torch_reason}"
    if head[:1] == PICKLE_PROTOCOL and len(head) > 1 and head[1] in PICKLE_PROTOCOLS:
        return (f"a Python pickle (protocol {head[1]}) cut short or not written by torch.save; "
                f"torch said: {torch_reason}")
    text = _as_text(head)
    if text is None:
        return f"neither a zip archive nor a pickle; it starts with bytes {head[:8].hex(' ')}"
    start = text.lstrip("\ufeff \t\r\n")
    if start.startswith("<"):
        return ("it looks like a web page saved instead of the file, the usual result of a failed Google Drive "
                "download: download the file itself again")
    if start.startswith(("{", "[")):
        return "it is a JSON text file"
    return f"it is a text file, starting {start[:40]!r}"


def _as_text(head: bytes) -> Optional[str]:
    """The start of a file as text, or None for binary data (a cut in a multi-byte character at
    the end of the head is allowed)."""
    try:
        text = head.decode("utf-8", errors="strict")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 3:
            return None
        text = head[:e.start].decode("utf-8")
    if any(ord(c) < 32 and c not in "\t\r\n\f" for c in text):
        return None
    return text


def extract_state_dict(checkpoint: Dict, path: str = "checkpoint") -> Dict[str, torch.Tensor]:
    """The state dict of a checkpoint holding `state_dict`, or of a bare state dict, with one
    leading `module.` (from DDP / DataParallel) removed from every key that has it."""
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: expected a dict, found {type(checkpoint).__name__}")
    state_dict = checkpoint.get("state_dict", checkpoint)
    if not isinstance(state_dict, dict) or not all(torch.is_tensor(v) for v in state_dict.values()):
        raise CheckpointError(f"{path}: holds no state dict (keys: {', '.join(map(str, list(checkpoint)[:8]))})")
    return {k[len(MODULE_PREFIX):] if k.startswith(MODULE_PREFIX) else k: v for k, v in state_dict.items()}


def _few(keys: List[str], n: int = 5) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f" ... ({len(keys)} in all)" if len(keys) > n else "")


def saved_family(checkpoint: Dict) -> Optional[str]:
    """The model.family of the config a checkpoint of this project was trained with; None for a
    file without one (the released files, and this project's from before families)."""
    config = checkpoint.get("config") if isinstance(checkpoint, dict) else None
    model = config.get("model") if isinstance(config, dict) else None
    return model.get("family") if isinstance(model, dict) else None


def load_state_dict_checked(model: nn.Module, state_dict: Dict[str, torch.Tensor], path: str) -> None:
    """model.load_state_dict(state_dict, strict=True), or a CheckpointError that names the missing
    and unexpected keys, or the tensors whose shapes differ."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    if missing or unexpected:
        raise CheckpointError(f"{path} does not fit the model built from the config: "
                              f"missing keys: {_few(missing) or 'none'}; unexpected keys: {_few(unexpected) or 'none'}.")
    mismatched = [f"{k} {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
                  for k, v in expected.items() if state_dict[k].shape != v.shape]
    if mismatched:
        raise CheckpointError(f"{path}: tensor shapes differ from the model: {_few(mismatched, 3)}.")
    model.load_state_dict(state_dict, strict=True)


def save_checkpoint(obj: Dict, path: str) -> None:
    """torch.save written atomically (utils.atomic): a crash mid-save leaves the previous file intact."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with atomic_file(path) as f:
        torch.save(obj, f)
