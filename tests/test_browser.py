"""End to end: `streamlit run` on a free loopback port, driven by Debian's Chromium via playwright."""

import re
import shutil

import pytest

from skin_model.i18n import t

from .conftest import REPO, SAMPLES_DIR
from .server import streamlit_server

CHROMIUM = shutil.which("chromium")
ARTIFACTS = REPO / "test-artifacts"
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (CI installs it with apt-get)")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # a generated test pattern as the camera, allowed without a prompt
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server shared by the tests of this module; yields its URL and its log file."""
    log_path = tmp_path_factory.mktemp("server") / "streamlit.log"
    with streamlit_server(log_path) as url:
        yield url, log_path


@pytest.fixture(scope="module")
def browser():
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _choose(page, label: str, option: str):
    page.get_by_label(label).first.click()
    page.get_by_role("option", name=option, exact=True).click()


def test_a_shared_link_to_a_page_is_the_whole_app_on_a_fresh_server(browser, tmp_path):
    """The first visitor after a restart may come by a link to another page. Streamlit
    then runs that page by itself if it sits in a folder named ``pages/`` (its older
    multipage mode): no language menu, no translated page list, no wide layout."""
    with streamlit_server(tmp_path / "streamlit.log") as url:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{url}/batch?lang=fr")
        page.get_by_text(t("batch.title", "fr")).wait_for(timeout=60_000)
        nav = page.locator("[data-testid=stSidebarNav]")
        for key in ("page.analyse", "page.batch", "page.card", "page.about"):
            assert nav.get_by_text(t(key, "fr"), exact=True).count() == 1
        assert page.get_by_text(t("app.language", "fr")).count() == 1
        page.close()


def _diagnose_with_metadata(browser, url: str):
    """An Analyse page at 1280x800 that has answered a sample with age, sex and body site given."""
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(url)
    page.get_by_text(t("diag.title", "en")).wait_for(timeout=60_000)
    age = page.get_by_label(t("meta.age", "en"))
    age.fill("40")
    age.press("Enter")
    _choose(page, t("meta.sex", "en"), "female")
    _choose(page, t("meta.site", "en"), "upper extremity")
    page.wait_for_timeout(1500)  # the rerun of the last choice redraws the uploader: let it settle
    page.locator("input[type=file]").first.set_input_files(str(SAMPLES_DIR / "ISIC_0027622.jpg"))
    page.get_by_text(t("refer.number", "en")).first.wait_for(timeout=90_000)
    return page


def test_diagnose_in_a_real_browser(server, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    page = _diagnose_with_metadata(browser, server[0])
    page.wait_for_function("document.querySelectorAll('[data-testid=stImage] img').length >= 2", timeout=60_000)
    page.locator("table b").first.wait_for(timeout=30_000)  # all seven diagnoses
    page.wait_for_timeout(1500)  # let the last rerun settle before the picture
    answer = page.get_by_text(re.compile("Most probable:|Uncertain between")).first
    assert any(code in answer.inner_text() for code in ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"))
    assert page.locator("[data-testid=stException]").count() == 0
    page.screenshot(path=str(ARTIFACTS / "diagnose-1280.png"))
    # Streamlit scrolls inside its own container: a tall viewport shows the whole page.
    for name, size in {"diagnose-1280-full": (1280, 2000), "diagnose-390-full": (390, 3400)}.items():
        page.set_viewport_size({"width": size[0], "height": size[1]})
        page.wait_for_timeout(1500)
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
    overflow = page.evaluate("document.documentElement.scrollWidth > window.innerWidth + 1")
    assert not overflow, "the page scrolls sideways on a phone"
    page.close()


def test_camera_test_pattern_is_flagged_as_not_dermoscopy(server, browser):
    """The camera source, with Chromium's fake camera: its test pattern gets the out-of-domain
    warning first, and the model's answer only on request."""
    context = browser.new_context(permissions=["camera"], viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(server[0])
    page.get_by_text(t("diag.title", "en")).wait_for(timeout=60_000)
    page.get_by_text(t("diag.source.camera", "en"), exact=True).click()
    # The button takes a photo only once the stream plays.
    page.wait_for_function(
        "(() => { const v = document.querySelector('video'); return v && v.readyState >= 2; })()", timeout=60_000
    )
    page.wait_for_timeout(1000)
    page.get_by_role("button", name="Take Photo").click(timeout=60_000)
    warning = page.get_by_text(t("refer.plain.cannot_judge", "en"))
    try:
        warning.wait_for(timeout=90_000)
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "camera-1280.png"))
    assert page.get_by_text("Most probable:").count() == 0  # no answer, no number
    assert page.get_by_text(t("refer.number", "en")).count() == 0
    page.get_by_text(t("diag.show_anyway", "en")).click()
    page.get_by_text("Answer given anyway").wait_for(timeout=60_000)
    assert page.locator("[data-testid=stException]").count() == 0
    context.close()


