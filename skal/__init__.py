"""skal: scikit-learn-native active learning for medical image classification."""

from .exceptions import NotFittedError, SkalError, SkalTypeError, SkalValueError
from .learner import ActiveLearner, Committee
from .nets import CNNClassifier, MultiLabelCNNClassifier
from .estimator import ActiveLearningClassifier
from .campaign import Campaign

__version__ = "0.1.0"

__all__ = [
    "ActiveLearner",
    "Committee",
    "CNNClassifier",
    "MultiLabelCNNClassifier",
    "ActiveLearningClassifier",
    "Campaign",
    "SkalError",
    "SkalValueError",
    "SkalTypeError",
    "NotFittedError",
    "__version__",
]
