"""The plugin registry, through real ``importlib.metadata`` entry-point discovery (no mocks).

Third-party plugins are simulated by writing a throwaway *installed distribution* into ``tmp_path`` —
a ``<name>-<version>.dist-info/`` directory with ``METADATA`` and ``entry_points.txt`` next to the plugin's
modules — and putting that directory on ``sys.path``, which is what ``pip install`` leaves in site-packages.
The example package in ``examples/third_party_plugin`` is discovered that way from its real source and its
real ``pyproject.toml`` entry points; a ``slow`` test also ``pip install``s it into a throwaway venv.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

import bongrl
from bongrl import registry
from bongrl.exploration.base import ExplorationRule, ValueModel
from bongrl.posteriors.base import PosteriorFamily

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest itself depends on tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "third_party_plugin"
EXAMPLE_PKG = "bongrl_example_plugin"

BUILTIN_POSTERIORS = {"full", "diag", "dlr"}
BUILTIN_EXPLORATION = {"thompson", "ucb", "greedy", "epsilon"}

InstallDist = Callable[..., Path]


# --------------------------------------------------------------------------------------------------- fixtures
def _dist_dir_name(name: str, version: str) -> str:
    """The wheel/dist-info directory name of a distribution (PEP 427 escaping)."""
    return f"{re.sub(r'[-_.]+', '_', name)}-{version}.dist-info"


def _entry_points_txt(entry_points: dict[str, dict[str, str]]) -> str:
    lines: list[str] = []
    for group, eps in entry_points.items():
        lines.append(f"[{group}]")
        lines.extend(f"{n} = {v}" for n, v in eps.items())
        lines.append("")
    return "\n".join(lines)


@pytest.fixture
def install_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InstallDist]:
    """A factory writing throwaway installed distributions into a directory that is put on ``sys.path``.

    ``install_dist(name, entry_points={group: {name: "module:attr"}}, modules={"mod": "source"},
    packages={"pkg": Path(...)})`` writes ``<name>-<version>.dist-info/`` (METADATA, entry_points.txt,
    top_level.txt) plus the module files / copied package directories, and returns the dist-info path. On
    teardown the modules are dropped from ``sys.modules``, ``sys.path`` is restored and the import and
    metadata caches are cleared.
    """
    site = tmp_path / "site-packages"
    site.mkdir()
    top_level: set[str] = set()

    def install(
        name: str,
        version: str = "1.0",
        entry_points: dict[str, dict[str, str]] | None = None,
        modules: dict[str, str] | None = None,
        packages: dict[str, Path] | None = None,
    ) -> Path:
        for mod, source in (modules or {}).items():
            (site / f"{mod}.py").write_text(textwrap.dedent(source))
            top_level.add(mod)
        for pkg, src in (packages or {}).items():
            shutil.copytree(src, site / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            top_level.add(pkg)
        dist_info = site / _dist_dir_name(name, version)
        dist_info.mkdir()
        (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        (dist_info / "entry_points.txt").write_text(_entry_points_txt(entry_points or {}))
        mods = sorted(set(modules or {}) | set(packages or {}))
        (dist_info / "top_level.txt").write_text("".join(f"{m}\n" for m in mods))
        importlib.invalidate_caches()  # new files in a directory already on sys.path
        return dist_info

    monkeypatch.syspath_prepend(str(site))  # also invalidates the import caches
    yield install
    for mod in list(sys.modules):
        if mod.split(".")[0] in top_level:
            del sys.modules[mod]
    monkeypatch.undo()
    importlib.invalidate_caches()


def _example_entry_points() -> dict[str, dict[str, str]]:
    meta = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())
    return {g: dict(eps) for g, eps in meta["project"]["entry-points"].items() if g.startswith("bongrl.")}


@pytest.fixture
def example_plugin(install_dist: InstallDist) -> Path:
    """examples/third_party_plugin 'installed' from its real source and its pyproject's entry points."""
    meta = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    return install_dist(
        meta["name"],
        meta["version"],
        entry_points=_example_entry_points(),
        packages={EXAMPLE_PKG: EXAMPLE / "src" / EXAMPLE_PKG},
    )


def _status(group: str, name: str) -> list[registry.PluginInfo]:
    return [p for p in registry.list_plugins() if p.group == group and p.name == name]