def test_french_survives_a_reload_and_every_selector_speaks_it(server, browser):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(server[0])
    page.get_by_text(t("diag.title", "en")).wait_for(timeout=60_000)
    _choose(page, t("app.language", "en"), "Français")
    page.get_by_text(t("diag.title", "fr")).wait_for(timeout=30_000)
    page.wait_for_timeout(1000)
    assert "lang=fr" in page.url
    for label, value in (
        (t("meta.sex", "fr"), t("sex.unknown", "fr")),
        (t("meta.site", "fr"), t("site.unknown", "fr")),
    ):
        shown = page.get_by_label(label).first.input_value()
        assert shown == value, shown
    checked = page.locator("[data-testid=stRadio] input[type=radio]:checked")
    assert checked.count() >= 1, "the image-source radio lost its selection"
    page.reload()
    page.get_by_text(t("diag.title", "fr")).wait_for(timeout=60_000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "analyse-fr-1280.png"))
    page.close()


def _answer(page):
    """The differential's first line: the most probable diagnosis, or the two it cannot tell apart."""
    return page.get_by_text(re.compile("Most probable:|Uncertain between|Le plus probable|Incertain entre"))


def _verdict(page, lang: str = "en"):
    """The referral verdict's box, whichever it is."""
    texts = "|".join(
        re.escape(t(f"refer.{v}", lang)) for v in ("suspicious", "borderline", "not_suspicious", "cannot_judge")
    )
    return page.locator("h4").filter(has_text=re.compile(texts))


def _analyse(browser, url: str, lang: str, size: tuple[int, int], sample="ISIC_0027622.jpg"):
    """A page at ``size`` that has analysed a sample (a name in the samples, or a path), its verdict shown."""
    page = browser.new_page(viewport={"width": size[0], "height": size[1]})
    page.goto(f"{url}/?lang={lang}")
    page.get_by_text(t("diag.title", lang)).wait_for(timeout=60_000)
    page.locator("input[type=file]").first.set_input_files(str(SAMPLES_DIR / sample))  # a path stays itself
    _verdict(page, lang).first.wait_for(timeout=90_000)
    page.wait_for_function("document.querySelectorAll('[data-testid=stImage] img').length >= 2", timeout=60_000)
    page.wait_for_timeout(1500)
    return page


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_on_a_phone_the_verdict_and_its_image_are_on_the_first_screen(server, browser, lang):
    page = _analyse(browser, server[0], lang, (390, 844))
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"analyse-390-first-screen-{lang}.png"))
    box = _verdict(page, lang).first.bounding_box()
    assert box is not None and box["y"] + box["height"] <= 844, f"the verdict starts at y={box and box['y']}"
    image = _verdict(page, lang).first.locator("img").first.bounding_box()  # the image, beside its verdict
    assert image and image["y"] + image["height"] <= 844, f"the image starts at y={image and image['y']}"
    page.set_viewport_size({"width": 1280, "height": 900})
    page.wait_for_timeout(1000)
    page.screenshot(path=str(ARTIFACTS / f"analyse-1280-{lang}.png"))
    page.close()


