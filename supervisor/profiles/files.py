"""Profiles as TOML files, so that a new model deploys without editing the package.

`dump_profile` writes any `Profile` as a file (`python -m supervisor profile show NAME`), and
`load_profile_file` reads one back through the same dataclasses, so a file passes exactly the
checks a built-in profile passes (tensor parallelism = GPUs x nodes, Blackwell-only flags refused
on Hopper, the snapshot rules), plus what only a file can get wrong: a typo in a key (refused,
with the nearest known key), a wrong type, a value out of range. Every error is one line naming
the file, the key and what to fix. SGLang's own parser checks the flags later, in preflight, as
for any profile.

The layout mirrors the dataclasses: the profile's fields at the top, `[launch]` (with
`[launch.speculative]` and `[launch.env]`), and one `[[warmups]]` table per payload with its
`[warmups.body]`. A field left out takes the dataclass default; TOML has no null, so a launch
field that is None (SGLang's own default) is simply absent.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from supervisor import ConfigError, WarmupPayload
from supervisor.engines.sglang import SGLangLaunch, Speculative

from . import Profile

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["dump_profile", "load_profile_file", "profile_from_toml"]

_TABLES = {"launch", "warmups"}  # Profile fields written as tables, not values
_WARMUP_KEYS = ("name", "path", "method", "expect", "timeout", "max_answer_bytes", "body")

#: Bounds a file's numbers must respect; the dataclasses check the rest (their own invariants).
_RANGES: Mapping[str, tuple[float, float]] = {
    "gpu_count": (1, 64),
    "nnodes": (1, 64),
    "startup_timeout_s": (1, 7 * 24 * 3600),
    "weights_gb": (0, 100_000),
    "launch.tp_size": (1, 4096),
    "launch.nnodes": (1, 64),
    "launch.node_rank": (0, 63),
    "launch.port": (1, 65535),
    "launch.ep_size": (1, 4096),
    "launch.mem_fraction_static": (0.01, 1.0),
    "launch.max_running_requests": (1, 1_000_000),
    "launch.max_prefill_tokens": (1, 100_000_000),
    "launch.max_total_tokens": (1, 1_000_000_000),
    "launch.context_length": (1, 100_000_000),
    "launch.watchdog_timeout": (1, 7 * 24 * 3600),
    "launch.warmup_timeout_s": (1, 7 * 24 * 3600),
    "launch.speculative.num_steps": (1, 64),
    "launch.speculative.eagle_topk": (1, 64),
    "launch.speculative.num_draft_tokens": (1, 256),
    "warmups.timeout": (0.001, 7 * 24 * 3600),
    "warmups.max_answer_bytes": (1, 1 << 30),
}


# ----------------------------------------------------------------------------- writing
def dump_profile(profile: Profile) -> str:
    """`profile` as a TOML file that `profile_from_toml` reads back equal to it."""
    out = [
        f"# sglang-supervisor profile {profile.name}: {profile.description}",
        "# Edit, then: python -m supervisor preflight --profile-file THIS_FILE",
        "# Keys are Profile's and SGLangLaunch's fields (supervisor/profiles, engines/sglang.py).",
        "",
    ]
    top = {
        f.name: getattr(profile, f.name)
        for f in dataclasses.fields(profile)
        if f.name not in _TABLES
    }
    out += _pairs(top, Profile)
    launch = profile.launch
    out += ["", "[launch]"]
    simple = {
        f.name: getattr(launch, f.name)
        for f in dataclasses.fields(launch)
        if f.name not in ("speculative", "env") and getattr(launch, f.name) is not None
    }
    out += _pairs(simple, SGLangLaunch)
    if launch.speculative is not None:
        out += ["", "[launch.speculative]", *_pairs(dataclasses.asdict(launch.speculative))]
    if launch.env:
        out += ["", "[launch.env]", *_pairs(dict(launch.env))]
    for payload in profile.warmups:
        out += ["", "[[warmups]]"]
        out += _pairs({k: getattr(payload, k) for k in _WARMUP_KEYS if k != "body"}, WarmupPayload)
        out += ["", "[warmups.body]", *_pairs(dict(payload.body))]
    return "\n".join(out) + "\n"


def _pairs(values: Mapping[str, Any], declared: type | None = None) -> list[str]:
    """`key = value` lines; a field declared float is written as one (`120.0`, not `120`), as
    the loader gives it back, so that a file shown, loaded and shown again is the same text."""
    floats = {k for k, t in _fields(declared).items() if "float" in t} if declared else set()
    return [
        f"{_key(k)} = {_value(float(v) if k in floats else v, multiline=True)}"
        for k, v in values.items()
    ]


def _key(key: str) -> str:
    bare = key and all(c.isascii() and (c.isalnum() or c in "-_") for c in key)
    return key if bare else _string(key)


def _string(text: str) -> str:
    # JSON's escapes are TOML's (\" \\ \n \t \uXXXX ...); DEL is the one control JSON leaves raw.
    return json.dumps(text).replace("\x7f", "\\u007f")


def _value(value: Any, *, multiline: bool = False) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, (list, tuple)):
        items = [_value(v) for v in value]
        if multiline and items and sum(len(i) for i in items) > 60:
            return "[\n" + "".join(f"    {i},\n" for i in items) + "]"
        return "[" + ", ".join(items) + "]"
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    raise ConfigError(f"cannot write {value!r} ({type(value).__name__}) to TOML")


# ----------------------------------------------------------------------------- reading
def load_profile_file(path: str | Path) -> Profile:
    """The profile in the TOML file at `path`; ConfigError in one line if it is not a good one."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"profile file {path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"profile file {path}: is a directory, not a TOML file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"profile file {path}: not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"profile file {path}: cannot read it ({exc.strerror or exc})") from None
    return profile_from_toml(text, source=str(path))


