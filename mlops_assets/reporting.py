"""The performance dashboard's pieces: confusion matrix and ROC images, a per-class report, and a
self-contained static HTML page per model version. Pure matplotlib/scikit-learn/pandas, no
Dagster; matplotlib and scikit-learn are imported inside the functions that need them.

Figures are drawn on matplotlib's Agg canvas (`matplotlib.figure.Figure` + `FigureCanvasAgg`),
never through pyplot, so nothing needs a display, no figure outlives its call (no plt.close to
forget), and concurrent threads do not share a current figure.
"""

from __future__ import annotations

import base64
import html
import math
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"
# Metrics where smaller is better: the report colours their deltas the other way round.
LOWER_IS_BETTER = ("log_loss", "brier_score", "mse", "rmse", "mae")
PER_CLASS_COLUMNS = ("precision", "recall", "f1", "support")


# --------------------------------------------------------------------------------------------
# Images


def _figure(width: float, height: float) -> Figure:
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        # Headless by default for anything else in this process that draws later. Not forced
        # when pyplot is already loaded: switching backends there would close the user's
        # figures, and these figures never use pyplot's backend anyway.
        matplotlib.use("Agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: str | os.PathLike[str]) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, format="png", facecolor="white")
    return target


def confusion_matrix_png(
    y_true: Sequence[Any] | np.ndarray | pd.Series,
    y_pred: Sequence[Any] | np.ndarray | pd.Series,
    labels: Sequence[Any],
    path: str | os.PathLike[str],
    *,
    title: str = "Confusion matrix",
) -> Path:
    """Draw the confusion matrix of `y_pred` against `y_true` over `labels` (in that order) and
    write it as a PNG to `path` (parent folders created). Cells show the count and the share of
    the true class (the row), and are shaded by that share, so a minority class's errors show
    as clearly as a majority class's. Returns the path written."""
    from sklearn.metrics import confusion_matrix

    labels = list(labels)
    if not labels:
        raise ValueError("confusion_matrix_png needs at least one label")
    counts = confusion_matrix(np.asarray(y_true), np.asarray(y_pred), labels=labels)
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros(counts.shape, dtype=float), where=totals > 0)

    k = len(labels)
    side = min(max(4.2, 0.75 * k + 2.2), 14.0)
    figure = _figure(side + 1.0, side)
    axes = figure.add_subplot()
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    colorbar = figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    colorbar.set_label("Share of the true class")
    names = [str(label) for label in labels]
    axes.set_xticks(
        range(k), labels=names, rotation=45 if k > 4 else 0, ha="right" if k > 4 else "center"
    )
    axes.set_yticks(range(k), labels=names)
    axes.set_xlabel("Predicted label")
    axes.set_ylabel("True label")
    total = int(counts.sum())
    accuracy = float(np.trace(counts)) / total if total else float("nan")
    axes.set_title(f"{title}\n{total} rows, accuracy {accuracy:.3f}", fontsize=11)
    if k <= 20:
        size = 10 if k <= 8 else 7
        for i in range(k):
            for j in range(k):
                text = f"{counts[i, j]}\n{shares[i, j]:.0%}" if k <= 10 else f"{counts[i, j]}"
                colour = "white" if shares[i, j] > 0.55 else "#1f2933"
                axes.text(j, i, text, ha="center", va="center", color=colour, fontsize=size)
    return _save(figure, path)


