"""The two layouts ViTMatte's weights are published in, and what each file is.

The original files (ViTMatte_S_Com.pth, ViTMatte_B_Com.pth, ViTMatte_S_DIS.pth, ViTMatte_B_DIS.pth):
detectron2's checkpointer layout, `{'model': state dict}`, or the bare state dict, under the
published module names, which are this project's network's (`backbone.blocks.0.attn.qkv.weight`).

transformers' hub folders (hustvl/vitmatte-small-composition-1k, -base-, -distinctions-646):
config.json, model.safetensors or pytorch_model.bin and preprocessor_config.json; the same tensors
renamed by its conversion script (convert_vitmatte_to_hf.py): `backbone.blocks` -> `backbone.encoder.
layer`, `attn` -> `attention`, `fusion_blks` -> `fusion_blocks`, `bn` -> `batch_norm`, the patch
embedding and the position embedding under `backbone.embeddings`.

Neither holds the normalisation (the original keeps it out of its state dict, transformers in
preprocessor_config.json): networks/vitmatte/recipe.py gives it."""
from typing import Dict, Optional

import torch

from networks.vitmatte.network import SIZES, WINDOW, is_global
from utils.checkpoint import HUB_CONFIG, CheckpointError, extract_state_dict

StateDict = Dict[str, torch.Tensor]
ORIGINAL_KEY = "model"
NORMALISATION_KEYS = ("pixel_mean", "pixel_std")
# (this project's and the original's name part, the hub's), whole prefixes first.
HUB_NAMES = (("backbone.pos_embed", "backbone.embeddings.position_embeddings"),
             ("backbone.patch_embed.proj.", "backbone.embeddings.projection."),
             ("backbone.blocks.", "backbone.encoder.layer."),
             (".attn.", ".attention."),
             ("decoder.fusion_blks.", "decoder.fusion_blocks."),
             (".bn.", ".batch_norm."))
ORIGINAL_MARKERS = ("backbone.pos_embed", "decoder.fusion_blks.0.conv.conv.weight")
HUB_MARKERS = ("backbone.embeddings.position_embeddings", "decoder.fusion_blocks.0.conv.conv.weight")
RELEASED_SIZES = {384: "S", 768: "B"}
HUB_MODEL_TYPE, HUB_BACKBONE_TYPE = "vitmatte", "vitdet"
# config.json settings the network has no shape for, with transformers' defaults (a released
# config.json leaves out some that equal them) and the published model's values.
HUB_SETTINGS = (("backbone_config.hidden_act", "gelu", "gelu"),
                ("backbone_config.layer_norm_eps", 1e-6, 1e-6),
                ("backbone_config.num_channels", 3, 4),
                ("backbone_config.window_size", 0, WINDOW),
                ("batch_norm_eps", 1e-5, 1e-5))
HUB_DEPTH = "backbone_config.num_hidden_layers"


def hub_key(key: str) -> str:
    """The hub folders' name of one of this project's (and the original files') keys."""
    for ours, hub in HUB_NAMES:
        key = key.replace(ours, hub)
    return key


def from_hub_key(key: str) -> str:
    """This project's name of a hub folder's key."""
    for ours, hub in reversed(HUB_NAMES):
        key = key.replace(hub, ours)
    return key


def without_normalisation(state_dict: StateDict) -> StateDict:
    return {key: value for key, value in state_dict.items() if key not in NORMALISATION_KEYS}


def original_state(checkpoint: Dict) -> Optional[StateDict]:
    """The tensors of a file in the original layout ({'model': ...} or bare), or None."""
    if not isinstance(checkpoint, dict):
        return None
    held = checkpoint.get(ORIGINAL_KEY)
    try:
        state = extract_state_dict(held if isinstance(held, dict) else checkpoint)
    except CheckpointError:
        return None
    return state if all(key in state for key in ORIGINAL_MARKERS) else None


