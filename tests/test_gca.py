import math

import pytest
import torch
import torch.nn.functional as F

from networks.gca_matting.gca import GuidedCxtAtten, softmax_scales


def naive_gca(module: GuidedCxtAtten, guidance, alpha, unknown):
    """The spec's GCA steps written as explicit loops in float64, one image at a time."""
    guidance = module.guidance_conv(guidance).double()
    alpha64 = alpha.double()
    outs, offsets, scales = [], [], []
    for n in range(alpha.shape[0]):
        g = guidance[n, :, ::2, ::2]
        m = unknown[n, 0, ::2, ::2].double()
        h, w = g.shape[1:]
        g_pad = F.pad(g[None], (1, 1, 1, 1), mode="reflect")[0]
        m_pad = F.pad(m[None, None], (1, 1, 1, 1), mode="reflect")[0, 0]
        a_pad = F.pad(alpha64[n][None], (1, 1, 1, 1), mode="reflect")[0]
        p = m.mean()
        unknown_scale = min(max(math.sqrt(p / (1 - p)) if p < 1 else math.inf, 0.1), 10)
        known_scale = min(max(math.sqrt((1 - p) / p) if p > 0 else math.inf, 0.1), 10)
        positions = [(i, j) for i in range(h) for j in range(w)]
        keys = []
        for i, j in positions:
            patch = g_pad[:, i:i + 3, j:j + 3]
            keys.append(patch / max(patch.norm().item(), 1e-4))
        key_unknown = [m_pad[i:i + 3, j:j + 3].mean().item() > 0 for i, j in positions]
        attention = torch.zeros(len(positions), h, w, dtype=torch.float64)
        for y in range(h):
            for x in range(w):
                query = g_pad[:, y:y + 3, x:x + 3]
                for l, (i, j) in enumerate(positions):
                    score = (keys[l] * query).sum() * (unknown_scale if key_unknown[l] else known_scale)
                    if key_unknown[l] and (i, j) == (y, x):
                        score = score - 1e4
                    attention[l, y, x] = score
        attention = torch.softmax(attention, dim=0)
        best = attention.argmax(dim=0)
        offsets.append(torch.stack([best // w - h // 2, best % w - w // 2]))
        out = torch.zeros_like(alpha64[n])
        H, W = out.shape[1:]
        for l, (i, j) in enumerate(positions):
            value = a_pad[:, 2 * i:2 * i + 4, 2 * j:2 * j + 4]
            for y in range(h):
                for x in range(w):
                    for ky in range(4):
                        for kx in range(4):
                            oy, ox = 2 * y - 1 + ky, 2 * x - 1 + kx
                            if 0 <= oy < H and 0 <= ox < W:
                                out[:, oy, ox] += attention[l, y, x] * value[:, ky, kx]
        outs.append(out / 4)
        scales.append((unknown_scale, known_scale))
    y = torch.stack(outs).float()
    return module.W(y) + alpha, torch.stack(offsets), torch.tensor(scales)


def make_inputs(seed=0, batch=1, size=8, channels=6, guidance_channels=8, unknown_fraction=0.4):
    generator = torch.Generator().manual_seed(seed)
    guidance = torch.randn(batch, guidance_channels, size, size, generator=generator)
    alpha = torch.randn(batch, channels, size, size, generator=generator)
    unknown = (torch.rand(batch, 1, size, size, generator=generator) < unknown_fraction).float()
    return guidance, alpha, unknown


def small_module(seed=0):
    torch.manual_seed(seed)
    module = GuidedCxtAtten(out_channels=6, guidance_channels=8).eval()
    with torch.no_grad():
        module.W[1].weight.fill_(0.7)  # make the attention branch visible in the output
    return module


@pytest.mark.parametrize("seed,unknown_fraction", [(0, 0.4), (1, 1.0), (2, 0.0), (3, 0.1)])
def test_module_equals_the_spec_steps(seed, unknown_fraction):
    module = small_module(seed)
    guidance, alpha, unknown = make_inputs(seed, batch=2, unknown_fraction=unknown_fraction)
    with torch.no_grad():
        out, (offsets, scales) = module(guidance, alpha, unknown)
        ref_out, ref_offsets, ref_scales = naive_gca(module, guidance, alpha, unknown)
    assert torch.allclose(out, ref_out, atol=1e-5)
    assert torch.equal(offsets, ref_offsets)
    assert torch.allclose(scales, ref_scales.float())


@pytest.mark.parametrize("fraction,expected", [
    (0.25, (math.sqrt(1 / 3), math.sqrt(3))),
    (0.5, (1.0, 1.0)),
    (0.0, (0.1, 10.0)),
    (1.0, (10.0, 0.1)),
    (1 / 256, (0.1, 10.0)),
])
def test_softmax_scales_for_a_known_unknown_fraction(fraction, expected):
    mask = torch.zeros(1, 1, 16, 16)
    mask.view(-1)[:round(fraction * 256)] = 1
    assert torch.allclose(softmax_scales(mask), torch.tensor([expected]), atol=1e-6)


def test_module_reports_the_scales_of_the_downsampled_mask():
    module = small_module()
    guidance, alpha, _ = make_inputs()
    unknown = torch.zeros(1, 1, 8, 8)
    unknown[:, :, :2] = 1  # rows 0 and 1 at 1/8 -> row 0 of 4 at 1/16: a quarter unknown
    with torch.no_grad():
        _, (_, scales) = module(guidance, alpha, unknown)
    assert torch.allclose(scales, torch.tensor([[math.sqrt(1 / 3), math.sqrt(3)]]), atol=1e-6)


def test_an_unknown_key_never_attends_to_its_own_position():
    module = small_module()
    guidance, alpha, _ = make_inputs(size=16)
    with torch.no_grad():
        _, (offsets, _) = module(guidance, alpha, torch.ones(1, 1, 16, 16))
    h = w = 8
    rows = torch.arange(h).view(h, 1).expand(h, w) - h // 2
    cols = torch.arange(w).view(1, w).expand(h, w) - w // 2
    own = (offsets[0, 0] == rows) & (offsets[0, 1] == cols)
    assert not own.any()


def test_a_known_key_may_match_itself():
    # With no unknown pixel there is no self-match penalty: a query's own patch is its best
    # match (Cauchy-Schwarz), so every offset points at its own position.
    module = small_module()
    guidance, alpha, _ = make_inputs(size=16)
    with torch.no_grad():
        _, (offsets, _) = module(guidance, alpha, torch.zeros(1, 1, 16, 16))
    rows = torch.arange(8).view(8, 1).expand(8, 8) - 4
    assert torch.equal(offsets[0, 0], rows)


def test_offsets_lie_in_range():
    module = small_module()
    guidance, alpha, unknown = make_inputs(size=24, batch=2)
    with torch.no_grad():
        _, (offsets, _) = module(guidance, alpha, unknown)
    h, w = 12, 12
    assert offsets.shape == (2, 2, h, w)
    assert offsets[:, 0].min() >= -(h // 2) and offsets[:, 0].max() <= h - 1 - h // 2
    assert offsets[:, 1].min() >= -(w // 2) and offsets[:, 1].max() <= w - 1 - w // 2


def test_batch_elements_are_independent():
    module = small_module()
    guidance, alpha, unknown = make_inputs(batch=3, size=16)
    with torch.no_grad():
        batched, (offsets, scales) = module(guidance, alpha, unknown)
        for i in range(3):
            single, (single_offsets, single_scales) = module(guidance[i:i + 1], alpha[i:i + 1], unknown[i:i + 1])
            assert torch.allclose(batched[i:i + 1], single, atol=1e-6)
            assert torch.equal(offsets[i:i + 1], single_offsets)
            assert torch.equal(scales[i:i + 1], single_scales)


def run_module(module, guidance, alpha, unknown, block):
    module.block = block
    return module(guidance, alpha, unknown)


@pytest.mark.parametrize("block", [1, 7, 16, 1000])
@pytest.mark.parametrize("unknown_fraction", [0.4, 1.0, 0.0])
def test_blocked_attention_equals_the_literal_form(block, unknown_fraction):
    module = small_module(5)
    guidance, alpha, unknown = make_inputs(5, batch=2, size=10, unknown_fraction=unknown_fraction)
    with torch.no_grad():
        literal, (literal_offsets, literal_scales) = run_module(module, guidance, alpha, unknown, -1)
        blocked, (offsets, scales) = run_module(module, guidance, alpha, unknown, block)
    assert torch.allclose(blocked, literal, atol=1e-5)
    assert torch.equal(offsets, literal_offsets) and torch.equal(scales, literal_scales)


def wide_grid_inputs():
    """Two images whose 1/16 grid is 3 x 7 (6 x 14 at 1/8)."""
    generator = torch.Generator().manual_seed(9)
    guidance = torch.randn(2, 8, 6, 14, generator=generator)
    alpha = torch.randn(2, 6, 6, 14, generator=generator)
    unknown = (torch.rand(2, 1, 6, 14, generator=generator) < 0.3).float()
    return guidance, alpha, unknown


@pytest.mark.parametrize("block", [1, 14, 30])
def test_blocked_attention_on_a_wide_grid(block):
    # a 3 x 7 grid: blocks of one row, of two rows (not dividing 3), and all rows
    module = small_module(9)
    guidance, alpha, unknown = wide_grid_inputs()
    with torch.no_grad():
        literal, (literal_offsets, _) = run_module(module, guidance, alpha, unknown, -1)
        blocked, (offsets, _) = run_module(module, guidance, alpha, unknown, block)
        reference, reference_offsets, _ = naive_gca(module, guidance, alpha, unknown)
    assert torch.allclose(blocked, literal, atol=1e-5) and torch.equal(offsets, literal_offsets)
    assert torch.allclose(blocked, reference, atol=1e-5) and torch.equal(offsets, reference_offsets)


def test_blocked_attention_on_the_smallest_grid():
    # 4 x 4 at 1/8 is a 2 x 2 patch grid, the least that reflect padding allows
    module = small_module(6)
    guidance, alpha, unknown = make_inputs(6, batch=1, size=4)
    with torch.no_grad():
        literal, (literal_offsets, _) = run_module(module, guidance, alpha, unknown, -1)
        blocked, (offsets, _) = run_module(module, guidance, alpha, unknown, 1)
    assert torch.allclose(blocked, literal, atol=1e-5) and torch.equal(offsets, literal_offsets)


@pytest.mark.parametrize("block", [7, 14, 30])
def test_blocked_attention_reuses_its_buffers_to_the_same_bits(block):
    # Without autograd the blocks write into reused buffers (out=, softmax in place); with it every
    # operation allocates. The two must give the same bits, also where the last block is short (a
    # 3 x 7 grid in blocks of 1, 2 or 3 rows), and leave the inputs as they were.
    module = small_module(9)
    guidance, alpha, unknown = wide_grid_inputs()
    before = [guidance.clone(), alpha.clone()]
    with torch.no_grad():
        reused, (offsets, _) = run_module(module, guidance, alpha, unknown, block)
    allocated, (allocated_offsets, _) = run_module(module, guidance, alpha.requires_grad_(True), unknown, block)
    assert torch.equal(reused, allocated.detach()) and torch.equal(offsets, allocated_offsets)
    assert torch.equal(guidance, before[0]) and torch.equal(alpha.detach(), before[1])


def test_blocked_gradients_equal_the_literal_ones():
    grads = {}
    for block in (-1, 3):
        module = small_module(7).train()
        guidance, alpha, unknown = make_inputs(7, batch=2, size=8)
        guidance.requires_grad_(True)
        alpha.requires_grad_(True)
        out, _ = run_module(module, guidance, alpha, unknown, block)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        grads[block] = [guidance.grad, alpha.grad] + [p.grad for p in module.parameters()]
    for literal, blocked in zip(grads[-1], grads[3]):
        assert torch.allclose(literal, blocked, atol=1e-5)


def test_auto_block_fits_the_budget():
    from networks.gca_matting.gca import FLOATS_PER_SCORE, LITERAL, SCORE_BUDGET_BYTES, choose_block
    cpu = torch.device("cpu")
    assert choose_block(100, 0, cpu) >= 100  # a small image is one block
    big = 40000  # a 4K image: 40000^2 scores would need 6 GB per copy
    block = choose_block(big, 0, cpu)
    assert 1 <= block < big and big * block * 4 * FLOATS_PER_SCORE <= SCORE_BUDGET_BYTES
    assert choose_block(big, 5, cpu) == 5 and choose_block(big, -1, cpu) == LITERAL


def test_attention_stays_fp32_under_autocast(monkeypatch):
    import networks.gca_matting.gca as gca
    seen = []
    original = gca.attend_blocked

    def recording(query, key_factor, alpha, *rest):
        seen.append((query.dtype, key_factor.dtype, alpha.dtype))
        out, best = original(query, key_factor, alpha, *rest)
        seen.append((out.dtype,))
        return out, best

    monkeypatch.setattr(gca, "attend_blocked", recording)
    module = small_module(8)
    guidance, alpha, unknown = make_inputs(8, size=8)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        run_module(module, guidance, alpha, unknown, 4)
    assert seen and all(dtype == torch.float32 for entry in seen for dtype in entry)
