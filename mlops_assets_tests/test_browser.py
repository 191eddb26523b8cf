"""The three ways people use the platform, driven in a real browser (Playwright + Debian's
Chromium) against a live `mlops-assets dev` (Dagster webserver + daemon, MLflow server) on a
temporary MLOPS_HOME: browsing the lineage, materializing from the UI, and watching a landed file
become a sensor tick, a run and a new registered version. Screenshots go to
test-artifacts/browser/ (the README's pictures are copies of lineage.png, asset-metadata.png and
automation.png).

Needs the `playwright` Python package and /usr/bin/chromium (`apt-get install chromium`; the
Playwright browser download does not work here); skipped without it, except under CI."""

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from mlops_assets.sources import DEMO_SOURCE

from .conftest import fail_without, needs
from .live import ROOT, Live, running_dev, wait_for

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts" / "browser"
VIEWPORT = {"width": 1280, "height": 800}
# The graph at a size where Dagster draws whole cards (checks, partitions, kinds, status) at
# the fitted zoom (0.6 or more; below it a card is its name only): 2160x1350 CSS pixels at a
# device scale of 1280/2160, a 1280x800 picture. The six columns of the graph fit at 0.68
# there (at 1920x1200, 0.59: bare names).
DETAIL = {"viewport": {"width": 2160, "height": 1350}, "device_scale_factor": 1280 / 2160}
MODEL = "breast_cancer_classifier"
# What must be there whatever else the definitions grow: the four-asset spine and its checks.
CORE = {
    "raw_dataset": {"files_readable"},
    "validated_dataset": {"dataset_rules", "rows_reconcile"},
    "trained_model": set(),
    "registered_model": {"promotion_gate"},
}
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}
RUN_TIMEOUT = 180  # seconds from launch to a terminal status; ~35 s on this 2-core machine

CHROMIUM_MISSING = (
    None
    if CHROMIUM.exists()
    else f"browser tests need Debian's Chromium at {CHROMIUM} (apt install chromium)"
)
pytestmark = [pytest.mark.slow, needs(CHROMIUM_MISSING)]
expect.set_options(timeout=30_000)


@dataclass
class Platform(Live):
    def assets(self) -> dict[str, dict[str, Any]]:
        """Every asset the code location defines: description, check names, partitioned."""
        data = self.graphql(
            "{ assetNodes { assetKey { path } description isPartitioned "
            "assetChecksOrError { ... on AssetChecks { checks { name } } } } }"
        )
        return {
            "/".join(node["assetKey"]["path"]): {
                "description": node["description"] or "",
                "checks": {c["name"] for c in node["assetChecksOrError"].get("checks", [])},
                "partitioned": node["isPartitioned"],
            }
            for node in data["assetNodes"]
        }

    def partitions(self, asset: str = "raw_dataset") -> list[str]:
        data = self.graphql(
            f'{{ assetNodeOrError(assetKey: {{path: ["{asset}"]}}) '
            "{ ... on AssetNode { partitionKeys } } }"
        )
        return list(data["assetNodeOrError"]["partitionKeys"])

    def demo_partition(self) -> None:
        """With the landing folder empty, the landing sensor's first tick adds the one
        partition of the bundled demo data (and requests no run)."""
        wait_for(lambda: self.partitions() == [DEMO_SOURCE], 60, f"the partition {DEMO_SOURCE}")

    def carrying(self, label: str) -> str:
        """The asset whose latest materialization has a metadata entry `label`."""
        data = self.graphql(
            "{ assetNodes { assetKey { path } "
            "assetMaterializations(limit: 1) { metadataEntries { label } } } }"
        )
        for node in data["assetNodes"]:
            for event in node["assetMaterializations"]:
                if any(entry["label"] == label for entry in event["metadataEntries"]):
                    return "/".join(node["assetKey"]["path"])
        raise AssertionError(f"no asset carries {label!r} metadata")


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """The live platform with an empty landing folder, so "Materialize all" reads the demo
    data."""
    fail_without(CHROMIUM_MISSING)
    with running_dev(tmp_path_factory.mktemp("browser")) as live:
        yield Platform(live.url, live.home, live.landing, mlflow_url=live.mlflow_url)


@pytest.fixture(scope="module")
def browser(platform: Platform) -> Iterator[Browser]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        _skip_community_dialog(launched, platform)
        yield launched
        launched.close()


