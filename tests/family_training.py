"""Helpers for the tests that train AEMatter and AIM through main.py: a config, runs that record
their losses and can be stopped after a step as a signal would stop them, the run's log and a
checkpoint's tensors."""
import json
import os
import signal
from typing import Dict, List

import torch

import main
import trainer as trainer_module
from networks.families import load_config
from utils.checkpoint import extract_state_dict, read_checkpoint
from utils.config import ConfigError


def write_config(folder: str, name: str, family: str, sections: Dict[str, Dict]) -> str:
    """A config of `family` named `name` under `folder` with the [section] keys given, logs and
    checkpoints kept under `folder`, logged at every step."""
    log = {"tensorboard_path": f"{folder}/tb", "logging_path": f"{folder}/logs", "checkpoint_path": f"{folder}/ckpt",
           "logging_step": 1, "checkpoint_step": 1000, **sections.get("log", {})}
    model = {"family": family, "imagenet_pretrain": False, **sections.get("model", {})}
    text = [f'version = "{name}"']
    for section, keys in (("model", model), *((s, k) for s, k in sections.items() if s not in ("model", "log")),
                          ("log", log)):
        text.append(f"[{section}]")
        text += [f"{key} = {json.dumps(value)}" for key, value in keys.items()]
    path = os.path.join(folder, f"{name}.toml")
    with open(path, "w") as f:
        f.write("\n".join(text) + "\n")
    return path


class Steps(dict):
    """run name (config version) -> [(step, {loss name: value})]; .batches: run name -> the
    batches of its steps, on the CPU."""

    def __init__(self):
        super().__init__()
        self.batches: Dict[str, List] = {}


def record_steps(monkeypatch, stop_after: Dict[str, int]) -> Steps:
    """Trainer.train_step recording each run's steps and batches; a run named in `stop_after` is
    stopped by a SIGTERM after that many of its steps, once."""
    seen = Steps()
    original_step = trainer_module.Trainer.train_step
    original_signal = trainer_module.Trainer._stop_signal_on_any_rank

    def recording_step(self, batches, step):
        result = original_step(self, batches, step)
        seen.setdefault(self.config.version, []).append((step, {k: v.item() for k, v in result[0].items()}))
        seen.batches.setdefault(self.config.version, []).extend(
            {k: v.cpu() for k, v in batch.items() if torch.is_tensor(v)} for batch in batches)
        return result

    stopped = set()

    def stop_signal(self):
        name = self.config.version
        if name in stop_after and name not in stopped and len(seen.get(name, [])) == stop_after[name]:
            stopped.add(name)
            return signal.SIGTERM
        return original_signal(self)

    monkeypatch.setattr(trainer_module.Trainer, "train_step", recording_step)
    monkeypatch.setattr(trainer_module.Trainer, "_stop_signal_on_any_rank", stop_signal)
    return seen


def train(config: str, *flags: str) -> int:
    return main.main(["--config", config, *flags])


def log_text(folder: str, name: str) -> str:
    logs = os.path.join(folder, "logs", name)
    return "".join(open(os.path.join(logs, log)).read() for log in sorted(os.listdir(logs)))


def state_of(path: str) -> Dict[str, torch.Tensor]:
    return extract_state_dict(read_checkpoint(path), path)


def refusal(folder, family: str, text: str) -> str:
    """The ConfigError of a config of `family` with the TOML `text` added, after its file name."""
    path = os.path.join(folder, "refused.toml")
    with open(path, "w") as f:
        f.write(f'[model]\nfamily = "{family}"\n' + text)
    try:
        load_config(path)
    except ConfigError as e:
        return str(e)[len(path) + 2:]
    raise AssertionError(f"{path} was not refused")
