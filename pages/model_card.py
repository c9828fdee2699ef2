"""Model card: what the shipped model is, how it was trained, how well it does on held-out data."""
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import ui
from skin_model import vocab

tr = ui.tr
card = ui.model().card
st.title(tr("card.title"))
members = " + ".join(m["architecture"] for m in card["members"])
st.write(tr("card.summary", members=members, version=card["model_version"], date=card["created"],
            size=card["input"]["size"]))

metrics = card.get("test_metrics")
if not metrics:
    st.warning(tr("card.no_metrics"))
else:
    fused = metrics["ensemble"]["fused"]
    st.subheader(tr("card.headline"))
    cols = st.columns(4)
    cols[0].metric(tr("card.bal_acc"), f"{fused['balanced_accuracy']:.3f}")
    cols[1].metric(tr("card.auc"), f"{fused['macro_auc']:.3f}")
    cols[2].metric(tr("card.ece"), f"{fused['ece_15']:.3f}")
    cols[3].metric(tr("card.accuracy"), f"{fused['accuracy']:.3f}")
    base = metrics["majority_baseline"]
    st.caption(tr("card.baseline", acc=base["accuracy"], bal=base["balanced_accuracy"]))

    st.subheader(tr("card.table"))
    rows = []
    for name, views in metrics.items():
        if name.startswith(("member_", "ensemble")):
            for view, r in views.items():
                model_name = tr("card.ensemble") if name == "ensemble" else name.split("_", 2)[2]
                rows.append({tr("card.model"): model_name,
                             tr("card.view"): tr("diag.fused") if view == "fused" else tr("diag.image_only"),
                             tr("card.accuracy"): r["accuracy"], tr("card.bal_acc"): r["balanced_accuracy"],
                             tr("card.auc"): r["macro_auc"], tr("card.ece_raw"): r["ece_15_before_calibration"],
                             tr("card.ece"): r["ece_15"]})
    table = pd.DataFrame(rows)
    st.dataframe(table, hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(format="%.3f") for c in table.columns[2:]})

    left, right = st.columns(2)
    with left:
        st.subheader(tr("card.recall"))
        recall = fused["recall"]
        fig = go.Figure(go.Bar(x=list(vocab.CLASSES), y=[recall[c] for c in vocab.CLASSES],
                               text=[f"{recall[c]:.2f}" for c in vocab.CLASSES], textposition="outside"))
        fig.update_layout(yaxis=dict(range=[0, 1.1]), height=320, margin=dict(l=10, r=10, t=10, b=10))
        st.plotly_chart(fig, config={"displayModeBar": False})
    with right:
        st.subheader(tr("card.confusion"))
        fig = go.Figure(go.Heatmap(z=fused["confusion_matrix"], x=list(vocab.CLASSES), y=list(vocab.CLASSES),
                                   colorscale="Blues", text=fused["confusion_matrix"], texttemplate="%{text}",
                                   showscale=False))
        fig.update_layout(xaxis_title=tr("card.predicted"), yaxis_title=tr("card.truth"),
                          yaxis_autorange="reversed", height=320, margin=dict(l=10, r=10, t=10, b=10))
        st.plotly_chart(fig, config={"displayModeBar": False})

    st.subheader(tr("card.reliability"))
    rel = fused["reliability"]
    bins = [(c, a, n) for c, a, n in zip(rel["confidence"], rel["accuracy"], rel["count"]) if n]
    fig = go.Figure([
        go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name=tr("card.ideal"), line=dict(dash="dash", color="grey")),
        go.Scatter(x=[b[0] for b in bins], y=[b[1] for b in bins], mode="lines+markers", name="ECE "
                   f"{fused['ece_15']:.3f}", marker=dict(size=[max(6, min(30, n ** 0.5)) for *_, n in bins]),
                   text=[f"n={n}" for *_, n in bins])])
    fig.update_layout(xaxis_title=tr("card.confidence"), yaxis_title=tr("card.observed"), height=360,
                      xaxis_range=[0, 1], yaxis_range=[0, 1], margin=dict(l=10, r=10, t=10, b=10))
    st.plotly_chart(fig, config={"displayModeBar": False})
    cam = metrics.get("gradcam_mask_share")
    if cam:
        st.caption(tr("card.cam", inside=cam["mean_energy_in_mask"], area=cam["mean_mask_area_share"]))

st.subheader(tr("card.data"))
data = card["data"]
counts = pd.DataFrame({name: {"images": c["images"], "lesions": c["lesions"], **c["per_class"]}
                       for name, c in data["counts"].items()})
st.write(f"{data['dataset']}. {tr('card.split')}: {data['split_rule']}.")
st.dataframe(counts, width="stretch")

st.subheader(tr("card.use"))
st.info(tr("app.disclaimer"))
st.markdown(tr("card.limitations", size=card["input"]["size"]))

st.subheader(tr("card.licence"))
st.write(data["licence"])
st.caption(data["citation"])