def _skip_community_dialog(browser: Browser, live: Live) -> None:
    """A fresh instance opens "Join the Dagster community" over the first page, a moment after
    it loads (closing any menu that is open). Skip it once: the webserver remembers."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.goto(f"{live.url}/overview")
    dialog = page.get_by_role("dialog").filter(has_text="Join the Dagster community")
    try:
        dialog.get_by_role("button", name="Skip").click(timeout=20_000)
        expect(dialog).to_be_hidden()
    except PlaywrightTimeoutError:
        pass  # already seen on this instance
    context.close()


def _open(browser: Browser, **context: Any) -> Page:
    page = browser.new_context(**{"viewport": VIEWPORT, **context}).new_page()
    page.set_default_timeout(30_000)
    # In case the community dialog comes back: dismiss it whenever it covers the page.
    nux = page.get_by_role("dialog").filter(has_text="Join the Dagster community")
    page.add_locator_handler(nux, lambda dialog: dialog.get_by_role("button", name="Skip").click())
    return page


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    opened = _open(browser)
    yield opened
    opened.context.close()


def _settle(page: Page) -> None:
    """Let panels finish loading and dialogs finish fading in (spinners run forever and are
    ignored). Best effort: a picture taken while something still loads is no failure."""
    page.mouse.move(0, 0)  # no hover card in the picture
    page.wait_for_timeout(300)  # what a resize or a refresh starts to fetch
    with suppress(AssertionError):
        expect(page.get_by_text(re.compile(r"^Loading"))).to_have_count(0, timeout=10_000)
    page.wait_for_function(
        """() => document.getAnimations().every(
            a => a.playState !== 'running' || a.effect?.getComputedTiming().endTime === Infinity)"""
    )


def _unscroll(page: Page) -> None:
    """Clicks near a pane's edge scroll it; put every pane back to its top left corner."""
    page.evaluate("document.querySelectorAll('*').forEach(e => { e.scrollTo(0, 0); })")


def _screenshot(page: Page, name: str) -> Path:
    """The whole page: Dagster scrolls inside panes, so grow the window to the tallest pane
    (a plain full_page screenshot would stop at the window)."""
    size = page.viewport_size or VIEWPORT
    tallest = page.evaluate(
        "Math.max(...Array.from(document.querySelectorAll('*'), e => e.scrollHeight))"
    )
    page.set_viewport_size({"width": size["width"], "height": min(max(tallest, 800), 4000)})
    _settle(page)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(size)
    return path


def _view(page: Page, name: str) -> Path:
    """What the window shows: the README pictures."""
    _settle(page)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def _still(page: Page, locator: Locator) -> None:
    """Wait until an element stops moving (the graph pans and zooms with animations)."""
    last = None
    for _ in range(40):
        box = locator.bounding_box()
        if box is not None and box == last:
            return
        last = box
        page.wait_for_timeout(250)


@contextmanager
def _lineage(browser: Browser, live: Platform, detail: bool = False) -> Iterator[Page]:
    """The global lineage with every group expanded, fitted to the window (in detail, the
    DETAIL window)."""
    page = _open(browser, **(DETAIL if detail else {}))
    page.goto(f"{live.url}/asset-groups")
    try:
        expect(page.get_by_role("button", name="Materialize all")).to_be_visible()
        page.get_by_role("button", name="Hide navigation").click()  # the browser remembers
        # The graph's options: the last "settings" button (the first is the navigation's).
        page.get_by_role("button", name="settings", exact=True).last.click()
        page.get_by_role("menuitem", name="Expand all groups").click()
        expect(page).to_have_url(re.compile(r"[?&]expanded="))
        # Reload: the graph is then fitted once, to the expanded layout (expanding in place
        # re-fits with an animation, or not, depending on timing).
        page.reload()
        for name in live.assets():
            expect(page.get_by_text(name, exact=True)).to_be_visible()
        _still(page, page.get_by_text("raw_dataset", exact=True))
        yield page
    finally:
        page.context.close()


def _node(page: Page, name: str) -> Locator:
    """An asset's card in the lineage graph (the innermost box holding its name and checks)."""
    return (
        page.locator("div")
        .filter(has=page.get_by_text(name, exact=True))
        .filter(has_text="Asset checks")
        .last
    )


def _run_ids(live: Live) -> set[str]:
    return {run["runId"] for run in live.runs()}


