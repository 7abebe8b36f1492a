"""The literal attention forms against transcriptions of the published codes' forward passes
(GCA-Matting's here, MMagic's in mmagic_transcription.py):
equal to the bit (one thread), and the blocked forms of each variant equal to them within float
rounding."""
import pytest
import torch
import torch.nn.functional as F

import mmagic_transcription as mm
from networks.gca_matting.gca import LITERAL, PUBLISHED, GuidedCxtAtten, extract_patches, published_patches, sequential_key_norms
from networks.mmagic.attention import MMAGIC, joint_key_norms, mmagic_patches


# ---- transcription of GCA-Matting's GuidedCxtAtten.forward (networks/ops.py, MIT) ---------------
def _published_extract(x, kernel=3, stride=1):
    left = (kernel - stride + 1) // 2
    right = (kernel - stride) // 2
    x = F.pad(x, (left, right, left, right), mode='reflect')
    return x.unfold(2, kernel, stride).unfold(3, kernel, stride)


def _published_l2_norm(x):
    x = x ** 2
    for i in range(1, 4):
        x = torch.sum(x, dim=i, keepdim=True)
    return torch.sqrt(x)


def published_forward(module, f, alpha, unknown, rate=2, ksize=3):
    f = module.guidance_conv(f)
    raw_int_fs = list(f.size())
    raw_int_alpha = list(alpha.size())
    kernel = 2 * rate
    alpha_w = _published_extract(alpha, kernel=kernel, stride=rate)
    alpha_w = alpha_w.permute(0, 2, 3, 4, 5, 1)
    alpha_w = alpha_w.contiguous().view(raw_int_alpha[0], raw_int_alpha[2] // rate, raw_int_alpha[3] // rate, -1)
    alpha_w = alpha_w.contiguous().view(raw_int_alpha[0], -1, kernel, kernel, raw_int_alpha[1])
    alpha_w = alpha_w.permute(0, 1, 4, 2, 3)
    f = F.interpolate(f, scale_factor=1 / rate, mode='nearest')
    fs = f.size()
    f_groups = torch.split(f, 1, dim=0)
    int_fs = list(fs)
    w = _published_extract(f)
    w = w.permute(0, 2, 3, 4, 5, 1)
    w = w.contiguous().view(raw_int_fs[0], raw_int_fs[2] // rate, raw_int_fs[3] // rate, -1)
    w = w.contiguous().view(raw_int_fs[0], -1, ksize, ksize, raw_int_fs[1])
    w = w.permute(0, 1, 4, 2, 3)
    unknown = unknown.clone()
    unknown = F.interpolate(unknown, scale_factor=1 / rate, mode='nearest')
    unknown_mean = unknown.mean(dim=[2, 3])
    known_mean = 1 - unknown_mean
    unknown_scale = torch.clamp(torch.sqrt(unknown_mean / known_mean), 0.1, 10).to(alpha)
    known_scale = torch.clamp(torch.sqrt(known_mean / unknown_mean), 0.1, 10).to(alpha)
    softmax_scale = torch.cat([unknown_scale, known_scale], dim=1)
    m = _published_extract(unknown)
    m = m.permute(0, 2, 3, 4, 5, 1)
    m = m.contiguous().view(raw_int_fs[0], raw_int_fs[2] // rate, raw_int_fs[3] // rate, -1)
    m = m.contiguous().view(raw_int_fs[0], -1, ksize, ksize)
    for i in range(2, 4):
        m = torch.mean(m, dim=i, keepdim=True)
    mm = m.gt(0.).float()
    self_mask = F.one_hot(torch.arange(fs[2] * fs[3]).view(fs[2], fs[3]).contiguous().to(alpha).long(),
                          num_classes=int_fs[2] * int_fs[3])
    self_mask = self_mask.permute(2, 0, 1).view(1, fs[2] * fs[3], fs[2], fs[3]).float() * (-1e4)
    y, offsets = [], []
    groups = zip(f_groups, torch.split(w, 1, dim=0), torch.split(alpha_w, 1, dim=0), torch.split(mm, 1, dim=0),
                 torch.split(softmax_scale, 1, dim=0))
    for xi, wi, alpha_wi, mmi, scale in groups:
        wi = wi[0]
        escape_NaN = torch.FloatTensor([1e-4]).to(alpha)
        wi_normed = wi / torch.max(_published_l2_norm(wi), escape_NaN)
        xi = F.pad(xi, (1, 1, 1, 1), mode='reflect')
        yi = F.conv2d(xi, wi_normed, stride=1, padding=0)
        yi = yi.permute(0, 2, 3, 1)
        yi = yi.contiguous().view(1, fs[2], fs[3], fs[2] * fs[3])
        yi = yi.permute(0, 3, 1, 2)
        yi = yi * (scale[0, 0] * mmi.gt(0.).float() + scale[0, 1] * mmi.le(0.).float())
        yi = yi + self_mask * mmi
        yi = F.softmax(yi, dim=1)
        _, offset = torch.max(yi, dim=1)
        offset = torch.stack([offset // fs[3], offset % fs[3]], dim=1)
        yi = F.conv_transpose2d(yi, alpha_wi[0], stride=rate, padding=1) / 4.
        y.append(yi)
        offsets.append(offset)
    y = torch.cat(y, dim=0)
    offsets = torch.cat(offsets, dim=0).view([int_fs[0]] + [2] + int_fs[2:])
    offsets = offsets - torch.Tensor([fs[2] // 2, fs[3] // 2]).view(1, 2, 1, 1).to(alpha).long()
    return module.W(y) + alpha, offsets, softmax_scale


def mmagic_forward(module, img_feat, alpha_feat, unknown):
    """MMagic's GCAModule (tests/mmagic_transcription.py) with `module`'s weights."""
    transcribed = mm.GCAModule(module.guidance_conv.in_channels, module.W[0].in_channels).eval()
    transcribed.guidance_conv.load_state_dict(module.guidance_conv.state_dict())
    transcribed.out_conv.conv.load_state_dict(module.W[0].state_dict())
    transcribed.out_conv.bn.load_state_dict(module.W[1].state_dict())
    return transcribed(img_feat, alpha_feat, unknown)


# ---- the tests -------------------------------------------------------------------------------
def make_case(seed, batch=2, size=12, channels=6, guidance_channels=8, unknown_fraction=0.4):
    generator = torch.Generator().manual_seed(seed)
    guidance = torch.randn(batch, guidance_channels, size, size, generator=generator)
    alpha = torch.randn(batch, channels, size, size, generator=generator)
    unknown = (torch.rand(batch, 1, size, size, generator=generator) < unknown_fraction).float()
    torch.manual_seed(seed)
    module = GuidedCxtAtten(out_channels=channels, guidance_channels=guidance_channels).eval()
    with torch.no_grad():
        module.W[1].weight.fill_(0.7)  # the attention branch visible in the output
        # large guidance weights: scores of hundreds, where the penalty's form matters
        module.guidance_conv.weight.mul_(40)
    return module, guidance, alpha, unknown


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("seed,size,fraction", [(0, 12, 0.4), (1, 16, 1.0), (2, 8, 0.0), (3, 20, 0.15)])
def test_literal_form_equals_gca_matting_to_the_bit(one_thread, seed, size, fraction):
    module, guidance, alpha, unknown = make_case(seed, size=size, unknown_fraction=fraction)
    module.block = LITERAL
    with torch.no_grad():
        out, (offsets, scales) = module(guidance, alpha, unknown)
        expected, expected_offsets, expected_scales = published_forward(module, guidance, alpha, unknown)
    assert torch.equal(out, expected)
    assert torch.equal(offsets, expected_offsets) and torch.equal(scales, expected_scales)


@pytest.mark.parametrize("seed,size,fraction", [(0, 12, 0.4), (1, 16, 1.0), (2, 8, 0.0), (3, 20, 0.15)])
def test_mmagic_literal_form_equals_mmagic_to_the_bit(one_thread, seed, size, fraction):
    module, guidance, alpha, unknown = make_case(seed, size=size, unknown_fraction=fraction)
    module.block, module.variant = LITERAL, MMAGIC
    with torch.no_grad():
        out, _ = module(guidance, alpha, unknown)
        expected = mmagic_forward(module, guidance, alpha, unknown)
    assert torch.equal(out, expected)


@pytest.mark.parametrize("variant", [PUBLISHED, MMAGIC])
@pytest.mark.parametrize("block", [1, 9, 1000])
def test_blocked_form_of_each_variant_equals_its_literal_form(variant, block):
    module, guidance, alpha, unknown = make_case(4, size=12, unknown_fraction=0.3)
    module.variant = variant
    with torch.no_grad():
        module.block = LITERAL
        literal, (literal_offsets, _) = module(guidance, alpha, unknown)
        module.block = block
        blocked, (offsets, _) = module(guidance, alpha, unknown)
    assert torch.allclose(blocked, literal, atol=1e-4, rtol=1e-5)
    assert torch.equal(offsets, literal_offsets)


def test_the_two_variants_differ_where_a_key_patch_is_partly_unknown():
    # Where a query's own patch scores thousands, -1e4 / 9 (MMagic, one unknown pixel of nine)
    # no longer silences its self-match; the full -1e4 (GCA-Matting) does.
    module, guidance, alpha, unknown = make_case(5, size=16, unknown_fraction=0.2)
    guidance = guidance * 100
    module.block = LITERAL
    with torch.no_grad():
        published, _ = module(guidance, alpha, unknown)
        module.variant = MMAGIC
        mmagic, _ = module(guidance, alpha, unknown)
    assert not torch.allclose(published, mmagic, atol=1e-3)


@pytest.mark.parametrize("variant", [PUBLISHED, MMAGIC])
def test_every_form_normalises_the_keys_to_the_bit_of_the_literal_form(one_thread, variant):
    # the key norms are summed in the published code's memory layout, whatever the form
    module, guidance, _, _ = make_case(6, batch=1, size=16)
    with torch.no_grad():
        guidance = F.interpolate(module.guidance_conv(guidance), scale_factor=0.5, mode="nearest")
    contiguous = extract_patches(guidance, 3, 1)[0]
    laid_out = (published_patches if variant is PUBLISHED else mmagic_patches)(guidance, 3, 1)[0]
    literal_norms = (sequential_key_norms if variant is PUBLISHED else joint_key_norms)(laid_out)
    assert torch.equal(variant.key_norms(contiguous), literal_norms)
    assert contiguous.stride() != laid_out.stride()  # the same values in another memory layout
