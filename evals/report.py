"""An evaluation report: assembled from the server's run, written as JSON, Markdown and PNG plots."""

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay  # noqa: E402

HEADLINE = ("accuracy", "macro_f1", "ece", "brier", "credits", "latency_p50", "latency_p95")
MAX_LISTED = 50  # misclassified documents listed in report.md


def build(
    state: dict[str, Any],
    *,
    name: str,
    dataset: str,
    label_column: str,
    files: list[str],
    not_uploaded: Sequence[dict[str, Any]] = (),
    reused: int = 0,
    wall_seconds: float | None = None,
) -> dict[str, Any]:
    """The report of a finished run (GET /v1/evaluations/{id}); `files` in item order."""
    metrics = state["metrics"]
    items = [
        {
            "file": file,
            "document_id": i["document_id"],
            "request_id": i.get("request_id"),
            "expected_label": i["expected_label"],
            "predicted_label": i["predicted_label"],
            "correct": i["status"] == "completed" and i["predicted_label"] == i["expected_label"],
            "confidence": max((i["confidence_scores"] or {}).values(), default=None),
            "confidence_scores": i["confidence_scores"],
            "status": i["status"],
            "error": i["error"],
            "duration": i["duration"],
            "credits_used": i.get("credits_used"),
        }
        for file, i in zip(files, state["items"], strict=True)
    ]
    return {
        "evaluation_id": state["evaluation_id"],
        "name": name,
        "dataset": dataset,
        "label_column": label_column,
        "model": state["model"],
        "classifier_id": state.get("classifier_id"),
        "classifier_version": state.get("classifier_version"),
        **metrics,
        "latency": {
            "p50": metrics.get("latency_p50"),
            "p95": metrics.get("latency_p95"),
            "mean": metrics.get("latency_mean"),
        },
        "tokens": {
            "prompt": metrics.get("prompt_tokens"),
            "completion": metrics.get("completion_tokens"),
        },
        "cost": {"credits": metrics.get("credits"), "usd": metrics.get("cost_usd")},
        "documents": {
            "evaluated": len(items),
            "reused": reused,
            "not_uploaded": list(not_uploaded),
        },
        "wall_seconds": wall_seconds,
        "calibration": state.get("calibration"),
        "items": items,
    }


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)


def markdown(report: dict[str, Any]) -> str:
    """report.md: headline, per label, confusion, coverage, mistakes."""
    docs = report["documents"]
    lines = [
        f"# Evaluation: {report.get('name') or report['evaluation_id']}",
        "",
        f"Model `{report['model']}` on {report['n']} documents of `{report['dataset']}` "
        f"(labels from `{report['label_column']}`); {report['failed']} failed, "
        f"{len(docs['not_uploaded'])} not uploaded. Evaluation `{report['evaluation_id']}`.",
        "",
        "| metric | value |",
        "| --- | --- |",
    ]
    lines += [f"| {key} | {_fmt(report.get(key))} |" for key in HEADLINE]
    lines += [
        f"| cost (USD) | {_fmt(report['cost']['usd'])} |",
        f"| tokens (prompt / completion) | {report['tokens']['prompt']} / "
        f"{report['tokens']['completion']} |",
        "",
        "| label | precision | recall | F1 | support |",
        "| --- | --- | --- | --- | --- |",
    ]
    for label, row in report["per_label"].items():
        lines.append(
            f"| {label} | {_fmt(row['precision'])} | {_fmt(row['recall'])} | {_fmt(row['f1'])} "
            f"| {row['support']} |"
        )
    matrix = report["confusion_matrix"]
    lines += ["", "Confusion matrix (rows: expected, columns: predicted):", ""]
    lines.append("| | " + " | ".join(matrix["labels"]) + " |")
    lines.append("| --- " * (len(matrix["labels"]) + 1) + "|")
    for label, row in zip(matrix["labels"], matrix["matrix"], strict=True):
        lines.append(f"| **{label}** | " + " | ".join(str(v) for v in row) + " |")
    lines += [
        "",
        "Accuracy at coverage (only results at or above the threshold trusted):",
        "",
        "| threshold | coverage | accuracy |",
        "| --- | --- | --- |",
    ]
    for row in report.get("coverage", []):
        lines.append(f"| {row['threshold']} | {_fmt(row['coverage'])} | {_fmt(row['accuracy'])} |")
    lines += _calibration_lines(report)
    lines += review_lines(report.get("review"))
    wrong = [i for i in report["items"] if i["status"] == "completed" and not i["correct"]]
    if wrong:
        lines += ["", "Misclassified:", "", "| file | expected | predicted | confidence |"]
        lines.append("| --- | --- | --- | --- |")
        for i in sorted(wrong, key=lambda i: -(i["confidence"] or 0))[:MAX_LISTED]:
            lines.append(
                f"| {i['file']} | {i['expected_label']} | {i['predicted_label']} "
                f"| {_fmt(i['confidence'])} |"
            )
    failed = [i for i in report["items"] if i["status"] != "completed"]
    problems = [(i["file"], i["error"]) for i in failed] + [
        (d["file"], d["error"]) for d in docs["not_uploaded"]
    ]
    if problems:
        lines += ["", "Not classified:", ""]
        lines += [f"- {file}: {error}" for file, error in problems]
    lines += [
        "",
        "![confusion matrix](confusion_matrix.png) ![reliability](reliability.png) "
        "![risk-coverage](risk_coverage.png)",
    ]
    return "\n".join(lines) + "\n"