def profile_from_toml(text: str, *, source: str = "<profile>") -> Profile:
    where = f"profile file {source}"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML ({exc})") from None
    try:
        return _profile(data)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _profile(data: dict[str, Any]) -> Profile:
    fields = _fields(Profile)
    _known(data, fields, "")
    launch_data = _table(data, "launch", required=True)
    warmups_data = data.get("warmups", [])
    if not isinstance(warmups_data, list) or not all(isinstance(w, dict) for w in warmups_data):
        raise ConfigError("key warmups: write each payload as a [[warmups]] table")
    values = {
        name: _typed(f"{name}", data[name], fields[name]) for name in data if name not in _TABLES
    }
    _required(values, Profile, "", skip=frozenset(_TABLES))
    return Profile(
        **values,
        launch=_launch(launch_data),
        warmups=tuple(_warmup(i, w) for i, w in enumerate(warmups_data)),
    )


def _launch(data: dict[str, Any]) -> SGLangLaunch:
    fields = _fields(SGLangLaunch)
    _known(data, fields, "launch.")
    values: dict[str, Any] = {}
    for name, raw in data.items():
        if name == "speculative":
            spec = _table(data, "speculative", required=True, prefix="launch.")
            sfields = _fields(Speculative)
            _known(spec, sfields, "launch.speculative.")
            values[name] = Speculative(
                **{k: _typed(f"launch.speculative.{k}", v, sfields[k]) for k, v in spec.items()}
            )
        elif name == "env":
            env = _table(data, "env", required=True, prefix="launch.")
            for k, v in env.items():
                if not isinstance(v, str):
                    raise ConfigError(f"key launch.env.{k}: expected a string, got {_shown(v)}")
            values[name] = dict(env)
        else:
            values[name] = _typed(f"launch.{name}", raw, fields[name])
    _required(values, SGLangLaunch, "launch.")
    return SGLangLaunch(**values)


