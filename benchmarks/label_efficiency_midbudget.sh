#!/usr/bin/env bash
# Issue 14 mid-budget run: BloodMNIST (fixed stratified 5,000-image pool), pre-trained start,
# 200 -> 1,000 labels in batches of 100, one JSON per seed; merge with label_efficiency_report.py.
# FINETUNE=linear (default) | auto | full sets the classifier's finetune=.
#   benchmarks/label_efficiency_midbudget.sh "0 1 2 3 4" [strategies] [tag] [extra args...]
set -u
seeds=$1
ALL=random,margin,entropy,badge,coreset,expected_gradnorm,tdgf,typiclust,probcover,typiclust_then_margin,aift,ensemble_vote_entropy
strategies=${2:-$ALL}
tag=${3:-}
shift 3 2>/dev/null || shift $#
here=$(cd "$(dirname "$0")" && pwd)
DATA_DIR=${SKAL_DATA_DIR:-$here/../../shared/data}
for seed in $seeds; do
  python "$here/label_efficiency.py" --data "$DATA_DIR/medmnist/bloodmnist.npz" --subsample 5000 \
    --pretrain simclr --initial-selection typiclust --finetune ${FINETUNE:-linear} --strategies "$strategies" \
    --first-seed "$seed" --seeds 1 --initial 200 --batch 100 --rounds 8 --reference-seeds 0 \
    --n-jobs ${N_JOBS:-2} --name "le14_mid_blood${tag}_seed${seed}" "$@"
done
