"""Env presets (:mod:`bongrl.presets`): every preset is a valid configuration of its agent, the generic preset is
the agent's class defaults, lookups hand out independent copies, and tuned preset files load or fail clearly.

Building and running an agent from each BongDQN preset is ``test_agents.py::test_every_bongdqn_preset_builds_and_
learns``; a file written by ``bongrl tune`` is loaded in ``test_tune.py``.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path
from typing import Any

import pytest

from bongrl import presets, registry
from bongrl.agents.base import config_from_kwargs
from bongrl.agents.bong_dqn import BongDQN, BongDQNConfig
from bongrl.agents.thompson_bandit import ThompsonBandit, ThompsonBanditConfig

#: the agent names a preset may use, with the agent class and its config dataclass
AGENTS: dict[str, tuple[type, type]] = {
    "bongdqn": (BongDQN, BongDQNConfig),
    "bandit": (ThompsonBandit, ThompsonBanditConfig),
}
REQUIRED = {"agent", "posterior", "exploration", "steps", "tuned_seeds", "hyperparameters"}
ALL = {**presets.PRESETS, "<generic>": presets.generic()}


@pytest.mark.parametrize("env_id", sorted(ALL))
def test_every_preset_is_a_valid_agent_configuration(env_id: str) -> None:
    """Required keys present; the hyperparameters build the agent's config dataclass (names, types and its own
    validation, via config_from_kwargs); posterior and exploration are registered plugins; budgets and the
    evaluation protocol are positive ints; tuned_seeds is a non-empty sorted list of distinct ints."""
    p = ALL[env_id]
    assert REQUIRED <= set(p), f"{env_id}: missing {REQUIRED - set(p)}"
    assert set(p) <= REQUIRED | {"eval_every", "eval_episodes"}, f"{env_id}: unknown keys {set(p) - REQUIRED}"
    assert p["agent"] in AGENTS
    cls, config_cls = AGENTS[p["agent"]]
    cfg = config_from_kwargs(config_cls, p["hyperparameters"], cls.__name__)
    for name, value in p["hyperparameters"].items():
        assert getattr(cfg, name) == value
    assert p["posterior"] in registry.available("posterior")
    assert p["exploration"] in registry.available("exploration")
    for key in ("steps", "eval_every", "eval_episodes"):
        if key in p:
            assert isinstance(p[key], int) and not isinstance(p[key], bool) and p[key] > 0, (key, p[key])
    seeds = p["tuned_seeds"]
    assert seeds and all(isinstance(s, int) for s in seeds) and seeds == sorted(set(seeds))


def test_generic_preset_is_the_bongdqn_class_defaults() -> None:
    """An env without a preset trains BongDQN exactly as constructed with no arguments: same posterior and
    exploration as the constructor's defaults, and no hyperparameter overrides (so the config equals the
    dataclass defaults)."""
    p = presets.generic()
    assert p["agent"] == "bongdqn"
    defaults = inspect.signature(BongDQN.__init__).parameters
    assert p["posterior"] == defaults["posterior"].default
    assert p["exploration"] == defaults["exploration"].default
    assert p["hyperparameters"] == {}
    assert config_from_kwargs(BongDQNConfig, p["hyperparameters"], "BongDQN") == BongDQNConfig()


def test_get_unknown_env_is_the_generic_preset_and_known_envs_their_own() -> None:
    assert presets.get("NoSuchEnv-v7") == presets.generic()
    for env_id in presets.available():
        assert presets.get(env_id) == presets.PRESETS[env_id]
    assert presets.available() == sorted(presets.PRESETS)


@pytest.mark.parametrize("env_id", ["bongrl/DeepSea-v0", "NoSuchEnv-v7"])
def test_presets_are_deep_copies(env_id: str) -> None:
    """Mutating what get()/generic() return, nested lists included, changes neither the next lookup nor
    PRESETS."""
    pristine = json.dumps(presets.PRESETS, sort_keys=True)
    for lookup in (lambda: presets.get(env_id), presets.generic):
        first = lookup()
        expected = json.dumps(first, sort_keys=True)
        first["hyperparameters"]["gamma"] = 0.5
        first["hyperparameters"].setdefault("hidden", []).append(1)
        first["tuned_seeds"].append(999)
        first["steps"] = -1
        assert json.dumps(lookup(), sort_keys=True) == expected
    assert json.dumps(presets.PRESETS, sort_keys=True) == pristine


# ------------------------------------------------------------------------------------------- preset files
def test_load_file_round_trip(tmp_path: Path) -> None:
    preset: dict[str, Any] = {**presets.get("CartPole-v1"), "hyperparameters": {"hidden": [16], "gamma": 0.97}}
    path = tmp_path / "best_preset.json"
    path.write_text(json.dumps(preset))
    assert presets.load_file(path) == preset
    assert presets.load_file(str(path)) == preset  # str paths too
    minimal = tmp_path / "minimal.json"
    minimal.write_text(json.dumps({"steps": 100}))  # hyperparameters may be absent
    assert presets.load_file(minimal) == {"steps": 100}


@pytest.mark.parametrize(
    "content,match",
    [
        (None, "cannot read preset file"),  # missing file
        ("{not json", "cannot read preset file"),
        ("[1, 2]", "must hold a JSON object"),
        ('{"hyperparameters": [1]}', "'hyperparameters' object"),
        ('{"hyperparameters": null}', "'hyperparameters' object"),
    ],
    ids=["missing", "not-json", "array", "hyperparameters-list", "hyperparameters-null"],
)
def test_load_file_errors(tmp_path: Path, content: str | None, match: str) -> None:
    path = tmp_path / "preset.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match=match) as info:
        presets.load_file(path)
    assert str(path) in str(info.value)


def test_config_dataclasses_are_the_agents_own() -> None:
    """The table above is the agents' own: a default-constructed agent's ``config`` is that dataclass with its
    defaults, and an unknown keyword is refused the same way config_from_kwargs refuses it (so a preset accepted
    here is accepted by the agent)."""
    agents = {
        "bongdqn": lambda **kw: BongDQN("CartPole-v1", device="cpu", **kw),
        "bandit": lambda **kw: ThompsonBandit(3, 2, device="cpu", **kw),
    }
    assert set(agents) == set(AGENTS)
    for name, make in agents.items():
        cls, config_cls = AGENTS[name]
        assert dataclasses.is_dataclass(config_cls)
        agent = make()
        assert type(agent) is cls and agent.config == config_cls()
        with pytest.raises(ValueError, match=f"unknown {cls.__name__} hyperparameter"):
            make(no_such_option=1)
