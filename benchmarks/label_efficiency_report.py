"""Merge label-efficiency runs (``benchmarks/label_efficiency.py`` JSON files) of one
data set into the issue-13 table: per recipe and strategy, AULC, the paired AULC
difference to random of the same recipe (standard error over the shared seeds), the
labels from which the mean curve stays at or above that random's final (200-label) mean,
and the labels from which it stays at or above 95% of the full-data metric. Writes JSON,
a learning-curve PNG and prints a markdown table.

    python benchmarks/label_efficiency_report.py --name le_pneumonia \
        simclr=benchmarks/results/le_pneumonia_simclr_s0-4.json \
        simclr=benchmarks/results/le_pneumonia_simclr_s5-9.json \
        scratch=benchmarks/results/label_efficiency_pneumoniamnist.json
"""

import argparse
import json
from pathlib import Path

import numpy as np

from skal.metrics import area_under_learning_curve, labels_to_target
from skal.utils.io import atomic_write_json


def _load(specs, metric):
    """{(recipe, strategy): {"n_labels", "curves": {seed: curve}}}, references."""
    runs, references = {}, {}
    for spec in specs:
        recipe, path = spec.split("=", 1)
        data = json.loads(Path(path).read_text())
        scores = np.asarray(data["scores"][metric])
        for s, name in enumerate(data["strategies"]):
            entry = runs.setdefault((recipe, name), {"n_labels": data["n_labels"],
                                                     "curves": {}})
            if entry["n_labels"] != data["n_labels"]:
                raise SystemExit(f"{path}: label grid differs from an earlier run of {name}")
            for k, seed in enumerate(data["seeds"]):
                entry["curves"][int(seed)] = scores[s, k]
        ref = (data.get("reference") or {}).get(f"{metric}_mean")
        if ref is not None:
            references.setdefault(recipe, []).append(
                (ref, len((data.get("reference") or {}).get(f"{metric}_per_seed", [1]))))
    refs = {r: float(np.average([v for v, _ in vals], weights=[w for _, w in vals]))
            for r, vals in references.items()}
    return runs, refs


def summarise(runs, refs, full_share=0.95):
    """Rows of the table (one per recipe and strategy)."""
    full = max(refs.values()) if refs else None
    rows = []
    for (recipe, name), entry in runs.items():
        n_labels = np.asarray(entry["n_labels"])
        seeds = sorted(entry["curves"])
        curves = np.stack([entry["curves"][s] for s in seeds])
        aulc = area_under_learning_curve(n_labels, curves)
        row = {"recipe": recipe, "strategy": name, "seeds": len(seeds),
               "aulc": float(aulc.mean()), "final": float(curves[:, -1].mean()),
               "first": float(curves[:, 0].mean()), "n_labels": n_labels.tolist(),
               "mean_curve": curves.mean(axis=0).tolist(),
               "se_curve": (curves.std(axis=0, ddof=1) / np.sqrt(len(seeds))).tolist()
               if len(seeds) > 1 else [0.0] * len(n_labels)}
        base = runs.get((recipe, "random"))
        if base is not None:
            shared = [s for s in seeds if s in base["curves"]]
            if shared:
                diff = (area_under_learning_curve(n_labels, np.stack([entry["curves"][s] for s in shared]))
                        - area_under_learning_curve(n_labels, np.stack([base["curves"][s] for s in shared])))
                row["daulc"] = float(diff.mean())
                row["daulc_se"] = (float(diff.std(ddof=1) / np.sqrt(len(shared)))
                                   if len(shared) > 1 else None)
                row["paired_seeds"] = len(shared)
            random_final = float(np.mean([base["curves"][s][-1] for s in base["curves"]]))
            row["random_final"] = random_final
            row["labels_to_random_final"] = labels_to_target(n_labels, curves.mean(axis=0),
                                                             random_final)
        if refs.get(recipe) is not None:
            row["full_data_own"] = refs[recipe]
        if full is not None:
            row["full_data_best"] = full
            row[f"labels_to_{int(full_share * 100)}pct_full"] = labels_to_target(
                n_labels, curves.mean(axis=0), full_share * full)
        rows.append(row)
    rows.sort(key=lambda r: (r["recipe"], -r["aulc"]))
    return rows


def markdown(rows, metric):
    first, last = rows[0]["n_labels"][0], rows[0]["n_labels"][-1]
    head = ("| recipe | strategy | seeds | AULC | dAULC vs random (SE) | "
            f"{metric} @{first} | {metric} @{last} | stays >= random@{last} from | "
            "stays >= 95% full from |")
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        d = (f"{r['daulc']:+.4f} ({r['daulc_se']:.4f})" if r.get("daulc_se") is not None
             else (f"{r['daulc']:+.4f}" if "daulc" in r else "n/a"))
        to_rand = r.get("labels_to_random_final")
        to_full = r.get("labels_to_95pct_full")
        if to_full is None:   # not reached, or no full-data reference to compare with
            to_full = f">{r['n_labels'][-1]}" if "full_data_best" in r else "n/a"
        lines.append(
            f"| {r['recipe']} | {r['strategy']} | {r['seeds']} | {r['aulc']:.4f} | {d} | "
            f"{r['first']:.4f} | {r['final']:.4f} | "
            f"{to_rand if to_rand is not None else '>' + str(r['n_labels'][-1])} | "
            f"{to_full} |")
    return "\n".join(lines)


def plot(rows, refs, path, title, metric):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for r in rows:
        x, m, se = np.asarray(r["n_labels"]), np.asarray(r["mean_curve"]), np.asarray(r["se_curve"])
        style = "--" if r["recipe"] != "simclr" else "-"
        width = 2.2 if r["strategy"] in ("random", "typiclust", "typiclust_then_margin") else 1.0
        line, = ax.plot(x, m, style, lw=width, label=f"{r['recipe']}/{r['strategy']} ({r['seeds']})")
        ax.fill_between(x, m - se, m + se, color=line.get_color(), alpha=0.12)
    for recipe, value in refs.items():
        ax.axhline(value, color="grey", ls=":", lw=1)
        ax.text(ax.get_xlim()[1], value, f" full data ({recipe})", va="center", fontsize=7)
    ax.set_xlabel("labels")
    ax.set_ylabel(f"test {metric}")
    ax.set_title(title)
    ax.legend(fontsize=6, ncol=2, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="recipe=path.json")
    parser.add_argument("--metric", default="auroc")
    parser.add_argument("--name", required=True)
    parser.add_argument("--title", default=None)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    runs, refs = _load(args.runs, args.metric)
    rows = summarise(runs, refs)
    table = markdown(rows, args.metric)
    print(table)
    print("full-data references:", {k: round(v, 4) for k, v in refs.items()})
    out = Path(args.out)
    atomic_write_json(out / f"{args.name}.json", {"metric": args.metric, "rows": rows,
                                                  "full_data": refs, "runs": args.runs,
                                                  "markdown": table})
    plot(rows, refs, out / f"{args.name}.png", args.title or args.name, args.metric)
    print(f"wrote {out / (args.name + '.json')} and {out / (args.name + '.png')}")


if __name__ == "__main__":
    main()
