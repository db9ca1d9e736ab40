#!/usr/bin/env bash
# Issue 13 label-efficiency runs, one JSON per (data set, recipe, seed) so partial results
# survive; merge them with benchmarks/label_efficiency_report.py. Usage:
#   benchmarks/label_efficiency_issue13.sh pneumonia simclr "0 1 2 3 4" [strategies]
#   benchmarks/label_efficiency_issue13.sh blood scratch "0 1 2" random,margin
# FINETUNE=auto|full|linear (default linear: the issue-13 runs) sets the pre-trained recipe's
# finetune=.
set -u
data=$1; recipe=$2; seeds=$3
ALL=random,margin,entropy,badge,coreset,expected_gradnorm,tdgf,typiclust,probcover,typiclust_then_margin
strategies=${4:-$ALL}
tag=${5:-}
here=$(cd "$(dirname "$0")" && pwd)
DATA_DIR=${SKAL_DATA_DIR:-$here/../../shared/data}
case $data in
  pneumonia) args=(--data "$DATA_DIR/medmnist/pneumoniamnist.npz") ;;
  blood) args=(--data "$DATA_DIR/medmnist/bloodmnist.npz" --subsample 5000) ;;
esac
case $recipe in
  simclr) args+=(--pretrain simclr --initial-selection random --finetune ${FINETUNE:-linear}) ;;
  simclr_typiclust_start) args+=(--pretrain simclr --initial-selection typiclust --finetune ${FINETUNE:-linear}) ;;
  scratch) args+=(--initial-selection balanced) ;;
esac
first=1
for seed in $seeds; do
  refs=0; if [ $first = 1 ]; then refs=${REFS:-3}; fi; first=0
  python "$here/label_efficiency.py" "${args[@]}" --strategies "$strategies" \
    --first-seed "$seed" --seeds 1 --batch 19 --rounds 10 --reference-seeds $refs \
    --n-jobs ${N_JOBS:-2} --name "le13_${data}_${recipe}${tag}_seed${seed}"
done
