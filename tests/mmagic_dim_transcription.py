"""Test-only transcription of MMagic's Deep Image Matting (Apache-2.0; mmagic/models/archs/vgg.py,
simple_encoder_decoder.py, editors/plain/plain_decoder.py, plain_refiner.py, editors/dim/dim.py,
base_models/base_mattor.py, data_preprocessors/mattor_preprocessor.py with configs/dim/*.py, and
losses/pixelwise_loss.py, composition_loss.py, loss_wrapper.py), reduced to inference and the
losses DIM uses; the pre- and post-processing are those of the GCA transcription
(mmagic_transcription.predict). The tests build MMagic-layout checkpoints with it and compare this
project's DIM family against its forward pass and its losses."""
import numpy as np
import torch
import torch.nn as nn

from mmagic_transcription import predict


class VGG16(nn.Module):
    def __init__(self, in_channels=4):
        super().__init__()
        self.layer1 = self._make_layer(in_channels, 64, 2)
        self.layer2 = self._make_layer(64, 128, 2)
        self.layer3 = self._make_layer(128, 256, 3)
        self.layer4 = self._make_layer(256, 512, 3)
        self.layer5 = self._make_layer(512, 512, 3)
        self.conv6 = nn.Conv2d(512, 512, kernel_size=1)
        self.relu = nn.ReLU(inplace=True)
        self.out_channels = 512

    def _make_layer(self, inplanes, planes, convs_layers):
        layers = []
        for _ in range(convs_layers):
            conv2d = nn.Conv2d(inplanes, planes, kernel_size=3, padding=1)
            layers += [conv2d, nn.ReLU(inplace=True)]
            inplanes = planes
        layers += [nn.MaxPool2d(kernel_size=2, stride=2, return_indices=True)]
        return nn.Sequential(*layers)

    def forward(self, x):
        out, max_idx_1 = self.layer1(x)
        out, max_idx_2 = self.layer2(out)
        out, max_idx_3 = self.layer3(out)
        out, max_idx_4 = self.layer4(out)
        out, max_idx_5 = self.layer5(out)
        out = self.conv6(out)
        out = self.relu(out)
        return {'out': out, 'max_idx_1': max_idx_1, 'max_idx_2': max_idx_2, 'max_idx_3': max_idx_3,
                'max_idx_4': max_idx_4, 'max_idx_5': max_idx_5}


class PlainDecoder(nn.Module):
    def __init__(self, in_channels=512):
        super().__init__()
        self.deconv6_1 = nn.Conv2d(in_channels, 512, kernel_size=1)
        self.deconv5_1 = nn.Conv2d(512, 512, kernel_size=5, padding=2)
        self.deconv4_1 = nn.Conv2d(512, 256, kernel_size=5, padding=2)
        self.deconv3_1 = nn.Conv2d(256, 128, kernel_size=5, padding=2)
        self.deconv2_1 = nn.Conv2d(128, 64, kernel_size=5, padding=2)
        self.deconv1_1 = nn.Conv2d(64, 64, kernel_size=5, padding=2)
        self.deconv1 = nn.Conv2d(64, 1, kernel_size=5, padding=2)
        self.relu = nn.ReLU(inplace=True)
        self.max_unpool2d = nn.MaxUnpool2d(kernel_size=2, stride=2)

    def forward(self, inputs):
        max_unpool2d = self.max_unpool2d
        out = self.relu(self.deconv6_1(inputs['out']))
        out = max_unpool2d(out, inputs['max_idx_5'])
        out = self.relu(self.deconv5_1(out))
        out = max_unpool2d(out, inputs['max_idx_4'])
        out = self.relu(self.deconv4_1(out))
        out = max_unpool2d(out, inputs['max_idx_3'])
        out = self.relu(self.deconv3_1(out))
        out = max_unpool2d(out, inputs['max_idx_2'])
        out = self.relu(self.deconv2_1(out))
        out = max_unpool2d(out, inputs['max_idx_1'])
        out = self.relu(self.deconv1_1(out))
        raw_alpha = self.deconv1(out)
        return raw_alpha


class PlainRefiner(nn.Module):
    def __init__(self, conv_channels=64):
        super().__init__()
        self.refine_conv1 = nn.Conv2d(4, conv_channels, kernel_size=3, padding=1)
        self.refine_conv2 = nn.Conv2d(conv_channels, conv_channels, kernel_size=3, padding=1)
        self.refine_conv3 = nn.Conv2d(conv_channels, conv_channels, kernel_size=3, padding=1)
        self.refine_pred = nn.Conv2d(conv_channels, 1, kernel_size=3, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x, raw_alpha):
        out = self.relu(self.refine_conv1(x))
        out = self.relu(self.refine_conv2(out))
        out = self.relu(self.refine_conv3(out))
        raw_refine = self.refine_pred(out)
        pred_refine = torch.sigmoid(raw_alpha + raw_refine)
        return pred_refine


class SimpleEncoderDecoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = VGG16(4)
        self.decoder = PlainDecoder(self.encoder.out_channels)

    def forward(self, x):
        return self.decoder(self.encoder(x))


class DIM(nn.Module):
    """mmagic.models.editors.dim.DIM in 'predict' mode: MattorPreprocessor (mean/std above,
    proc_trimap='rescale_to_zero_one'), test_cfg resize_method='pad', resize_mode='reflect',
    size_divisor=32, refine as the stage's config sets it (stage 1: no refiner, refine=False)."""

    def __init__(self, refiner=True):
        super().__init__()
        self.backbone = SimpleEncoderDecoder()
        if refiner:
            self.refiner = PlainRefiner()
        self.refine = refiner

    def _forward(self, x, *, refine=True):
        raw_alpha = self.backbone(x)
        pred_alpha = raw_alpha.sigmoid()
        if refine and hasattr(self, 'refiner'):
            refine_input = torch.cat((x[:, :3, :, :], pred_alpha), 1)
            pred_refine = self.refiner(refine_input, raw_alpha)
        else:
            pred_refine = torch.zeros([])
        return pred_alpha, pred_refine

    def _forward_test(self, inputs):
        pred_alpha, pred_refine = self._forward(inputs)
        if self.refine:
            return pred_refine
        else:
            return pred_alpha

    def predict(self, merged_bgr: np.ndarray, trimap: np.ndarray) -> torch.Tensor:
        """merged H x W x 3 uint8 BGR as LoadImageFromFile reads it, grey trimap H x W uint8 -> the
        uint8 alpha BaseMattor.postprocess gives."""
        batch_trimaps = torch.from_numpy(trimap)[None, None]
        return predict(self._forward_test, merged_bgr, trimap, batch_trimaps / 255.0)


def get_unknown_tensor(trimap, unknown_value=128 / 255):
    if trimap.shape[1] == 3:
        weight = trimap[:, 1:2, :, :].float()
    else:
        weight = trimap.eq(unknown_value).float()
    return weight


def mask_reduce_loss(loss, weight=None, reduction='mean', sample_wise=False):
    if weight is not None:
        assert weight.dim() == loss.dim()
        assert weight.size(1) == 1 or weight.size(1) == loss.size(1)
        loss = loss * weight
    if weight is None or reduction == 'sum':
        loss = loss.mean() if reduction == 'mean' else loss.sum()
    elif reduction == 'mean':
        if weight.size(1) == 1:
            weight = weight.expand_as(loss)
        eps = 1e-12
        if sample_wise:
            weight = weight.sum(dim=[1, 2, 3], keepdim=True)
            loss = (loss / (weight + eps)).sum() / weight.size(0)
        else:
            loss = loss.sum() / (weight.sum() + eps)
    return loss


def charbonnier_loss(pred, target, weight=None, eps=1e-12):
    return mask_reduce_loss(torch.sqrt((pred - target) ** 2 + eps), weight)


def charbonnier_comp_loss(pred_alpha, fg, bg, ori_merged, weight=None, eps=1e-12):
    pred_merged = pred_alpha * fg + (1. - pred_alpha) * bg
    if weight is not None:
        weight = weight.expand(-1, 3, -1, -1)
    return charbonnier_loss(pred_merged, ori_merged, weight, eps=eps)


def forward_train_losses(pred_alpha, pred_refine, trimap, gt_alpha, gt_fg, gt_bg, gt_merged, train_backbone,
                         train_refiner):
    """DIM._forward_train's losses from its predictions (loss_alpha and loss_comp weigh 0.5,
    loss_refine 1, as configs/dim/*.py set them)."""
    weight = get_unknown_tensor(trimap, unknown_value=128 / 255)
    losses = dict()
    if train_backbone:
        losses['loss_alpha'] = 0.5 * charbonnier_loss(pred_alpha, gt_alpha, weight)
        losses['loss_comp'] = 0.5 * charbonnier_comp_loss(pred_alpha, gt_fg, gt_bg, gt_merged, weight)
    if train_refiner:
        losses['loss_refine'] = 1.0 * charbonnier_loss(pred_refine, gt_alpha, weight)
    return losses
