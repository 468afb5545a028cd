"""Chart builders: the data and encodings each chart is built from."""

import pandas as pd

from frontend import charts
from frontend.metrics import compare_per_label
from tests.frontend import fakes


def test_confidence_chart_sorts_labels_and_highlights_the_choice() -> None:
    chart = charts.confidence_chart({"other": 0.1, "invoice": 0.7, "contract": 0.2}, "invoice")
    spec = chart.to_dict()
    bars = spec["layer"][0]
    assert bars["encoding"]["y"]["sort"] == ["invoice", "contract", "other"]
    rows = spec["datasets"][spec["data"]["name"]]
    assert [r["label"] for r in rows if r["chosen"]] == ["invoice"]


def test_confusion_matrix_has_a_cell_per_pair() -> None:
    spec = charts.confusion_matrix_chart(["a", "b"], [[3, 1], [0, 2]]).to_dict()
    rows = spec["datasets"][spec["data"]["name"]]
    assert {(r["expected"], r["predicted"]): r["count"] for r in rows} == {
        ("a", "a"): 3,
        ("a", "b"): 1,
        ("b", "a"): 0,
        ("b", "b"): 2,
    }


def test_reliability_chart_drops_empty_bins_and_draws_the_diagonal() -> None:
    bins = fakes.metrics(0.5, 0.5, 0.5)["reliability"] + [
        {"bin_lower": 0.0, "bin_upper": 0.1, "count": 0, "accuracy": None, "confidence": None}
    ]
    spec = charts.reliability_chart(bins).to_dict()
    diagonal = spec["datasets"][spec["layer"][0]["data"]["name"]]
    points = spec["datasets"][spec["layer"][2]["data"]["name"]]
    assert diagonal == [{"x": 0.0, "y": 0.0}, {"x": 1.0, "y": 1.0}]
    assert [p["count"] for p in points] == [1, 2]
    assert spec["layer"][2]["encoding"]["size"]["field"] == "count"


def test_usage_by_day_has_a_bar_per_day_in_date_order() -> None:
    by_day = list(reversed(fakes.account()["usage"]["by_day"]))
    spec = charts.usage_by_day_chart(by_day).to_dict()
    assert spec["encoding"]["x"]["field"] == "day"
    assert spec["encoding"]["x"]["sort"] == "ascending"
    rows = spec["datasets"][spec["data"]["name"]]
    assert {r["day"]: r["credits"] for r in rows} == {"2026-11-22": 5, "2026-11-23": 8}


def test_per_label_comparison_groups_runs_per_label() -> None:
    long = compare_per_label(fakes.metrics(0.5, 0.5, 0.4), fakes.metrics(0.7, 0.7, 0.9), "A", "B")
    spec = charts.per_label_comparison_chart(long, "f1").to_dict()
    rows = pd.DataFrame(spec["datasets"][spec["data"]["name"]])
    assert set(rows["metric"]) == {"f1"}
    assert rows.set_index(["label", "run"]).loc[("invoice", "B"), "value"] == 0.9
    assert spec["encoding"]["xOffset"]["field"] == "run"
