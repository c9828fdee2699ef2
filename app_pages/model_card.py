"""Model card: what the shipped model is, how it was trained, how well it does on held-out data."""

from datetime import date

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from babel.dates import format_date
from babel.numbers import get_decimal_symbol, get_group_symbol

import ui
from skin_model import vocab

tr = ui.tr
card = ui.model().card
# Every number in the page's language, through ``ui.num``/``ui.pct``; Plotly's own (axis ticks,
# hover) with the language's decimal and thousands separators.
SEPARATORS = get_decimal_symbol(ui.lang()) + get_group_symbol(ui.lang())


def plot(fig: go.Figure) -> None:
    fig.update_layout(separators=SEPARATORS)
    st.plotly_chart(fig, config={"displayModeBar": False})


def figures(items: list[tuple[str, str, str | None]]) -> None:
    """Side by side, each figure under its label, with an optional note below. The label is
    written above the number, not as the metric's own label: that one is cut at the column's
    width (a long French label lost its end)."""
    for col, (label, value, note) in zip(st.columns(len(items)), items):
        col.markdown(f":small[{label}]")
        col.metric(label, value, label_visibility="collapsed")
        if note:
            col.caption(note)


WIDE = 5  # columns (the index counted) from which a table is wider than a phone's screen


def num(x, digits: int = 3) -> str:
    """A figure of the card, or a dash where it has none."""
    return "–" if x is None or pd.isna(x) else ui.num(x, digits)


def count(n) -> str:
    return ui.num(n, 0)


def table(
    frame: pd.DataFrame,
    formats: dict | None = None,
    right=(),
    pinned: str | None = None,
    wide: bool | None = None,
    hide_index: bool = False,
) -> None:
    """A table whose numbers are written the page's way: the columns in ``formats`` stay numbers
    (they sort as numbers), shown through their formatter (``num``, ``count``; a dash where the
    card has none), never through a column format, which writes a decimal point in every
    language; ``right``: text columns of numbers, aligned as numbers. ``pinned`` stays in sight
    while the rest scrolls, with a hint under a table wider than a phone (``wide``; by default
    from its number of columns)."""
    config = {c: st.column_config.TextColumn(alignment="right") for c in right}
    if pinned:
        config[pinned] = st.column_config.Column(pinned=True)
    shown = frame.style.format(formats, na_rep="–") if formats else frame
    st.dataframe(shown, width="stretch", hide_index=hide_index, column_config=config)
    if wide is None:
        wide = len(frame.columns) + (not hide_index) >= WIDE
    if wide:
        st.caption(tr("card.scroll_hint"))


st.title(tr("card.title"))
kinds = [f"{m['architecture']} ({m['input']['width']}×{m['input']['height']} px)" for m in card["members"]]
members = " + ".join(f"{kinds.count(k)} × {k}" if kinds.count(k) > 1 else k for k in dict.fromkeys(kinds))
st.write(
    tr(
        "card.summary_cv",
        members=members,
        version=card["model_version"],
        date=format_date(date.fromisoformat(card["created"]), "long", locale=ui.lang()),
        views=len(card["tta"]["views"]),
    )
)


