"""Thompson-sampling bandit benchmark: BONG bandit agents vs uniform, linear TS, NeuralLinear, ε-greedy MLP
and Beta-Bernoulli TS on wheel, classification and Bernoulli bandits (see :mod:`bongrl.bandit_benchmark`).

Writes OUT/bandits.csv (env, agent, seed, round, cumulative_regret every --record-every rounds and at the last
round), OUT/bandits.md (final regret mean ± std, % of uniform, per-round update cost) and OUT/bandits.png (one
panel per env). Finished runs are cached as JSON in OUT/.bandits_runs, so an interrupted run resumes.

Usage::

    python scripts/bandit_benchmark.py --envs wheel:0.5,0.7,0.9,0.95,0.99 digits wine bernoulli \\
        --rounds 5000 --seeds 5 [--jobs 2] [--agents uniform lin-ts bong-dlr ...] [--out results]
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")

from bongrl.bandit_benchmark import main  # noqa: E402

if __name__ == "__main__":
    main(sys.argv[1:])