def roc_png(
    model_or_proba: Any,
    y_true: Sequence[Any] | np.ndarray | pd.Series,
    path: str | os.PathLike[str],
    *,
    features: pd.DataFrame | np.ndarray | None = None,
    classes: Sequence[Any] | None = None,
    title: str = "ROC curve",
) -> Path | None:
    """Draw ROC curves and write them as a PNG to `path`; returns the path, or None when no
    meaningful ROC exists (nothing is written then).

    `model_or_proba` is either a fitted classifier (its `predict_proba(features)` is used and its
    `classes_` name the columns; `features` is then required) or the probabilities themselves:
    an (n, k) array or DataFrame with `classes` naming its columns (a DataFrame's columns are
    used when `classes` is not given), or for a binary problem a 1-d array of scores for
    `classes[1]`.

    Binary problems get one curve (the positive class is `classes[1]`); multi-class ones get one
    one-vs-rest curve per class, with the macro-average AUC in the title. None is returned when
    the model has no `predict_proba`, when a class is missing from `y_true` (its curve is
    undefined), or when `y_true` holds a label the model does not know."""
    from sklearn.metrics import auc, roc_curve

    truth = np.asarray(y_true)
    if hasattr(model_or_proba, "fit") or hasattr(model_or_proba, "predict"):
        if not hasattr(model_or_proba, "predict_proba"):
            return None
        if features is None:
            raise ValueError("roc_png needs `features` to score a model")
        proba = np.asarray(model_or_proba.predict_proba(features), dtype=float)
        names = list(getattr(model_or_proba, "classes_", classes if classes is not None else []))
    else:
        if isinstance(model_or_proba, pd.DataFrame) and classes is None:
            classes = list(model_or_proba.columns)
        proba = np.asarray(model_or_proba, dtype=float)
        if classes is None:
            raise ValueError("roc_png needs `classes` to read a probability array")
        names = list(classes)
    if proba.ndim == 1:
        if len(names) != 2:
            raise ValueError("a 1-d score array needs exactly two classes")
        proba = np.column_stack([1.0 - proba, proba])
    if proba.ndim != 2 or proba.shape[1] != len(names) or proba.shape[0] != len(truth):
        raise ValueError(
            f"probabilities of shape {proba.shape} do not match {len(truth)} labels and "
            f"{len(names)} classes"
        )
    if len(names) < 2:
        return None
    present = set(pd.unique(truth).tolist())
    if not present <= set(names) or not set(names) <= present:
        return None

    figure = _figure(6.4, 5.6)
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], linestyle="--", color="#9aa5b1", linewidth=1, label="Chance")
    if len(names) == 2:
        fpr, tpr, _ = roc_curve(truth == names[1], proba[:, 1])
        area = auc(fpr, tpr)
        axes.plot(fpr, tpr, color="#2563eb", linewidth=2, label=f"{names[1]} (AUC {area:.3f})")
        axes.set_title(f"{title}\npositive class: {names[1]}", fontsize=11)
    else:
        from matplotlib import colormaps

        palette = colormaps["tab10" if len(names) <= 10 else "tab20"]
        areas = []
        for i, name in enumerate(names):
            fpr, tpr, _ = roc_curve(truth == name, proba[:, i])
            areas.append(auc(fpr, tpr))
            axes.plot(
                fpr,
                tpr,
                linewidth=1.6,
                color=palette(i % palette.N),
                label=f"{name} (AUC {areas[-1]:.3f})",
            )
        axes.set_title(
            f"{title} (one-vs-rest)\nmacro-average AUC {float(np.mean(areas)):.3f}", fontsize=11
        )
    axes.set_xlim(-0.01, 1.01)
    axes.set_ylim(-0.01, 1.01)
    axes.set_xlabel("False positive rate")
    axes.set_ylabel("True positive rate")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize=8 if len(names) > 6 else 9)
    return _save(figure, path)


# --------------------------------------------------------------------------------------------
# Tables


def per_class_report(
    y_true: Sequence[Any] | np.ndarray | pd.Series,
    y_pred: Sequence[Any] | np.ndarray | pd.Series,
    labels: Sequence[Any],
) -> pd.DataFrame:
    """Precision, recall, f1 and support per class, read from scikit-learn's
    `classification_report(output_dict=True)`: one row per label in `labels` order, indexed by
    the labels themselves (index name "class"), columns precision, recall, f1 (floats) and
    support (int). A class never predicted has precision 0 (zero_division=0), not a warning."""
    from sklearn.metrics import classification_report

    labels = list(labels)
    # Positional names as keys, so labels like 1 and "1", or a class called "accuracy", never
    # collide in the report's dict.
    keys = [f"class_{i}" for i in range(len(labels))]
    report = classification_report(
        np.asarray(y_true),
        np.asarray(y_pred),
        labels=labels,
        target_names=keys,
        output_dict=True,
        zero_division=0,
    )
    assert isinstance(report, dict)
    frame = pd.DataFrame(
        {
            "precision": [float(report[k]["precision"]) for k in keys],
            "recall": [float(report[k]["recall"]) for k in keys],
            "f1": [float(report[k]["f1-score"]) for k in keys],
            "support": [int(report[k]["support"]) for k in keys],
        },
        index=pd.Index(labels, name="class"),
    )
    return frame


