"""``bongrl compare``: BongDQN against stable-baselines3 baselines under one evaluation protocol.

Every (agent, seed) run trains on the same env for the same budget; every ``eval_every`` env steps (and at
step 0 and after training) it is evaluated with :func:`bongrl.envs.wrappers.evaluate`: ``eval_episodes``
deterministic episodes on a separate eval env whose episode ``i`` is reset with seed
``10_000 + 1_000 * seed + i`` — the same
for every agent, and the same as ``bongrl train``'s periodic evaluation. Wall time counts training and
evaluation; ``env_steps_per_s`` is env steps over training time only (evaluation excluded).

Two policies of every run are evaluated at every evaluation point, on the same episodes:

* ``online`` (the headline): the weights being trained — BongDQN's posterior mean, the SB3 model's current
  network;
* ``averaged``: an exponential moving average of those weights, θ̄ ← (1 − τ) θ̄ + τ θ after every vectorised
  env step, with one τ (``polyak_tau``) for every agent — BongDQN's ``polyak_eval``; for SB3 a
  :class:`bongrl.baselines.sb3.PolyakAverage` of DQN's Q-network, QR-DQN's quantile network or PPO's policy.

Agents: ``bongdqn`` (its preset, :func:`bongrl.presets.get`), ``dqn`` / ``ppo`` (stable-baselines3) and
``qrdqn`` (sb3-contrib) with rl-baselines3-zoo hyperparameters (``bongrl/data/zoo_presets.json``).

Seeds are explicit (:func:`parse_seeds`); the summary flags every agent whose run seeds overlap the seeds its
preset was tuned on (the ``tuned_seeds`` of :mod:`bongrl.presets`; the zoo presets count as tuned on none).

A run that raises (or whose weights become non-finite) is recorded as *failed*: its partial curve and the
error are kept in its folder and it is counted, never dropped, in every table. The other runs go on (with
``jobs`` > 1 each run has its own process, so even a process that dies is recorded as failed).

Layout of the output directory::

    DIR/per_run/<agent>-s<seed>/curve.csv    one row per evaluation of that run (written as it trains)
    DIR/per_run/<agent>-s<seed>/result.json  written last: status (complete / failed, with the error), its
                                           settings and summary numbers; resume skips complete runs whose
                                           settings match and retries failed ones
    DIR/compare.csv                        one row per (agent, seed, evaluation): see COLUMNS
    DIR/summary.md / summary.json          per agent and evaluation column: final eval, mean of the last three
                                           evals, AUC, steps to the reward threshold, failed runs; steps/s
    DIR/learning_curves.png                mean eval return over seeds: online solid (± 1 std band),
                                           averaged dashed, one colour per agent

On ``bongrl/DeepSea-v0`` each run also records episodes to solve (bsuite: the first training episode where
``total_bad_episodes / episode < 0.9``).

Modules: :mod:`~bongrl.compare.plan` (seeds, agents, settings, tasks), :mod:`~bongrl.compare.execute` (running
the tasks), :mod:`~bongrl.compare.report` (aggregation, summary, plot); :mod:`~bongrl.compare.common` holds the
constants they share.
"""

from bongrl.compare.common import (
    AGENTS,
    COLUMNS,
    COMPLETE,
    CURVE,
    CURVE_COLUMNS,
    DEFAULT_TAU,
    EVALS,
    FAILED,
    RESULT,
    RUNS,
    CompareError,
)
from bongrl.compare.execute import (
    _append_row,
    _failed_result,
    _Recorder,
    _result,
    _run_processes,
    _worker,
    default_out,
    run_compare,
    run_one,
)
from bongrl.compare.plan import (
    _changed_settings,
    is_complete,
    parse_agents,
    parse_seeds,
    plan,
    run_dir,
    seeds_text,
    tuned_seeds,
)
from bongrl.compare.report import _auc, aggregate

__all__ = [
    "AGENTS",
    "COLUMNS",
    "COMPLETE",
    "CURVE",
    "CURVE_COLUMNS",
    "CompareError",
    "DEFAULT_TAU",
    "EVALS",
    "FAILED",
    "RESULT",
    "RUNS",
    "_Recorder",
    "_append_row",
    "_auc",
    "_changed_settings",
    "_failed_result",
    "_result",
    "_run_processes",
    "_worker",
    "aggregate",
    "default_out",
    "is_complete",
    "parse_agents",
    "parse_seeds",
    "plan",
    "run_compare",
    "run_dir",
    "run_one",
    "seeds_text",
    "tuned_seeds",
]
