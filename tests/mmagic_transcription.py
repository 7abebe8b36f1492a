"""Test-only transcription of MMagic's GCA and baseline models (Apache-2.0; mmagic/models/editors/gca/
resgca_enc.py, resgca_dec.py, gca_module.py, gca.py, base_models/base_mattor.py, and mmcv's ConvModule
as they use it), reduced to inference, with torch's own spectral norm. The tests build MMagic-layout
checkpoints with it and compare this project's MMagic family against its forward pass."""
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

MEAN = [123.675, 116.28, 103.53]
STD = [58.395, 57.12, 57.375]


class ConvModule(nn.Module):
    """mmcv.cnn.ConvModule as GCA builds it: conv (+ spectral norm), 'bn', activation, in `order`."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, norm=True, act=None,
                 with_spectral_norm=False, order=('conv', 'norm', 'act'), deconv=False, padding_mode='zeros'):
        super().__init__()
        self.order = order
        self.with_norm, self.act = norm, act
        self.with_explicit_padding = padding_mode == 'reflect'
        if self.with_explicit_padding:
            self.padding_layer = nn.ReflectionPad2d(padding)
        conv_padding = 0 if self.with_explicit_padding else padding
        conv_type = nn.ConvTranspose2d if deconv else nn.Conv2d
        self.conv = conv_type(in_channels, out_channels, kernel_size, stride=stride, padding=conv_padding,
                              bias=not norm)
        if with_spectral_norm:
            self.conv = nn.utils.spectral_norm(self.conv)
        if norm:
            norm_channels = out_channels if order.index('norm') > order.index('conv') else in_channels
            self.bn = nn.BatchNorm2d(norm_channels)
        if act == 'relu':
            self.activate = nn.ReLU(inplace=True)
        elif act == 'leaky':
            self.activate = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x):
        for layer in self.order:
            if layer == 'conv':
                if self.with_explicit_padding:
                    x = self.padding_layer(x)
                x = self.conv(x)
            elif layer == 'norm' and self.with_norm:
                x = self.bn(x)
            elif layer == 'act' and self.act is not None:
                x = self.activate(x)
        return x


class BasicBlock(nn.Module):
    def __init__(self, in_channels, out_channels, stride=1, interpolation=None, act='relu'):
        super().__init__()
        self.conv1 = self.build_conv1(in_channels, out_channels, stride, act)
        self.conv2 = self.build_conv2(in_channels, out_channels)
        self.interpolation = interpolation
        self.activation = nn.ReLU(inplace=True) if act == 'relu' else nn.LeakyReLU(0.2, inplace=True)

    def build_conv1(self, in_channels, out_channels, stride, act):
        return ConvModule(in_channels, out_channels, 3, stride=stride, padding=1, act=act, with_spectral_norm=True)

    def build_conv2(self, in_channels, out_channels):
        return ConvModule(out_channels, out_channels, 3, stride=1, padding=1, act=None, with_spectral_norm=True)

    def forward(self, x):
        identity = x
        out = self.conv1(x)
        out = self.conv2(out)
        if self.interpolation is not None:
            identity = self.interpolation(x)
        out += identity
        return self.activation(out)


class BasicBlockDec(BasicBlock):
    def build_conv1(self, in_channels, out_channels, stride, act):
        if stride == 2:
            return ConvModule(in_channels, in_channels, 4, stride=2, padding=1, act=act, with_spectral_norm=True,
                              deconv=True)
        return ConvModule(in_channels, in_channels, 3, stride=1, padding=1, act=act, with_spectral_norm=True)

    def build_conv2(self, in_channels, out_channels):
        return ConvModule(in_channels, out_channels, 3, stride=1, padding=1, act=None, with_spectral_norm=True)


class GCAModule(nn.Module):
    def __init__(self, in_channels, out_channels, rate=2, penalty=-1e4, eps=1e-4):
        super().__init__()
        self.rate, self.penalty, self.eps = rate, penalty, eps
        self.guidance_conv = nn.Conv2d(in_channels, in_channels // 2, 1)
        self.out_conv = ConvModule(out_channels, out_channels, 1, act=None)

    def pad(self, x, kernel_size, stride):
        left = (kernel_size - stride + 1) // 2
        right = (kernel_size - stride) // 2
        return F.pad(x, (left, right, left, right), mode='reflect')

    def extract_patches(self, x, kernel_size, stride):
        n, c, _, _ = x.shape
        x = self.pad(x, kernel_size, stride)
        x = F.unfold(x, (kernel_size, kernel_size), stride=(stride, stride))
        x = x.permute(0, 2, 1)
        return x.reshape(n, -1, c, kernel_size, kernel_size)

    def forward(self, img_feat, alpha_feat, unknown):
        img_feat = self.guidance_conv(img_feat)
        img_feat = F.interpolate(img_feat, scale_factor=1 / self.rate, mode='nearest')
        unknown = unknown.clone()
        unknown = F.interpolate(unknown, scale_factor=1 / self.rate, mode='nearest')
        unknown_mean = unknown.mean(dim=[2, 3])
        known_mean = 1 - unknown_mean
        unknown_scale = torch.clamp(torch.sqrt(unknown_mean / known_mean), 0.1, 10).to(img_feat)
        known_scale = torch.clamp(torch.sqrt(known_mean / unknown_mean), 0.1, 10).to(img_feat)
        softmax_scale = torch.cat([unknown_scale, known_scale], dim=1)
        img_ps = self.extract_patches(img_feat, 3, 1)
        alpha_ps = self.extract_patches(alpha_feat, self.rate * 2, self.rate)
        unknown_ps = self.extract_patches(unknown, 3, 1)
        unknown_ps = unknown_ps.squeeze(dim=2)
        unknown_ps = unknown_ps.mean(dim=[2, 3], keepdim=True)
        _, _, h, w = img_feat.shape
        self_mask = F.one_hot(torch.arange(h * w).view(h, w), num_classes=int(h * w))
        self_mask = self_mask.permute(2, 0, 1).view(1, h * w, h, w)
        self_mask = (self_mask * self.penalty).to(img_feat)
        out = []
        groups = zip(torch.split(img_feat, 1, dim=0), torch.split(img_ps, 1, dim=0), torch.split(alpha_ps, 1, dim=0),
                     torch.split(unknown_ps, 1, dim=0), torch.split(softmax_scale, 1, dim=0))
        for img_i, img_ps_i, alpha_ps_i, unknown_ps_i, scale_i in groups:
            img_ps_i = img_ps_i[0]
            escape_NaN = torch.FloatTensor([self.eps]).to(img_i)
            norm = torch.sqrt((img_ps_i ** 2).sum(dim=[1, 2, 3], keepdim=True))
            img_ps_normed = img_ps_i / torch.max(norm, escape_NaN)
            similarity_map = F.conv2d(self.pad(img_i, 3, 1), img_ps_normed)
            u_scale, k_scale = scale_i[0]
            score = similarity_map * (u_scale * unknown_ps_i.gt(0.).float() + k_scale * unknown_ps_i.le(0.).float())
            score = score + self_mask * unknown_ps_i
            score = F.softmax(score, dim=1)
            out.append(F.conv_transpose2d(score, alpha_ps_i[0], stride=self.rate, padding=1) / 4.)
        out = torch.cat(out, dim=0)
        return self.out_conv(out) + alpha_feat


class ResShortcutEnc(nn.Module):
    def __init__(self, layers=(3, 4, 4, 2), in_channels=6):
        super().__init__()
        self.inplanes = 64
        self.conv1 = ConvModule(in_channels, 32, 3, stride=2, padding=1, act='relu', with_spectral_norm=True)
        self.conv2 = ConvModule(32, 32, 3, stride=1, padding=1, act='relu', with_spectral_norm=True)
        self.conv3 = ConvModule(32, 64, 3, stride=2, padding=1, act='relu', with_spectral_norm=True)
        self.layer1 = self._make_layer(64, layers[0], 1)
        self.layer2 = self._make_layer(128, layers[1], 2)
        self.layer3 = self._make_layer(256, layers[2], 2)
        self.layer4 = self._make_layer(512, layers[3], 2)
        order = ('conv', 'act', 'norm')
        self.shortcut = nn.ModuleList()
        for cin, cout in zip([in_channels, 32, 64, 128, 256], [32, 32, 64, 128, 256]):
            self.shortcut.append(nn.Sequential(
                ConvModule(cin, cout, 3, padding=1, act='relu', with_spectral_norm=True, order=order),
                ConvModule(cout, cout, 3, padding=1, act='relu', with_spectral_norm=True, order=order)))

    def _make_layer(self, planes, num_blocks, stride):
        downsample = None
        if stride != 1:
            downsample = nn.Sequential(nn.AvgPool2d(2, stride),
                                       ConvModule(self.inplanes, planes, 1, act=None, with_spectral_norm=True))
        layers = [BasicBlock(self.inplanes, planes, stride=stride, interpolation=downsample)]
        self.inplanes = planes
        layers += [BasicBlock(self.inplanes, planes) for _ in range(1, num_blocks)]
        return nn.Sequential(*layers)

    def trunk(self, x):
        out = self.conv1(x)
        x1 = self.conv2(out)
        out = self.conv3(x1)
        x2 = self.layer1(out)
        x3 = self.layer2(x2)
        return x1, x2, x3

    def forward(self, x):
        x1, x2, x3 = self.trunk(x)
        x4 = self.layer3(x3)
        out = self.layer4(x4)
        feats = [branch(f) for branch, f in zip(self.shortcut, (x, x1, x2, x3, x4))]
        return dict(out=out, **{f'feat{i + 1}': f for i, f in enumerate(feats)})


class ResGCAEncoder(ResShortcutEnc):
    def __init__(self, layers=(3, 4, 4, 2), in_channels=6):
        super().__init__(layers, in_channels)
        self.trimap_channels = in_channels - 3
        order = ('conv', 'act', 'norm')
        self.guidance_head = nn.Sequential(*[
            ConvModule(cin, cout, 3, stride=2, padding=1, act='relu', with_spectral_norm=True, padding_mode='reflect',
                       order=order) for cin, cout in zip([3, 16, 32], [16, 32, 128])])
        self.gca = GCAModule(128, 128)

    def forward(self, x):
        out = self.conv1(x)
        x1 = self.conv2(out)
        out = self.conv3(x1)
        img_feat = self.guidance_head(x[:, :3, ...])
        if self.trimap_channels == 3:
            unknown = x[:, 4:5, ...]
        else:
            unknown = x[:, 3:, ...].eq(1).float()
        unknown = F.interpolate(unknown, scale_factor=1 / 8, mode='nearest')
        x2 = self.layer1(out)
        x3 = self.layer2(x2)
        x3 = self.gca(img_feat, x3, unknown)
        x4 = self.layer3(x3)
        out = self.layer4(x4)
        feats = [branch(f) for branch, f in zip(self.shortcut, (x, x1, x2, x3, x4))]
        return dict(out=out, img_feat=img_feat, unknown=unknown, **{f'feat{i + 1}': f for i, f in enumerate(feats)})


class ResShortcutDec(nn.Module):
    def __init__(self, layers=(2, 3, 3, 2)):
        super().__init__()
        self.inplanes = 512
        self.layer1 = self._make_layer(256, layers[0])
        self.layer2 = self._make_layer(128, layers[1])
        self.layer3 = self._make_layer(64, layers[2])
        self.layer4 = self._make_layer(32, layers[3])
        self.conv1 = ConvModule(32, 32, 4, stride=2, padding=1, act='leaky', with_spectral_norm=True, deconv=True)
        self.conv2 = ConvModule(32, 1, 3, padding=1, norm=False, act=None)

    def _make_layer(self, planes, num_blocks):
        upsample = nn.Sequential(nn.UpsamplingNearest2d(scale_factor=2),
                                 ConvModule(self.inplanes, planes, 1, act=None, with_spectral_norm=True))
        layers = [BasicBlockDec(self.inplanes, planes, stride=2, interpolation=upsample, act='leaky')]
        self.inplanes = planes
        layers += [BasicBlockDec(self.inplanes, planes, act='leaky') for _ in range(1, num_blocks)]
        return nn.Sequential(*layers)

    def forward(self, inputs):
        x = self.layer1(inputs['out']) + inputs['feat5']
        x = self.layer2(x) + inputs['feat4']
        x = self.layer3(x) + inputs['feat3']
        x = self.layer4(x) + inputs['feat2']
        x = self.conv1(x) + inputs['feat1']
        return self.conv2(x)


class ResGCADecoder(ResShortcutDec):
    def __init__(self, layers=(2, 3, 3, 2)):
        super().__init__(layers)
        self.gca = GCAModule(128, 128)

    def forward(self, inputs):
        x = self.layer1(inputs['out']) + inputs['feat5']
        x = self.layer2(x) + inputs['feat4']
        x = self.gca(inputs['img_feat'], x, inputs['unknown'])
        x = self.layer3(x) + inputs['feat3']
        x = self.layer4(x) + inputs['feat2']
        x = self.conv1(x) + inputs['feat1']
        return self.conv2(x)


class SimpleEncoderDecoder(nn.Module):
    def __init__(self, gca=True, in_channels=6):
        super().__init__()
        self.encoder = ResGCAEncoder(in_channels=in_channels) if gca else ResShortcutEnc(in_channels=in_channels)
        self.decoder = ResGCADecoder() if gca else ResShortcutDec()

    def forward(self, x):
        return self.decoder(self.encoder(x))


class Mattor(nn.Module):
    """mmagic.models.editors.gca.GCA in 'predict' mode, with MattorPreprocessor (mean/std above,
    proc_trimap='as_is'), test_cfg resize_method='pad', resize_mode='reflect', size_divisor=32."""

    def __init__(self, gca=True, in_channels=6):
        super().__init__()
        self.backbone = SimpleEncoderDecoder(gca, in_channels)

    def predict(self, merged_bgr: np.ndarray, trimap: np.ndarray) -> torch.Tensor:
        """merged H x W x 3 uint8 BGR as LoadImageFromFile reads it, grey trimap H x W uint8 -> the
        uint8 alpha BaseMattor.postprocess gives."""
        one_hot = self.backbone.encoder.conv1.conv.weight_orig.shape[1] == 6
        if one_hot:
            formatted = np.zeros((*trimap.shape, 3), dtype=np.uint8)
            formatted[..., 0][trimap == 0] = 1
            formatted[..., 1][trimap == 128] = 1
            formatted[..., 2][trimap == 255] = 1
        else:
            formatted = trimap.copy()
            formatted[formatted == 128] = 1
            formatted[formatted == 255] = 2
            formatted = formatted[..., None]
        trimap_tensor = torch.from_numpy(formatted).permute(2, 0, 1).contiguous()[None].to(torch.float32)
        return predict(lambda inputs: (self.backbone(inputs).tanh() + 1.0) / 2.0, merged_bgr, trimap, trimap_tensor)


def predict(forward_test, merged_bgr: np.ndarray, trimap: np.ndarray, trimap_tensor: torch.Tensor) -> torch.Tensor:
    """BaseMattor.forward in 'predict' mode after MattorPreprocessor: the image BGR -> RGB and
    normalised, concatenated with the preprocessed trimap (1 x C x H x W), resize_inputs ('pad',
    'reflect', 32), `forward_test` (the model's _forward_test) and postprocess -> the uint8 alpha."""
    image = torch.from_numpy(np.ascontiguousarray(merged_bgr)).permute(2, 0, 1).contiguous()[None]
    image = torch.index_select(image, 1, torch.LongTensor([2, 1, 0]))
    image = (image - torch.tensor(MEAN).view(1, -1, 1, 1)) / torch.tensor(STD).view(1, -1, 1, 1)
    inputs = torch.cat((image, trimap_tensor), dim=1)
    h, w = inputs.shape[-2:]
    pad_h, pad_w = 32 * ((h - 1) // 32 + 1) - h, 32 * ((w - 1) // 32 + 1) - w
    images, trimaps = inputs[:, :3], inputs[:, 3:]
    if pad_h or pad_w:
        images = F.pad(images, (0, pad_w, 0, pad_h), 'reflect')
        trimaps = F.pad(trimaps, (0, pad_w, 0, pad_h), 'reflect')
    pred = forward_test(torch.cat((images, trimaps), dim=1))
    pa = pred[0][:, :h, :w][0]
    pa.clamp_(min=0, max=1)
    ori_trimap = torch.from_numpy(trimap)
    pa[ori_trimap == 255] = 1
    pa[ori_trimap == 0] = 0
    pa *= 255
    pa.round_()
    return pa.to(dtype=torch.uint8)