def _finished(live: Live, run_id: str) -> dict[str, Any]:
    def status() -> dict[str, Any] | None:
        run = next(r for r in live.runs() if r["runId"] == run_id)
        return run if run["status"] in TERMINAL else None

    run = wait_for(status, RUN_TIMEOUT, f"run {run_id} to finish")
    assert run["status"] == "SUCCESS", f"run {run_id} ended {run['status']}"
    return run


def _metadata_row(page: Page, key: str) -> Locator:
    """A row of an asset page's metadata table: key, timestamp, value."""
    return page.get_by_role("row").filter(has=page.get_by_role("cell", name=key, exact=True))


def _metadata_value(page: Page, key: str) -> Locator:
    # The third cell; a markdown table inside it has cells of its own, after it.
    return _metadata_row(page, key).get_by_role("cell").nth(2)


def _metadata_link(page: Page, key: str) -> Locator:
    return _metadata_value(page, key).get_by_role("link").first


def _first_words(description: str) -> str:
    """The start of a description as the UI renders it (markdown: stop at the first code span)."""
    return re.split(r"[`\n*_]", description, maxsplit=1)[0][:60].strip()


def test_lineage_shows_the_graph_and_its_checks(platform: Platform, browser: Browser) -> None:
    assets = platform.assets()
    for name, checks in CORE.items():
        assert name in assets, f"{name} is not defined"
        assert checks <= assets[name]["checks"], f"{name} lacks checks {checks}"
    # One partition per landed file for the data; the model is built from all of them.
    partitioned = {name for name, asset in assets.items() if asset["partitioned"]}
    assert {"raw_dataset", "validated_dataset"} <= partitioned, partitioned
    assert not {"trained_model", "registered_model"} & partitioned, partitioned
    platform.demo_partition()

    with _lineage(browser, platform, detail=True) as graph:
        for group in ("data", "model", "monitoring", "serving"):
            expect(graph.get_by_text(group, exact=True).first).to_be_visible()
        for name, asset in assets.items():
            node = _node(graph, name)
            n = len(asset["checks"])
            expect(node).to_contain_text(
                re.compile(rf"Asset checks\s*\d+ / {n} Passed") if n else "Asset checks"
            )
            # A partitioned card counts its partitions: the demo data's one, none filled yet.
            if asset["partitioned"]:
                expect(node).to_contain_text(re.compile(r"Partitions\s*0% filled"))
                expect(node).to_contain_text("1 partition")
            else:
                expect(node).not_to_contain_text("% filled")
        for kind in ("pandas", "Pandera", "Scikit Learn", "ML Flow"):
            expect(graph.get_by_text(kind, exact=True).first).to_be_visible()
        _view(graph, "lineage-detail")

        # A node opens the asset beside the graph: its description and its checks.
        graph.get_by_text("registered_model", exact=True).click()
        expect(graph).to_have_url(re.compile(r"/asset-groups/registered_model\?"))
        # The others by the same address (a click would need each node panned into view).
        query = urlsplit(graph.url).query
        for name in sorted(assets, key=lambda key: key != "registered_model"):
            asset = assets[name]
            if name != "registered_model":
                graph.goto(f"{platform.url}/asset-groups/{name}?{query}")
            expect(graph.get_by_role("link", name="View in Asset Catalog")).to_have_attribute(
                "href", f"/assets/{name}"
            )
            if asset["description"]:
                expect(graph.get_by_text(_first_words(asset["description"]))).to_be_visible()
            for check in asset["checks"]:
                expect(graph.get_by_role("link", name=check)).to_be_visible()
            if name == "validated_dataset":
                _screenshot(graph, "lineage-node")


