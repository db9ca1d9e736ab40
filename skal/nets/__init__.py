"""Networks: torch modules and the skorch classifiers that wrap them."""

from .classifier import CNNClassifier
from .head import find_final_linear
from .multilabel import MultiLabelCNNClassifier
from .resnet import ResNet18
from .small_cnn import SmallCNN
from .vae import VAE, ConvVAE

__all__ = ["CNNClassifier", "MultiLabelCNNClassifier", "SmallCNN", "ResNet18",
           "find_final_linear"]
__all__ += ["VAE", "ConvVAE"]