def _assert_builtins_ok() -> None:
    for name in BUILTIN_POSTERIORS:
        assert isinstance(registry.create_posterior(name), PosteriorFamily)
    for name in BUILTIN_EXPLORATION:
        assert isinstance(registry.create_exploration(name), ExplorationRule)


# -------------------------------------------------------------------------------------------------- built-ins
def test_builtin_names_are_listed() -> None:
    assert set(registry.available("posterior")) >= BUILTIN_POSTERIORS
    assert set(registry.available("exploration")) >= BUILTIN_EXPLORATION
    assert registry.available("bongrl.posteriors") == registry.available("posterior")
    assert registry.available("posterior") == sorted(registry.available("posterior"))


@pytest.mark.parametrize("name", sorted(BUILTIN_POSTERIORS))
def test_builtin_posterior_loads(name: str) -> None:
    cls = registry.load("posterior", name)
    assert inspect.isclass(cls) and issubclass(cls, PosteriorFamily) and not inspect.isabstract(cls)
    assert cls.name == name
    family = registry.create_posterior(name, {"rank": 2, "unused_option": 1})  # shared: taken where named
    assert isinstance(family, cls)
    if name == "dlr":
        assert family.rank == 2
    valid = registry.option_names(cls)
    with pytest.raises(registry.PluginError) as info:  # an explicit option the family does not take
        registry.create_posterior(name, unused_option=1)
    msg = str(info.value)
    assert "unused_option" in msg and f"valid: {', '.join(sorted(valid)) or 'none'}" in msg


@pytest.mark.parametrize("name", sorted(BUILTIN_EXPLORATION))
def test_builtin_exploration_loads(name: str) -> None:
    cls = registry.load("exploration", name)
    assert inspect.isclass(cls) and issubclass(cls, ExplorationRule) and not inspect.isabstract(cls)
    assert cls.name == name
    assert isinstance(registry.create_exploration(name), cls)


def test_list_plugins_shows_builtins_from_bongrl() -> None:
    infos = {(p.group, p.name): p for p in registry.list_plugins()}
    for group, names in (
        (registry.POSTERIORS, BUILTIN_POSTERIORS),
        (registry.EXPLORATION, BUILTIN_EXPLORATION),
    ):
        for name in names:
            info = infos[(group, name)]
            assert info.distribution == "bongrl"
            assert info.version == bongrl.__version__
            assert info.status == "ok"
            assert info.value.startswith("bongrl.")
    lazy = registry.list_plugins(load_plugins=False)
    assert {p.status for p in lazy if p.distribution == "bongrl"} == {"not loaded"}


def test_unknown_group_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown plugin group"):
        registry.available("optimizer")


@pytest.mark.parametrize(
    ("group", "known"),
    [("posterior", BUILTIN_POSTERIORS), ("exploration", BUILTIN_EXPLORATION)],
)
def test_unknown_name_lists_known_names(group: str, known: set[str]) -> None:
    with pytest.raises(registry.UnknownPluginError) as info:
        registry.create(group, "no-such-plugin")
    msg = str(info.value)
    assert "no-such-plugin" in msg
    for name in known:
        assert name in msg
    assert isinstance(info.value, registry.PluginError) and isinstance(info.value, ValueError)


def test_unknown_family_through_bong() -> None:
    with pytest.raises(registry.UnknownPluginError, match="known: diag, dlr, full"):
        bongrl.BONG(nn.Linear(2, 1), family="fulll", device="cpu")


# --------------------------------------------------------------------------------------------- example plugin
def test_example_plugin_is_discovered(example_plugin: Path) -> None:
    assert "fullprec" in registry.available("posterior")
    assert "boltzmann" in registry.available("exploration")
    assert set(registry.available("posterior")) >= BUILTIN_POSTERIORS
    for group, name in ((registry.POSTERIORS, "fullprec"), (registry.EXPLORATION, "boltzmann")):
        (info,) = _status(group, name)
        assert info.distribution == "bongrl-example-plugin"
        assert info.version == "0.1.0"
        assert info.status == "ok"
        assert info.value.startswith(f"{EXAMPLE_PKG}.")
    # loaded from the copy of the real source, not from anywhere else
    module = sys.modules[f"{EXAMPLE_PKG}.fullprec"]
    assert Path(module.__file__).resolve().is_relative_to(example_plugin.parent.resolve())
    _assert_builtins_ok()


