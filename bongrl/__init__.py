"""bongrl: RL and bandit agents that explore with a BONG posterior over their network weights.

``import bongrl`` is cheap: it registers the ``bongrl/*`` gymnasium ids (:mod:`bongrl.envs`, which imports no
torch) and nothing else. ``bongrl.BONG`` and the subpackages (``bongrl.agents``, ``bongrl.presets``, ...) are
imported on first access (PEP 562), so ``bongrl --help`` does not pay for torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from bongrl import envs  # noqa: F401  (registers the bongrl/* gymnasium ids; cheap, lazy entry points)

if TYPE_CHECKING:  # pragma: no cover
    from bongrl.bong import BONG

__version__ = "0.1.0"
__all__ = ["BONG", "__version__"]

#: attributes imported on first access: name -> (module, attribute in it or None for the module itself)
_LAZY: dict[str, tuple[str, str | None]] = {
    "BONG": ("bongrl.bong", "BONG"),
    **{name: (f"bongrl.{name}", None) for name in (
        "agents", "baselines", "bong", "callbacks", "checkpoint", "compare", "device", "distributed", "errors",
        "exploration", "functional", "health", "likelihoods", "posteriors", "presets", "registry", "runner",
        "runs", "tune",
    )},
}


def __getattr__(name: str) -> Any:
    """``bongrl.BONG`` and ``bongrl.<subpackage>``, imported when first used."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module_name, attr = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
