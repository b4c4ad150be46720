"""bongrl: RL and bandit agents that explore with a BONG posterior over their network weights."""

from bongrl.bong import BONG

__version__ = "0.1.0"
__all__ = ["BONG", "__version__"]
