"""The dashboard pieces: real PNGs, a per-class report that agrees with scikit-learn, and a static
HTML page that carries the numbers, the decision and the plots, with user text escaped."""

import base64
import re
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import Perceptron
from sklearn.metrics import precision_recall_fscore_support
from sklearn.model_selection import train_test_split

from mlops_assets.reporting import (
    PNG_SIGNATURE,
    confusion_matrix_png,
    model_report_html,
    per_class_report,
    roc_png,
    summarize_data,
)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE), "not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def assert_real_png(path: Path) -> None:
    width, height = png_size(path)
    assert width >= 300 and height >= 300
    assert path.stat().st_size > 10_000  # axes, text and curves, not a blank canvas
    from matplotlib.image import imread

    pixels = imread(path)
    assert pixels.std() > 0.05  # something was drawn


@pytest.fixture(scope="module")
def cancer() -> dict:
    data = load_breast_cancer(as_frame=True)
    frame = data.frame.assign(target=data.target.map({0: "malignant", 1: "benign"}))
    features = [c for c in frame.columns if c != "target"]
    train_x, test_x, train_y, test_y = train_test_split(
        frame[features], frame["target"], test_size=0.25, random_state=0, stratify=frame["target"]
    )
    model = RandomForestClassifier(n_estimators=30, random_state=0).fit(train_x, train_y)
    return {
        "frame": frame,
        "features": features,
        "model": model,
        "test_x": test_x,
        "test_y": test_y,
        "pred": model.predict(test_x),
        "labels": list(model.classes_),
    }


@pytest.fixture(scope="module")
def iris() -> dict:
    data = load_iris(as_frame=True)
    x, y = data.data, data.target.map(dict(enumerate(data.target_names)))
    train_x, test_x, train_y, test_y = train_test_split(
        x, y, test_size=0.4, random_state=0, stratify=y
    )
    model = RandomForestClassifier(n_estimators=20, random_state=0).fit(train_x, train_y)
    return {"model": model, "test_x": test_x, "test_y": test_y}


def test_confusion_matrix_png_is_a_real_png(cancer: dict, tmp_path: Path) -> None:
    path = confusion_matrix_png(
        cancer["test_y"], cancer["pred"], cancer["labels"], tmp_path / "nested" / "cm.png"
    )
    assert path == tmp_path / "nested" / "cm.png"
    assert_real_png(path)


def test_confusion_matrix_png_many_classes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = [f"class-{i}" for i in range(25)]
    y = rng.choice(labels, 500)
    pred = np.where(rng.random(500) < 0.7, y, rng.choice(labels, 500))
    assert_real_png(confusion_matrix_png(y, pred, labels, tmp_path / "cm.png"))


def test_roc_png_binary_from_model(cancer: dict, tmp_path: Path) -> None:
    path = roc_png(
        cancer["model"], cancer["test_y"], tmp_path / "roc.png", features=cancer["test_x"]
    )
    assert path == tmp_path / "roc.png"
    assert_real_png(path)


def test_roc_png_multiclass_from_model_and_from_probabilities(iris: dict, tmp_path: Path) -> None:
    model = iris["model"]
    from_model = roc_png(model, iris["test_y"], tmp_path / "a.png", features=iris["test_x"])
    assert from_model is not None
    assert_real_png(from_model)
    proba = pd.DataFrame(model.predict_proba(iris["test_x"]), columns=model.classes_)
    from_proba = roc_png(proba, iris["test_y"], tmp_path / "b.png")
    assert from_proba is not None
    assert_real_png(from_proba)


def test_roc_png_from_binary_scores(cancer: dict, tmp_path: Path) -> None:
    model, labels = cancer["model"], cancer["labels"]
    scores = model.predict_proba(cancer["test_x"])[:, 1]
    path = roc_png(scores, cancer["test_y"], tmp_path / "roc.png", classes=labels)
    assert path is not None
    assert_real_png(path)


def test_roc_png_skips_a_model_without_predict_proba(cancer: dict, tmp_path: Path) -> None:
    model = Perceptron(random_state=0).fit(cancer["test_x"], cancer["test_y"])
    target = tmp_path / "roc.png"
    assert roc_png(model, cancer["test_y"], target, features=cancer["test_x"]) is None
    assert not target.exists()


