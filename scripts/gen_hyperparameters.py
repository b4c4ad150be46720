"""Generate docs/hyperparameters.md, the reference of every hyperparameter of the built-in agents and plugins.

Sources, all read from the code so the page cannot drift from it:

* each built-in agent's config dataclass (``config_class``): field names, types and defaults from
  :func:`dataclasses.fields` (``default_factory`` called for lists), descriptions from the attribute docstrings
  (the string literal after each field), found by parsing the class source with :mod:`ast` along the MRO;
* the fields of :class:`~bongrl.agents.base.ExplorationSettings`, inherited by every agent config, are listed once
  in a shared section; an agent config that redefines one lists it in its own table;
* the built-in exploration rules and posterior families from :mod:`bongrl.registry`: options, types and defaults
  from the constructor signature (:mod:`inspect`), descriptions from the class docstring's ``Args:`` section.

A config field without a docstring is an error (``ValueError`` naming it), so every new setting gets documented.

Commands::

    python scripts/gen_hyperparameters.py           # write docs/hyperparameters.md
    python scripts/gen_hyperparameters.py --check   # exit 1 if the committed page differs from the code
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "hyperparameters.md"
COMMAND = "python scripts/gen_hyperparameters.py"

#: constructor options that :class:`~bongrl.bong.BONG` fills in itself, with what the page says about them
SUPPLIED_BY_BONG = {"param_shapes": "Set by BONG from the network's parameter layout; not a user setting."}


@dataclass(frozen=True)
class Setting:
    """One row of the reference: a name, its type and default as Markdown code, and its description."""

    name: str
    type: str
    default: str
    doc: str


def attribute_docstrings(cls: type) -> dict[str, str]:
    """``{field: docstring}`` for the annotated attributes of ``cls``'s own class body that a string literal
    follows (the attribute-docstring convention; such strings are not kept at runtime)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = next(node for node in ast.walk(tree) if isinstance(node, ast.ClassDef) and node.name == cls.__name__).body
    docs: dict[str, str] = {}
    for node, nxt in zip(body, body[1:]):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        if isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str):
            docs[node.target.id] = nxt.value.value
    return docs


def documented_fields(cls: type) -> dict[str, tuple[str, type]]:
    """``{field: (docstring, defining class)}`` along ``cls``'s MRO: the nearest class that documents a field wins,
    so a subclass that redefines a field with its own docstring overrides its base's."""
    out: dict[str, tuple[str, type]] = {}
    for klass in cls.__mro__:
        if not dataclasses.is_dataclass(klass):
            continue
        for name, doc in attribute_docstrings(klass).items():
            out.setdefault(name, (doc, klass))
    return out


def config_settings(cls: type, exclude_from: type | None = None) -> list[Setting]:
    """The rows for config dataclass ``cls``: its own fields in order, then those it inherits or redefines; fields
    documented by ``exclude_from`` (a shared base listed elsewhere) are left out. Raises ValueError naming any
    field without a docstring."""
    if not dataclasses.is_dataclass(cls):
        raise ValueError(f"{cls.__name__} is not a dataclass")
    docs = documented_fields(cls)
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in docs]
    if missing:
        raise ValueError(f"{cls.__name__} field(s) without a docstring: {', '.join(missing)}")
    rows, overrides = [], []
    bases = [klass for klass in cls.__mro__[1:] if dataclasses.is_dataclass(klass)]
    inherited = {f.name for klass in bases for f in dataclasses.fields(klass)}
    for f in dataclasses.fields(cls):
        doc, owner = docs[f.name]
        if exclude_from is not None and owner is exclude_from:
            continue
        row = Setting(f.name, code(type_name(f.type)), code(literal(field_default(f))), markdown(doc))
        (overrides if f.name in inherited else rows).append(row)
    return rows + overrides  # the class's own settings first


