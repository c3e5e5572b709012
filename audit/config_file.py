"""Config files: ``audit run --config audit.toml`` takes every option of ``audit run`` from a TOML file.

Keys are the options' names as the flags spell them, with ``_`` for ``-`` (``batch_size``; ``batch-size`` is
accepted too); the repeatable flags keep their singular names (``attack``, ``gate``) and take an array. A
relative path in the file (``model``, ``data``, ``arch``'s ``file.py``, a ``classes`` file, ``embeddings``,
``class_words``, ``out``, ``junit``) is resolved against the file's folder; flags given on the command line
override the file. What each option accepts is declared on :class:`audit.config.AuditConfig`.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

from audit.config import AuditConfig, meta_key, option_fields
from audit.errors import AuditError


def _number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


KINDS = {  # a TOML type a config file may give: (how errors name it, test)
    "string": ("a string", lambda v: isinstance(v, str)),
    "integer": ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "number": ("a number", _number),
    "boolean": ("true or false", lambda v: isinstance(v, bool)),
    "strings": ("an array of strings", lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v)),
    "numbers": ("an array of numbers", lambda v: isinstance(v, list) and all(_number(x) for x in v)),
    "budgets": ("an array of budgets (\"8/255\" or 0.03)",
                lambda v: isinstance(v, list) and all(isinstance(x, str) or _number(x) for x in v)),
    "table": ("a table", lambda v: isinstance(v, dict)),
}
EMBEDDING_NAMES = ("default", "glove-6b-50d")


def file_keys() -> dict[str, Any]:
    """Every key a config file may hold, with the dataclass field behind it."""
    return {meta_key(f): f for f in option_fields()}


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The options a config file sets, under their keys, as :meth:`AuditConfig.from_options` takes them."""
    path = Path(path).expanduser()
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AuditError(f"--config {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AuditError(f"--config {path}: cannot read it ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise AuditError(f"--config {path}: not valid TOML ({exc})") from None
    known, base, values = file_keys(), path.absolute().parent, {}
    for raw, given in table.items():
        key = raw.replace("-", "_")
        if key not in known:
            raise AuditError(f"--config {path}: unknown key '{raw}'; the keys are the options of `audit run` "
                             "(see `audit config --example`)")
        if key in values:
            raise AuditError(f"--config {path}: '{raw}' is given twice (as {key} and {key.replace('_', '-')})")
        meta = known[key].metadata
        if not any(KINDS[kind][1](given) for kind in meta["kinds"]):
            expected = " or ".join(KINDS[kind][0] for kind in meta["kinds"])
            raise AuditError(f"--config {path}: '{raw}' must be {expected}, got {_describe(given)}")
        value = given if meta["to_field"] is None else meta["to_field"](given)
        if meta["path"] is not None and isinstance(value, str):
            value = _resolve(meta["path"], value, base)
        values[key] = value
    return values


def _describe(value) -> str:
    kind = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array",
            dict: "a table"}.get(type(value), type(value).__name__)
    text = json.dumps(value, default=str)
    return f"{kind} ({text if len(text) <= 40 else text[:37] + '...'})"


def _resolve(how: str, value: str, base: Path) -> str:
    """A relative path from a file, resolved against the file's folder; names that are no paths stay."""
    if how == "data" and value == "demo" or how == "embeddings" and value.strip().lower() in EMBEDDING_NAMES:
        return value
    if how == "arch":  # file.py:callable resolves its file; package.module:callable is no path
        target, colon, name = value.rpartition(":")
        if colon and (target.endswith(".py") or "/" in target or "\\" in target):
            return f"{_against(target, base)}:{name}"
        return value
    if how == "classes":  # a built-in set or a comma list stays; a file beside the config is taken
        return _against(value, base) if (base / Path(value).expanduser()).is_file() else value
    return _against(value, base)


def _against(value: str, base: Path) -> str:
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else base / path)


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        items = (f"{k if re.fullmatch(r'[A-Za-z0-9_-]+', k) else json.dumps(k)} = {_toml(v)}"
                 for k, v in value.items())
        return "{ " + ", ".join(items) + " }"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def example_toml() -> str:
    """A commented config file that sets every option to its default (options without one are commented out
    with an example value), so it reads back as the defaults."""
    lines = [
        "# robustness-audit config: `audit run --config audit.toml` (flags given on the command line win).",
        "# Keys are the options of `audit run` with '_' for '-'; relative paths resolve against this file's folder.",
        "",
    ]
    defaults = AuditConfig(model="").effective()
    for f in option_fields():
        key = meta_key(f)
        kinds = " or ".join(KINDS[k][0] for k in f.metadata["kinds"])
        lines.append(f"# {f.metadata['doc']} [{kinds}]")
        value = defaults[key]
        if key == "model" or value is None:
            lines.append(f"# {key} = {_toml(f.metadata['example'])}")
        else:
            lines.append(f"{key} = {_toml(value)}")
    return "\n".join(lines) + "\n"