def _calibration_lines(report: dict[str, Any]) -> list[str]:
    lines = []
    estimate = report.get("calibration_estimate")
    if estimate:
        lines += [
            "",
            f"Temperature scaling would set T = {_fmt(estimate['temperature'])}: ECE "
            f"{_fmt(estimate['ece_before'])} -> {_fmt(estimate['ece_after_cv'])} "
            f"({estimate['folds']}-fold, out of sample).",
        ]
    fitted = report.get("calibration")
    if fitted:
        state = "enabled" if fitted["enabled"] else "disabled"
        lines += [
            "",
            f"Calibration fitted on this run ({state}): T = {_fmt(fitted['temperature'])}, "
            f"ECE {_fmt(fitted['ece_before'])} -> {_fmt(fitted['ece_after'])}.",
        ]
    if report.get("calibration_temperature"):
        lines += ["", f"Run with calibration T = {_fmt(report['calibration_temperature'])}."]
    return lines


def review_lines(review: dict[str, Any] | None) -> list[str]:
    """Does confidence pick out the errors a person should check? AUROC, errors caught, and the
    share that must be reviewed for a target accuracy."""
    if not review:
        return []
    auroc = review.get("auroc")
    verdict = {
        True: "confidence ranks errors usefully",
        False: "confidence barely ranks errors: a low ECE does not make it useful for review",
        None: "not measurable (every answer right, or every one wrong)",
    }[review.get("ranking_useful")]
    caught = review.get("errors_caught", {})
    lines = [
        "",
        f"Review: AUROC of confidence (right vs wrong) {_fmt(auroc)}: {verdict}. Reviewing "
        f"the least confident 5% / 10% / 20% catches {_fmt(caught.get('5'))} / "
        f"{_fmt(caught.get('10'))} / {_fmt(caught.get('20'))} of the errors.",
        "",
        "| target accuracy | threshold | coverage (auto-accepted) | accuracy | sent to review |",
        "| --- | --- | --- | --- | --- |",
    ]
    for target, row in review.get("at_accuracy", {}).items():
        if row is None:
            lines.append(f"| {target} | - | 0 | - | 1 |")
        else:
            lines.append(
                f"| {target} | {_fmt(row['threshold'])} | {_fmt(row['coverage'])} "
                f"| {_fmt(row['accuracy'])} | {_fmt(row['review_share'])} |"
            )
    return lines


