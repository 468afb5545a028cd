"""Writing an evaluation report: JSON, Markdown and PNG plots."""

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Evaluation: {report.get('name') or report['evaluation_id']}",
        "",
        f"Model `{report['model']}` on {report['n']} documents ({report['failed']} failed); "
        f"dataset `{report['dataset']}`.",
        "",
        "| metric | value |",
        "| --- | --- |",
    ]
    for key in ("accuracy", "macro_f1", "ece", "brier", "credits", "latency_p50", "latency_p95"):
        lines.append(f"| {key} | {report.get(key)} |")
    lines += [
        "",
        "| label | precision | recall | F1 | support |",
        "| --- | --- | --- | --- | --- |",
    ]
    for label, row in report["per_label"].items():
        lines.append(
            f"| {label} | {row['precision']} | {row['recall']} | {row['f1']} | {row['support']} |"
        )
    matrix = report["confusion_matrix"]
    lines += ["", "Confusion matrix (rows: expected, columns: predicted):", ""]
    lines.append("| | " + " | ".join(matrix["labels"]) + " |")
    lines.append("| --- " * (len(matrix["labels"]) + 1) + "|")
    for label, row in zip(matrix["labels"], matrix["matrix"], strict=True):
        lines.append(f"| **{label}** | " + " | ".join(str(v) for v in row) + " |")
    lines += [
        "",
        "Accuracy at coverage:",
        "",
        "| threshold | coverage | accuracy |",
        "| --- | --- | --- |",
    ]
    for row in report.get("coverage", []):
        lines.append(f"| {row['threshold']} | {row['coverage']} | {row['accuracy']} |")
    return "\n".join(lines) + "\n"


def plot_confusion(report: dict[str, Any], path: Path) -> None:
    matrix = report["confusion_matrix"]
    labels, values = matrix["labels"], matrix["matrix"]
    fig, ax = plt.subplots(figsize=(1.2 * len(labels) + 2, 1.1 * len(labels) + 1.5))
    image = ax.imshow(values, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=35, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("expected")
    top = max(max(row) for row in values) or 1
    for i, row in enumerate(values):
        for j, value in enumerate(row):
            ax.text(
                j,
                i,
                str(value),
                ha="center",
                va="center",
                color="white" if value > top / 2 else "black",
            )
    ax.set_title(f"Confusion matrix (accuracy {report['accuracy']})")
    fig.colorbar(image, ax=ax, shrink=0.8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_reliability(report: dict[str, Any], path: Path) -> None:
    rows = [r for r in report["reliability"] if r["count"]]
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    ax.plot(
        [r["confidence"] for r in rows], [r["accuracy"] for r in rows], marker="o", label="DocSift"
    )
    for r in rows:
        ax.annotate(
            str(r["count"]),
            (r["confidence"], r["accuracy"]),
            textcoords="offset points",
            xytext=(4, -10),
            fontsize=8,
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("confidence (top score)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Reliability (ECE {report['ece']})")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(report: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(markdown(report))
    plot_confusion(report, out / "confusion_matrix.png")
    plot_reliability(report, out / "reliability.png")


def compare(a: dict[str, Any], b: dict[str, Any]) -> str:
    """What changed from report a to report b."""
    lines = [f"{'metric':<14}{'A':>10}{'B':>10}{'change':>10}"]
    for key in ("accuracy", "macro_f1", "ece", "brier", "credits", "latency_p50"):
        va, vb = a.get(key), b.get(key)
        change = (
            f"{vb - va:+.4f}" if isinstance(va, int | float) and isinstance(vb, int | float) else ""
        )
        lines.append(f"{key:<14}{va!s:>10}{vb!s:>10}{change:>10}")
    lines.append("")
    lines.append(f"{'label F1':<20}{'A':>8}{'B':>8}{'change':>9}")
    for label in sorted(set(a["per_label"]) | set(b["per_label"])):
        fa = a["per_label"].get(label, {}).get("f1")
        fb = b["per_label"].get(label, {}).get("f1")
        change = f"{fb - fa:+.4f}" if fa is not None and fb is not None else ""
        lines.append(f"{label:<20}{fa!s:>8}{fb!s:>8}{change:>9}")
    items_a = {i["file"]: i["predicted_label"] for i in a.get("items", [])}
    flipped = [
        i
        for i in b.get("items", [])
        if i["file"] in items_a and items_a[i["file"]] != i["predicted_label"]
    ]
    fixed = sum(1 for i in flipped if i["predicted_label"] == i["expected_label"])
    lines.append("")
    lines.append(
        f"{len(flipped)} documents changed prediction: {fixed} now right, {len(flipped) - fixed} now wrong"
    )
    return "\n".join(lines)
