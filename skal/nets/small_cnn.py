"""A small convolutional network for 8-64 px medical images."""

from torch import nn

__all__ = ["SmallCNN"]


class SmallCNN(nn.Module):
    """Small CNN: ``[conv3x3-BN-ReLU] x convs_per_block, max-pool`` per width, then
    global average pooling, an optional hidden layer, dropout and a final ``nn.Linear``.

    The penultimate features (the input of ``fc``) are what skal's embedding and
    gradient strategies read.

    Parameters
    ----------
    in_channels : int
        Image channels (1 for grey-scale X-ray / ultrasound / CT slices).
    n_outputs : int
        Logits produced (classes, or labels for multi-label tasks).
    widths : sequence of int
        Channels of each convolutional block; each block halves the resolution.
    convs_per_block : int
        3x3 convolutions per block.
    hidden : int or None
        Width of the fully connected layer before ``fc``; ``None`` feeds the pooled
        features straight into ``fc``.
    dropout : float
        Dropout before ``fc`` (also what MC-dropout strategies switch on).
    """

    # Its forward only uses layout-agnostic ops (no .view), so skal's classifiers store
    # it channels_last by default (memory_format="auto"): faster convolutions on CPU
    # (benchmarks/README.md, "Layout").
    supports_channels_last = True
    # its only dropout layer, ``dropout``, feeds ``fc``: MC dropout computes the
    # features once and masks only the head's input (skal.query.bayesian)
    head_dropout = True

    def __init__(self, in_channels=1, n_outputs=2, widths=(16, 32, 64), convs_per_block=1,
                 hidden=64, dropout=0.25):
        super().__init__()
        layers = []
        channels = in_channels
        for width in widths:
            for _ in range(convs_per_block):
                layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False),
                           nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
                channels = width
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        if hidden:
            self.hidden = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True))
            channels = hidden
        else:
            self.hidden = nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, n_outputs)

    def forward(self, x):
        x = self.pool(self.features(x)).flatten(1)
        return self.fc(self.dropout(self.hidden(x)))