def test_example_family_implements_the_whole_protocol(example_plugin: Path) -> None:
    cls = registry.load("posterior", "fullprec")
    assert issubclass(cls, PosteriorFamily) and not inspect.isabstract(cls)
    for method in PosteriorFamily.__abstractmethods__:
        assert method in vars(cls), f"fullprec does not implement {method}"
        assert (getattr(cls, method).__doc__ or "").strip(), f"fullprec.{method} has no docstring"
    assert "validate_state" in vars(cls)


def _blr_data(n: int = 40, d: int = 3, seed: int = 0) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    w = torch.tensor([1.5, -2.0, 0.5], dtype=torch.float64)[:d]
    y = X @ w + 0.3 + 0.5 * torch.randn(n, generator=g, dtype=torch.float64)
    return X, y


def test_fullprec_in_bong_matches_conjugate_linear_regression(example_plugin: Path) -> None:
    """y = wᵀx + b + ε, ε ~ N(0, σ²), prior N(μ₀, s² I): Λ = I/s² + ΦᵀΦ/σ², μ = Λ⁻¹(μ₀/s² + Φᵀy/σ²)."""
    torch.manual_seed(0)
    d, sigma, s = 3, 0.5, 2.0
    X, y = _blr_data(d=d)
    mu0 = torch.tensor([0.1, -0.2, 0.3, 0.05], dtype=torch.float64)  # (weight (1, d), bias (1,)) flattened
    est = bongrl.BONG(
        nn.Linear(d, 1),
        family="fullprec",
        likelihood="gaussian",
        obs_std=sigma,
        prior_std=s,
        prior_mean=mu0,
        method="lin",
        dtype=torch.float64,
        device="cpu",
    )
    assert type(est.family).__name__ == "FullPrecision" and set(est.state) == {"mean", "prec"}
    for i in range(
        0, len(y), 7
    ):  # sequential mini-batches, ragged last batch: exact for a linear-Gaussian model
        est.update(X[i : i + 7], y[i : i + 7])

    Phi = torch.cat([X, torch.ones(len(y), 1, dtype=torch.float64)], 1)
    prec = torch.eye(d + 1, dtype=torch.float64) / s**2 + Phi.T @ Phi / sigma**2
    cov = torch.linalg.inv(prec)
    mean = torch.linalg.solve(prec, mu0 / s**2 + Phi.T @ y / sigma**2)

    torch.testing.assert_close(est.mean, mean, atol=1e-8, rtol=0)
    torch.testing.assert_close(est.state["prec"], prec, atol=1e-8, rtol=1e-12)
    torch.testing.assert_close(est.covariance(), cov, atol=1e-8, rtol=0)
    torch.testing.assert_close(est.family.marginal_variance(est.state), cov.diagonal(), atol=1e-8, rtol=0)
    # predictive variance of f(x) = φ(x)ᵀθ is φᵀΣφ
    f, var = est.predict(X[:5])
    torch.testing.assert_close(f[:, 0], Phi[:5] @ mean, atol=1e-8, rtol=0)
    torch.testing.assert_close(var[:, 0], ((Phi[:5] @ cov) * Phi[:5]).sum(1), atol=1e-8, rtol=0)
    est.family.validate_state(est.state)
    assert est.family.health(est.state) > 0

    # exact predict step: Σ' = γ²Σ + qI, μ' = γμ + (1 − γ)μ₀
    gamma, q = 0.9, 0.01
    est.predict_step(gamma, q)
    torch.testing.assert_close(est.mean, gamma * mean + (1 - gamma) * mu0, atol=1e-8, rtol=0)
    torch.testing.assert_close(
        est.covariance(), gamma**2 * cov + q * torch.eye(d + 1, dtype=torch.float64), atol=1e-8, rtol=0
    )
    est.predict_step(gamma, 0.0)  # the q = 0 shortcut Λ' = Λ/γ²
    torch.testing.assert_close(
        est.covariance(),
        gamma**4 * cov + gamma**2 * q * torch.eye(d + 1, dtype=torch.float64),
        atol=1e-8,
        rtol=0,
    )

    # state round trip through the estimator's validated loader
    sd = est.state_dict()
    est2 = bongrl.BONG(nn.Linear(d, 1), family="fullprec", dtype=torch.float64, device="cpu")
    est2.load_state_dict(sd)
    torch.testing.assert_close(est2.state["prec"], est.state["prec"], atol=0, rtol=0)


