"""What an SB3 user expects of an algorithm object, shared by the bongrl agents (docs/design.md §7).

* ``verbose`` and ``tensorboard_log`` as in ``stable_baselines3.common.base_class.BaseAlgorithm``: each ``learn`` call
  configures SB3's own logger (``configure_logger``), so ``verbose=1`` prints SB3's table and ``tensorboard_log``
  writes ``<tensorboard_log>/<tb_log_name>_<N>`` event files with SB3's scalar names: ``rollout/ep_rew_mean``,
  ``rollout/ep_len_mean``, ``rollout/success_rate``, ``time/fps``, plus ``train/*`` (update counters) and
  ``posterior/*`` (health of the posterior, :meth:`bongrl.bong.BONG.health_report`). ``set_logger`` replaces it.
* ``logger``, ``ep_info_buffer`` and ``ep_success_buffer`` are what SB3 callbacks read (``self.logger.record``).
* Logs are written every ``log_interval`` finished episodes (SB3's off-policy rule; bandits: rounds).

One difference, on purpose: the step counter never restarts. ``learn(n)`` always adds ``n`` steps to a posterior
that keeps everything it has learned, and ``reset_num_timesteps`` only chooses whether TensorBoard starts a new run
folder (True, SB3's default) or continues the last one.
"""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["SB3Conventions", "checkpoint_file", "sb3_infos"]

#: the file a run directory keeps its agent in (``bongrl.runs.CHECKPOINT``; repeated to keep agents off the run layer)
RUN_CHECKPOINT = "checkpoint.safetensors"


def checkpoint_file(path: str | Path) -> Path:
    """The checkpoint ``load`` reads: ``path`` itself, or a run directory's ``checkpoint.safetensors``.

    Raises:
        FileNotFoundError: one line naming what is missing.
    """
    p = Path(path)
    if p.is_dir():
        ckpt = p / RUN_CHECKPOINT
        if not ckpt.is_file():
            raise FileNotFoundError(f"{str(p)!r} is a directory without a {RUN_CHECKPOINT} (not a bongrl run dir, or "
                                    "the run stopped before its first checkpoint)")
        return ckpt
    if not p.exists():
        raise FileNotFoundError(f"no checkpoint file or run directory {str(p)!r}")
    return p


