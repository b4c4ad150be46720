"""The bandit round loop: play any ``act`` / ``update`` bandit agent on a bandit env (docs/design.md §6).

A bandit env is a gymnasium env whose every episode is one round: ``reset`` draws the round's context, ``step(arm)``
pays the reward and ends the episode, and ``info["regret"]`` is the expected reward of the best arm minus that of
the pulled arm (the bongrl bandit envs of :mod:`bongrl.envs` all report it). :func:`play_rounds` is the one loop
over such rounds, shared by :class:`~bongrl.agents.thompson_bandit.ThompsonBandit` and the bandit baselines of
:mod:`bongrl.baselines` (anything with ``act(context) -> arm`` and ``update(context, arm, reward)``).

Seeding: the first round of a call resets the env with ``seed=seed + rounds_done``, so a call is reproducible and a
later call that continues a run (``rounds_done`` > 0) does not replay the first call's contexts; every later round
calls a plain ``env.reset()``, which continues the env's own ``np_random`` stream. ``seed=None`` never reseeds: the
caller has set the env's stream already (e.g. restored it from a checkpoint).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["BanditPlayer", "RoundsPlayed", "VecBanditView", "play_rounds"]


class BanditPlayer(Protocol):
    """What :func:`play_rounds` needs of an agent: one arm per context, and one update per observed round."""

    def act(self, context: Any) -> int: ...

    def update(self, context: Any, arm: int, reward: float) -> None: ...


class VecBanditView:
    """A one-env vector env (an SB3 ``VecEnv`` — ``DummyVecEnv``, ``SubprocVecEnv``, ``VecNormalize``, ... — or a
    gymnasium vector env with same-step autoreset) seen as the single bandit env :func:`play_rounds` plays.

    Every step of a bandit env ends its episode, so the vector env resets it inside ``step`` and returns the next
    round's context: :meth:`reset` hands that context out (a seeded reset resets the vector env itself).
    """

    def __init__(self, venv: Any) -> None:
        from bongrl.envs.sb3_vec import as_vector_env, is_sb3_vec_env

        if venv.num_envs != 1:
            raise ValueError(f"a bandit agent plays one env at a time; got a vector env of {venv.num_envs}")
        self.venv = venv
        self._vec = as_vector_env(venv) if is_sb3_vec_env(venv) else venv
        self.observation_space = self._vec.single_observation_space
        self.action_space = self._vec.single_action_space
        self.spec = None
        self._next: Any = None

    def reset(self, seed: int | None = None, options: Any = None) -> tuple[Any, dict[str, Any]]:
        if seed is not None or self._next is None:
            obs, _ = self._vec.reset(seed=seed)
            self._next = obs[0]
        obs, self._next = self._next, None
        return obs, {}

    def step(self, action: int) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        import numpy as np

        obs, rew, term, trunc, info = self._vec.step(np.array([action]))
        self._next = obs[0]
        final = info.get("final_info") or {}
        regret = final.get("regret", info.get("regret"))
        out = {} if regret is None else {"regret": float(np.asarray(regret)[0])}
        return obs[0], float(rew[0]), bool(term[0]), bool(trunc[0]), out

    def close(self) -> None:
        self._vec.close()


@dataclass
class RoundsPlayed:
    """What one :func:`play_rounds` call did."""

    rounds: int
    """Rounds played in this call (fewer than asked for when ``on_round`` stopped the loop)."""
    cumulative_regret: float
    """The ``cumulative_regret`` the call started from plus the regret of every round it played."""
    failed_updates: int
    """Updates rejected with ``ValueError`` and skipped (only with ``skip_failed_updates=True``)."""
    act_s: float
    """Total wall time of the ``agent.act`` calls (``time.perf_counter``)."""
    update_s: float
    """Total wall time of the ``agent.update`` calls, rejected ones included."""
    wall_s: float
    """Wall time of the whole call."""
    stopped: bool
    """True when ``on_round`` returned ``False``."""


def play_rounds(
    agent: BanditPlayer,
    env: Any,
    rounds: int,
    *,
    seed: int | None,
    rounds_done: int = 0,
    cumulative_regret: float = 0.0,
    on_round: Callable[[dict[str, Any]], bool | None] | None = None,
    progress_bar: bool = False,
    skip_failed_updates: bool = False,
) -> RoundsPlayed:
    """Play ``rounds`` rounds of ``agent`` on the bandit env ``env``.

    Each round: ``obs, _ = env.reset(...)``, ``arm = int(agent.act(obs))``, ``_, reward, _, _, info =
    env.step(arm)``, ``agent.update(obs, arm, float(reward))``, then the regret ``info["regret"]`` (0 when the env
    does not report one) is added to the running total.

    Args:
        agent: anything with ``act(context) -> arm`` and ``update(context, arm, reward)``; if it has an ``n_arms``
            attribute, it must match the env's ``action_space.n``.
        env: a gymnasium env with one round per episode (e.g. ``gym.make("bongrl/WheelBandit-v0")``).
        rounds: how many rounds to play (0 plays none).
        seed: base seed; the first round resets the env with ``seed=seed + rounds_done``, later rounds with a plain
            ``env.reset()``. ``None``: never reseed, continue the env's current random stream.
        rounds_done: rounds the agent has already played in earlier calls; offsets the first reset's seed and the
            event's ``round`` counter.
        cumulative_regret: the regret accumulated by earlier calls; the events' and the result's
            ``cumulative_regret`` continue from it.
        on_round: called after every round with the event dict ``{"round", "arm", "reward", "regret",
            "cumulative_regret", "wall"}`` (``round`` counts from ``rounds_done + 1``; ``wall`` is seconds since
            the call started). Returning ``False`` stops the loop after that round.
        progress_bar: show progress with the running regret (a tqdm bar on a terminal, else a few plain lines:
            :func:`bongrl.progress.progress`).
        skip_failed_updates: count an update that raises ``ValueError`` (e.g. a BONG step with a non-finite result,
            which leaves the posterior unchanged) in ``failed_updates`` and go on; by default it propagates.

    Returns:
        A :class:`RoundsPlayed` with the rounds played, the cumulative regret, rejected updates and timings.

    Raises:
        ValueError: ``rounds`` is negative, or the agent's ``n_arms`` differs from the env's number of arms.
    """
    rounds = int(rounds)
    if rounds < 0:
        raise ValueError(f"rounds must be >= 0, got {rounds}")
    n_arms, env_arms = getattr(agent, "n_arms", None), getattr(env.action_space, "n", None)
    if n_arms is not None and env_arms is not None and int(n_arms) != int(env_arms):
        raise ValueError(f"env has {int(env_arms)} arms, the agent {int(n_arms)}")
    bar = None
    if progress_bar:
        from bongrl.progress import progress

        bar = progress(rounds, "round")
    cum = float(cumulative_regret)
    failed = played = 0
    act_s = update_s = 0.0
    stopped = False
    start = time.perf_counter()
    try:
        for t in range(rounds):
            if t == 0 and seed is not None:
                obs, _ = env.reset(seed=int(seed) + int(rounds_done))
            else:
                obs, _ = env.reset()
            t0 = time.perf_counter()
            arm = int(agent.act(obs))
            t1 = time.perf_counter()
            _, reward, _, _, info = env.step(arm)
            t2 = time.perf_counter()
            try:
                agent.update(obs, arm, float(reward))
            except ValueError:
                if not skip_failed_updates:
                    raise
                failed += 1
            t3 = time.perf_counter()
            act_s += t1 - t0
            update_s += t3 - t2
            regret = float(info.get("regret", 0.0))
            cum += regret
            played += 1
            if bar is not None:
                bar.update(1)
                if t % 50 == 0:
                    bar.set_postfix(regret=f"{cum:.1f}")
            if on_round is not None:
                event = {"round": int(rounds_done) + played, "arm": arm, "reward": float(reward), "regret": regret,
                         "cumulative_regret": cum, "wall": time.perf_counter() - start}
                if on_round(event) is False:
                    stopped = True
                    break
    finally:
        if bar is not None:
            bar.close()
    return RoundsPlayed(rounds=played, cumulative_regret=cum, failed_updates=failed, act_s=act_s,
                        update_s=update_s, wall_s=time.perf_counter() - start, stopped=stopped)
