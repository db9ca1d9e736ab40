"""Self-supervised pre-training on the unlabelled pool (SimCLR) and its batched
augmentations."""

from .augment import ImageAugmenter
from .simclr import SimCLR, nt_xent_loss

__all__ = ["ImageAugmenter", "SimCLR", "nt_xent_loss"]
