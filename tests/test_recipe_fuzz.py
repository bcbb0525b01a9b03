"""Fuzzing recipe parsing: whatever a recipe file, a bundle's stored recipe or a --set string holds, the
only exception that escapes is a UserError (exit 2, one line)."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from snnctl.config import Recipe, load_recipe, recipe_schemas, validate_recipe
from snnctl.errors import UserError


def key_paths(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every key of a recipe schema, tables included, as a path."""
    paths = []
    for name, field in model.model_fields.items():
        path = (*prefix, name)
        paths.append(path)
        for candidate in (field.annotation, *typing.get_args(field.annotation)):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                paths.extend(key_paths(candidate, path))
    return paths


KEYS = sorted({p for schema in recipe_schemas().values() for p in key_paths(schema)})

scalars = st.one_of(
    st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1), st.integers(), st.floats(),
    st.text(max_size=12), st.sampled_from(["lif", "alif", "rate", "bitflip", "cnn", "spiking-ssm", "lm", "classify"]),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.text(max_size=6), inner, max_size=3), max_leaves=6)


def put(data: dict[str, typing.Any], path: tuple[str, ...], value: typing.Any) -> None:
    node = data
    for part in path[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[path[-1]] = value


def only_user_errors(load: typing.Callable[[], Recipe]) -> None:
    try:
        load()
    except UserError as err:
        assert err.line() and "\n" not in err.what
    except OverflowError:
        pytest.fail("an out-of-range number escaped the schema")


def toml_ok(value: typing.Any) -> bool:
    """tomli_w cannot write every value (integers past 64 bits); such files are not recipes anyway."""
    try:
        tomli_w.dumps({"v": value})
        return True
    except (TypeError, ValueError, OverflowError):
        return False


FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(base=st.sampled_from(["digits-snn", "small-ssm"]),
       changes=st.lists(st.tuples(st.sampled_from(KEYS), values), min_size=1, max_size=4))
def test_random_values_at_recipe_keys_give_a_recipe_or_a_user_error(tmp_path: Path, base: str,
                                                                     changes: list[tuple[tuple[str, ...], typing.Any]]):
    data: dict[str, typing.Any] = {"extends": base}
    for path, value in changes:
        put(data, path, value)
    if not toml_ok(data):
        return
    recipe = tmp_path / "fuzz.toml"
    recipe.write_text(tomli_w.dumps(data))
    only_user_errors(lambda: load_recipe(str(recipe)))


@FUZZ
@given(base=st.sampled_from(["digits-snn", "small-ssm"]),
       sets=st.lists(st.one_of(
           st.text(max_size=30),
           st.builds(lambda k, v: f"{'.'.join(k)}={v}", st.sampled_from(KEYS), st.text(max_size=20)),
           st.builds(lambda k, v: f"{'.'.join(k)}={v}", st.sampled_from(KEYS),
                     st.sampled_from(["5", "[1, 2]", "{a = 1}", "-1", "1e999", "99999999999999999999999", "nan",
                                      "true", '"x"', "[", "2.5"])),
       ), max_size=4))
def test_random_set_strings_give_a_recipe_or_a_user_error(base: str, sets: list[str]):
    only_user_errors(lambda: load_recipe(base, sets))


@FUZZ
@given(data=st.dictionaries(st.sampled_from(["task", "model", "train", "data", "lm", "neuron", "encoding", "name"]),
                            values, max_size=6))
def test_random_stored_recipes_give_a_recipe_or_a_user_error(data: dict[str, typing.Any]):
    only_user_errors(lambda: validate_recipe(data, "snnctl.json (recipe)"))


def test_every_builtin_recipe_and_its_stored_copy_load():
    from snnctl.config import available_recipes

    for name in available_recipes():
        recipe = load_recipe(name)
        again = validate_recipe(recipe.model_dump(mode="json"), f"{name} (stored)")
        assert again == recipe


def test_a_stored_recipe_written_before_the_task_key_still_loads():
    """Format 1 stored every key of the one schema, `lm = None` for classifiers and classifier keys for LMs."""
    lm = load_recipe("small-ssm").model_dump(mode="json")
    lm.pop("task")
    lm.update(neuron={"type": "lif"}, encoding={"type": "direct", "T": 4})
    lm["train"].update(epochs=10, optimizer="adamw", momentum=0.9, label_smoothing=0.0)
    lm["model"].update(logic_gated=False, activation="relu", qcfs_levels=8)
    lm["data"]["augment"] = None
    assert validate_recipe(lm, "old").task == "lm"
    snn = load_recipe("digits-snn").model_dump(mode="json")
    snn.pop("task")
    snn["lm"] = None
    assert validate_recipe(snn, "old").task == "classify"