def referral_section(rule: dict) -> None:
    """The rule the app leads with: its threshold, how it did on validation and test, its ROC
    curves with the operating point, its confusion against the truth, and published anchors."""
    st.subheader(tr("card.referral"))
    points = {tr("card.oof"): rule["validation"]}
    if rule.get("test"):
        points[tr("card.test")] = rule["test"]
    st.markdown(
        tr(
            "card.referral_text",
            threshold=ui.pct(rule["threshold"]),
            target=ui.pct(rule["target_sensitivity"]),
            chosen_on=tr("card.chosen_on_oof"),
        )
    )
    shown = list(points.items())
    figures(
        [
            (
                f"{tr(label)} · {shown[-1][0]}",
                num(shown[-1][1][key]),
                tr("card.beside", split=shown[0][0], value=num(shown[0][1][key])) if len(shown) > 1 else None,
            )
            for key, label in (
                ("sensitivity", "card.sensitivity"),
                ("specificity", "card.specificity"),
                ("melanoma_sensitivity", "card.mel_sensitivity"),
            )
        ]
    )
    left, right = st.columns([3, 2])
    with left:
        fig = go.Figure(
            go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="grey"), showlegend=False)
        )
        for (split, point), colour in zip(points.items(), ("#1f77b4", "#d62728")):
            roc = point["roc"]
            fig.add_trace(
                go.Scatter(
                    x=roc["fpr"],
                    y=roc["tpr"],
                    mode="lines",
                    name=tr("card.roc_split", split=split, auc=num(point["auc"])),
                    line=dict(color=colour),
                )
            )
            fig.add_trace(
                go.Scatter(
                    x=[1 - point["specificity"]],
                    y=[point["sensitivity"]],
                    mode="markers",
                    name=tr("card.operating_point", split=split),
                    marker=dict(color=colour, size=12, symbol="x"),
                )
            )
        # Each anchor its own marker, drawn open and small so that the model's points stay visible.
        for anchor, symbol in zip(rule["anchors"], ("triangle-up-open", "square-open", "star-open")):
            fig.add_trace(
                go.Scatter(
                    x=[1 - anchor["specificity"]],
                    y=[anchor["sensitivity"]],
                    mode="markers",
                    name=tr(f"card.anchor.{anchor['key']}"),
                    marker=dict(color="#555555", size=10, symbol=symbol, line=dict(width=2)),
                )
            )
        fig.update_layout(
            xaxis_title=tr("card.roc_x"),
            yaxis_title=tr("card.roc_y"),
            xaxis_range=[0, 1],
            yaxis_range=[0, 1.02],
            height=440,
            margin=dict(l=10, r=10, t=10, b=10),
            # Below the plot, one entry a line: readable at 390 px, never over the curves.
            legend=dict(orientation="v", yanchor="top", y=-0.22, x=0, font=dict(size=11)),
        )
        plot(fig)
    with right:
        split, point = list(points.items())[-1]
        c = point["confusion"]
        st.markdown(f"**{tr('card.referral_confusion') if split == tr('card.test') else split}**")
        columns = {
            tr("card.referred"): [c["referred_malignant"], c["referred_benign"]],
            tr("card.not_referred"): [c["missed_malignant"], c["cleared_benign"]],
        }
        table(
            pd.DataFrame(columns, index=[tr("card.truth_malignant"), tr("card.truth_benign")]),
            formats=dict.fromkeys(columns, count),
        )
    st.markdown(f"**{tr('card.anchors')}**")
    anchors = [
        {
            tr("card.anchor_who"): tr(f"card.anchor.{a['key']}"),
            tr("card.sensitivity"): a["sensitivity"],
            tr("card.specificity"): a["specificity"],
            tr("card.anchor_source"): a["source"].split(",")[0] + ", " + a["source"].rsplit(", ", 1)[-1],
        }
        for a in rule["anchors"]
    ]
    for split, point in points.items():
        anchors.append(
            {
                tr("card.anchor_who"): tr("card.this_model", split=split),
                tr("card.sensitivity"): point["sensitivity"],
                tr("card.specificity"): point["specificity"],
                tr("card.anchor_source"): "",
            }
        )
    # Four columns, but the first and the last hold sentences: wider than a phone too.
    two = dict.fromkeys([tr("card.sensitivity"), tr("card.specificity")], lambda x: num(x, 2))
    table(pd.DataFrame(anchors), formats=two, wide=True, hide_index=True)