def test_fullprec_agrees_with_full_covariance(example_plugin: Path) -> None:
    """Same BONG increments and predict steps through ``fullprec`` and the built-in ``full`` give the same
    N(μ, Σ); sampling is θ = μ + L⁻ᵀz (exactly Σ-covariant) and preconditioning is Σv."""
    fp, full = registry.create_posterior("fullprec"), registry.create_posterior("full")
    g = torch.Generator().manual_seed(1)
    P = 5
    mean = torch.randn(P, generator=g, dtype=torch.float64)
    var = torch.rand(P, generator=g, dtype=torch.float64) + 0.5
    a, b = fp.init(mean, var), full.init(mean, var)
    for _ in range(3):
        A = torch.randn(P, 2, generator=g, dtype=torch.float64)
        gv = torch.randn(P, generator=g, dtype=torch.float64)
        a, b = fp.update(a, A, gv), full.update(b, A, gv)
        a, b = fp.predict(a, 0.95, 0.02), full.predict(b, 0.95, 0.02)
    torch.testing.assert_close(a["mean"], b["mean"], atol=1e-10, rtol=0)
    cov = b["cov"]
    torch.testing.assert_close(fp.covariance(a), cov, atol=1e-10, rtol=0)
    # sample_from_noise is linear: rows for z = I are the columns of L⁻ᵀ, and (L⁻¹)ᵀ L⁻¹ = Σ
    D = fp.sample_from_noise(a, torch.eye(P, dtype=torch.float64)) - a["mean"]
    torch.testing.assert_close(D.T @ D, cov, atol=1e-10, rtol=0)
    v = torch.randn(P, 3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(fp.precondition(a, v), cov @ v, atol=1e-10, rtol=0)
    torch.testing.assert_close(fp.precondition(a, v[:, 0]), cov @ v[:, 0], atol=1e-10, rtol=0)
    H = torch.randn(4, 2, P, generator=g, dtype=torch.float64)
    torch.testing.assert_close(fp.predictive_cov(a, H), H @ cov @ H.transpose(-1, -2), atol=1e-10, rtol=0)
    torch.testing.assert_close(fp.marginal_variance(a), cov.diagonal(), atol=1e-10, rtol=0)
    samples = fp.sample(a, 3, torch.Generator().manual_seed(0))
    assert samples.shape == (3, P) and fp.noise_dim(a) == P
    # validation
    with pytest.raises(ValueError, match="needs 'mean'"):
        fp.validate_state({"mean": mean, "cov": cov})
    with pytest.raises(ValueError, match="positive definite"):
        fp.validate_state({"mean": mean, "prec": -torch.eye(P, dtype=torch.float64)})
    with pytest.raises(ValueError, match="symmetric"):
        fp.validate_state(
            {"mean": mean, "prec": torch.eye(P, dtype=torch.float64) + torch.triu(torch.ones(P, P))}
        )
    assert fp.health({"mean": mean, "prec": -torch.eye(P, dtype=torch.float64)}) < 0


class StubValueModel:
    """A ValueModel with fixed Q-values (the same for every observation)."""

    def __init__(self, q: list[float]) -> None:
        self.q = torch.tensor(q, dtype=torch.float64)
        self.num_actions = len(q)

    def q_values(self, obs: Tensor, theta: Tensor | None = None) -> Tensor:
        return self.q.expand(obs.shape[0], -1).clone()

    def q_std(self, obs: Tensor) -> Tensor:
        return torch.zeros(obs.shape[0], self.num_actions, dtype=torch.float64)

    def sample_params(self, n: int) -> Tensor:
        return torch.zeros(n, 1, dtype=torch.float64)


def test_boltzmann_acts_on_a_value_model(example_plugin: Path) -> None:
    model = StubValueModel([1.0, 0.0, -1.0])
    assert isinstance(model, ValueModel)
    rule = registry.create_exploration("boltzmann", {"every": 3}, temperature=0.5)  # shared: dropped unless named
    with pytest.raises(registry.PluginError, match=r"no option\(s\) every; valid: temperature"):
        registry.create_exploration("boltzmann", temperature=0.5, every=3)
    assert isinstance(rule, ExplorationRule) and type(rule).__name__ == "Boltzmann"
    assert rule.temperature == 0.5 and not rule.deterministic
    B = 20_000
    rule.reset(B)
    obs = torch.zeros(B, 2)
    actions = rule.act(model, obs, torch.Generator().manual_seed(0))
    assert actions.shape == (B,) and actions.dtype == torch.int64
    assert int(actions.min()) >= 0 and int(actions.max()) < model.num_actions
    expected = torch.softmax(model.q / 0.5, 0)
    torch.testing.assert_close(rule.probabilities(model, obs[:1])[0], expected, atol=1e-12, rtol=0)
    freq = torch.bincount(actions, minlength=3).double() / B
    torch.testing.assert_close(freq, expected, atol=0.015, rtol=0)  # ~5 binomial standard errors
    # reproducible from the generator the agent passes in
    again = rule.act(model, obs, torch.Generator().manual_seed(0))
    assert torch.equal(actions, again)
    assert not torch.equal(actions, rule.act(model, obs, torch.Generator().manual_seed(1)))
    # temperature limits: greedy when cold, uniform when hot
    cold = registry.create_exploration("boltzmann", temperature=1e-3)
    assert bool((cold.act(model, obs[:100], torch.Generator().manual_seed(0)) == 0).all())
    hot = registry.create_exploration("boltzmann", temperature=1e6)
    hot_freq = torch.bincount(hot.act(model, obs, torch.Generator().manual_seed(0)), minlength=3).double() / B
    torch.testing.assert_close(hot_freq, torch.full((3,), 1 / 3, dtype=torch.float64), atol=0.015, rtol=0)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("inf"), float("nan"), "hot"])