def test_roc_png_skips_when_a_class_is_missing_from_the_labels(iris: dict, tmp_path: Path) -> None:
    keep = iris["test_y"] != "virginica"
    target = tmp_path / "roc.png"
    result = roc_png(iris["model"], iris["test_y"][keep], target, features=iris["test_x"][keep])
    assert result is None
    assert not target.exists()


def test_roc_png_needs_features_for_a_model(iris: dict, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="features"):
        roc_png(iris["model"], iris["test_y"], tmp_path / "roc.png")


def test_per_class_report_matches_sklearn(iris: dict) -> None:
    y, pred = iris["test_y"], iris["model"].predict(iris["test_x"])
    labels = ["virginica", "setosa", "versicolor"]  # order is the caller's, not sorted
    report = per_class_report(y, pred, labels)
    precision, recall, f1, support = precision_recall_fscore_support(
        y, pred, labels=labels, zero_division=0
    )
    assert list(report.index) == labels
    assert report.index.name == "class"
    assert list(report.columns) == ["precision", "recall", "f1", "support"]
    np.testing.assert_allclose(report["precision"], precision)
    np.testing.assert_allclose(report["recall"], recall)
    np.testing.assert_allclose(report["f1"], f1)
    assert report["support"].tolist() == support.tolist()
    assert report["support"].dtype.kind == "i"


def test_per_class_report_classes_named_like_report_keys() -> None:
    # sklearn's dict also has "accuracy" and "macro avg" keys; classes may be called that.
    y = ["accuracy", "macro avg", "accuracy", "macro avg", "accuracy", "other"]
    pred = ["accuracy", "accuracy", "accuracy", "macro avg", "other", "other"]
    report = per_class_report(y, pred, ["accuracy", "macro avg", "other"])
    assert report["support"].tolist() == [3, 2, 1]
    assert report.loc["accuracy", "precision"] == pytest.approx(2 / 3)
    assert report.loc["macro avg", "recall"] == pytest.approx(0.5)


def test_per_class_report_keeps_label_types() -> None:
    report = per_class_report([0, 1, 2, 2], [0, 2, 2, 2], [0, 1, 2])
    assert report.index.tolist() == [0, 1, 2]
    assert report.loc[1, "recall"] == 0.0 and report.loc[1, "precision"] == 0.0


def test_summarize_data(cancer: dict) -> None:
    summary = summarize_data(cancer["frame"], "target")
    assert summary["rows"] == 569
    assert summary["features"] == cancer["features"]
    assert summary["class_distribution"] == {"benign": 357, "malignant": 212}
    assert re.fullmatch(r"[0-9a-f]{16}", summary["dataset_fingerprint"])
    shuffled = cancer["frame"].sample(frac=1.0, random_state=1)
    assert (
        summarize_data(shuffled, "target")["dataset_fingerprint"]
        != (summary["dataset_fingerprint"])
    )


def _report(cancer: dict, tmp_path: Path, **overrides: object) -> str:
    cm = confusion_matrix_png(
        cancer["test_y"], cancer["pred"], cancer["labels"], tmp_path / "c.png"
    )
    roc = roc_png(cancer["model"], cancer["test_y"], tmp_path / "r.png", features=cancer["test_x"])
    arguments: dict = {
        "model_name": "cancer-model",
        "version": 7,
        "challenger_metrics": {"f1_macro": 0.912345, "accuracy": 0.95, "roc_auc": float("nan")},
        "champion_metrics": {"f1_macro": 0.884321, "accuracy": 0.96},
        "baseline_metrics": {"f1_macro": 0.387097, "accuracy": 0.627},
        "champion_version": 6,
        "decision": "rejected",
        "reason": "accuracy regressed by 0.0100 beyond the tolerance 0.0000",
        "gate_details": {"mcnemar_p_value": 0.4321, "tolerance": 0.0},
        "data_summary": summarize_data(cancer["frame"], "target", fingerprint="abc123fingerprint"),
        "per_class": per_class_report(cancer["test_y"], cancer["pred"], cancer["labels"]),
        "images": {"Confusion matrix": cm, "ROC": roc, "Missing ROC": None},
    }
    arguments.update(overrides)
    return model_report_html(**arguments)


