"""Example third-party plugin for bongrl.

Registers (see ``pyproject.toml``) the posterior family ``fullprec`` (:class:`FullPrecision`) in the
entry-point group ``bongrl.posteriors`` and the exploration rule ``boltzmann`` (:class:`Boltzmann`) in
``bongrl.exploration``. bongrl imports these modules lazily, only when a plugin is requested by name.
"""

__version__ = "0.1.0"
