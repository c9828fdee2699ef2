"""Recipes are strict: an unknown key is an error that names it, and every key changes the model."""

from __future__ import annotations

import json
import tomllib

import pytest

from skin_model.inference.card import RECIPE_KEYS
from skin_model.training.recipe import Recipe

from .conftest import REPO
from .test_holdout import held_out_row


def _write(tmp_path, text: str):
    path = tmp_path / "recipe.toml"
    path.write_text(text)
    return path


def _with(cv_run, tmp_path, line: str, section: str | None = None):
    """The shared test recipe with ``line`` added at the top (or at the top of ``[section]``)."""
    text = cv_run.recipe.path.read_text()
    if section is None:
        text = line + "\n" + text
    else:
        text = text.replace(f"[{section}]\n", f"[{section}]\n{line}\n", 1)
    return Recipe.load(_write(tmp_path, text))


@pytest.mark.parametrize(
    "line, section, named",
    [
        ("split_file = 'splits/ham10000_lesions.csv'", None, "split_file"),
        ("epoch = 3", "member_defaults", "epoch"),
        ("learning_rate = 0.1", "[members]", "learning_rate"),
        ("test_share = 0.2", "sources.ham10000", "test_share"),
    ],
)
def test_an_unknown_key_is_an_error_that_names_it(cv_run, tmp_path, line, section, named):
    with pytest.raises(ValueError, match=named):
        _with(cv_run, tmp_path, line, section)


@pytest.mark.parametrize(
    "table",
    ["{ results = 'runs/holdout/results.jsonl' }", "{ results = 'r.jsonl', variant = 'v', fold = 0 }"],
)
def test_a_held_out_table_names_exactly_its_results_and_variant(cv_run, tmp_path, table):
    with pytest.raises(ValueError, match=r"\[held_out\] sets exactly \['results', 'variant'\]"):
        _with(cv_run, tmp_path, f"held_out = {table}")


def test_the_shipped_recipes_load_and_use_only_known_keys():
    for path in sorted((REPO / "recipes").glob("*.toml")):
        recipe = Recipe.load(path)
        assert set(tomllib.loads(path.read_text())) <= RECIPE_KEYS
        assert recipe.sources and recipe.members


# Keys read by export: changed, the exported card changes where the key says.
EXPORT_KEYS = {
    "model_version": ("'9.9.9'", lambda card: card["model_version"] == "9.9.9"),
    "tta": ("['identity']", lambda card: card["tta"]["views"] == ["identity"]),
    "target_sensitivity": ("0.5", lambda card: card["referral"]["target_sensitivity"] == 0.5),
    "ood_pass_rate": ("0.5", lambda card: card["ood"]["target_pass_rate_per_source"] == 0.5),
    "outlier_exposure": ("false", lambda card: not card["ood"].get("outlier_exposure")),
    # Held-out rows of one design (written by the test: tests never read runs/).
    "held_out": (
        "{{ results = '{results}', variant = 'chosen' }}",
        lambda card: (
            card.get("held_out_sources", {}).get("variant") == "chosen"
            and sorted(card["held_out_sources"]["by_source"]) == ["a", "b"]
        ),
    ),
}
# Keys read by training (what it trains on and how), checked where training reads them.
TRAINING_KEYS = {"folds", "colour_constancy_p", "sources", "member_defaults", "members", "start_from"}


def test_every_key_is_either_read_by_export_or_by_training():
    assert set(EXPORT_KEYS) | TRAINING_KEYS == RECIPE_KEYS and not set(EXPORT_KEYS) & TRAINING_KEYS


@pytest.mark.parametrize("key", sorted(EXPORT_KEYS))
def test_changing_an_export_key_changes_the_export(cv_run, tmp_path, key):
    from skin_model.training.export import export_recipe

    value, holds = EXPORT_KEYS[key]
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(held_out_row(s, auc)) + "\n" for s, auc in (("a", 0.6), ("b", 0.8))))
    value = value.format(results=results)
    text = "\n".join(line for line in cv_run.recipe.path.read_text().splitlines() if not line.startswith(f"{key} ="))
    recipe = Recipe.load(_write(tmp_path, f"{key} = {value}\n{text}"))
    card = export_recipe(recipe, cv_run.data, cv_run.data_dirs, cv_run.run, tmp_path / "artifact", cv_run.outliers)
    shipped = json.loads((cv_run.exported / "model_card.json").read_text())
    assert holds(card) and not holds(shipped)
    if key == "target_sensitivity":
        assert card["referral"]["threshold"] > shipped["referral"]["threshold"]  # fewer referrals asked for


def test_training_keys_reach_what_training_reads(cv_run, tmp_path):
    from skin_model.training.crossval import load_sources

    base = cv_run.recipe
    text = base.path.read_text()
    recipe = Recipe.load(_write(tmp_path, text.replace("folds = 5", "folds = 7")))
    assert recipe.folds == 7  # the lesion file's 5 folds stay; an unseen lesion could go to fold 5 or 6
    with pytest.raises(ValueError, match="5 folds; the recipe asks for 3"):
        load_sources(Recipe.load(_write(tmp_path, text.replace("folds = 5", "folds = 3"))), cv_run.data_dirs)
    recipe = Recipe.load(_write(tmp_path, text.replace("colour_constancy_p = 6", "colour_constancy_p = 0")))
    assert {m.colour_constancy_p for m in recipe.members} == {0}
    assert load_sources(recipe, cv_run.data_dirs).images.float().mean() != cv_run.data.images.float().mean()
    recipe = Recipe.load(_write(tmp_path, text.replace('isic2017_val = "check"', 'isic2017_val = "train"')))
    assert not load_sources(recipe, cv_run.data_dirs).df["split"].eq("check").any()
    recipe = Recipe.load(_write(tmp_path, text.replace("epochs = 2", "epochs = 7")))
    assert {m.epochs for m in recipe.members} == {7}
    recipe = Recipe.load(_write(tmp_path, text.replace("height = 48", "height = 60")))
    assert recipe.members[0].inputs.height == 60


@pytest.mark.parametrize("section", ["member_defaults", "[members]"])
def test_colour_constancy_is_set_once_at_the_top_not_per_member(cv_run, tmp_path, section):
    """The artifact's preprocessing is one for every member: per member it would be silently replaced."""
    with pytest.raises(ValueError, match="colour_constancy_p"):
        _with(cv_run, tmp_path, "colour_constancy_p = 0", section)


def test_defaults_are_the_modules_own():
    from skin_model.inference import ood, referral
    from skin_model.training import splits

    recipe = Recipe.load(REPO / "recipes" / "3.0.1.toml")
    fields = Recipe.__dataclass_fields__
    assert fields["target_sensitivity"].default == referral.TARGET_SENSITIVITY == recipe.target_sensitivity
    assert fields["ood_pass_rate"].default == ood.PASS_RATE == recipe.ood_pass_rate
    assert recipe.folds == splits.FOLDS
