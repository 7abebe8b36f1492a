"""TEST-ONLY TRANSCRIPTION of the published AIM code (JizhiziLi/AIM, MIT licence, (c) 2021 Jizhizi
Li): the module tree and forward of core/network/AimNet.py and core/network/resnet_mp.py (the
ResNet-34 with max-pooling indices, built without its ImageNet file), the small functions of
core/util.py the tests compare against, and core/evaluate.py's training losses (on the CPU: its
.cuda() calls left out). It stands for the published code in the tests (key names,
shapes, the network's outputs, the fusions); nothing outside tests/ imports it.
"""
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def conv3x3(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    def __init__(self, layers=(3, 4, 6, 3)):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=1, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        for i in range(1, 6):
            setattr(self, f"maxpool{i}", nn.MaxPool2d(kernel_size=3, stride=2, padding=1, return_indices=True))
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1])
        self.layer3 = self._make_layer(256, layers[2])
        self.layer4 = self._make_layer(512, layers[3])
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, 1000)

    def _make_layer(self, planes, blocks):
        downsample = None
        if self.inplanes != planes:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes, kernel_size=1, bias=False),
                                       nn.BatchNorm2d(planes))
        layers = [BasicBlock(self.inplanes, planes, 1, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)


def conv_up_psp(in_channels, out_channels, up_sample):
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels),
                         nn.ReLU(inplace=True), nn.Upsample(scale_factor=up_sample, mode='bilinear'))