def recall_and_confusion(report: dict) -> None:
    """Per-class recall and the confusion matrix (rows: truth, each divided by its total)."""
    left, right = st.columns(2)
    with left:
        st.subheader(tr("card.recall"))
        recall = report["recall"]
        fig = go.Figure(
            go.Bar(
                x=list(vocab.CLASSES),
                y=[recall[c] for c in vocab.CLASSES],
                text=[num(recall[c], 2) for c in vocab.CLASSES],
                textposition="outside",
                customdata=[ui.label(c) for c in vocab.CLASSES],
                hovertemplate="%{customdata}: %{text}<extra></extra>",
            )
        )
        fig.update_layout(yaxis=dict(range=[0, 1.1]), height=320, margin=dict(l=10, r=10, t=10, b=10))
        plot(fig)
    with right:
        st.subheader(tr("card.confusion"))
        counts = report["confusion_matrix"]
        # Each row divided by its total (recall), so that small classes are as visible as nv.
        shares = [[n / max(sum(row), 1) for n in row] for row in counts]
        fig = go.Figure(
            go.Heatmap(
                z=shares,
                x=list(vocab.CLASSES),
                y=list(vocab.CLASSES),
                zmin=0,
                zmax=1,
                colorscale="Blues",
                text=[[num(share, 2) for share in row] for row in shares],
                texttemplate="%{text}",
                customdata=[[[ui.num(n, 0), ui.pct(share)] for n, share in zip(*pair)] for pair in zip(counts, shares)],
                hovertemplate="%{y} → %{x}: %{customdata[0]} (%{customdata[1]})<extra></extra>",
                showscale=False,
            )
        )
        fig.update_layout(
            xaxis_title=tr("card.predicted"),
            yaxis_title=tr("card.truth"),
            yaxis_autorange="reversed",
            height=320,
            margin=dict(l=10, r=10, t=10, b=10),
        )
        plot(fig)


def reliability_chart(rel: dict, ece: float) -> None:
    """Confidence against observed accuracy under the training prior, each bin sized by its count."""
    st.subheader(tr("card.reliability"))
    bins = [(c, a, n) for c, a, n in zip(rel["confidence"], rel["accuracy"], rel["count"]) if n]
    fig = go.Figure(
        [
            go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name=tr("card.ideal"), line=dict(dash="dash", color="grey")),
            go.Scatter(
                x=[b[0] for b in bins],
                y=[b[1] for b in bins],
                mode="lines+markers",
                name=f"ECE {num(ece)}",
                marker=dict(size=[max(6, min(24, n**0.5)) for *_, n in bins]),
                text=[f"n = {ui.num(n, 0)}" for *_, n in bins],
                cliponaxis=False,
            ),
        ]
    )
    fig.update_layout(
        xaxis_title=tr("card.confidence"),
        yaxis_title=tr("card.observed"),
        height=360,
        xaxis_range=[0, 1.05],
        yaxis_range=[0, 1.05],
        margin=dict(l=10, r=30, t=30, b=10),
        legend=dict(orientation="h", y=-0.25),
    )
    plot(fig)


