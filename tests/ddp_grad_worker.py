"""Launched by tests/test_training.py under torchrun: one DDP training step on a fixed batch of
four, split between two gloo ranks; rank 0 saves the gradients to argv[1]."""
import sys

import torch

from networks.families import default_config
from networks.gca_matting.generator import build_generator
from trainer import Trainer
from utils import distributed as du


def fixed_batch(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    image = torch.randn(4, 3, 64, 64, generator=generator)
    classes = torch.randint(0, 3, (4, 64, 64), generator=generator)
    trimap = torch.nn.functional.one_hot(classes, 3).permute(0, 3, 1, 2).float()
    alpha = torch.rand(4, 1, 64, 64, generator=generator)
    return {"image": image, "trimap": trimap, "alpha": alpha,
            "fg": torch.randn(4, 3, 64, 64, generator=generator), "bg": torch.randn(4, 3, 64, 64, generator=generator)}


def gradients_of_one_step(batch, dist_info) -> list:
    torch.manual_seed(0)
    model = build_generator("resnet_gca_encoder_29", "res_gca_decoder_22")
    trainer = Trainer(default_config(), model, None, None, dist_info)
    trainer.train_step([batch], 0)
    return [p.grad.detach().clone() for p in trainer.params]


if __name__ == "__main__":
    info = du.init_distributed()
    full = fixed_batch()
    half = {k: v[2 * info.rank:2 * info.rank + 2] for k, v in full.items()}
    grads = gradients_of_one_step(half, info)
    if info.rank == 0:
        torch.save(grads, sys.argv[1])
    du.cleanup()
