"""Plain YAML data into typed, frozen dataclasses, and YAML read as people write numbers.

The schema (the sections and their bounds) is :mod:`famlib.config`'s; this module knows only how to turn a
mapping into any such dataclass (:func:`build`), converting each value to its declared type and naming the
key, the value, what is allowed and where the value came from when it cannot, and how to read YAML text
(:class:`ParamsLoader`, :func:`read_yaml`, :func:`parse_value`) with the line of every dotted key.
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from typing import Any, Callable, Literal, Mapping, Optional, Union

import yaml

from famlib.errors import ConfigError, near, one_of

__all__ = ["Origins", "ParamsLoader", "Where", "build", "convert", "fields_of", "parse_value", "read_yaml", "shown",
           "type_name"]


def type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        values = typing.get_args(tp)
        return repr(values[0]) if len(values) == 1 else one_of(values)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        null = " or null" if type(None) in typing.get_args(tp) else ""
        return " or ".join(type_name(a) for a in args) + null
    if origin is tuple or origin is list:
        return f"a list of {type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return f"a mapping of names to {type_name(typing.get_args(tp)[1])}"
    if dataclasses.is_dataclass(tp):
        return f"a mapping with keys {', '.join(f.name for f in fields_of(tp))}"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, str(tp))


def fields_of(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.name != "origin"]


# Where a dotted key's value came from, for messages: ``file:line``, or the override that set it.
Where = Callable[[str], str]


def convert(tp: Any, value: Any, key: str, origin: Where) -> Any:
    def bad(hint: str = "") -> ConfigError:
        return ConfigError(origin(key), key, value, type_name(tp), hint)

    org = typing.get_origin(tp)
    if tp is Any:
        return value
    if org in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        for alternative in inner[:-1]:  # the first that takes the value: Union[float, Literal["first"]]
            try:
                return convert(alternative, value, key, origin)
            except ConfigError:
                pass
        try:
            return convert(inner[-1], value, key, origin)
        except ConfigError:
            if len(inner) == 1:
                raise
            raise bad() from None
    if org is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise bad(near(value, allowed) if isinstance(value, str) else "")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise bad()
        return build(tp, value, key, origin)
    if org in (tuple, list):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise bad()
        (item,) = typing.get_args(tp)[:1]
        return tuple(convert(item, v, f"{key}[{i}]", origin) for i, v in enumerate(value))
    if org is dict:
        if not isinstance(value, Mapping):
            raise bad()
        _, vt = typing.get_args(tp)
        return {str(k): convert(vt, v, f"{key}.{k}", origin) for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise bad()
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise bad()
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad()
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise bad()
        return value
    raise TypeError(f"unsupported field type {tp!r} at {key}")  # internal: a dataclass field we forgot


def build(cls: type, data: Mapping[str, Any], prefix: str, origin: Where) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in fields_of(cls)}
    for k in data:
        if k not in fields:
            key = f"{prefix}.{k}" if prefix else str(k)
            raise ConfigError(origin(key), key, data[k], f"known keys at this level: {', '.join(fields)}",
                              near(str(k), fields) or "This key is not known.")
    kwargs = {}
    for name, f in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        if name in data:
            kwargs[name] = convert(hints[name], data[name], key, origin)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(origin(key), key, "<missing>", type_name(hints[name]), "This key is required.")
    return cls(**kwargs)


# ----------------------------------------------------------------------------------------------------
# Reading YAML as people write it
# ----------------------------------------------------------------------------------------------------
_FLOAT_TAG = "tag:yaml.org,2002:float"
# YAML 1.2's floats (PyYAML's YAML 1.1 regex wants a dot, and a sign in the exponent: there ``2e-3`` and
# ``1.0e5`` are strings), plus 1.1's sexagesimal, inf and nan forms so that nothing read before changes.
_FLOAT = re.compile(r"""^(?:
     [-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?     # 1.0  1.  2.0e-3  1.5E4
    |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+                   # 2e-3  1E-4  1e3
    |[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?            # .5  -.5  .5e-3
    |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*        # 190:20:30.15 (YAML 1.1 sexagesimal)
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X)


class ParamsLoader(yaml.SafeLoader):
    """PyYAML's safe loader with numbers in any notation (``2e-3``, ``1E-4``, ``.5``, ``-3e-2``, ``1e3``).

    Dates stay strings (no parameter is a date, and an override must survive JSON on its way to the
    notebook kernels). Used for parameter files and ``--set`` values alike.
    """


ParamsLoader.yaml_implicit_resolvers = {
    first: [(tag, _FLOAT if tag == _FLOAT_TAG else rx) for tag, rx in resolvers
            if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _key_lines(node: yaml.Node, prefix: str = "", lines: Optional[dict[str, int]] = None) -> dict[str, int]:
    """``{dotted key: line}`` (1-based) of every key and list item of a composed YAML document."""
    lines = {} if lines is None else lines
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            name = f"{prefix}.{k.value}" if prefix else str(k.value)
            lines.setdefault(name, k.start_mark.line + 1)
            _key_lines(v, name, lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            name = f"{prefix}[{i}]"
            lines.setdefault(name, item.start_mark.line + 1)
            _key_lines(item, name, lines)
    return lines


def read_yaml(text: str) -> tuple[Any, dict[str, int]]:
    """Parse one YAML document with :class:`ParamsLoader`; return the data and the line of each dotted key.

    Raises:
        yaml.YAMLError: the text is not YAML (the message carries line and column).
    """
    loader = ParamsLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        data = loader.construct_document(node)  # merges (<<) are flattened into the nodes here
        return data, _key_lines(node)
    finally:
        loader.dispose()


def parse_value(text: str, origin: str = "value", key: str = "<value>") -> Any:
    """A ``--set`` value as the parameter files would read it: ``2e-3`` -> 0.002, ``[ru, uk]`` -> a list.

    Raises:
        ConfigError: not YAML; the message names ``origin`` (e.g. ``--set training.family.lr=...``).
    """
    try:
        return read_yaml(text)[0]
    except yaml.YAMLError as exc:
        raise ConfigError(origin, key, text, "a YAML value (a number, string, true/false, null, list or mapping)",
                          " ".join(str(exc).split())) from None


def shown(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


class Origins:
    """Where each dotted key's value came from: an override's own label, else ``file:line`` (else the file).

    A key under an override (``layers.first`` below ``--set layers={...}``) is the last such override's; a key with
    overrides beneath it (a rule on ``layers`` after ``--set layers.first=0``) is the file's, with them.
    """

    def __init__(self, file: str, lines: Mapping[str, int], overrides: Mapping[str, str]):
        self.file, self.lines, self.overrides = file, lines, overrides

    def __call__(self, key: str) -> str:
        for dotted, label in reversed(list(self.overrides.items())):  # the last override applied wins
            if key == dotted or key.startswith((dotted + ".", dotted + "[")):
                return label
        here = self.file
        k = key
        while k:
            if k in self.lines:
                here = f"{self.file}:{self.lines[k]}"
                break
            k = k[:max(k.rfind("."), k.rfind("["), 0)]
        beneath = [label for dotted, label in self.overrides.items() if dotted.startswith((key + ".", key + "["))]
        return f"{here} (with {', '.join(beneath)})" if beneath else here
