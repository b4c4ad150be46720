"""The run layer (docs/design.md §7): :class:`RunSpec` resolves and validates a run once; :func:`train_run` trains
it into a run directory with callbacks. ``bongrl train``, ``tune``, ``compare`` and distributed training use both."""

from bongrl.runner.spec import RunSpec, check_env_id, load_preset, parse_overrides
from bongrl.runner.train import RunResult, train_run, write_config

__all__ = ["RunSpec", "RunResult", "check_env_id", "load_preset", "parse_overrides", "train_run", "write_config"]