def test_materialize_all_shows_metadata_checks_and_mlflow_links(
    platform: Platform, browser: Browser, page: Page
) -> None:
    assets = platform.assets()
    platform.demo_partition()
    before = _run_ids(platform)
    page.goto(f"{platform.url}/asset-groups")
    # Partitioned assets in the selection: the button asks for the partitions first.
    page.get_by_role("button", name="Materialize all…").click()
    dialog = page.get_by_role("dialog").filter(has_text="Launch runs to materialize")
    expect(dialog).to_contain_text(f"Launch runs to materialize {len(assets)} assets")
    dialog.get_by_role("button", name="All", exact=True).click()
    expect(dialog).to_contain_text(re.compile(r"Partition selection\s*1 partition(?!s)"))
    expect(dialog).to_contain_text(DEMO_SOURCE)
    _screenshot(page, "materialize-partitions")
    # One partition: one run of the whole graph for it (more would be a backfill).
    dialog.get_by_role("button", name="Launch 1 run", exact=True).click()
    toast = page.get_by_text(re.compile(r"^Launched run [0-9a-f]{8}$"))
    expect(toast).to_be_visible()
    launched = toast.inner_text()
    expect(dialog).to_be_hidden()
    [run_id] = wait_for(lambda: _run_ids(platform) - before, 60, "the launched run")
    assert launched == f"Launched run {run_id[:8]}", launched
    run = _finished(platform, run_id)
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert tags.get("dagster/partition") == DEMO_SOURCE, tags
    assert _run_ids(platform) - before == {run_id}, "Materialize all launched more than one run"

    page.goto(f"{platform.url}/runs")
    expect(page.get_by_role("link", name=f"run {run_id[:8]}")).to_be_visible()
    expect(page.get_by_text("Manually launched").first).to_be_visible()
    page.goto(f"{platform.url}/runs/{run_id}")
    expect(page.get_by_text("Success", exact=True).first).to_be_visible()
    _screenshot(page, "materialize-run")

    page.goto(f"{platform.url}/assets/registered_model")
    expect(_metadata_value(page, "version")).to_have_text("1")
    expect(_metadata_value(page, "champion")).to_have_text("true")
    expect(_metadata_value(page, "decision")).to_contain_text("first model")
    model_version = f"{platform.mlflow_url}/#/models/{MODEL}/versions/1"
    expect(_metadata_link(page, "model_version")).to_have_attribute("href", model_version)
    expect(_metadata_link(page, "mlflow_run")).to_have_attribute(
        "href", re.compile(rf"^{re.escape(platform.mlflow_url)}/#/experiments/\d+/runs/\w+$")
    )
    _screenshot(page, "registered-model")

    page.get_by_role("tab", name="Checks").click()
    expect(page.get_by_text("promotion_gate").first).to_be_visible()
    expect(page.get_by_text("Passed", exact=True).first).to_be_visible()
    expect(page.get_by_text("first model: f1_macro").first).to_be_visible()
    _screenshot(page, "promotion-gate")

    # The validated data's columns come from the Pandera schema (dagster/column_schema).
    page.goto(f"{platform.url}/assets/validated_dataset")
    expect(page.get_by_text("mean radius", exact=True).first).to_be_visible()
    expect(page.get_by_text("target", exact=True).first).to_be_visible()
    _screenshot(page, "validated-dataset")

    page.goto(f"{platform.url}/assets/trained_model")
    # Every candidate of both families, in a table too wide to show inline: it opens.
    candidates = _metadata_row(page, "candidates")
    candidates.scroll_into_view_if_needed()
    candidates.get_by_text("Show Markdown").click()
    table = page.get_by_role("dialog")
    expect(table).to_contain_text("n_estimators")
    expect(table).to_contain_text("hist_gradient_boosting")
    page.keyboard.press("Escape")
    expect(table).to_be_hidden()
    expect(_metadata_value(page, "family")).to_contain_text("hist_gradient_boosting")
    expect(_metadata_link(page, "mlflow_run")).to_have_attribute(
        "href", re.compile(rf"^{re.escape(platform.mlflow_url)}/#/experiments/\d+/runs/\w+$")
    )
    _screenshot(page, "trained-model")

    # The MLflow link leads to the registered version in the MLflow UI.
    page.goto(model_version)
    expect(page.get_by_text("Version 1", exact=True).first).to_be_visible()
    expect(page.get_by_text("champion").first).to_be_visible()
    _screenshot(page, "mlflow-model-version")

    # The report link opens the HTML report in MLflow's artifact view.
    page.goto(f"{platform.url}/assets/model_report")
    report_url = _metadata_link(page, "model_report_url").get_attribute("href") or ""
    assert report_url.startswith(platform.mlflow_url), report_url
    page.goto(report_url)
    report = page.frame_locator("iframe").first
    expect(report.get_by_text(f"{MODEL} v1").first).to_be_visible()
    _screenshot(page, "mlflow-model-report")

    # Plots are markdown images: the confusion matrix opens from the metadata table.
    plots = platform.carrying("confusion_matrix")
    page.goto(f"{platform.url}/assets/{plots}")
    matrix = _metadata_row(page, "confusion_matrix")
    matrix.scroll_into_view_if_needed()
    matrix.get_by_text("Show Markdown").click()
    image = page.get_by_role("dialog").get_by_role("img", name="confusion_matrix")
    expect(image).to_be_visible()
    assert image.evaluate("img => img.naturalWidth") > 100, "the confusion matrix did not load"
    _view(page, "asset-metadata")

    # The lineage now shows every asset materialized (its one partition, for the data) and
    # every check passed.
    with _lineage(browser, platform, detail=True) as graph:
        for name, asset in assets.items():
            expect(_node(graph, name)).to_contain_text(
                re.compile(r"Partitions\s*100% filled") if asset["partitioned"] else "Materialized"
            )
            n = len(asset["checks"])
            if n:
                expect(_node(graph, name)).to_contain_text(f"{n} / {n} Passed")
        _view(graph, "lineage-materialized-detail")
    with _lineage(browser, platform) as graph:
        _view(graph, "lineage")


