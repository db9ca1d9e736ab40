"""A ResNet-18-style network for 28-64 px images (He et al., CVPR 2016), written here so
skal does not depend on torchvision."""

from torch import nn

__all__ = ["ResNet18", "BasicBlock"]


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (the ResNet-18/34 block)."""

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels))
        else:
            self.shortcut = nn.Identity()

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 layout adapted to small images: a 3x3 stride-1 stem without max-pool
    (as in CIFAR ResNets), four stages of ``blocks`` basic blocks, global average
    pooling, dropout and a final ``nn.Linear`` named ``fc``.

    Parameters
    ----------
    in_channels : int
        Image channels.
    n_outputs : int
        Logits produced.
    widths : sequence of 4 int
        Channels of the four stages (torchvision's ResNet-18 uses 64, 128, 256, 512).
    blocks : sequence of 4 int
        Basic blocks per stage (2, 2, 2, 2 for ResNet-18).
    dropout : float
        Dropout before ``fc``.
    """

    # Its forward only uses layout-agnostic ops (no .view), so skal's classifiers store
    # it channels_last by default (memory_format="auto"): faster convolutions on CPU
    # (benchmarks/README.md, "Layout").
    supports_channels_last = True
    # its only dropout layer, ``dropout``, feeds ``fc``: MC dropout computes the
    # features once and masks only the head's input (skal.query.bayesian)
    head_dropout = True

    def __init__(self, in_channels=1, n_outputs=2, widths=(64, 128, 256, 512),
                 blocks=(2, 2, 2, 2), dropout=0.0):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        stages = []
        channels = widths[0]
        for i, (width, n_blocks) in enumerate(zip(widths, blocks)):
            stride = 1 if i == 0 else 2
            for j in range(n_blocks):
                stages.append(BasicBlock(channels, width, stride if j == 0 else 1))
                channels = width
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, n_outputs)

    def forward(self, x):
        x = self.pool(self.stages(self.stem(x))).flatten(1)
        return self.fc(self.dropout(x))
