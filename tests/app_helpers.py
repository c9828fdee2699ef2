"""Helpers shared by the Streamlit page tests (``test_page_*.py``), driven headless by streamlit.testing."""

from streamlit.testing.v1 import AppTest

from skin_model.i18n import t
from skin_model.inference.referral import STATES

from .conftest import REPO, SAMPLES_DIR

SAMPLE = SAMPLES_DIR / "ISIC_0027622.jpg"


def _app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(str(REPO / "navigation.py"), default_timeout=60)
    at.run()
    if page:
        at.switch_page(page)
        at.run()
    assert not at.exception, at.exception
    return at


def _probability_table(at) -> str | None:
    """The Analyse page's HTML table of all seven diagnoses, if shown."""
    return next((m.value for m in at.markdown if m.value.startswith("<table")), None)


def _texts(at) -> str:
    return " ".join(
        str(e.value) for kind in ("markdown", "subheader", "title", "caption", "error", "info") for e in at.get(kind)
    )


def _upload(at, name, data, mime="image/jpeg"):
    at.file_uploader(key="upload.widget").set_value((name, data, mime))
    at.run()
    assert not at.exception, at.exception


def _batch(at, files, csv=None):
    at.file_uploader(key="batch_images").set_value(files)
    at.file_uploader(key="batch_csv").set_value(("meta.csv", csv, "text/csv") if csv else None)
    at.run()
    at.button(key="batch_run").click().run()
    assert not at.exception, at.exception
    return at.session_state["batch"]["result"]


def _verdicts(at) -> list[str]:
    """The answer states shown (their headings: suspicious, borderline, not suspicious, cannot judge), in order."""
    names = {t(f"refer.{v}", lang): v for v in STATES for lang in ("en", "fr")}
    return [v for m in at.markdown for text, v in names.items() if m.value.startswith("####") and text in m.value]


def at_threshold() -> float:
    import skin_model

    return skin_model.load_model().ood.threshold


def _card() -> dict:
    from skin_model.inference.card import read_card_of_shipped

    return read_card_of_shipped()


def _busy(*args, **kwargs):
    from skin_model.inference.torch_thread import TorchThreadError

    raise TorchThreadError("The model is busy with too many requests; please try again shortly.")


def _warnings(at) -> str:
    return " ".join(str(w.value) for w in at.warning)
