"""Active learning on PneumoniaMNIST with query / teach rounds.

An annotator is simulated by the held-back training labels. Needs
``pneumoniamnist.npz`` (MedMNIST v2): pass its path, or set SKAL_DATA_DIR.

    python examples/pneumonia_active_learning.py [path/to/pneumoniamnist.npz]
"""

import os
import sys
from pathlib import Path

import numpy as np

from skal import ActiveLearner, CNNClassifier
from skal.data import load_medmnist
from skal.metrics import evaluate_classifier
from skal.query import margin_sampling
from skal.simulate import initial_indices

default = Path(os.environ.get("SKAL_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
path = sys.argv[1] if len(sys.argv) > 1 else default / "medmnist" / "pneumoniamnist.npz"
data = load_medmnist(path)

start = initial_indices(data.y_train, 10, random_state=0)        # 5 normal, 5 pneumonia
learner = ActiveLearner(CNNClassifier(random_state=0), margin_sampling,
                        X_training=data.X_train[start], y_training=data.y_train[start])
pool = np.setdiff1d(np.arange(len(data.y_train)), start)

for round_ in range(6):
    scores = evaluate_classifier(learner, data.X_test, data.y_test)
    print(f"round {round_}: {len(learner.y_training_):3d} labels, "
          f"test AUROC {scores['auroc']:.3f}, accuracy {scores['accuracy']:.3f}")
    idx, X_query = learner.query(data.X_train[pool], n_instances=10, random_state=round_)
    y_new = data.y_train[pool[idx]]                               # the expert's labels
    learner.teach(X_query, y_new)
    pool = np.delete(pool, idx)