def test_boltzmann_rejects_bad_temperature(example_plugin: Path, bad: object) -> None:
    with pytest.raises(registry.PluginError, match="temperature"):
        registry.create_exploration("boltzmann", temperature=bad)


# --------------------------------------------------------------------------------------------- broken plugins
@pytest.mark.parametrize("group", ["posterior", "exploration"])
def test_plugin_failing_on_import(install_dist: InstallDist, group: str) -> None:
    install_dist(
        "bongrl-test-broken",
        "2.3",
        entry_points={registry.GROUPS[group]: {"kaboom": "bongrl_test_broken_mod:Thing"}},
        modules={"bongrl_test_broken_mod": "raise RuntimeError('missing native library libfoo.so')\n"},
    )
    assert "kaboom" in registry.available(group)  # listed without being imported
    assert "bongrl_test_broken_mod" not in sys.modules
    with pytest.raises(registry.PluginError) as info:
        registry.create(group, "kaboom")
    err = info.value
    assert not isinstance(err, registry.UnknownPluginError)
    msg = str(err)
    assert "kaboom" in msg and "bongrl-test-broken" in msg and "2.3" in msg
    assert "RuntimeError" in msg and "libfoo.so" in msg
    assert isinstance(err.__cause__, RuntimeError) and "libfoo.so" in str(err.__cause__)

    (entry,) = _status(registry.GROUPS[group], "kaboom")  # listing reports it, never raises
    assert entry.distribution == "bongrl-test-broken" and entry.version == "2.3"
    assert entry.status.startswith("broken: RuntimeError") and "libfoo.so" in entry.status
    others = [p for p in registry.list_plugins() if p.distribution == "bongrl"]
    assert others and all(p.status == "ok" for p in others)
    _assert_builtins_ok()
    if group == "posterior":
        with pytest.raises(registry.PluginError, match="kaboom"):
            bongrl.BONG(nn.Linear(2, 1), family="kaboom", device="cpu")
        bongrl.BONG(nn.Linear(2, 1), family="diag", device="cpu")


@pytest.mark.parametrize(
    ("source", "cause"),
    [
        ("import sys\nsys.exit('plugin gave up')\n", SystemExit),
        ("Thing = undefined_name\n", NameError),
        ("import bongrl_test_no_such_dependency\n", ModuleNotFoundError),
        ("x = 1\n", AttributeError),  # the module imports but has no attribute ``Thing``
    ],
)
def test_plugin_import_failures_of_every_kind(install_dist: InstallDist, source: str, cause: type) -> None:
    install_dist(
        "bongrl-test-broken-kinds",
        entry_points={registry.POSTERIORS: {"flaky": "bongrl_test_broken_kinds:Thing"}},
        modules={"bongrl_test_broken_kinds": source},
    )
    with pytest.raises(registry.PluginError, match="flaky.*bongrl-test-broken-kinds") as info:
        registry.load("posterior", "flaky")
    assert isinstance(info.value.__cause__, cause)
    (entry,) = _status(registry.POSTERIORS, "flaky")
    assert entry.status.startswith(f"broken: {cause.__name__}")
    _assert_builtins_ok()


