"""bongrl: RL and bandit agents that explore with a BONG posterior over their network weights."""

from bongrl import envs  # noqa: F401  (registers the bongrl/* gymnasium ids; cheap, lazy entry points)
from bongrl.bong import BONG

__version__ = "0.1.0"
__all__ = ["BONG", "__version__"]