class SELayer(nn.Module):
    def __init__(self, channel, reduction=16):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Linear(channel, channel // reduction, bias=False), nn.ReLU(inplace=True),
                                nn.Linear(channel // reduction, channel, bias=False), nn.Sigmoid())

    def forward(self, x):
        b, c, _, _ = x.size()
        y = self.avg_pool(x).view(b, c)
        y = self.fc(y).view(b, c, 1, 1)
        return x * y.expand_as(x)


class PSPModule(nn.Module):
    def __init__(self, features, out_features=1024, sizes=(1, 2, 3, 6)):
        super().__init__()
        self.stages = nn.ModuleList([nn.Sequential(nn.AdaptiveAvgPool2d(output_size=(size, size)),
                                                   nn.Conv2d(features, features, kernel_size=1, bias=False))
                                     for size in sizes])
        self.bottleneck = nn.Conv2d(features * (len(sizes) + 1), out_features, kernel_size=1)
        self.relu = nn.ReLU()

    def forward(self, feats):
        h, w = feats.size(2), feats.size(3)
        priors = [F.interpolate(input=stage(feats), size=(h, w), mode='bilinear') for stage in self.stages] + [feats]
        return self.relu(self.bottleneck(torch.cat(priors, 1)))


def _block(*convs, dilation=1, up=False):
    """The published decoders' literal [Conv2d, BatchNorm2d, ReLU] * n (+ Upsample) lists."""
    layers = []
    for cin, cout in convs:
        layers += [nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation), nn.BatchNorm2d(cout),
                   nn.ReLU(inplace=True)]
    if up:
        layers.append(nn.Upsample(scale_factor=2, mode='bilinear'))
    return nn.Sequential(*layers)


class AimNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.resnet = ResNet()
        self.encoder0 = nn.Sequential(self.resnet.conv1, self.resnet.bn1, self.resnet.relu)
        self.mp0 = self.resnet.maxpool1
        self.encoder1 = nn.Sequential(self.resnet.layer1)
        self.mp1 = self.resnet.maxpool2
        self.encoder2 = self.resnet.layer2
        self.mp2 = self.resnet.maxpool3
        self.encoder3 = self.resnet.layer3
        self.mp3 = self.resnet.maxpool4
        self.encoder4 = self.resnet.layer4
        self.mp4 = self.resnet.maxpool5
        self.psp_module = PSPModule(512, 512, (1, 3, 5))
        self.psp4 = conv_up_psp(512, 256, 2)
        self.psp3 = conv_up_psp(512, 128, 4)
        self.psp2 = conv_up_psp(512, 64, 8)
        self.psp1 = conv_up_psp(512, 64, 16)
        self.decoder4_g = _block((1024, 512), (512, 512), (512, 256), up=True)
        self.decoder4_g_se = SELayer(256)
        self.decoder3_g = _block((512, 256), (256, 256), (256, 128), up=True)
        self.decoder3_g_se = SELayer(128)
        self.decoder2_g = _block((256, 128), (128, 128), (128, 64), up=True)
        self.decoder2_g_se = SELayer(64)
        self.decoder1_g = _block((128, 64), (64, 64), (64, 64), up=True)
        self.decoder1_g_se = SELayer(64)
        self.decoder0_g = _block((128, 64), (64, 64), up=True)
        self.decoder0_g_spatial = nn.Conv2d(2, 1, 7, padding=3)
        self.decoder0_g_se = SELayer(64)
        self.decoder_final_g = nn.Conv2d(64, 3, 3, padding=1)
        self.bridge_block = _block((512, 512), (512, 512), (512, 512), dilation=2)
        self.decoder4_l = _block((1024, 512), (512, 512), (512, 256))
        self.decoder3_l = _block((512, 256), (256, 256), (256, 128))
        self.decoder2_l = _block((256, 128), (128, 128), (128, 64))
        self.decoder1_l = _block((128, 64), (64, 64), (64, 64))
        self.decoder0_l = _block((128, 64), (64, 64))
        self.decoder_final_l = nn.Conv2d(64, 1, 3, padding=1)

    def forward(self, input):
        e0 = self.encoder0(input)
        e0p, id0 = self.mp0(e0)
        e1p, id1 = self.mp1(e0p)
        e1 = self.encoder1(e1p)
        e2p, id2 = self.mp2(e1)
        e2 = self.encoder2(e2p)
        e3p, id3 = self.mp3(e2)
        e3 = self.encoder3(e3p)
        e4p, id4 = self.mp4(e3)
        e4 = self.encoder4(e4p)
        psp = self.psp_module(e4)
        d4_g = self.decoder4_g_se(self.decoder4_g(torch.cat((psp, e4), 1)))
        d3_g = self.decoder3_g_se(self.decoder3_g(torch.cat((self.psp4(psp), d4_g), 1)))
        d2_g = self.decoder2_g_se(self.decoder2_g(torch.cat((self.psp3(psp), d3_g), 1)))
        d1_g = self.decoder1_g_se(self.decoder1_g(torch.cat((self.psp2(psp), d2_g), 1)))
        d0_g = self.decoder0_g(torch.cat((self.psp1(psp), d1_g), 1))
        d0_g_avg = torch.mean(d0_g, dim=1, keepdim=True)
        d0_g_max, _ = torch.max(d0_g, dim=1, keepdim=True)
        d0_g_spatial_sigmoid = torch.sigmoid(self.decoder0_g_spatial(torch.cat([d0_g_avg, d0_g_max], dim=1)))
        d0_g = self.decoder_final_g(self.decoder0_g_se(d0_g))
        global_sigmoid = torch.sigmoid(d0_g)
        bb = self.bridge_block(e4)
        d4_l = self.decoder4_l(torch.cat((bb, e4), 1))
        d3_l = self.decoder3_l(torch.cat((F.max_unpool2d(d4_l, id4, kernel_size=2, stride=2), e3), 1))
        d2_l = self.decoder2_l(torch.cat((F.max_unpool2d(d3_l, id3, kernel_size=2, stride=2), e2), 1))
        d1_l = self.decoder1_l(torch.cat((F.max_unpool2d(d2_l, id2, kernel_size=2, stride=2), e1), 1))
        d0_l = F.max_unpool2d(d1_l, id1, kernel_size=2, stride=2)
        d0_l = F.max_unpool2d(d0_l, id0, kernel_size=2, stride=2)
        d0_l = self.decoder0_l(torch.cat((d0_l, e0), 1))
        d0_l = d0_l + d0_l * d0_g_spatial_sigmoid
        local_sigmoid = torch.sigmoid(self.decoder_final_l(d0_l))
        return global_sigmoid, local_sigmoid, get_masked_local_from_global(global_sigmoid, local_sigmoid)


def gen_trimap_from_segmap_e2e(segmap):
    trimap = np.argmax(segmap, axis=1)[0]
    trimap = trimap.astype(np.int64)
    trimap[trimap == 1] = 128
    trimap[trimap == 2] = 255
    return trimap.astype(np.uint8)


def get_masked_local_from_global(global_sigmoid, local_sigmoid):
    values, index = torch.max(global_sigmoid, 1)
    index = index[:, None, :, :].float()
    trimap_mask = index.clone()
    trimap_mask[trimap_mask == 2] = 0
    fg_mask = index.clone()
    fg_mask[fg_mask == 1] = 0
    fg_mask[fg_mask == 2] = 1
    return local_sigmoid * trimap_mask + fg_mask


def get_masked_local_from_global_test(global_result, local_result):
    weighted_global = np.ones(global_result.shape)
    weighted_global[global_result == 255] = 0
    weighted_global[global_result == 0] = 0
    return global_result * (1. - weighted_global) / 255 + local_result * weighted_global


MAX_SIZE_H = MAX_SIZE_W = 1600
SHORTER_PATH_LIMITATION = 1080


def inference_once(model, scale_img):
    """core/test.py's inference_once on the CPU, torchvision's Normalize written as its arithmetic."""
    input_t = torch.from_numpy(scale_img.astype(np.float32)[:, :, :]).permute(2, 0, 1)
    input_t = input_t / 255.0
    mean = torch.as_tensor([0.485, 0.456, 0.406], dtype=input_t.dtype)[:, None, None]
    std = torch.as_tensor([0.229, 0.224, 0.225], dtype=input_t.dtype)[:, None, None]
    input_t = input_t.sub(mean).div(std).unsqueeze(0)
    pred_global, pred_local, pred_fusion = model(input_t)
    pred_global = gen_trimap_from_segmap_e2e(pred_global.data.cpu().numpy())
    return pred_global, pred_local.data.cpu().numpy()[0, 0, :, :], pred_fusion.data.cpu().numpy()[0, 0, :, :]


def inference_img(test_choice, model, img, resize):
    """core/test.py's inference_img; `resize` stands for skimage.transform.resize."""
    h, w, c = img.shape
    if test_choice == 'HYBRID':
        resize_h, resize_w = int(h * (1 / 4)), int(w * (1 / 4))
        new_h = min(MAX_SIZE_H, resize_h - (resize_h % 32))
        new_w = min(MAX_SIZE_W, resize_w - (resize_w % 32))
        scale_img = resize(img, (new_h, new_w)) * 255.0
        pred_coutour_1, pred_retouching_1, pred_fusion_1 = inference_once(model, scale_img)
        pred_coutour_1 = resize(pred_coutour_1, (h, w)) * 255.0
        resize_h, resize_w = int(h * (1 / 2)), int(w * (1 / 2))
        new_h = min(MAX_SIZE_H, resize_h - (resize_h % 32))
        new_w = min(MAX_SIZE_W, resize_w - (resize_w % 32))
        scale_img = resize(img, (new_h, new_w)) * 255.0
        pred_coutour_2, pred_retouching_2, pred_fusion_2 = inference_once(model, scale_img)
        pred_retouching_2 = resize(pred_retouching_2, (h, w))
        return get_masked_local_from_global_test(pred_coutour_1, pred_retouching_2)
    resize_h, resize_w = int(h / 4), int(w / 4)
    new_h = min(MAX_SIZE_H, resize_h - (resize_h % 32))
    new_w = min(MAX_SIZE_W, resize_w - (resize_w % 32))
    scale_img = resize(img, (new_h, new_w)) * 255.0
    pred_global, pred_local, pred_fusion = inference_once(model, scale_img)
    return resize(pred_fusion, (h, w))


def test_sample(test_choice, model, img, resize, limit=SHORTER_PATH_LIMITATION):
    """core/test.py's test_samples for one RGB image: the alpha it writes."""
    import cv2
    h, w, c = img.shape
    if min(h, w) > limit:
        if h >= w:
            new_w, new_h = limit, int(limit * h / w)
        else:
            new_h, new_w = limit, int(limit * w / h)
        img = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    with torch.no_grad():
        predict = inference_img(test_choice, model, img, resize)
    predict = predict * 255.0
    predict = cv2.resize(predict, (w, h), interpolation=cv2.INTER_LINEAR)
    return predict.astype(np.uint8)


def gen_trimap_with_dilate(alpha, kernel_size):
    """core/util.py's (gen_usr_with_dilate computes the same)."""
    import cv2
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (kernel_size, kernel_size))
    fg_and_unknown = np.array(np.not_equal(alpha, 0).astype(np.float32))
    fg = np.array(np.equal(alpha, 255).astype(np.float32))
    dilate = cv2.dilate(fg_and_unknown, kernel, iterations=1)
    erode = cv2.erode(fg, kernel, iterations=1)
    trimap = erode * 255 + (dilate - erode) * 128
    return trimap.astype(np.uint8)


