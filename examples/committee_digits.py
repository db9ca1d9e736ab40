"""Query by committee on the bundled digits images (runs in well under a minute).

Five CNNs that differ only in their seed form a committee (an ensemble, Beluch et al.
CVPR 2018); vote entropy picks the images they disagree on most.
"""

import numpy as np
from sklearn.model_selection import train_test_split

from skal import ActiveLearner, CNNClassifier, Committee
from skal.data import load_digits_images
from skal.query import vote_entropy_sampling
from skal.simulate import initial_indices

X, y = load_digits_images()
X_pool, X_test, y_pool, y_test = train_test_split(X, y, test_size=0.25, stratify=y,
                                                  random_state=0)
start = initial_indices(y_pool, 20, random_state=0)
members = [ActiveLearner(CNNClassifier(random_state=seed, min_steps=100),
                         X_training=X_pool[start], y_training=y_pool[start])
           for seed in range(5)]
committee = Committee(members, query_strategy=vote_entropy_sampling)
pool = np.setdiff1d(np.arange(len(y_pool)), start)

for round_ in range(4):
    print(f"round {round_}: {len(members[0].y_training_)} labels, "
          f"committee accuracy {committee.score(X_test, y_test):.3f}")
    idx, X_query = committee.query(X_pool[pool], n_instances=20)
    committee.teach(X_query, y_pool[pool[idx]])
    pool = np.delete(pool, idx)