NOT_A_FAMILY = """
import torch
from bongrl.exploration.base import ExplorationRule
from bongrl.posteriors.base import PosteriorFamily

Number = 42

def make_family():
    return "garbage"

class LooksLikeAFamily:
    name = "looks"
    def init(self, mean, prior_var):
        return {"mean": mean}

class WrongKind(ExplorationRule):
    def act(self, model, obs, generator):
        return torch.zeros(obs.shape[0], dtype=torch.int64)

class HalfDone(PosteriorFamily):
    def init(self, mean, prior_var):
        return {"mean": mean}
"""


@pytest.mark.parametrize("attr", ["Number", "make_family", "LooksLikeAFamily", "WrongKind"])
def test_plugin_that_is_not_a_family(install_dist: InstallDist, attr: str) -> None:
    install_dist(
        "bongrl-test-garbage",
        "0.0.1",
        entry_points={registry.POSTERIORS: {"garbage": f"bongrl_test_garbage:{attr}"}},
        modules={"bongrl_test_garbage": NOT_A_FAMILY},
    )
    with pytest.raises(registry.PluginError) as info:
        registry.create_posterior("garbage")
    msg = str(info.value)
    assert "garbage" in msg and "bongrl-test-garbage" in msg and attr in msg
    assert "PosteriorFamily subclass" in msg
    (entry,) = _status(registry.POSTERIORS, "garbage")
    assert entry.status.startswith("broken:") and "PosteriorFamily" in entry.status
    _assert_builtins_ok()


def test_abstract_family_is_reported_when_loaded(install_dist: InstallDist) -> None:
    """A PosteriorFamily subclass missing abstract methods is broken at load time (not "ok" until created)."""
    install_dist(
        "bongrl-test-garbage",
        entry_points={registry.POSTERIORS: {"halfdone": "bongrl_test_garbage:HalfDone"}},
        modules={"bongrl_test_garbage": NOT_A_FAMILY},
    )
    with pytest.raises(
        registry.PluginError, match=r"halfdone.*bongrl-test-garbage.*abstract.*_update"
    ) as info:
        registry.load("posterior", "halfdone")
    assert "precondition" in str(info.value)
    (entry,) = _status(registry.POSTERIORS, "halfdone")
    assert entry.status.startswith("broken:") and "abstract" in entry.status


def test_exploration_plugin_must_be_a_rule(install_dist: InstallDist) -> None:
    install_dist(
        "bongrl-test-garbage",
        entry_points={registry.EXPLORATION: {"notarule": "bongrl_test_garbage:LooksLikeAFamily"}},
        modules={"bongrl_test_garbage": NOT_A_FAMILY},
    )
    with pytest.raises(
        registry.PluginError, match=r"notarule.*bongrl-test-garbage.*ExplorationRule subclass"
    ):
        registry.create_exploration("notarule")


# ------------------------------------------------------------------------------------------------- duplicates
GOOD_FAMILY = """
from bongrl.posteriors.diag import DiagonalPrecision

class Family(DiagonalPrecision):
    name = "{name}"
"""


def test_duplicate_names_from_two_distributions(install_dist: InstallDist) -> None:
    for dist, mod in (("bongrl-test-dup-a", "bongrl_test_dup_a"), ("bongrl-test-dup-b", "bongrl_test_dup_b")):
        install_dist(
            dist,
            entry_points={registry.POSTERIORS: {"twin": f"{mod}:Family"}},
            modules={mod: GOOD_FAMILY.format(name="twin")},
        )
    assert registry.available("posterior").count("twin") == 1
    with pytest.raises(registry.DuplicatePluginError) as info:
        registry.create_posterior("twin")
    msg = str(info.value)
    assert "twin" in msg and "bongrl-test-dup-a" in msg and "bongrl-test-dup-b" in msg
    assert isinstance(info.value, registry.PluginError)
    entries = _status(registry.POSTERIORS, "twin")
    assert sorted(p.distribution for p in entries) == ["bongrl-test-dup-a", "bongrl-test-dup-b"]
    assert all(p.status == "broken: duplicate name" for p in entries)
    assert "bongrl_test_dup_a" not in sys.modules and "bongrl_test_dup_b" not in sys.modules  # never imported
    _assert_builtins_ok()


