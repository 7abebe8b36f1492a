"""Reading checkpoints safely: the released GCA files, training checkpoints and bare state dicts."""
import os
import pickle
from typing import Dict, List

import torch
import torch.nn as nn

from utils.atomic import atomic_file

MODULE_PREFIX = "module."


class CheckpointError(RuntimeError):
    pass


def read_checkpoint(path: str) -> Dict:
    """torch.load on the CPU with weights_only=True: a file whose pickle would run code is refused."""
    if os.path.isdir(path):
        found = sorted(os.path.join(path, name) for name in os.listdir(path) if name.endswith(".pth"))
        inside = f"the .pth files in it: {_few(found)}" if found else "it holds no .pth file"
        raise CheckpointError(f"checkpoint {path} is a folder; give the checkpoint's .pth file ({inside})")
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        reason = _torch_reason(e)
        if "GLOBAL" in reason:
            raise CheckpointError(
                f"{path}: refused to load. The file holds Python objects other than tensors and plain "
                "containers, and unpickling it could run code from the file. Checkpoints from this "
                "project and the released gca-dist*.pth files hold only tensors; if you made this file "
                f"yourself, save just its state_dict. (torch said: {reason})") from None
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({reason})") from None
    except (RuntimeError, EOFError, OSError) as e:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({_torch_reason(e)})") from None


def _torch_reason(error: Exception) -> str:
    """The specific line of a torch.load error, without its boilerplate about weights_only."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    specific = [line for line in lines if not line.startswith(("Weights only load failed", "Check the documentation",
                                                               "Please file an issue"))]
    return (specific or lines or [type(error).__name__])[0]


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


def load_weights(model: nn.Module, path: str) -> Dict:
    """Loads the checkpoint at `path` into `model` strictly; returns the whole checkpoint dict.
    A checkpoint of another architecture gets an error naming keys and the config to fix."""
    checkpoint = read_checkpoint(path)
    state_dict = extract_state_dict(checkpoint, path)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    if missing or unexpected:
        has_gca = any(".gca." in k for k in state_dict)
        raise CheckpointError(
            f"{path} does not fit the model built from the config: "
            f"missing keys: {_few(missing) or 'none'}; unexpected keys: {_few(unexpected) or 'none'}. "
            f"The checkpoint looks like a {'GCA' if has_gca else 'baseline (no GCA)'} model: set "
            + ("model.arch.encoder = \"resnet_gca_encoder_29\" and model.arch.decoder = \"res_gca_decoder_22\""
               if has_gca else
               "model.arch.encoder = \"res_shortcut_encoder_29\" and model.arch.decoder = \"res_shortcut_decoder_22\"")
            + " in the config (model.arch).")
    mismatched = [f"{k} {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
                  for k, v in expected.items() if state_dict[k].shape != v.shape]
    if mismatched:
        hint = ""
        if any(m.startswith("encoder.conv1.") for m in mismatched):
            in_channels = state_dict["encoder.conv1.module.weight_bar"].shape[1]
            hint = f" The checkpoint takes {in_channels} input channels: set model.trimap_channel = {in_channels - 3}."
        raise CheckpointError(f"{path}: tensor shapes differ from the model: {_few(mismatched, 3)}.{hint}")
    model.load_state_dict(state_dict, strict=True)
    return checkpoint


def init_from_checkpoint(model: nn.Module, path: str) -> str:
    """Loads the weights, and only the weights, of the checkpoint at `path` into `model` for
    fine-tuning (train.init_checkpoint): a released gca-dist*.pth, a checkpoint of this project or
    a bare state dict, strictly (a mismatch raises CheckpointError naming the keys). Its optimizer,
    schedule and step are not used. Returns a line describing what was loaded, for the log."""
    checkpoint = load_weights(model, path)
    tensors = len(extract_state_dict(checkpoint, path))
    if "iter" in checkpoint:
        return (f"{path}: {tensors} tensors of a run after its step {int(checkpoint['iter']) + 1} "
                "(its optimizer, schedule and step are not used)")
    return f"{path}: {tensors} tensors"


def save_checkpoint(obj: Dict, path: str) -> None:
    """torch.save written atomically (utils.atomic): a crash mid-save leaves the previous file intact."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with atomic_file(path) as f:
        torch.save(obj, f)


def load_imagenet_backbone(encoder: nn.Module, path: str, trimap_channel: int) -> List[str]:
    """Loads an ImageNet-pretrained ResNet-34 backbone (encoder-relative keys) into the encoder,
    zero-padding its 3-channel stem to 3 + trimap_channel inputs; returns the encoder keys it
    did not provide (the skip branches, guidance head and GCA start from their init)."""
    if not os.path.isfile(path):
        raise CheckpointError(
            f"ImageNet backbone not found: {path} (model.imagenet_pretrain_path). Put the file there, or "
            "train from scratch with model.imagenet_pretrain = false.")
    state = extract_state_dict(read_checkpoint(path), path)
    stem_key, v_key = "conv1.module.weight_bar", "conv1.module.weight_v"
    if stem_key in state and state[stem_key].shape[1] == 3:
        weight = state[stem_key]
        pad = weight.new_zeros(weight.shape[0], trimap_channel, *weight.shape[2:])
        state[stem_key] = torch.cat([weight, pad], dim=1)
        state[v_key] = torch.cat([state[v_key], state[v_key].new_zeros(pad[0].numel())])
    expected = encoder.state_dict()
    usable = {k: v for k, v in state.items() if k in expected and expected[k].shape == v.shape}
    if not usable:
        raise CheckpointError(f"{path}: no tensor fits the encoder; is it the ResNet-34 backbone "
                              "(keys like conv1.module.weight_bar, layer1.0.conv1.module.weight_bar)?")
    encoder.load_state_dict(usable, strict=False)
    return [k for k in expected if k not in usable]