def hub_state(checkpoint: Dict) -> Optional[StateDict]:
    """The tensors of a file in the hub layout (a hub folder's, or a bare state dict so named)
    under this project's names, or None."""
    try:
        state = extract_state_dict(checkpoint)
    except CheckpointError:
        return None
    if not all(key in state for key in HUB_MARKERS):
        return None
    return {from_hub_key(key): value for key, value in state.items()}


def setting(config: Dict, dotted: str, default):
    """A config.json value by its dotted name, `default` where it (or its section) is absent."""
    *sections, name = dotted.split(".")
    for section in sections:
        config = config.get(section) or {}
    return config.get(name, default)


def check_hub_config(config: Dict, path: str) -> None:
    """A one-line CheckpointError for a hub folder that holds another model (its model_type), or a
    ViTMatte whose config.json sets what the network here does not do."""
    model_type = config.get("model_type")
    if model_type != HUB_MODEL_TYPE:
        architectures = ", ".join(config.get("architectures") or []) or "no architectures named"
        raise CheckpointError(f"{path} is a transformers hub folder of model_type {model_type!r} ({architectures}), "
                              f"not a ViTMatte ({HUB_MODEL_TYPE!r}) one.")
    backbone_type = setting(config, "backbone_config.model_type", HUB_BACKBONE_TYPE)
    if backbone_type != HUB_BACKBONE_TYPE:
        raise CheckpointError(f"{path}: a ViTMatte with a {backbone_type!r} backbone; only the published "
                              f"{HUB_BACKBONE_TYPE!r} (ViT) one runs here.")
    depth = setting(config, HUB_DEPTH, 12)
    blocks = range(depth) if isinstance(depth, int) else ()
    # The blocks' pattern (windows, global attention with the convolutions) and the decoder on the
    # last block: what the network here computes for a backbone of that depth.
    depth_settings = (("backbone_config.window_block_indices", [], [i for i in blocks if not is_global(i)]),
                      ("backbone_config.residual_block_indices", [], [i for i in blocks if is_global(i)]),
                      ("backbone_config.out_indices", None, [depth]))
    for dotted, default, published in HUB_SETTINGS + depth_settings:
        value = setting(config, dotted, default)
        if value is not None and value != published:
            raise CheckpointError(f"{path}: its {HUB_CONFIG} has {dotted} = {value!r}, where ViTMatte "
                                  f"({depth} blocks) has {published!r}.")


def width_of(state_dict: StateDict) -> int:
    """The backbone's width (384 for ViTMatte-S, 768 for -B) of a state dict under either name."""
    for key in (ORIGINAL_MARKERS[0], HUB_MARKERS[0]):
        if key in state_dict:
            return int(state_dict[key].shape[-1])
    raise KeyError("no position embedding")


def describe(checkpoint: Dict) -> Optional[str]:
    """What a ViTMatte file is, with the config to use, or None for another model's."""
    hub_config = checkpoint.get(HUB_CONFIG) if isinstance(checkpoint, dict) else None
    if hub_config is not None and hub_config.get("model_type") != HUB_MODEL_TYPE:
        return None
    for state, kind, suffix in ((original_state(checkpoint), "in the original layout", ""),
                                (hub_state(checkpoint), "in transformers' layout", "-hf")):
        if state is not None:
            return what_size(width_of(state), kind, suffix)
    return None


def what_size(width: int, kind: str, suffix: str) -> str:
    """The hint for a ViTMatte file `width` wide in the layout `kind`; suffix "-hf" for transformers'."""
    if width in RELEASED_SIZES:
        size = RELEASED_SIZES[width]
        return f"a ViTMatte-{size} checkpoint {kind}: use config/vitmatte-{size.lower()}{suffix}.toml"
    encoder = next((name for name, size in SIZES.items() if size.width == width), None)
    if encoder is not None:
        return (f"a {encoder} ViTMatte checkpoint {kind}: use config/vitmatte-s{suffix}.toml with "
                f"model.arch.encoder = \"{encoder}\"")
    return f"a ViTMatte {width} wide {kind} (neither -S nor -B), which no config here runs"
