"""The result a query-synthesis strategy returns instead of pool indices.

modAL lets a strategy return new instances rather than pool indices ("query
synthesis"). In skal such a strategy returns a :class:`Synthesized`, and
:meth:`skal.ActiveLearner.query` then returns ``(None, X_synth)``: ``None`` in place
of the indices says that the samples are new, not rows of the pool. With
``return_labels=True`` it also returns the labels that the strategy's labelling tool
gave (``None`` if it had none), so a campaign can go on with
``learner.teach(X_synth, y_synth)``::

    indices, X_new, y_new = learner.query(X_pool, n_instances=10, return_labels=True)
    if indices is None:                       # synthesized samples
        y_new = y_new if y_new is not None else ask_an_expert(X_new)
    else:                                     # pool samples: the pool is unlabelled
        y_new = ask_an_expert(X_new)
    learner.teach(X_new, y_new)
"""

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..exceptions import SkalValueError
from ..utils.validation import check_images

__all__ = ["Synthesized"]


@dataclass(frozen=True, eq=False)
class Synthesized:
    """New samples made by a query strategy (query synthesis), with optional labels.

    Parameters
    ----------
    X : ndarray of shape (n, H, W) or (n, C, H, W) (or (n, n_features))
        The synthesized samples, in the layout and dtype of the learner's training
        data so that ``learner.teach(X, y)`` accepts them.
    y : ndarray of shape (n,) or (n, n_labels), or None
        Their labels, when the strategy has a labelling tool; ``None`` otherwise.
    scores : ndarray of shape (n,) or None
        The strategy's score of each sample (what ``return_metrics=True`` returns).

    Notes
    -----
    Not a tuple on purpose: it cannot be mistaken for modAL's ``(indices, scores)``.
    """

    X: Any
    y: Any = None
    scores: Any = None

    def __post_init__(self):
        X = check_images(self.X, name="Synthesized.X", ndims=(2, 3, 4), allow_dataset=False)
        object.__setattr__(self, "X", X)
        if self.y is not None:
            y = np.asarray(self.y)
            if y.ndim not in (1, 2) or len(y) != len(X):
                raise SkalValueError(
                    f"Synthesized.y has shape {y.shape} for {len(X)} samples; give one "
                    "label (or one multi-hot row) per synthesized sample."
                )
            object.__setattr__(self, "y", y)
        if self.scores is not None:
            scores = np.asarray(self.scores)
            if scores.shape[:1] != (len(X),):
                raise SkalValueError(
                    f"Synthesized.scores has shape {scores.shape} for {len(X)} samples."
                )
            object.__setattr__(self, "scores", scores)

    def __len__(self):
        return len(self.X)