def evaluation_section(evaluation: dict) -> None:
    """A cross-validated model: out-of-fold beside test, every source apart, calibration, and
    real images that are not dermoscopy."""
    st.subheader(tr("card.evaluation"))
    oof, test = card["out_of_fold"], evaluation["splits"]["test"]
    # The app's answer: the suggested diagnosis's recalls, the calibrated probabilities' ranking.
    answer, oof_answer = test["answer"], evaluation["out_of_fold"]["answer"]
    calibration = test["training_prior"]
    headline = (
        ("card.bal_acc", answer["balanced_accuracy_present"], oof_answer["balanced_accuracy_present"]),
        ("card.mel_recall", answer["melanoma_recall"], oof_answer["melanoma_recall"]),
        ("card.mel_auc", answer["melanoma_auc"], oof_answer["melanoma_auc"]),
        ("card.auc", test["equal_prior_report"]["macro_auc"], oof["macro_auc"]),
        ("card.ece", calibration["ece_15"], oof["training_prior"]["ece_15"]),
    )
    figures(
        [
            (
                f"{tr(label)} · {tr('card.test')}",
                num(on_test),
                tr("card.beside", split=tr("card.oof"), value=num(out_of_fold)) if out_of_fold is not None else None,
            )
            for label, on_test, out_of_fold in headline
        ]
    )
    st.caption(
        tr(
            "card.calibration_line",
            ece=num(calibration["ece_15"]),
            p=num(calibration["mean_malignant_probability"]),
            share=num(calibration["malignant_share"]),
        )
    )
    st.markdown(f"**{tr('card.by_source')}**")
    rows = [
        {
            tr("card.source"): name,
            tr("card.images"): r["images"],
            "BA": r["balanced_accuracy_present"],
            tr("card.mel_recall"): r["melanoma_recall"],
            tr("card.mel_auc"): r["melanoma_auc"],
            tr("card.ood_flagged"): r.get("ood_flagged"),  # out of fold: not scored for it
        }
        for name, r in {
            **evaluation["by_source"],
            **{f"{s} ({tr('card.oof')})": r for s, r in evaluation["out_of_fold"]["by_source"].items()},
        }.items()
    ]
    formats = {tr("card.images"): count} | dict.fromkeys(
        ["BA", tr("card.mel_recall"), tr("card.mel_auc"), tr("card.ood_flagged")], num
    )
    table(pd.DataFrame(rows), formats=formats, pinned=tr("card.source"), hide_index=True)
    recall_and_confusion(test["equal_prior_report"])
    reliability_chart(calibration["reliability"], calibration["ece_15"])

    st.subheader(tr("card.ood"))
    ood = card["ood"]
    passing = ood["pass_rate_by_source"]
    strictest = min(passing, key=passing.get)
    st.write(
        tr(
            "card.ood_cv_text",
            n=ood.get("outlier_exposure", {}).get("outside_images", 0),
            rate=ui.pct(ood["target_pass_rate_per_source"]),
            source=ui.clinics([strictest])[0],
            lowest=ui.pct(passing[strictest]),
        )
    )
    outside = evaluation.get("not_dermoscopy")
    if outside:
        summary = " · ".join(
            tr("card.category_share", name=tr(f"card.category.{k}"), share=ui.pct(v["flagged"]), n=ui.num(v["n"], 0))
            for k, v in outside.items()
        )
        st.caption(tr("card.not_dermoscopy", summary=summary))


def held_out_section(evidence: dict) -> None:
    """The design's evidence on sources left out of training: the guide to an unseen clinic."""
    st.subheader(tr("card.held_out"))
    st.write(
        tr(
            "card.held_out_text",
            **evidence["fold_model"],
            mean=num(evidence["mean"]["melanoma_auc"]),
        )
    )
    # Counts as text: the mean row has none (a number column would print "None"). The stand-in's
    # own out-of-domain check is not the shipped one, so its share flagged is left out here.
    rows = [
        {
            tr("card.source"): name,
            tr("card.images"): ui.num(r["images"], 0) if "images" in r else "",
            tr("card.melanomas"): ui.num(r["melanomas"], 0) if "melanomas" in r else "",
            tr("card.mel_auc"): r["melanoma_auc"],
            tr("card.malignant_auc"): r["malignant_auc"],
            "BA": r["balanced_accuracy_present"],
            tr("card.mel_recall"): r["melanoma_recall"],
        }
        for name, r in {**evidence["by_source"], tr("card.mean"): evidence["mean"]}.items()
    ]
    shares = dict.fromkeys([tr(k) for k in ("card.mel_auc", "card.malignant_auc", "card.mel_recall")] + ["BA"], num)
    counted = [tr("card.images"), tr("card.melanomas")]
    table(pd.DataFrame(rows), formats=shares, right=counted, pinned=tr("card.source"), hide_index=True)