def test_the_answer_survives_another_page(server, browser):
    page = browser.new_page(viewport={"width": 390, "height": 844})
    page.goto(server[0])
    page.get_by_text(t("diag.title", "en")).wait_for(timeout=60_000)
    page.locator("input[type=file]").first.set_input_files(str(SAMPLES_DIR / "ISIC_0027622.jpg"))
    _answer(page).first.wait_for(timeout=90_000)
    page.wait_for_timeout(1500)
    headline = _answer(page).first.inner_text()
    # Within the same session (a new URL would start a new one): through the sidebar's links.
    page.set_viewport_size({"width": 1280, "height": 900})
    page.get_by_role("link", name=t("page.about", "en")).first.click(timeout=30_000)
    page.get_by_text(t("about.data", "en")).first.wait_for(timeout=30_000)
    page.get_by_role("link", name=t("page.analyse", "en")).first.click(timeout=30_000)
    _answer(page).first.wait_for(timeout=60_000)
    assert _answer(page).first.inner_text() == headline
    assert page.get_by_text(t("diag.kept", "en", name="ISIC_0027622.jpg")).count() == 1
    page.close()


def _batch_of_one(browser, url: str, image):
    """A Batch page at 1280x900 that has analysed ``image``, its summary chart drawn."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{url}/batch")
    page.get_by_text(t("batch.title", "en")).wait_for(timeout=60_000)
    page.locator("input[type=file]").first.set_input_files(str(image))
    page.get_by_role("button", name=t("batch.run", "en", n=1)).click(timeout=30_000)
    page.locator(".js-plotly-plot").first.wait_for(timeout=90_000)
    page.wait_for_timeout(1000)
    return page


def test_a_batch_in_a_real_browser(server, browser, tmp_path):
    """One image through the Batch page: its table, its chart and its CSV, which names the image
    by its file name and holds the model's answer."""
    import pandas as pd

    from skin_model import vocab
    from skin_model.inference.referral import VERDICTS

    image = tmp_path / "patient_durand_2024.jpg"
    image.write_bytes((SAMPLES_DIR / "ISIC_0027622.jpg").read_bytes())
    page = _batch_of_one(browser, server[0], image)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "batch-1280.png"))
    assert page.locator("[data-testid=stException]").count() == 0
    assert page.locator("[data-testid=stDataFrame]").count() == 1  # the table of answers
    assert page.locator(".js-plotly-plot").count() == 1  # the summary chart
    with page.expect_download() as download:
        page.get_by_text(t("batch.download", "en")).click()
    table = pd.read_csv(download.value.path(), keep_default_na=False)
    assert list(table["image_id"]) == ["patient_durand_2024"]
    assert table.loc[0, "error"] == "" and table.loc[0, "prediction"] in vocab.CLASSES
    assert table.loc[0, "verdict"] in VERDICTS
    page.close()


def _percent(text: str) -> float:
    """'48.3%' or '48,3 %' (French) -> 0.483."""
    return float(re.sub(r"[^0-9.,]", "", text).replace(",", ".")) / 100


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_one_malignancy_number_in_the_verdict_the_table_and_the_json(server, browser, lang):
    """The verdict's P(malignant) is the table's mel + bcc + akiec and the JSON download's."""
    import json

    page = _analyse(browser, server[0], lang, (1280, 900), "ISIC_0029827.jpg")
    page.locator("table b").first.wait_for(timeout=30_000)
    score_line = page.get_by_text(re.compile(re.escape(t("refer.number", lang))))
    verdict_number = _percent(score_line.first.locator("strong").first.inner_text())
    rows = {}
    for row in page.locator("table tbody tr").all():
        code = row.locator("b").first.inner_text()
        rows[code] = _percent(row.locator("td").nth(2).inner_text())
    assert len(rows) == 7
    assert sum(rows[c] for c in ("mel", "bcc", "akiec")) == pytest.approx(verdict_number, abs=0.0016)  # 3 roundings
    with page.expect_download() as download:
        page.get_by_text(t("diag.download", lang)).click()
    report = json.loads(download.value.path().read_text())
    assert report["malignant_probability"] == report["referral_probability"]
    assert report["malignant_probability"] == pytest.approx(verdict_number, abs=0.0005)
    page.close()


