"""Batch: several images and an optional metadata CSV -> a table, a summary chart, a CSV."""
import io
from pathlib import Path

import plotly.express as px
import streamlit as st

import ui
from skin_model import vocab
from skin_model.batch import BatchItem, predict_items, read_metadata_table
from skin_model.i18n import error_text
from skin_model.inputs import InvalidInputError

tr = ui.tr
model = ui.model()
st.title(tr("batch.title"))
st.info(tr("app.disclaimer"), icon=":material/medical_information:")

files = st.file_uploader(tr("batch.images"), type=ui.UPLOAD_TYPES,
                         accept_multiple_files=True, key="batch_images")
csv = st.file_uploader(tr("batch.metadata"), type=["csv"], key="batch_csv")

if not files:
    st.caption(tr("batch.empty"))
elif st.button(tr("batch.run", n=len(files)), type="primary", key="batch_run"):
    try:
        table = read_metadata_table(io.BytesIO(csv.getvalue())) if csv else {}
    except InvalidInputError as err:
        st.error(error_text(err, ui.lang()))
        st.stop()
    items = [BatchItem(Path(f.name).stem, f.getvalue(), table.get(Path(f.name).stem, {})) for f in files]
    bar = st.progress(0.0)
    st.session_state["batch_result"] = predict_items(
        model, items, prior=vocab.DEFAULT_PRIOR, progress=lambda i, n: bar.progress(i / n, text=tr("batch.progress", i=i, n=n)))
    bar.empty()

result = st.session_state.get("batch_result")
if result is not None:
    failed = int((result["error"] != "").sum())
    if failed:
        st.warning(tr("batch.failed", n=failed))
    flagged = int((result["ood"] == 1).sum())
    if flagged:
        st.warning(tr("batch.ood", n=flagged))
    st.dataframe(result, hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(format="%.3f") for c in vocab.CLASSES})
    counts = result.loc[result["prediction"] != "", "prediction"].value_counts().reindex(vocab.CLASSES, fill_value=0)
    fig = px.bar(x=[ui.label(c) for c in counts.index], y=counts.values,
                 labels={"x": tr("chart.class"), "y": tr("batch.count")}, title=tr("batch.summary"))
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=40, b=10))
    st.plotly_chart(fig, config={"displayModeBar": False})
    st.download_button(tr("batch.download"), result.to_csv(index=False), file_name="skin_model_batch.csv",
                       mime="text/csv", icon=":material/download:")