def field_default(f: dataclasses.Field) -> Any:
    """A field's default value (its ``default_factory`` called where it has one)."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    raise ValueError(f"field {f.name} has no default")


def type_name(annotation: Any) -> str:
    """An annotation as written in the source (``from __future__ import annotations`` keeps them as strings)."""
    if isinstance(annotation, str):
        return annotation
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def literal(value: Any) -> str:
    """A default value as it is written in Python and in ``--set`` (strings in double quotes)."""
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def code(text: str) -> str:
    """``text`` as a Markdown code span."""
    return f"`{text}`"


def markdown(doc: str) -> str:
    """A reST docstring as one Markdown table cell: whitespace collapsed, ``x`` and :role:`x` as `x` code spans,
    ``|`` escaped."""
    text = " ".join(doc.split())
    text = re.sub(r":[a-z]+:`~?([^`]+)`", lambda m: f"`{m.group(1)}`", text)
    text = text.replace("``", "`")
    return text.replace("|", r"\|")


def args_section(doc: str) -> dict[str, str]:
    """``{name: description}`` from a Google-style ``Args:`` section of a cleaned docstring (``{}`` if none)."""
    out: dict[str, str] = {}
    lines = doc.splitlines()
    if "Args:" not in (line.strip() for line in lines):
        return out
    start = [line.strip() for line in lines].index("Args:") + 1
    current = None
    for line in lines[start:]:
        if line.strip() and not line.startswith(" "):
            break  # the next section
        match = re.match(r"^ {4}(\w+)\s*(?:\([^)]*\))?:\s*(.*)$", line)
        if match:
            current = match.group(1)
            out[current] = match.group(2)
        elif current is not None and line.strip():
            out[current] += " " + line.strip()
    return out


def builtin_plugins(group: str) -> list[tuple[str, type]]:
    """``(name, class)`` of the plugins bongrl itself registers in ``group`` (third-party ones document
    themselves)."""
    from bongrl import registry

    plugins = [(name, registry.load(group, name)) for name in registry.available(group)]
    return [(name, cls) for name, cls in plugins if cls.__module__.split(".")[0] == "bongrl"]


def agent_configs() -> list[tuple[str, type, type]]:
    """``(registry name, agent class, config class)`` of the built-in agents, by class name."""
    agents = [(name, cls, cls.config_class) for name, cls in builtin_plugins("agent")]
    return sorted(agents, key=lambda item: item[1].__name__)


def plugin_summary(cls: type) -> str:
    """The first line of the plugin module's docstring (else of the class docstring)."""
    doc = inspect.getdoc(sys.modules[cls.__module__]) or inspect.getdoc(cls) or ""
    return markdown(doc.split("\n\n")[0])


def plugin_options(cls: type, agent_fields: dict[str, list[str]]) -> list[Setting]:
    """The keyword options of plugin ``cls``'s constructor; ``agent_fields`` maps a setting name to the agents
    whose config offers it to every plugin of the group."""
    described = args_section(inspect.getdoc(cls) or "")
    init = cls.__init__ if "__init__" in vars(cls) else None
    if init is not None:
        described = {**args_section(inspect.getdoc(init) or ""), **described}
    rows = []
    for p in inspect.signature(cls).parameters.values():
        if p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            continue
        empty = p.annotation is inspect.Parameter.empty
        kind = type(p.default).__name__ if empty else type_name(p.annotation)
        default = "required" if p.default is inspect.Parameter.empty else code(literal(p.default))
        rows.append(Setting(p.name, code(kind), default, option_doc(p.name, described, agent_fields)))
    return rows


def option_doc(name: str, described: dict[str, str], agent_fields: dict[str, list[str]]) -> str:
    """A plugin option's description: its ``Args:`` entry, and where an agent setting of the same name feeds it."""
    parts = []
    if name in SUPPLIED_BY_BONG:
        parts.append(SUPPLIED_BY_BONG[name])
    elif name in described:
        parts.append(markdown(described[name]))
    if name in agent_fields and name not in SUPPLIED_BY_BONG:
        owners = " and ".join(agent_fields[name])
        parts.append(f"The {owners} setting `{name}` (above) is passed here; this option overrides it.")
    return " ".join(parts) or "—"


def table(rows: list[Setting], prefix: str = "") -> list[str]:
    """A Markdown table of ``rows``; ``prefix`` is prepended to each name (``exploration.``, ``posterior.``)."""
    out = ["| name | type | default | description |", "|---|---|---|---|"]
    out += [f"| `{prefix}{r.name}` | {cell(r.type)} | {cell(r.default)} | {r.doc} |" for r in rows]
    return out


def cell(text: str) -> str:
    """``text`` safe inside a Markdown table cell (a ``|`` would end the cell, even inside a code span)."""
    return text.replace("|", r"\|")


