"""docs/hyperparameters.md is generated from the code (scripts/gen_hyperparameters.py) and kept in step with it."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bongrl.agents.base import ExplorationSettings
from bongrl.agents.bong_dqn import BongDQNConfig
from bongrl.agents.thompson_bandit import ThompsonBanditConfig

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "hyperparameters.md"


def _script():
    spec = importlib.util.spec_from_file_location("gen_hyperparameters", ROOT / "scripts" / "gen_hyperparameters.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules[spec.name] = mod  # dataclasses look their module up while the script runs
    spec.loader.exec_module(mod)
    return mod


gen = _script()


@dataclass
class _Documented:
    alpha: int = 1
    """The first setting, with `code` and ``rst code``."""
    beta: list[int] = field(default_factory=lambda: [3, 4])
    """A list | with a pipe."""


@dataclass
class _Undocumented:
    alpha: int = 1
    """Documented."""
    gamma_undocumented: float = 0.5


@dataclass
class _Child(_Documented):
    gamma: str = "x"
    """The child's own setting."""
    alpha: int = 2
    """The child's redefinition of alpha."""


def test_committed_page_equals_render():
    assert DOC.is_file(), "docs/hyperparameters.md is missing; generate it with `python scripts/gen_hyperparameters.py`"
    assert DOC.read_text(encoding="utf-8") == gen.render(), (
        "docs/hyperparameters.md is out of date; regenerate it with `python scripts/gen_hyperparameters.py`"
    )


@pytest.mark.parametrize("config", [BongDQNConfig, ThompsonBanditConfig, ExplorationSettings])
def test_every_config_field_is_on_the_page(config):
    text = gen.render()
    missing = [f.name for f in dataclasses.fields(config) if f"| `{f.name}` |" not in text]
    assert not missing, f"{config.__name__} fields not documented in docs/hyperparameters.md: {missing}"


@pytest.mark.parametrize("group", ["exploration", "posterior"])
def test_every_builtin_plugin_and_option_is_on_the_page(group):
    import inspect

    from bongrl import registry

    text = gen.render()
    for name in registry.available(group):
        cls = registry.load(group, name)
        if not cls.__module__.startswith("bongrl."):
            continue
        assert f"### `{name}`" in text
        for option in inspect.signature(cls).parameters:
            assert f"| `{group}.{option}` |" in text, f"{group} {name}: option {option} not on the page"
    assert "recompute the Kronecker eigenbases" in text  # kfac's Args: section


def test_undocumented_field_raises_naming_it():
    with pytest.raises(ValueError, match="gamma_undocumented"):
        gen.config_settings(_Undocumented)


def test_rows_take_types_defaults_and_docstrings():
    rows = {r.name: r for r in gen.config_settings(_Documented)}
    assert rows["alpha"].type == "`int`" and rows["alpha"].default == "`1`"
    assert rows["alpha"].doc == "The first setting, with `code` and `rst code`."
    assert rows["beta"].default == "`[3, 4]`"  # from the default_factory
    assert rows["beta"].doc == r"A list \| with a pipe."


def test_inherited_fields_follow_the_mro():
    rows = gen.config_settings(_Child)
    assert [r.name for r in rows] == ["gamma", "alpha", "beta"]  # the class's own settings first
    by_name = {r.name: r for r in rows}
    assert by_name["alpha"].doc == "The child's redefinition of alpha." and by_name["alpha"].default == "`2`"
    assert by_name["beta"].doc == r"A list \| with a pipe."  # documented only by the base
    shared_left_out = {r.name for r in gen.config_settings(_Child, exclude_from=_Documented)}
    assert shared_left_out == {"gamma", "alpha"}  # beta is listed with the base; alpha is redefined here


def test_check_flag_reports_a_stale_page(tmp_path, monkeypatch, capsys):
    stale = tmp_path / "hyperparameters.md"
    stale.write_text("# stale\n", encoding="utf-8")
    monkeypatch.setattr(gen, "OUT", stale)
    monkeypatch.setattr(gen, "ROOT", tmp_path)
    assert gen.main(["--check"]) == 1
    assert "python scripts/gen_hyperparameters.py" in capsys.readouterr().err
    assert gen.main([]) == 0 and gen.main(["--check"]) == 0
