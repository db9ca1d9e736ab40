"""Which historical proxy makes TDGF work: a short paired comparison on PneumoniaMNIST.

TDGF (Chen et al., IEEE JBHI 2025) scores the change of the proxy's final-layer gradient
flow between a historical proxy and the final one. Variants of the historical proxy:
``lag`` (one epoch before the end: a single optimizer step with few labels, the old
default), ``fraction`` (the snapshot after half of the proxy's training) and
``previous_round`` (the proxy of the previous query). Paired seeds, 10 initial labels
(balanced), 15 per round to 100, test AUROC, against random sampling. Prints a table
and writes JSON to benchmarks/results/tdgf_history.json.

    python benchmarks/tdgf_history.py                 # 3 seeds, ~15 min on 2 cores
"""

from quick_compare import arguments, compare
from skal.query import TDGF, random_sampling


def main(argv=None):
    args = arguments(__doc__.split("\n\n")[0], argv, strategies="", name="tdgf_history")
    compare({
        "random": random_sampling,
        "tdgf_lag": TDGF(history="lag", lag=1),
        "tdgf_fraction": TDGF(history="fraction", history_fraction=0.5),
        "tdgf_previous_round": TDGF(history="previous_round"),
    }, args)


if __name__ == "__main__":
    main()