# core/evaluate.py: the training losses
def get_crossentropy_loss(gt, pre):
    gt_copy = gt.clone()
    gt_copy[gt_copy == 0] = 0
    gt_copy[gt_copy == 255] = 2
    gt_copy[gt_copy > 2] = 1
    gt_copy = gt_copy.long()
    gt_copy = gt_copy[:, 0, :, :]
    criterion = nn.CrossEntropyLoss()
    return criterion(pre, gt_copy)


def get_alpha_loss(predict, alpha, trimap):
    weighted = torch.zeros(trimap.shape)
    weighted[trimap == 128] = 1.
    alpha_f = alpha / 255.
    diff = predict - alpha_f
    diff = diff * weighted
    alpha_loss = torch.sqrt(diff ** 2 + 1e-12)
    return alpha_loss.sum() / (weighted.sum() + 1.)


def get_alpha_loss_whole_img(predict, alpha):
    weighted = torch.ones(alpha.shape)
    alpha_f = alpha / 255.
    diff = predict - alpha_f
    alpha_loss = torch.sqrt(diff ** 2 + 1e-12)
    return alpha_loss.sum() / (weighted.sum())


def build_gauss_kernel(size=5, sigma=1.0, n_channels=1):
    if size % 2 != 1:
        raise ValueError("kernel size must be uneven")
    grid = np.float32(np.mgrid[0:size, 0:size].T)
    gaussian = lambda x: np.exp((x - size // 2) ** 2 / (-2 * sigma ** 2)) ** 2
    kernel = np.sum(gaussian(grid), axis=2)
    kernel /= np.sum(kernel)
    kernel = np.tile(kernel, (n_channels, 1, 1))
    return torch.FloatTensor(kernel[:, None, :, :])


def conv_gauss(img, kernel):
    n_channels, _, kw, kh = kernel.shape
    img = F.pad(img, (kw // 2, kh // 2, kw // 2, kh // 2), mode='replicate')
    return F.conv2d(img, kernel, groups=n_channels)


def laplacian_pyramid(img, kernel, max_levels=5):
    current = img
    pyr = []
    for level in range(max_levels):
        filtered = conv_gauss(current, kernel)
        diff = current - filtered
        pyr.append(diff)
        current = F.avg_pool2d(filtered, 2)
    pyr.append(current)
    return pyr


def get_laplacian_loss(predict, alpha, trimap):
    weighted = torch.zeros(trimap.shape)
    weighted[trimap == 128] = 1.
    alpha_f = alpha / 255.
    alpha_f = alpha_f.clone() * weighted
    predict = predict.clone() * weighted
    gauss_kernel = build_gauss_kernel(size=5, sigma=1.0, n_channels=1)
    pyr_alpha = laplacian_pyramid(alpha_f, gauss_kernel, 5)
    pyr_predict = laplacian_pyramid(predict, gauss_kernel, 5)
    return sum(F.l1_loss(a, b) for a, b in zip(pyr_alpha, pyr_predict))


def get_laplacian_loss_whole_img(predict, alpha):
    alpha_f = alpha / 255.
    gauss_kernel = build_gauss_kernel(size=5, sigma=1.0, n_channels=1)
    pyr_alpha = laplacian_pyramid(alpha_f, gauss_kernel, 5)
    pyr_predict = laplacian_pyramid(predict, gauss_kernel, 5)
    return sum(F.l1_loss(a, b) for a, b in zip(pyr_alpha, pyr_predict))


def get_composition_loss_whole_img(img, alpha, fg, bg, predict):
    weighted = torch.ones(alpha.shape)
    predict_3 = torch.cat((predict, predict, predict), 1)
    comp = predict_3 * fg + (1. - predict_3) * bg
    comp_loss = torch.sqrt((comp - img) ** 2 + 1e-12)
    return comp_loss.sum() / (weighted.sum())


def training_loss(train_data, ori, mask, trimap_or_usr, fg, bg, predict_global, predict_local, predict_fusion):
    """core/train.py's loss of one batch for train_data 'sod' or 'matting'."""
    if train_data == 'sod':
        return (get_crossentropy_loss(trimap_or_usr, predict_global)
                + get_alpha_loss(predict_local, mask, trimap_or_usr)
                + get_alpha_loss_whole_img(predict_fusion, mask))
    usr = trimap_or_usr
    loss_global = get_crossentropy_loss(usr, predict_global)
    loss_local = get_alpha_loss(predict_local, mask, usr) + get_laplacian_loss(predict_local, mask, usr)
    loss_fusion_alpha = (get_alpha_loss_whole_img(predict_fusion, mask)
                         + get_laplacian_loss_whole_img(predict_fusion, mask))
    loss_fusion_comp = get_composition_loss_whole_img(ori, mask, fg, bg, predict_fusion)
    return loss_global + loss_local + loss_fusion_alpha + loss_fusion_comp