def _warmup(index: int, data: dict[str, Any]) -> WarmupPayload:
    label = f"warmups[{index}]"
    _known(data, dict.fromkeys(_WARMUP_KEYS, ""), f"{label}.")
    for key, kind in (("name", str), ("path", str), ("method", str)):
        if key in data and not isinstance(data[key], kind):
            raise ConfigError(f"key {label}.{key}: expected a string, got {_shown(data[key])}")
    if "timeout" in data:
        data = {**data, "timeout": _number(f"{label}.timeout", data["timeout"], "warmups.timeout")}
    if "max_answer_bytes" in data:
        _integer(f"{label}.max_answer_bytes", data["max_answer_bytes"], "warmups.max_answer_bytes")
    if "expect" in data:
        _strings(f"{label}.expect", data["expect"])
        data = {**data, "expect": tuple(data["expect"])}
    if "body" in data and not isinstance(data["body"], dict):
        raise ConfigError(f"key {label}.body: write it as a [warmups.body] table")
    try:
        return WarmupPayload.from_json(data)
    except ConfigError as exc:
        raise ConfigError(f"{label}: {exc}") from None


# ----------------------------------------------------------------------------- checks
def _fields(cls: type) -> dict[str, str]:
    """Field name -> its annotation as written (the modules use postponed annotations)."""
    return {f.name: str(f.type) for f in dataclasses.fields(cls)}


def _known(data: Mapping[str, Any], fields: Mapping[str, Any], prefix: str) -> None:
    for key in data:
        if key not in fields:
            near = difflib.get_close_matches(key, list(fields), n=1)
            hint = f"; did you mean {prefix}{near[0]}?" if near else f"; known: {sorted(fields)}"
            raise ConfigError(f"unknown key {prefix}{key}{hint}")


def _required(
    values: Mapping[str, Any], cls: type, prefix: str, skip: frozenset[str] = frozenset()
) -> None:
    for f in dataclasses.fields(cls):
        has_default = (
            f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        )
        if f.name not in values and not has_default and f.name not in skip:
            raise ConfigError(f"missing key {prefix}{f.name} (required)")


def _table(
    data: Mapping[str, Any], key: str, *, required: bool, prefix: str = ""
) -> dict[str, Any]:
    if key not in data:
        if required:
            raise ConfigError(f"missing table [{prefix}{key}] (required)")
        return {}
    value = data[key]
    if not isinstance(value, dict):
        raise ConfigError(f"key {prefix}{key}: write it as a [{prefix}{key}] table")
    return value


def _typed(key: str, value: Any, annotation: str) -> Any:
    """`value` checked against a field's annotation, converted where TOML and Python differ."""
    base = annotation.removesuffix(" | None")
    check = _CHECKS.get(base)
    if check is None:  # a field type this loader does not know: a bug here, not in the file
        raise ConfigError(f"key {key}: profile files cannot set a {annotation} yet")
    return check(key, value, _range_key(key))


def _range_key(key: str) -> str:
    return key.split("[", 1)[0] if key.startswith("warmups[") else key


def _shown(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (str, int, float, bool)) else type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def _in_range(key: str, value: float, range_key: str) -> None:
    bounds = _RANGES.get(range_key)
    if bounds and not bounds[0] <= value <= bounds[1]:
        raise ConfigError(
            f"key {key}: {value:g} is out of range; use {bounds[0]:g} to {bounds[1]:g}"
        )


def _integer(key: str, value: Any, range_key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"key {key}: expected an integer, got {_shown(value)}")
    _in_range(key, value, range_key)
    return value


def _number(key: str, value: Any, range_key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"key {key}: expected a number, got {_shown(value)}")
    if math.isnan(value):
        raise ConfigError(f"key {key}: nan is not a number to configure with")
    _in_range(key, value, range_key)
    return float(value)


def _text(key: str, value: Any, range_key: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"key {key}: expected a string, got {_shown(value)}")
    return value


def _flag(key: str, value: Any, range_key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"key {key}: expected true or false, got {_shown(value)}")
    return value


def _strings(key: str, value: Any, range_key: str = "") -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"key {key}: expected a list of strings, got {_shown(value)}")
    return tuple(value)


_CHECKS: Mapping[str, Callable[[str, Any, str], Any]] = {
    "str": _text,
    "int": _integer,
    "float": _number,
    "bool": _flag,
    "tuple[str, ...]": _strings,
}
