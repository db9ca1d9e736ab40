#!/usr/bin/env bash
# Tables of the follow-up runs (default recipe with finetune="auto", mid-budget, BALD on
# the pre-trained start) from the per-seed JSON files present in benchmarks/results.
set -eu
here=$(cd "$(dirname "$0")" && pwd); R=$here/results
runs() { for f in "$R"/$1_seed*.json; do [ -e "$f" ] && echo "$2=$f"; done; }
python "$here/label_efficiency_report.py" --name le13_auto_pneumoniamnist \
  --title "PneumoniaMNIST: default recipe (finetune=auto) vs linear head vs scratch" \
  $(runs le13_pneumonia_simclr_typiclust_start_auto auto) \
  $(runs le13_pneumonia_simclr_typiclust_start linear) \
  scratch=$R/label_efficiency_pneumoniamnist.json
for metric in auroc accuracy; do
  python "$here/label_efficiency_report.py" --name le13_auto_bloodmnist_$metric --metric $metric \
    --title "BloodMNIST (5,000-image pool): test $metric, default recipe (finetune=auto)" \
    $(runs le13_blood_simclr_typiclust_start_auto auto) \
    $(runs le13_blood_simclr_typiclust_start linear) $(runs le13_blood_scratch scratch)
done
for metric in auroc accuracy; do
  python "$here/label_efficiency_report.py" --name le14_mid_bloodmnist_$metric --metric $metric \
    --title "BloodMNIST mid-budget (200-1,000 labels): test $metric" \
    $(runs le14_mid_blood linear) $(runs le14_mid_blood_auto auto)
done
python "$here/label_efficiency_report.py" --name le14_bald_pneumoniamnist \
  --title "PneumoniaMNIST: BALD on the pre-trained start (dropout 0.25)" \
  $(runs le14_bald_pneumonia auto_dropout)
python "$here/label_efficiency_report.py" --name le14_bald_bloodmnist \
  --title "BloodMNIST: BALD on the pre-trained start (dropout 0.25)" \
  $(runs le14_bald_blood auto_dropout)