def header(agents: list[tuple[str, type, type]]) -> list[str]:
    """The page's title and its how-to-set paragraphs."""
    from bongrl import presets

    names = ", ".join(f"`{a[1].__name__}`" for a in agents)
    preset_ids = ", ".join(f"`{p}`" for p in presets.available())
    paragraphs = [
        f"Generated by `{COMMAND}` from the code (the config dataclasses' field docstrings and the plugin "
        "registry); do not edit by hand. `--check` fails when this page and the code differ.",
        "How to set a value:",
        "- **Python**: a keyword of the agent, `BongDQN(env, obs_std=1.0, hidden=[128, 128])` or "
        "`ThompsonBandit(n_arms, context_dim, obs_std=2.0)`; an unknown name or a wrong type raises `ValueError`. "
        "Options of the chosen exploration rule or posterior family: `exploration_options={...}`, "
        "`posterior_options={...}`.",
        "- **Command line**: `bongrl train --env ID --set key=value` (repeatable; the value is parsed as JSON, else "
        "taken as a string: `--set hidden=[32]`, `--set double_q=false`, `--set obs_normalize=none`). Options of "
        "the chosen exploration rule or posterior family: `--set exploration.<option>=value`, "
        "`--set posterior.<option>=value`.",
        f"- **Presets**: `bongrl train --env ID` starts from the env's preset (`bongrl.presets`: {preset_ids}), "
        "which `--set` overrides; `--preset OTHER_ID` or `--preset FILE.json` (from `bongrl tune`) picks another. "
        "Without a preset the class defaults below apply. How the defaults and presets were chosen: "
        "docs/design.md §9.",
        f"Agents: {names}. The exploration settings every agent config inherits are listed once, in "
        "[Exploration settings](#exploration-settings-every-agent); an agent that redefines one lists it in its "
        "own table.",
    ]
    lines = ["# Hyperparameters"]
    for i, text in enumerate(paragraphs):
        in_list = text.startswith("- ") and i > 0 and paragraphs[i - 1].startswith("- ")
        lines += ([] if in_list else [""]) + wrap(text)
    return lines


def wrap(text: str) -> list[str]:
    """A Markdown paragraph or list item wrapped at 116 columns, never inside a word or a code span."""
    keep = re.sub(r"`[^`]*`", lambda m: m.group(0).replace(" ", "\0"), text)  # spaces in code spans: no break
    indent = "  " if text.startswith("- ") else ""
    lines = textwrap.wrap(keep, width=116, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False)
    return [line.replace("\0", " ") for line in lines]


def agent_section(name: str, agent: type, config: type, shared: type) -> list[str]:
    """One agent's table: the fields of its config that are not the shared exploration settings."""
    return [
        "",
        f"## {agent.__name__} (`{name}`)",
        "",
        f"`{config.__module__}.{config.__name__}`.",
        "",
        *table(config_settings(config, exclude_from=shared)),
    ]


def shared_section(shared: type) -> list[str]:
    """The exploration settings inherited by every agent config."""
    return [
        "",
        "## Exploration settings (every agent)",
        "",
        f"`{shared.__module__}.{shared.__name__}`: fields of every agent config, offered to whichever exploration",
        "rule is chosen; each rule takes the ones its constructor names (below).",
        "",
        *table(config_settings(shared)),
    ]


def plugins_section(group: str, title: str, prefix: str, agent_fields: dict[str, list[str]]) -> list[str]:
    """Each built-in plugin of ``group`` with its constructor options."""
    out = ["", f"## {title}", "", f"Set with `--set {prefix}<option>=value` (the plugin is chosen with `--{group}`)."]
    for name, cls in builtin_plugins(group):
        out += ["", f"### `{name}`", "", plugin_summary(cls), ""]
        rows = plugin_options(cls, agent_fields)
        out += table(rows, prefix) if rows else ["No options."]
    return out


def render() -> str:
    """The whole of docs/hyperparameters.md. Raises ValueError naming a config field without a docstring."""
    from bongrl.agents.base import ExplorationSettings

    agents = agent_configs()
    agent_fields: dict[str, list[str]] = {}
    for _, agent, config in agents:
        for f in dataclasses.fields(config):
            agent_fields.setdefault(f.name, []).append(agent.__name__)
    lines = header(agents)
    for name, agent, config in agents:
        lines += agent_section(name, agent, config, ExplorationSettings)
    lines += shared_section(ExplorationSettings)
    lines += plugins_section("exploration", "Exploration rules", "exploration.", agent_fields)
    lines += plugins_section("posterior", "Posterior families", "posterior.", agent_fields)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write docs/hyperparameters.md, or with ``--check`` compare it with :func:`render` (exit 1 if it differs)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/hyperparameters.md is out of date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not OUT.is_file() or OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT.relative_to(ROOT)} is out of date; regenerate it with `{COMMAND}`", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