def summarize_data(
    frame: pd.DataFrame,
    target: str,
    features: Sequence[str] | None = None,
    *,
    fingerprint: str | None = None,
) -> dict[str, Any]:
    """The data summary `model_report_html` takes: rows, feature names, class counts (a dict,
    most frequent first) and the dataset fingerprint (`training.evaluate.frame_fingerprint` of
    features + target unless given)."""
    names = (
        [str(c) for c in features]
        if features is not None
        else [str(c) for c in frame.columns if c != target]
    )
    if fingerprint is None:
        from mlops_assets.training.evaluate import frame_fingerprint

        fingerprint = frame_fingerprint(frame[[*names, target]])
    counts = frame[target].value_counts(dropna=False)
    return {
        "rows": len(frame),
        "features": names,
        "class_distribution": {k: int(v) for k, v in counts.items()},
        "dataset_fingerprint": fingerprint,
    }


# --------------------------------------------------------------------------------------------
# HTML


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        number = float(value)
        if math.isnan(number):
            return "—"
        if number != 0 and (abs(number) < 10 ** (-digits) or abs(number) >= 1e6):
            return f"{number:.3e}"
        return f"{number:.{digits}f}"
    return _e(value)


def _as_float(value: Any) -> float | None:
    if value is None or isinstance(value, bool | np.bool_):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _image_data_uri(source: str | os.PathLike[str] | bytes) -> str:
    data = bytes(source) if isinstance(source, bytes | bytearray) else Path(source).read_bytes()
    if data.startswith(PNG_SIGNATURE):
        mime = "image/png"
    elif data.startswith(JPEG_SIGNATURE):
        mime = "image/jpeg"
    else:
        raise ValueError("report images must be PNG or JPEG")
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _safe_href(url: str) -> str | None:
    """Only http(s) and relative links become links: a `javascript:` URL stays text."""
    scheme = url.split(":", 1)[0].lower() if ":" in url.split("/", 1)[0] else ""
    return url if scheme in ("", "http", "https") else None


def _verdict(decision: str | bool | None) -> tuple[str, str]:
    """(label, css class) of the gate decision badge."""
    if decision is None:
        return "no decision", "neutral"
    if isinstance(decision, bool):
        return ("promoted", "pass") if decision else ("rejected", "fail")
    word = str(decision).strip()
    lowered = word.lower()
    if lowered in ("promoted", "promote", "pass", "passed", "accepted", "champion", "true"):
        return word, "pass"
    if lowered in ("rejected", "reject", "fail", "failed", "blocked", "false"):
        return word, "fail"
    return word, "neutral"


