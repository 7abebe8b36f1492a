"""Computing a large image a stripe of rows at a time within a memory budget: the plan and sizes
that GCA-Matting's, DIM's and AEMatter's networks share. Each network says how many bytes its
own full-resolution layers keep alive per pixel and how many rows of context a stripe needs."""
from typing import List, Tuple

import torch

from utils.memory import cpu_memory_left

# stripe_rows: the whole image at once, or as many rows as the budget allows.
WHOLE, AUTO = -1, 0
# Working set of one stripe of a full-resolution tail.
STRIPE_BUDGET_BYTES = 512 * 2 ** 20


def memory_budget(device: torch.device, preferred: int, share: int = 8) -> int:
    """Bytes for a working set: `preferred`, less where the memory left is short (1 / `share` of it:
    the network's other tensors and the allocator's slack need the rest). On the CPU the memory left
    is utils.memory.cpu_memory_left's, within the user's cap (--max-memory) where one is set."""
    if device.type == "cuda":
        free = torch.cuda.mem_get_info(device)[0]
    else:
        free = cpu_memory_left()
        free = share * preferred if free is None else free  # unknown: the preferred size
    return max(min(preferred, free // share), 2 ** 20)


def stripe_plan(height: int, rows: int, context: int) -> List[Tuple[int, int, int, int]]:
    """(top, bottom), the full-resolution rows of each stripe of `rows`, and (first, last), the
    1/4-resolution rows computed for it: its own and `context` more on each side, within the image."""
    quarter_height = height // 4
    plan = []
    for top in range(0, height, rows):
        bottom = min(top + rows, height)
        plan.append((top, bottom, max(top // 4 - context, 0), min(bottom // 4 + context, quarter_height)))
    return plan


def choose_stripe_rows(width: int, setting: int, device: torch.device, bytes_per_pixel: int) -> int:
    """Full-resolution rows per stripe: WHOLE (-1) for the whole image at once; AUTO (0) for
    as many rows as STRIPE_BUDGET_BYTES allows at `bytes_per_pixel` (a multiple of 32, at
    least 32); a positive setting as given."""
    if setting > 0 or setting == WHOLE:
        return setting
    rows = memory_budget(device, STRIPE_BUDGET_BYTES) // (width * bytes_per_pixel)
    return max(32, rows // 32 * 32)