def test_report_carries_the_numbers_and_the_decision(cancer: dict, tmp_path: Path) -> None:
    page = _report(cancer, tmp_path)
    assert page.startswith("<!DOCTYPE html>")
    assert "cancer-model" in page and "v7" in page
    for number in ("0.9123", "0.8843", "0.3871", "0.9500", "0.9600", "0.4321"):
        assert number in page
    assert "+0.0280" in page  # f1 delta vs champion, shown as better
    assert "class='num down'>-0.0100" in page  # accuracy delta, shown as worse
    assert "Champion v6" in page
    assert "rejected" in page and "badge fail" in page
    assert "accuracy regressed by 0.0100 beyond the tolerance 0.0000" in page
    # data summary
    assert "569" in page and "abc123fingerprint" in page
    assert "357" in page and "62.7%" in page
    # per-class table, support as an integer
    per_class = per_class_report(cancer["test_y"], cancer["pred"], cancer["labels"])
    for label, row in per_class.iterrows():
        assert f"<td>{label}</td>" in page
        assert f"{row['f1']:.4f}" in page
    assert f">{int(per_class['support'].iloc[0])}</td>" in page


def test_report_is_self_contained_with_embedded_images(cancer: dict, tmp_path: Path) -> None:
    page = _report(cancer, tmp_path)
    uris = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(uris) == 2  # the None image is skipped
    assert base64.b64decode(uris[0]) == (tmp_path / "c.png").read_bytes()
    assert base64.b64decode(uris[1]) == (tmp_path / "r.png").read_bytes()
    assert "<script" not in page.lower()
    assert "<link" not in page.lower()
    assert not re.search(r"(src|href)=['\"]?(https?:)?//", page)
    assert "@import" not in page


def test_report_accepts_png_bytes(cancer: dict, tmp_path: Path) -> None:
    cm = confusion_matrix_png(
        cancer["test_y"], cancer["pred"], cancer["labels"], tmp_path / "c.png"
    )
    page = _report(cancer, tmp_path, images={"From bytes": cm.read_bytes()})
    assert base64.b64encode(cm.read_bytes()).decode() in page
    with pytest.raises(ValueError, match="PNG or JPEG"):
        _report(cancer, tmp_path, images={"Not an image": b"hello"})
    with pytest.raises(FileNotFoundError):
        _report(cancer, tmp_path, images={"Gone": tmp_path / "missing.png"})


def test_report_escapes_user_text(cancer: dict, tmp_path: Path) -> None:
    evil = "<script>alert('x')</script>"
    per_class = per_class_report(cancer["test_y"], cancer["pred"], cancer["labels"])
    per_class.index = pd.Index([evil, "b&b"], name="class")
    page = _report(
        cancer,
        tmp_path,
        model_name=evil,
        version=evil,
        reason=f"because {evil}",
        challenger_metrics={evil: 0.9},
        gate_details={evil: evil},
        per_class=per_class,
        data_summary={"rows": 10, "features": [evil], "class_distribution": {evil: 10}},
        images={evil: tmp_path / "c.png"},
        links={evil: "javascript:alert(1)", "MLflow": "http://mlflow.local/runs/1?a=1&b=2"},
    )
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "b&amp;b" in page
    assert "href='javascript" not in page.lower()
    assert "href='http://mlflow.local/runs/1?a=1&amp;b=2'" in page


def test_report_for_the_first_model(cancer: dict, tmp_path: Path) -> None:
    page = _report(cancer, tmp_path, champion_metrics=None, champion_version=None, decision=True)
    assert "Δ vs champion" not in page
    assert "No champion yet" in page
    assert "badge pass" in page and "promoted" in page


def test_report_minimal_inputs() -> None:
    page = model_report_html(model_name="m", version=1, challenger_metrics={"accuracy": 0.5})
    assert "0.5000" in page and "no decision" in page


def test_report_extra_tables(cancer: dict, tmp_path: Path) -> None:
    drift = pd.DataFrame(
        {"feature": ["mean radius"], "psi": [2.5], "p_value": [1e-20], "drifted": [True]}
    )
    page = _report(cancer, tmp_path, tables={"Drift": drift})
    assert "<h2>Drift</h2>" in page
    assert "mean radius" in page and "2.5000" in page and "1.000e-20" in page
    assert "<td>yes</td>" in page