def test_a_full_size_upload_is_answered_as_its_training_copy(server, browser):
    """A dermatoscope's 600x450 original, uploaded in Chromium: the verdict and number of its
    200x150 training copy (issue 43), which the model answers here."""
    import skin_model
    from skin_model.inference.referral import answer_state

    full_size = REPO / "tests" / "fixtures" / "full_size"
    copy = skin_model.load_model().predict(full_size / "ISIC_0030119_copy.jpg")
    page = _analyse(browser, server[0], "en", (1280, 900), full_size / "ISIC_0030119.jpg")
    heading = _verdict(page).first.inner_text()  # its icon, then the state's words
    assert heading.strip().endswith(t(f"refer.{answer_state(copy.verdict, copy.borderline)}", "en"))
    score_line = page.get_by_text(re.compile(re.escape(t("refer.number", "en"))))
    assert _percent(score_line.first.locator("strong").first.inner_text()) == pytest.approx(
        copy.malignant_probability, abs=0.02
    )
    page.close()


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_on_a_phone_the_batch_verdict_column_comes_first(server, browser, tmp_path, lang):
    image = tmp_path / "lesion.jpg"
    image.write_bytes((SAMPLES_DIR / "ISIC_0027622.jpg").read_bytes())
    page = browser.new_page(viewport={"width": 390, "height": 844})
    page.goto(f"{server[0]}/batch?lang={lang}")
    page.get_by_text(t("batch.title", lang)).wait_for(timeout=60_000)
    page.locator("input[type=file]").first.set_input_files(str(image))
    page.get_by_role("button", name=t("batch.run", lang, n=1)).click(timeout=30_000)
    grid = page.locator("[data-testid=stDataFrame]").first
    grid.wait_for(timeout=90_000)
    page.wait_for_timeout(1500)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"batch-390-{lang}.png"), full_page=True)
    # The grid draws on a canvas; its accessibility layer lists the columns drawn in view.
    drawn = [h.strip() for h in grid.locator("[role=columnheader]").all_inner_texts()]
    # after the rank and the picture: the state, then its number
    assert drawn[2:4] == [t("column.verdict", lang), t("column.malignant_probability", lang)], drawn
    frame = grid.bounding_box()
    assert frame and frame["x"] >= 0 and frame["x"] + frame["width"] <= 390
    page.close()


def test_every_page_in_both_languages_logs_no_traceback(server, browser):
    for lang in ("en", "fr"):
        page = browser.new_page(viewport={"width": 390, "height": 844})
        for path in ("", "batch", "model_card", "about"):
            page.goto(f"{server[0]}/{path}?lang={lang}")
            page.locator("h1").first.wait_for(timeout=60_000)
            page.wait_for_timeout(2500)  # charts and tables drawn
            assert page.locator("[data-testid=stException]").count() == 0, (path, lang)
            page.screenshot(path=str(ARTIFACTS / f"page-{path or 'analyse'}-390-{lang}.png"), full_page=True)
        page.close()
    assert "Traceback" not in server[1].read_text(errors="replace")


def test_nothing_of_the_upload_reaches_the_server_log(browser, tmp_path):
    """After real Analyse and Batch answers on a server of its own, the server's log holds no trace of the inputs."""
    image = tmp_path / "patient_durand_2024.jpg"
    image.write_bytes((SAMPLES_DIR / "ISIC_0027622.jpg").read_bytes())
    log_path = tmp_path / "streamlit.log"
    with streamlit_server(log_path) as url:
        page = _diagnose_with_metadata(browser, url)
        assert page.locator("[data-testid=stException]").count() == 0
        page.close()
        page = _batch_of_one(browser, url, image)
        assert page.locator("[data-testid=stDataFrame]").count() == 1  # answered
        page.close()
        log = log_path.read_text(errors="replace")
    assert "ISIC_0027622" not in log and "upper extremity" not in log
    assert "patient_durand" not in log
    assert "Traceback" not in log
