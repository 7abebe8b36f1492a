"""demo.py as one rank of a torchrun job in which rank 1 dies (SIGKILL: no handler, no clean-up)
once its first image and one of rank 0's are written, while rank 0 is still at work (it pauses
after each image), for tests/test_sharding.py:

    python -m torch.distributed.run --nproc_per_node=2 tests/dying_rank.py --config ... --output OUT
"""
import os
import signal
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # as a script, Python puts only tests/ on the path
    sys.path.insert(0, ROOT)

import demo  # noqa: E402

DYING_RANK = 1
PAUSE_S = 2.0  # rank 0's pause after each image: it is mid-run when the other dies
PROCESS_ONE = demo.process_one


def process_then_die_or_pause(*args, **kwargs) -> None:
    PROCESS_ONE(*args, **kwargs)
    if int(os.environ["RANK"]) != DYING_RANK:
        time.sleep(PAUSE_S)
        return
    deadline = time.monotonic() + 120
    while len(os.listdir(kwargs["save_dir"])) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)  # until rank 0 has written an image too, and is pausing
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    demo.process_one = process_then_die_or_pause
    sys.exit(demo.main(sys.argv[1:]))
