"""GCA-Matting's published architectures built with one residual block per layer, for the tests
whose subject is the training loop, not the network: the same modules (spectral norms,
BatchNorms, the guidance head and GCA attention, every shortcut branch), so the same code runs,
with 8 residual blocks instead of 23 (14.0 M parameters instead of 25.3 M), so a training step
costs less.

In a test, `install(monkeypatch.setitem)` puts them under the published names for the test's
duration. As a script it runs an entry script with them, as `python SCRIPT ARGS` would:

    python tests/one_block_gca.py main.py --config run.toml
    python -m torch.distributed.run --nproc_per_node=2 tests/one_block_gca.py main.py --config run.toml
"""
import os
import runpy
import sys
from typing import Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # as a script, Python puts only tests/ on the path
    sys.path.insert(0, ROOT)

from networks.gca_matting.decoders import DECODERS  # noqa: E402
from networks.gca_matting.decoders.res_gca_dec import ResGuidedCxtAtten_Dec  # noqa: E402
from networks.gca_matting.decoders.res_shortcut_dec import ResShortCut_D_Dec  # noqa: E402
from networks.gca_matting.encoders import ENCODERS  # noqa: E402
from networks.gca_matting.encoders.res_gca_enc import ResGuidedCxtAtten  # noqa: E402
from networks.gca_matting.encoders.res_shortcut_enc import ResShortCut_D  # noqa: E402

ONE_BLOCK = [1, 1, 1, 1]
ENCODER_CLASSES = {"resnet_gca_encoder_29": ResGuidedCxtAtten, "res_shortcut_encoder_29": ResShortCut_D}
DECODER_CLASSES = {"res_gca_decoder_22": ResGuidedCxtAtten_Dec, "res_shortcut_decoder_22": ResShortCut_D_Dec}


def install(setitem: Callable = dict.__setitem__) -> None:
    """Registers the one-block builders under the published names; `setitem` is
    monkeypatch.setitem in a test (undone after it), plain assignment in a script."""
    for name, encoder in ENCODER_CLASSES.items():
        setitem(ENCODERS, name, lambda trimap_channel=3, encoder=encoder: encoder(ONE_BLOCK, trimap_channel))
    for name, decoder in DECODER_CLASSES.items():
        setitem(DECODERS, name, lambda decoder=decoder: decoder(ONE_BLOCK))


if __name__ == "__main__":
    install()
    script = os.path.abspath(sys.argv[1])
    sys.argv = sys.argv[1:]
    sys.path.insert(0, os.path.dirname(script))
    runpy.run_path(script, run_name="__main__")
