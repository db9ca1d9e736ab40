"""A multi-label chest X-ray campaign with TDGF on the NIH ChestX-ray14 sample.

14 thoracic findings per image (sigmoid outputs, BCEWithLogitsLoss), a patient-level
split (images of one patient never on both sides), and TDGF (Chen et al., IEEE JBHI
2025) choosing which radiographs the radiologist reads next. Needs
``cxr14_sample_28.npz``: pass its path, or set SKAL_DATA_DIR.

    python examples/chest_xray_multilabel.py [path/to/cxr14_sample_28.npz]
"""

import os
import sys
from pathlib import Path

import numpy as np

from skal import ActiveLearner, MultiLabelCNNClassifier
from skal.data import load_image_npz, patient_split
from skal.metrics import evaluate_classifier
from skal.query import TDGF

default = Path(os.environ.get("SKAL_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
path = sys.argv[1] if len(sys.argv) > 1 else default / "cxr14_sample" / "cxr14_sample_28.npz"
data = load_image_npz(path)
train, test = patient_split(data.patient_ids, test_size=0.25, random_state=0)
print(f"{len(train)} pool images, {len(test)} test images, "
      f"{len(np.unique(data.patient_ids[train]))} / {len(np.unique(data.patient_ids[test]))} patients")

rng = np.random.default_rng(0)
start = rng.choice(train, 40, replace=False)
learner = ActiveLearner(
    MultiLabelCNNClassifier(random_state=0),
    TDGF(random_state=0),                             # proxy derived from the target
    X_training=data.X[start], y_training=data.y[start])
pool = np.setdiff1d(train, start)

for round_ in range(4):
    scores = evaluate_classifier(learner, data.X[test], data.y[test])
    print(f"round {round_}: {len(learner.y_training_)} labelled images, "
          f"macro AUROC {scores['auroc']:.3f}")
    idx, X_query = learner.query(data.X[pool], n_instances=20)
    findings = data.y[pool[idx]]                       # the radiologist's multi-hot labels
    learner.teach(X_query, findings)
    pool = np.delete(pool, idx)

top = learner.query_strategy.last_scores_.argsort()[::-1][:3]
print("highest TDGF scores of the last round:", learner.query_strategy.last_scores_[top].round(4))