def beyond_section(evaluation: dict) -> None:
    """Where the evaluation has them: the shipped model on a whole source it never saw, and
    full-size uploads against the working copies it learnt from."""
    unseen = evaluation.get("unseen_sources") or {}
    uploads = evaluation.get("full_size_uploads")
    if not unseen and not uploads:
        return
    st.subheader(tr("card.beyond"))
    for name, r in unseen.items():
        st.markdown(
            tr(
                "card.unseen_text",
                clinic=ui.clinics([name])[0],
                lesions=ui.num(r["lesions"], 0),
                cannot_judge=ui.pct(r["cannot_judge"]),
                judged=ui.num(r["judged"], 0),
                sensitivity=ui.pct(r["sensitivity"]),
                melanomas=ui.pct(r["melanoma_sensitivity"]),
                specificity=ui.pct(r["specificity"]),
                auc=num(r["melanoma_auc"]),
                ba=num(r["balanced_accuracy_present"]),
            )
        )
    if uploads:
        st.markdown(
            tr(
                "card.uploads_text",
                images=ui.num(uploads["images"], 0),
                width=card["source"]["width"],
                height=card["source"]["height"],
                verdicts=ui.pct(uploads["verdicts_agree"]),
                diagnoses=ui.pct(uploads["suggested_diagnoses_agree"]),
                mean=ui.num(100 * uploads["mean_abs_delta_p_malignant"], 1),
                max=ui.num(100 * uploads["max_abs_delta_p_malignant"], 1),
                ood_original=ui.pct(uploads["ood_flagged_original"]),
                ood_copy=ui.pct(uploads["ood_flagged_copy"]),
            )
        )


if card.get("referral"):
    referral_section(card["referral"])
if "sources" in card["data"]:
    st.info(tr("card.sources", sources=ui.joined(ui.clinics(card["data"]["sources"]))))
if card.get("evaluation"):
    evaluation_section(card["evaluation"])
else:
    st.warning(tr("card.no_metrics"))
# The answer's uncertainty band: that of the probabilities shown (HAM10000's frequencies).
shown_prior = card["uncertainty"].get("by_prior", {}).get("training", {})
band = shown_prior.get("validation", {})
if band.get("accuracy_of_uncertain") is not None:
    st.caption(
        tr(
            "card.uncertain",
            gap=ui.pct(shown_prior["gap"]),
            share=ui.pct(band["share_uncertain"]),
            right=ui.pct(band["accuracy_of_uncertain"]),
            rest=ui.pct(band["accuracy_of_the_rest"]),
        )
    )
if card.get("held_out_sources"):
    held_out_section(card["held_out_sources"])
if card.get("evaluation"):
    beyond_section(card["evaluation"])

st.subheader(tr("card.data"))
data = card["data"]
# Per part: images, lesions where counted, and images per class (never the test split's, in a
# cross-validated card: export does not read test labels).
PARTS = {  # the card's English names of the data's parts -> their i18n keys
    "folds (training and out-of-fold)": "card.part.folds",
    "other sources' training parts (every fold)": "card.part.every_fold",
    "in every fold's training": "card.part.every_fold",
    "check (never trained on)": "card.part.check",
    "test (scored once)": "card.part.test",
}
counts = pd.DataFrame(
    {
        tr(PARTS[name]) if name in PARTS else name: {
            tr("card.images"): c["images"],
            **({tr("card.lesions"): c["lesions"]} if "lesions" in c else {}),
            **c.get("per_class", {}),
        }
        for name, c in data["counts"].items()
    }
)
datasets = ui.training_datasets(card)
st.write(tr("card.data_text", datasets=ui.joined(datasets), clinics=ui.joined(ui.clinics(data["sources"]))))
parts = " ".join(tr(f"split.{name}") for name in datasets)
st.caption(tr("card.split") + tr("punct.colon") + tr("card.split_text", parts=parts))
# A count not in the card (the test split's classes) shows as a dash, not as "None".
table(counts, formats=dict.fromkeys(counts.columns, count))

st.subheader(tr("card.use"))
st.info(tr("app.disclaimer"))
st.markdown(tr("card.limitations", datasets=ui.joined([tr(f"data.{name}") for name in datasets])))

st.subheader(tr("card.licence"))
st.write(" · ".join(tr(f"licence.{name}") for name in datasets) + " " + tr("licence.terms"))
st.caption(data["citation"])  # titles and authors, as published