def test_landed_file_is_a_sensor_tick_a_run_and_a_new_version(
    platform: Platform, page: Page
) -> None:
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    frame.iloc[0, 0] += 0.01  # not the demo data's bytes: a new fingerprint
    frame.to_csv(platform.landing / "batch1.csv", index=False)
    landed = time.time()

    page.goto(f"{platform.url}/locations/mlops_assets/sensors/landing_sensor")
    expect(page.get_by_text("Keeps one partition per file in")).to_be_visible()
    # The page refreshes its ticks every few seconds: wait for the tick that saw the file.
    expect(page.get_by_text("1 run requested").first).to_be_visible(timeout=90_000)

    def sensor_run() -> str | None:
        for run in platform.runs():
            tags = {t["key"]: t["value"] for t in run["tags"]}
            if tags.get("dagster/sensor_name") == "landing_sensor":
                return str(run["runId"])
        return None

    run_id = wait_for(sensor_run, 30, "a run launched by landing_sensor")
    expect(page.get_by_role("link", name=run_id[:8]).first).to_be_visible()
    _finished(platform, run_id)
    took = time.time() - landed

    page.goto(f"{platform.url}/runs")
    expect(page.get_by_role("link", name=f"run {run_id[:8]}")).to_be_visible()
    expect(page.get_by_role("link", name="landing_sensor").first).to_be_visible()
    _screenshot(page, "automation-runs")

    page.goto(f"{platform.url}/runs/{run_id}")
    expect(page.get_by_text("Success", exact=True).first).to_be_visible()
    expect(page.get_by_text("Launched by")).to_be_visible()
    expect(page.get_by_text("landing_sensor", exact=True).first).to_be_visible()
    _screenshot(page, "automation-run")

    page.goto(f"{platform.url}/assets/registered_model")
    expect(_metadata_value(page, "version")).to_have_text("2")
    expect(_metadata_link(page, "model_version")).to_have_attribute(
        "href", f"{platform.mlflow_url}/#/models/{MODEL}/versions/2"
    )
    _screenshot(page, "automation-registered-model")

    # After the run the sensor skips, and says why (the button opens the tick).
    page.goto(f"{platform.url}/locations/mlops_assets/sensors/landing_sensor")
    page.get_by_role("button", name="0 runs requested").first.click()
    tick = page.get_by_role("dialog").filter(has_text="Tick for landing_sensor")
    expect(tick).to_contain_text("Skip reason")
    expect(tick).to_contain_text("no new, changed or removed files")
    tick.get_by_role("button", name="Close").click()
    # Only the ticks that requested a run: this one, with its (successful) run.
    page.get_by_role("button", name="All ticks").click()
    page.get_by_role("menuitem", name="Requested").click()
    ticks = page.get_by_role("row").filter(has_text="View logs")
    expect(page.get_by_text("Loading ticks")).to_have_count(0)
    expect(ticks.filter(has_text="0 runs requested")).to_have_count(0)
    requested = ticks.filter(has_text="1 run requested")
    expect(requested).to_have_count(1)
    expect(requested.get_by_role("link", name=run_id[:8])).to_be_visible()
    _unscroll(page)
    _view(page, "automation")
    _screenshot(page, "automation-sensor")
    print(f"landed file to a finished run: {took:.0f} s")
