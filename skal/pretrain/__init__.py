"""Self-supervised pre-training on the unlabelled pool (SimCLR) and its batched
augmentations."""

from .augment import ImageAugmenter

__all__ = ["ImageAugmenter"]