class SB3Conventions:
    """Mixin: SB3's ``verbose`` / ``tensorboard_log`` / ``logger`` / ``dump_logs`` for an agent with a
    ``num_timesteps`` counter. Agents call :meth:`_init_sb3` in ``__init__``, :meth:`_setup_logging` when ``learn``
    starts and :meth:`_log_episodes` with each step's finished episodes."""

    num_timesteps: int

    def _init_sb3(self, verbose: int, tensorboard_log: str | Path | None) -> None:
        if isinstance(verbose, bool) or verbose not in (0, 1, 2):
            raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
        if tensorboard_log is not None:
            try:
                import tensorboard  # noqa: F401
            except ImportError as exc:
                raise ValueError("tensorboard_log needs TensorBoard: pip install 'bongrl[tensorboard]'") from exc
        self.verbose = int(verbose)
        self.tensorboard_log = None if tensorboard_log is None else str(tensorboard_log)
        self._logger: Any = None
        self._custom_logger = False
        #: the last 100 episodes' ``{"r": return, "l": length}``, and successes (SB3's buffers, read by callbacks)
        self.ep_info_buffer: deque[dict[str, float]] = deque(maxlen=100)
        self.ep_success_buffer: deque[float] = deque(maxlen=100)
        self.log_interval: int | None = None
        self._episodes_logged = 0
        self._log_t0 = time.perf_counter()
        self._log_step0 = 0

    # ------------------------------------------------------------------ SB3 API
    @property
    def logger(self) -> Any:
        """SB3's ``Logger`` (``self.logger.record(key, value)`` in callbacks); configured by ``learn``."""
        if self._logger is None:
            from stable_baselines3.common.utils import configure_logger

            self._logger = configure_logger(self.verbose)
        return self._logger

    def set_logger(self, logger: Any) -> None:
        """Use ``logger`` (``stable_baselines3.common.logger.configure(...)``) instead of the one ``learn`` makes."""
        self._logger = logger
        self._custom_logger = True

    def dump_logs(self) -> None:
        """Record SB3's rollout and time scalars, the agent's ``train/*`` and ``posterior/*`` scalars, and write
        them at the current step (``OffPolicyAlgorithm.dump_logs``)."""
        logger = self.logger
        elapsed = max(time.perf_counter() - self._log_t0, 1e-9)
        logger.record("time/episodes", self._episode_count(), exclude="tensorboard")
        if self.ep_info_buffer:
            logger.record("rollout/ep_rew_mean", _mean([e["r"] for e in self.ep_info_buffer]))
            logger.record("rollout/ep_len_mean", _mean([e["l"] for e in self.ep_info_buffer]))
        if self.ep_success_buffer:
            logger.record("rollout/success_rate", _mean(list(self.ep_success_buffer)))
        logger.record("time/fps", int((self.num_timesteps - self._log_step0) / elapsed))
        logger.record("time/time_elapsed", int(elapsed), exclude="tensorboard")
        logger.record("time/total_timesteps", self.num_timesteps, exclude="tensorboard")
        for key, value in self._train_scalars().items():
            logger.record(key, value)
        logger.dump(step=self.num_timesteps)

    def get_env(self) -> Any:  # the agents override it
        raise NotImplementedError

    def get_vec_normalize_env(self) -> Any:
        """The ``VecNormalize`` wrapper of an SB3 training env, else None (SB3's ``get_vec_normalize_env``)."""
        from bongrl.envs.sb3_vec import is_sb3_vec_env

        env = self.get_env()
        if not is_sb3_vec_env(env):
            return None
        from stable_baselines3.common.vec_env import unwrap_vec_normalize

        return unwrap_vec_normalize(env)

    # ------------------------------------------------------------------ for the agents
    def _setup_logging(self, tb_log_name: str, reset_num_timesteps: bool, log_interval: int | None) -> None:
        """What SB3's ``_setup_learn`` does for logging: a fresh logger (unless :meth:`set_logger` gave one)."""
        if log_interval is not None and (isinstance(log_interval, bool) or not isinstance(log_interval, int)
                                         or log_interval < 1):
            raise ValueError(f"log_interval must be a positive int or None, got {log_interval!r}")
        if not self._custom_logger:
            from stable_baselines3.common.utils import configure_logger

            self._logger = configure_logger(self.verbose, self.tensorboard_log, tb_log_name, reset_num_timesteps)
        self.log_interval = log_interval
        self._log_t0, self._log_step0 = time.perf_counter(), self.num_timesteps

    def _log_episodes(self, episodes: list[dict[str, Any]]) -> None:
        """Add finished episodes to the buffers; when the logger writes anywhere, dump the logs each time the
        episode count crosses a multiple of ``log_interval`` (once per step at most)."""
        before = self._episodes_logged
        for ev in episodes:
            self.ep_info_buffer.append(self._episode_info(ev))
            if ev.get("is_success") is not None:
                self.ep_success_buffer.append(float(ev["is_success"]))
        self._episodes_logged += len(episodes)
        every = self.log_interval or 0
        if every and self._episodes_logged // every > before // every and self.logger.output_formats:
            self.dump_logs()

    def _episode_info(self, event: dict[str, Any]) -> dict[str, float]:
        """``{"r", "l"}`` of one finished-episode event (SB3's Monitor fields)."""
        return {"r": float(event["return"]), "l": float(event["length"])}

    def _episode_count(self) -> int:
        return self._episodes_logged

    def _train_scalars(self) -> dict[str, float]:
        """Scalars beyond SB3's rollout/time ones, e.g. ``train/n_updates`` and ``posterior/health``."""
        return {}


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values)) if values else float("nan")


def _env_entries(info: dict[str, Any], i: int) -> dict[str, Any]:
    """Env ``i``'s entries of a gymnasium vector info dict (keys ``k`` with masks ``_k``; nested dicts too)."""
    out: dict[str, Any] = {}
    for key, value in info.items():
        if key.startswith("_") or key in ("final_obs", "final_info"):
            continue
        mask = info.get(f"_{key}")
        if mask is not None and not bool(np.asarray(mask)[i]):
            continue
        out[key] = _env_entries(value, i) if isinstance(value, dict) else value[i]
    return out


def sb3_infos(
    info: dict[str, Any],
    num_envs: int,
    ended: np.ndarray,
    final_obs: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    episodes: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """A vectorised step's gymnasium info dict as SB3's ``infos`` list (what SB3 callbacks read in
    ``self.locals["infos"]``): one dict per env; for an env whose episode ended (``ended``, in the order of
    ``episodes``) the final step's info plus ``terminal_observation``, ``TimeLimit.truncated`` and the Monitor's
    ``episode`` = ``{"r", "l", "t"}``."""
    final_info = info.get("final_info") or {}
    infos = [_env_entries(info, i) for i in range(num_envs)]
    for i, ev in zip((int(j) for j in ended), episodes):
        entry = _env_entries(final_info, i) if final_info else infos[i]
        entry["terminal_observation"] = final_obs[i]
        entry["TimeLimit.truncated"] = bool(truncated[i]) and not bool(terminated[i])
        entry["episode"] = {"r": ev["return"], "l": ev["length"], "t": round(float(ev["wall"]), 6)}
        infos[i] = entry
    return infos