_CSS = """
:root { --ink:#1f2933; --muted:#616e7c; --line:#e4e7eb; --card:#ffffff; --bg:#f5f7fa;
  --accent:#2563eb; --pass:#047857; --pass-bg:#d1fae5; --fail:#b91c1c; --fail-bg:#fee2e2;
  --neutral:#92400e; --neutral-bg:#fef3c7; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
  font:15px/1.5 -apple-system, BlinkMacSystemFont, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  sans-serif; }
main { max-width:1100px; margin:0 auto; padding:28px 20px 48px; }
header { display:flex; flex-wrap:wrap; align-items:center; gap:12px 18px; margin-bottom:18px; }
h1 { font-size:24px; margin:0; font-weight:650; letter-spacing:-0.01em; }
h1 .version { color:var(--muted); font-weight:500; }
h2 { font-size:16px; margin:0 0 12px; text-transform:uppercase; letter-spacing:0.06em;
  color:var(--muted); font-weight:600; }
.subtitle { color:var(--muted); font-size:13px; width:100%; margin-top:-6px; }
.badge { display:inline-block; padding:3px 12px; border-radius:999px; font-weight:700;
  font-size:13px; text-transform:uppercase; letter-spacing:0.05em; }
.badge.pass { color:var(--pass); background:var(--pass-bg); }
.badge.fail { color:var(--fail); background:var(--fail-bg); }
.badge.neutral { color:var(--neutral); background:var(--neutral-bg); }
.card { background:var(--card); border:1px solid var(--line); border-radius:10px;
  padding:18px 20px; margin-bottom:18px; box-shadow:0 1px 2px rgba(16,24,40,0.04); }
.decision { border-left:5px solid var(--neutral); }
.decision.pass { border-left-color:var(--pass); }
.decision.fail { border-left-color:var(--fail); }
.decision p.reason { font-size:17px; margin:4px 0 0; }
.grid { display:grid; grid-template-columns:repeat(auto-fit, minmax(300px, 1fr)); gap:18px; }
table { border-collapse:collapse; width:100%; font-size:14px; }
th, td { padding:7px 10px; border-bottom:1px solid var(--line); text-align:left;
  vertical-align:top; }
th { font-weight:600; color:var(--muted); font-size:12px; text-transform:uppercase;
  letter-spacing:0.04em; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
tr:last-child td { border-bottom:none; }
.up { color:var(--pass); font-weight:600; }
.down { color:var(--fail); font-weight:600; }
code { font:13px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  background:var(--bg); padding:1px 5px; border-radius:4px; word-break:break-all; }
.bar { background:var(--bg); border-radius:4px; height:8px; min-width:80px; overflow:hidden; }
.bar span { display:block; height:100%; background:var(--accent); }
figure { margin:0; }
figure img { width:100%; height:auto; border:1px solid var(--line); border-radius:8px; }
figcaption { color:var(--muted); font-size:13px; margin-top:6px; text-align:center; }
details summary { cursor:pointer; color:var(--accent); }
.links a { color:var(--accent); text-decoration:none; margin-right:18px; }
.links a:hover { text-decoration:underline; }
footer { color:var(--muted); font-size:12px; text-align:center; margin-top:24px; }
.muted { color:var(--muted); }
@media print { body { background:#fff; } .card { box-shadow:none; break-inside:avoid; } }
"""


