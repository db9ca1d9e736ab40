#!/usr/bin/env bash
# Merge every per-seed issue-13 run present in benchmarks/results into the two tables
# (AUROC; BloodMNIST also accuracy). Re-run when more seeds have finished.
set -eu
here=$(cd "$(dirname "$0")" && pwd); R=$here/results
runs() { for f in "$R"/le13_$1_$2_seed*.json; do [ -e "$f" ] && echo "$3=$f"; done; }
python "$here/label_efficiency_report.py" --name le13_pneumoniamnist \
  --title "PneumoniaMNIST: test AUROC vs labels" \
  $(runs pneumonia simclr simclr) $(runs pneumonia simclr_typiclust_start default) \
  scratch=$R/label_efficiency_pneumoniamnist.json
for metric in auroc accuracy; do
  python "$here/label_efficiency_report.py" --name le13_bloodmnist_$metric --metric $metric \
    --title "BloodMNIST (5,000-image pool): test $metric vs labels" \
    $(runs blood simclr simclr) $(runs blood simclr_typiclust_start default) \
    $(runs blood scratch scratch)
done