def plot_risk_coverage(report: dict[str, Any], path: Path) -> None:
    """Accuracy of the results kept against the share kept, keeping the most confident first."""
    curve = (report.get("review") or {}).get("risk_coverage") or []
    fig, ax = plt.subplots(figsize=(5, 4))
    if curve:
        ax.plot([r["coverage"] for r in curve], [r["accuracy"] for r in curve], marker=".")
        ax.axhline(report.get("accuracy") or 0, linestyle="--", color="grey", label="all kept")
        ax.legend(loc="lower left", fontsize=8)
    ax.set_xlim(0, 1.02)
    ax.set_ylim(max(0.0, min((r["accuracy"] for r in curve), default=0) - 0.05), 1.01)
    ax.set_xlabel("coverage (share auto-accepted, most confident first)")
    ax.set_ylabel("accuracy of the accepted")
    auroc = (report.get("review") or {}).get("auroc")
    ax.set_title(f"Risk-coverage ({report['model']}, AUROC {_fmt(auroc)})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_confusion(report: dict[str, Any], path: Path) -> None:
    """Confusion matrix heat map, counts in the cells."""
    matrix = report["confusion_matrix"]
    labels = matrix["labels"]
    fig, ax = plt.subplots(figsize=(1.2 * len(labels) + 2.5, 1.1 * len(labels) + 2))
    ConfusionMatrixDisplay(confusion_matrix=np.array(matrix["matrix"]), display_labels=labels).plot(
        ax=ax, cmap="Blues", xticks_rotation=35, colorbar=True
    )
    ax.set_xlabel("predicted")
    ax.set_ylabel("expected")
    ax.set_title(f"{report['model']}: accuracy {_fmt(report['accuracy'])}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_reliability(report: dict[str, Any], path: Path) -> None:
    """Reliability diagram: accuracy against mean confidence per bin, bar widths the bins."""
    rows = [r for r in report["reliability"] if r["count"]]
    fig, (ax, counts) = plt.subplots(
        2, 1, figsize=(5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    ax.bar(
        [r["bin_lower"] for r in report["reliability"]],
        [r["accuracy"] or 0 for r in report["reliability"]],
        width=[r["bin_upper"] - r["bin_lower"] for r in report["reliability"]],
        align="edge",
        alpha=0.35,
        edgecolor="tab:blue",
        label="accuracy per bin",
    )
    ax.plot(
        [r["confidence"] for r in rows],
        [r["accuracy"] for r in rows],
        marker="o",
        label="mean confidence vs accuracy",
    )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("accuracy")
    ax.set_title(f"Reliability ({report['model']}, ECE {_fmt(report['ece'])})")
    ax.legend(loc="upper left", fontsize=8)
    counts.bar(
        [r["bin_lower"] for r in report["reliability"]],
        [r["count"] for r in report["reliability"]],
        width=0.1,
        align="edge",
        color="tab:grey",
    )
    counts.set_xlabel("confidence (top score)")
    counts.set_ylabel("documents")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_multi_label_reliability(report: dict[str, Any], path: Path) -> None:
    """Multi-label runs: one reliability diagram per label (each label's probability against how
    often the document really was that label), with the label's F1."""
    multi = report["multi_label"]
    labels = list(multi["reliability_per_label"])
    columns = min(3, len(labels))
    rows_count = -(-len(labels) // columns)
    fig, axes = plt.subplots(
        rows_count, columns, figsize=(3.2 * columns, 3.0 * rows_count), squeeze=False
    )
    for ax, label in zip(axes.flat, labels, strict=False):
        bins = multi["reliability_per_label"][label]
        used = [r for r in bins if r["count"]]
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
        ax.bar(
            [r["bin_lower"] for r in bins],
            [r["accuracy"] or 0 for r in bins],
            width=[r["bin_upper"] - r["bin_lower"] for r in bins],
            align="edge",
            alpha=0.35,
            edgecolor="tab:blue",
        )
        ax.plot([r["confidence"] for r in used], [r["accuracy"] for r in used], marker="o")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        f1 = multi["per_label"][label]["f1"]
        ax.set_title(f"{label} (F1 {_fmt(f1)}, n={sum(r['count'] for r in bins)})", fontsize=9)
        ax.set_xlabel("P(label)", fontsize=8)
        ax.set_ylabel("fraction that are the label", fontsize=8)
    for ax in list(axes.flat)[len(labels) :]:
        ax.axis("off")
    fig.suptitle(f"Per-label reliability ({report['model']})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(report: dict[str, Any], out: Path) -> None:
    """report.json, report.md, confusion_matrix.png and reliability.png in `out` (and, for a
    multi-label run, reliability_per_label.png)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(markdown(report))
    plot_confusion(report, out / "confusion_matrix.png")
    plot_reliability(report, out / "reliability.png")
    if report.get("multi_label"):
        plot_multi_label_reliability(report, out / "reliability_per_label.png")
    plot_risk_coverage(report, out / "risk_coverage.png")


def _change(a: Any, b: Any) -> str:
    numbers = isinstance(a, int | float) and isinstance(b, int | float)
    return f"{b - a:+.4f}".rstrip("0").rstrip(".") if numbers else ""


def compare(a: dict[str, Any], b: dict[str, Any]) -> str:
    """What changed from report A to report B: metrics, per-label F1, documents that flipped."""
    lines = [
        f"A: {a.get('name')} ({a.get('model')}, {a.get('n')} documents)",
        f"B: {b.get('name')} ({b.get('model')}, {b.get('n')} documents)",
        "",
        f"{'metric':<14}{'A':>10}{'B':>10}{'change':>10}",
    ]
    for key in HEADLINE:
        va, vb = a.get(key), b.get(key)
        lines.append(f"{key:<14}{_fmt(va):>10}{_fmt(vb):>10}{_change(va, vb):>10}")
    va, vb = (a.get("review") or {}).get("auroc"), (b.get("review") or {}).get("auroc")
    lines.append(f"{'review_auroc':<14}{_fmt(va):>10}{_fmt(vb):>10}{_change(va, vb):>10}")
    lines += ["", f"{'label F1':<20}{'A':>8}{'B':>8}{'change':>9}"]
    for label in sorted(set(a["per_label"]) | set(b["per_label"])):
        fa = a["per_label"].get(label, {}).get("f1")
        fb = b["per_label"].get(label, {}).get("f1")
        lines.append(f"{label:<20}{_fmt(fa):>8}{_fmt(fb):>8}{_change(fa, fb):>9}")
    before = {i["file"]: i for i in a.get("items", [])}
    flipped = [
        (before[i["file"]], i)
        for i in b.get("items", [])
        if i["file"] in before and before[i["file"]]["predicted_label"] != i["predicted_label"]
    ]
    fixed = sum(1 for _, i in flipped if i["predicted_label"] == i["expected_label"])
    broken = sum(1 for old, _ in flipped if old["predicted_label"] == old["expected_label"])
    lines += [
        "",
        f"{len(flipped)} documents changed prediction: {fixed} now right, {broken} now wrong",
    ]
    lines += [
        f"  {i['file']}: {old['predicted_label']} -> {i['predicted_label']} "
        f"(expected {i['expected_label']})"
        for old, i in flipped[:MAX_LISTED]
    ]
    return "\n".join(lines)