def _kv_table(rows: Iterable[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th scope='row'>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _data_section(summary: Mapping[str, Any]) -> str:
    rows: list[tuple[str, str]] = []
    known = {"rows", "features", "class_distribution", "dataset_fingerprint"}
    if "rows" in summary:
        rows.append(("Rows", _number(summary["rows"])))
    features = summary.get("features")
    if isinstance(features, int | np.integer):
        rows.append(("Features", _number(int(features))))
    elif features is not None:
        names = [str(f) for f in features]
        listed = ", ".join(f"<code>{_e(n)}</code>" for n in names)
        rows.append(
            (
                "Features",
                f"{len(names):,} <details><summary>show names</summary>{listed}</details>",
            )
        )
    if summary.get("dataset_fingerprint") is not None:
        rows.append(("Dataset fingerprint", f"<code>{_e(summary['dataset_fingerprint'])}</code>"))
    for key, value in summary.items():
        if key not in known:
            rows.append((_e(key), _number(value) if not isinstance(value, str) else _e(value)))
    parts = [_kv_table((f"{k}", v) for k, v in rows)] if rows else []

    distribution = summary.get("class_distribution")
    if distribution is not None:
        counts = (
            distribution.to_dict() if isinstance(distribution, pd.Series) else dict(distribution)
        )
        total = sum(float(v) for v in counts.values()) or 1.0
        body = "".join(
            f"<tr><td>{_e(label)}</td><td class='num'>{_number(count)}</td>"
            f"<td class='num'>{float(count) / total:.1%}</td>"
            f"<td><div class='bar'><span style='width:{100 * float(count) / total:.1f}%'>"
            "</span></div></td></tr>"
            for label, count in counts.items()
        )
        parts.append(
            "<h2 style='margin-top:16px'>Class distribution</h2><table><thead><tr><th>Class</th>"
            "<th class='num'>Rows</th><th class='num'>Share</th><th></th></tr></thead>"
            f"<tbody>{body}</tbody></table>"
        )
    return "".join(parts)


def _metrics_section(
    challenger: Mapping[str, Any],
    champion: Mapping[str, Any] | None,
    baseline: Mapping[str, Any] | None,
    champion_label: str,
    lower_is_better: Iterable[str],
) -> str:
    lower = set(lower_is_better)
    names: list[str] = []
    for source in (challenger, champion or {}, baseline or {}):
        names.extend(str(k) for k in source if str(k) not in names)
    has_champion = champion is not None
    head = (
        "<tr><th>Metric</th><th class='num'>Challenger</th>"
        + (
            f"<th class='num'>{_e(champion_label)}</th><th class='num'>Δ vs champion</th>"
            if has_champion
            else ""
        )
        + "<th class='num'>Baseline</th></tr>"
    )
    body = []
    for name in names:
        mine = challenger.get(name)
        theirs = (champion or {}).get(name)
        cells = [f"<td>{_e(name)}</td>", f"<td class='num'><strong>{_number(mine)}</strong></td>"]
        if has_champion:
            cells.append(f"<td class='num'>{_number(theirs)}</td>")
            a, b = _as_float(mine), _as_float(theirs)
            if a is None or b is None:
                cells.append("<td class='num'>—</td>")
            else:
                delta = a - b
                better = delta < 0 if name in lower else delta > 0
                worse = delta > 0 if name in lower else delta < 0
                css = "up" if better else "down" if worse else ""
                cells.append(f"<td class='num {css}'>{delta:+.4f}</td>")
        cells.append(f"<td class='num'>{_number((baseline or {}).get(name))}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    note = (
        ""
        if has_champion
        else "<p class='muted'>No champion yet: the first model is held to the floors only.</p>"
    )
    return f"<table><thead>{head}</thead><tbody>{''.join(body)}</tbody></table>{note}"


def _frame_table(frame: pd.DataFrame, index_label: str = "") -> str:
    """Any DataFrame as a table; its index is the first column unless it is a plain RangeIndex."""
    show_index = not isinstance(frame.index, pd.RangeIndex) or frame.index.name is not None
    columns = [str(c) for c in frame.columns]
    align = [
        " class='num'"
        if pd.api.types.is_numeric_dtype(frame.iloc[:, j])
        and not pd.api.types.is_bool_dtype(frame.iloc[:, j])
        else ""
        for j in range(len(columns))
    ]
    label = index_label or str(frame.index.name or "")
    head = (f"<th>{_e(label)}</th>" if show_index else "") + "".join(
        f"<th{a}>{_e(c)}</th>" for c, a in zip(columns, align, strict=True)
    )
    rows = []
    for i, key in enumerate(frame.index):
        first = f"<td>{_e(key)}</td>" if show_index else ""
        # iat keeps each column's dtype (iterrows would turn an int support into a float).
        cells = "".join(
            f"<td{align[j]}>{_number(frame.iat[i, j])}</td>" for j in range(len(columns))
        )
        rows.append(f"<tr>{first}{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def model_report_html(
    *,
    model_name: str,
    version: str | int,
    challenger_metrics: Mapping[str, Any],
    champion_metrics: Mapping[str, Any] | None = None,
    baseline_metrics: Mapping[str, Any] | None = None,
    decision: str | bool | None = None,
    reason: str = "",
    data_summary: Mapping[str, Any] | None = None,
    per_class: pd.DataFrame | None = None,
    images: Mapping[str, str | os.PathLike[str] | bytes | None] | None = None,
    champion_version: str | int | None = None,
    gate_details: Mapping[str, Any] | None = None,
    tables: Mapping[str, pd.DataFrame] | None = None,
    links: Mapping[str, str] | None = None,
    lower_is_better: Iterable[str] = LOWER_IS_BETTER,
    generated_at: datetime | None = None,
) -> str:
    """A self-contained static HTML page for one model version: inline CSS, images embedded as
    base64 data URIs, no scripts, no external resources; every caller-provided string is
    escaped with `html.escape`.

    - `challenger_metrics` / `champion_metrics` / `baseline_metrics`: metric name -> value (None
      or NaN shows as "—"); no champion (the first model) drops the champion columns. Deltas vs
      the champion are green when better (metrics in `lower_is_better` count down).
    - `decision`: True/False, or a word ("promoted"/"rejected"/"pass"/"fail"... anything else is
      shown neutral); `reason`: the gate's one sentence; `gate_details`: the numbers behind it.
    - `data_summary`: as `summarize_data` returns (rows, features as names or a count,
      class_distribution as a dict or Series, dataset_fingerprint); other keys are listed too.
    - `per_class`: as `per_class_report` returns (or with a "class" column).
    - `tables`: heading -> any further DataFrame (e.g. `drift.detect_drift`'s table), shown after
      the per-class table; a non-default index is shown as the first column.
    - `images`: caption -> PNG/JPEG as a path or bytes; None values are skipped (e.g. `roc_png`
      returned None). A path that does not exist raises.
    - `links`: label -> URL (MLflow run, Dagster asset); only http(s) and relative URLs become
      links.
    """
    generated = (generated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    label, css = _verdict(decision)
    champion_label = f"Champion v{champion_version}" if champion_version is not None else "Champion"
    sections: list[str] = []

    decision_body = f"<h2>Gate decision</h2><span class='badge {css}'>{_e(label)}</span>"
    if reason:
        decision_body += f"<p class='reason'>{_e(reason)}</p>"
    if gate_details:
        decision_body += (
            "<div style='margin-top:12px'>"
            + _kv_table(
                (_e(k), _number(v) if not isinstance(v, str) else _e(v))
                for k, v in gate_details.items()
            )
            + "</div>"
        )
    sections.append(f"<section class='card decision {css}'>{decision_body}</section>")

    metrics_html = _metrics_section(
        challenger_metrics, champion_metrics, baseline_metrics, champion_label, lower_is_better
    )
    metrics_card = f"<section class='card'><h2>Holdout metrics</h2>{metrics_html}</section>"
    if data_summary:
        data_card = f"<section class='card'><h2>Data</h2>{_data_section(data_summary)}</section>"
        sections.append(f"<div class='grid'>{metrics_card}{data_card}</div>")
    else:
        sections.append(metrics_card)

    if per_class is not None and len(per_class):
        frame = per_class.set_index("class") if "class" in per_class.columns else per_class
        sections.append(
            "<section class='card'><h2>Per class</h2>"
            f"{_frame_table(frame, index_label='Class')}</section>"
        )
    for heading, table in (tables or {}).items():
        sections.append(
            f"<section class='card'><h2>{_e(heading)}</h2>{_frame_table(table)}</section>"
        )

    figures = [
        f"<figure><img src='{_image_data_uri(source)}' alt='{_e(caption)}'>"
        f"<figcaption>{_e(caption)}</figcaption></figure>"
        for caption, source in (images or {}).items()
        if source is not None
    ]
    if figures:
        sections.append(
            f"<section class='card'><h2>Plots</h2><div class='grid'>{''.join(figures)}</div>"
            "</section>"
        )

    if links:
        anchors = []
        for text, url in links.items():
            href = _safe_href(str(url))
            anchors.append(
                f"<a href='{_e(href)}'>{_e(text)}</a>"
                if href is not None
                else f"<span>{_e(text)}: <code>{_e(url)}</code></span>"
            )
        sections.append(f"<section class='card links'><h2>Links</h2>{''.join(anchors)}</section>")

    title = f"{model_name} v{version}"
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>Model report · {_e(title)}</title><style>{_CSS}</style></head><body><main>"
        f"<header><h1>{_e(model_name)} <span class='version'>v{_e(version)}</span></h1>"
        f"<span class='badge {css}'>{_e(label)}</span>"
        f"<div class='subtitle'>Model report · generated {_e(generated)}</div></header>"
        + "".join(sections)
        + "<footer>Static report: no server needed.</footer></main></body></html>\n"
    )