def test_plugin_shadowing_a_builtin_is_an_error_not_an_override(install_dist: InstallDist) -> None:
    install_dist(
        "bongrl-test-shadow",
        entry_points={registry.POSTERIORS: {"full": "bongrl_test_shadow:Family"}},
        modules={"bongrl_test_shadow": GOOD_FAMILY.format(name="full")},
    )
    with pytest.raises(registry.DuplicatePluginError) as info:
        registry.create_posterior("full")
    msg = str(info.value)
    assert (
        "'full'" in msg
        and "bongrl (bongrl.posteriors.full:FullCovariance)" in msg
        and "bongrl-test-shadow" in msg
    )
    entries = _status(registry.POSTERIORS, "full")
    assert {p.distribution for p in entries} == {"bongrl", "bongrl-test-shadow"}
    assert all(p.status == "broken: duplicate name" for p in entries)
    assert isinstance(registry.create_posterior("diag"), PosteriorFamily)


def test_a_working_third_party_family_loads(install_dist: InstallDist) -> None:
    install_dist(
        "bongrl-test-good",
        "4.5.6",
        entry_points={registry.POSTERIORS: {"gooddiag": "bongrl_test_good:Family"}},
        modules={"bongrl_test_good": GOOD_FAMILY.format(name="gooddiag")},
    )
    (entry,) = _status(registry.POSTERIORS, "gooddiag")
    assert (entry.distribution, entry.version, entry.status) == ("bongrl-test-good", "4.5.6", "ok")
    est = bongrl.BONG(nn.Linear(2, 1), family="gooddiag", device="cpu")
    est.update(torch.ones(3, 2), torch.zeros(3))
    assert est.family.name == "gooddiag"


def test_fixture_cleans_up_after_itself() -> None:
    """Runs after the tests above (file order): none of their throwaway plugins is visible any more."""
    assert "fullprec" not in registry.available("posterior")
    assert not {"kaboom", "flaky", "garbage", "halfdone", "twin", "gooddiag"} & set(
        registry.available("posterior")
    )
    assert "boltzmann" not in registry.available("exploration")
    assert not any(m.split(".")[0].startswith(("bongrl_test_", EXAMPLE_PKG)) for m in sys.modules)
    assert not any(
        p.distribution.startswith(("bongrl-test-", "bongrl-example")) for p in registry.list_plugins()
    )


# ------------------------------------------------------------------------------------------- real pip install
@pytest.mark.slow
def test_pip_install_example_plugin_into_a_venv(tmp_path: Path) -> None:
    """``pip install`` examples/third_party_plugin (offline: no index, no build isolation, no deps) into a
    throwaway venv that sees this environment's packages, then use both plugins by name from a fresh
    interpreter."""
    src = tmp_path / "src"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    py = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    # the venv's base interpreter is not this (virtual) environment: expose our site-packages (torch,
    # setuptools, the editable bongrl) to it through a .pth file, processed like a site directory of its own
    venv_site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    import site

    ours = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (Path(venv_site) / "_bongrl_parent_env.pth").write_text(
        "".join(f"import site; site.addsitedir({p!r})\n" for p in ours)
    )
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PYTHONNOUSERSITE": "1",
    }
    env.pop("PYTHONPATH", None)
    pip = [str(py), "-m", "pip", "install", "--no-index", "--no-build-isolation", "--no-deps", "--quiet"]
    res = subprocess.run([*pip, str(src)], cwd=tmp_path, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        pytest.fail(f"pip install failed:\n{res.stdout}\n{res.stderr}")

    script = textwrap.dedent(
        """
        import torch, bongrl
        from torch import nn
        from bongrl import registry
        infos = {p.name: p for p in registry.list_plugins()}
        for name in ("fullprec", "boltzmann"):
            p = infos[name]
            assert (p.distribution, p.version, p.status) == ("bongrl-example-plugin", "0.1.0", "ok"), p
        assert infos["full"].distribution == "bongrl"
        import bongrl_example_plugin
        assert "site-packages" in bongrl_example_plugin.__file__, bongrl_example_plugin.__file__
        est = bongrl.BONG(nn.Linear(2, 1), family="fullprec", dtype=torch.float64, device="cpu")
        est.update(torch.ones(4, 2, dtype=torch.float64), torch.ones(4, dtype=torch.float64))
        rule = registry.create_exploration("boltzmann", temperature=0.3)
        print("OK", type(est.family).__name__, type(rule).__name__)
        """
    )
    res = subprocess.run([str(py), "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["OK", "FullPrecision", "Boltzmann"]
