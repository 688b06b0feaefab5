"""Read one number out of a JSON, YAML, XML or Prometheus-text body (``metrics-api``).

Pure functions, no I/O. A *value location* is compiled once, when the trigger is parsed
(:func:`compile_location` raises :class:`ValueError` for a location it cannot read), and
applied to each body (:meth:`ValueLocation.extract` raises :class:`ValueError` with a
message that names the location, never the body).

* ``json``: the subset of GJSON paths KEDA documents: dot-separated keys (``\\.`` escapes
  a dot), array indexes (``components.0.tasks``) and ``#`` for an array's length.
  Wildcards, queries (``#(...)``) and modifiers (``@reverse``) are refused.
* ``yaml`` and ``xml``: KEDA's dot-separated path (KEDA's pkg/util/value_by_path.go): keys,
  and indexes into lists. XML is read as nested elements: the first segment is the root
  element, then child element names; repeated children form a list; a leaf's text is its
  value (attributes are not addressable).
* ``prometheus``: a metric selector ``name{label="value",...}``; the first sample of that
  metric whose labels include every given pair (KEDA's metrics_api_scaler.go).

Strings are parsed as Kubernetes quantities (``"64"``, ``"1.5"``, ``"10Mi"``, ``"1k"``);
numbers as they are; anything else is an error.
"""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from typing import Any, Final

import attrs
import yaml

__all__ = (
    "FORMATS",
    "ValueLocation",
    "compile_location",
    "parse_quantity",
)

FORMATS: Final = ("json", "xml", "yaml", "prometheus")
"""The ``format`` values ``metrics-api`` accepts."""

# ------------------------------------------------------------------------ quantities

_QUANTITY = re.compile(
    r"(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?"
)
_SUFFIX: Final[Mapping[str, float]] = {
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
    "Pi": 2.0**50,
    "Ei": 2.0**60,
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
}


def parse_quantity(text: str) -> float:
    """A Kubernetes quantity (``"1.5"``, ``"10Mi"``, ``"2k"``, ``"1e3"``) as a float."""
    m = _QUANTITY.fullmatch(text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a quantity")
    value = float(m["number"])
    suffix = m["suffix"]
    if suffix is None:
        return value
    if suffix[0] in "eE" and len(suffix) > 1:
        return value * 10.0 ** int(suffix[1:])
    return value * _SUFFIX[suffix]


def _number(value: Any, location: str) -> float:
    if isinstance(value, bool) or value is None:
        raise ValueError(
            f"valueLocation {location!r} must point to a number or a quantity string, "
            f"got {_kind(value)}"
        )
    if isinstance(value, int | float):
        result = float(value)
    elif isinstance(value, str):
        try:
            result = parse_quantity(value)
        except ValueError:
            raise ValueError(
                f"valueLocation {location!r} points to a string that is not a quantity"
            ) from None
    else:
        raise ValueError(
            f"valueLocation {location!r} must point to a number or a quantity string, "
            f"got {_kind(value)}"
        )
    if not math.isfinite(result):
        raise ValueError(f"valueLocation {location!r} points to {result!r}, not a finite number")
    return result


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    return type(value).__name__


# ------------------------------------------------------------------------ paths


def _split_gjson(location: str) -> tuple[str, ...]:
    parts: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(location):
        ch = location[i]
        if ch == "\\" and i + 1 < len(location):
            current.append(location[i + 1])
            i += 2
            continue
        if ch in "*?|@!" or location.startswith("#(", i):
            raise ValueError(
                f"valueLocation {location!r}: GJSON wildcards, queries and modifiers are not "
                "supported (use dot-separated keys and array indexes)"
            )
        if ch == ".":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    if any(part == "" for part in parts):
        raise ValueError(f"valueLocation {location!r} has an empty path segment")
    return tuple(parts)


def _walk(data: Any, segments: Sequence[str], location: str, *, gjson: bool) -> Any:
    current = data
    for depth, segment in enumerate(segments):
        where = ".".join(segments[: depth + 1])
        if isinstance(current, Mapping):
            if segment in current:
                current = current[segment]
                continue
            # YAML keys may be numbers or booleans: compare them as text, as KEDA does.
            matches = [value for key, value in current.items() if str(key) == segment]
            if not matches:
                raise ValueError(f"valueLocation {location!r}: {where!r} not found")
            current = matches[0]
        elif isinstance(current, list):
            if gjson and segment == "#":
                current = len(current)
                continue
            if not segment.isdigit() or int(segment) >= len(current):
                raise ValueError(f"valueLocation {location!r}: {where!r} not found")
            current = current[int(segment)]
        else:
            raise ValueError(
                f"valueLocation {location!r}: {where!r} not found "
                f"(the path continues past {_kind(current)})"
            )
    return current


# ------------------------------------------------------------------------ xml


def _xml_tree(body: bytes) -> Any:
    # The standard library's expat never fetches external entities; internal entity
    # declarations (the "billion laughs" expansion) are refused outright before parsing.
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise ValueError("XML documents with a DOCTYPE are not accepted")
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise ValueError(f"the body is not valid XML: {exc}") from None
    return {_local(root.tag): _element(root)}


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _element(elem: ET.Element) -> Any:
    children = list(elem)
    if not children:
        return (elem.text or "").strip()
    out: dict[str, Any] = {}
    for child in children:
        name = _local(child.tag)
        value = _element(child)
        if name in out:
            existing = out[name]
            if isinstance(existing, _Repeated):
                existing.append(value)
            else:
                out[name] = _Repeated([existing, value])
        else:
            out[name] = value
    return out


class _Repeated(list[Any]):
    """Repeated sibling elements, indexed like a list."""


# ------------------------------------------------------------------------ prometheus

_SELECTOR = re.compile(r"\s*(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)?\s*(?:\{(?P<labels>.*)\})?\s*")
_MATCHER = re.compile(
    r'\s*(?P<name>[a-zA-Z_][a-zA-Z0-9_]*)\s*(?P<op>=~|!=|!~|=)\s*"(?P<value>(?:[^"\\]|\\.)*)"\s*'
)
_SAMPLE = re.compile(
    r"(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?:\{(?P<labels>(?:[^}\"]|\"(?:[^\"\\]|\\.)*\")*)\})?"
    r"\s+(?P<value>\S+)(?:\s+-?[0-9]+)?\s*"
)
_LABEL = re.compile(r'\s*(?P<name>[a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"(?P<value>(?:[^"\\]|\\.)*)"\s*,?')
_ESCAPES = re.compile(r"\\(.)")


def _unescape(text: str) -> str:
    return _ESCAPES.sub(lambda m: "\n" if m[1] == "n" else m[1], text)


def _parse_labels(text: str, pattern: re.Pattern[str], what: str) -> list[re.Match[str]]:
    out: list[re.Match[str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = pattern.match(text, pos)
        if not m:
            raise ValueError(f"cannot read the labels of {what}")
        out.append(m)
        pos = m.end()
        if pattern is _MATCHER and pos < len(text):
            if text[pos] != ",":
                raise ValueError(f"cannot read the labels of {what}")
            pos += 1
    return out


def _selector(location: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    m = _SELECTOR.fullmatch(location)
    if not m:
        raise ValueError(f"valueLocation {location!r} is not a metric selector")
    name = m["name"] or ""
    pairs: list[tuple[str, str]] = []
    for matcher in _parse_labels(m["labels"] or "", _MATCHER, f"selector {location!r}"):
        if matcher["op"] != "=":
            raise ValueError(f"valueLocation {location!r}: only label equality (=) is supported")
        value = _unescape(matcher["value"])
        if matcher["name"] == "__name__":
            name = value
        else:
            pairs.append((matcher["name"], value))
    if not name:
        raise ValueError(f"valueLocation {location!r} names no metric")
    return name, tuple(pairs)


def _prometheus_value(
    body: str, name: str, pairs: Sequence[tuple[str, str]], location: str
) -> float:
    types: dict[str, str] = {}
    found_family = False
    for number, line in enumerate(body.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            words = line[1:].split(None, 3)
            if len(words) >= 3 and words[0] == "TYPE":
                types[words[1]] = words[2]
            continue
        m = _SAMPLE.fullmatch(line)
        if not m:
            raise ValueError(f"prometheus format parsing error on line {number}")
        if m["name"] != name:
            continue
        if types.get(name, "untyped") not in ("untyped", "counter", "gauge"):
            raise ValueError(
                f"valueLocation {location!r}: metric type {types[name]!r} is not supported "
                "(use a counter, gauge or untyped metric)"
            )
        found_family = True
        labels = {
            lab["name"]: _unescape(lab["value"])
            for lab in _parse_labels(m["labels"] or "", _LABEL, f"line {number}")
        }
        if all(labels.get(key) == value for key, value in pairs):
            try:
                return float(m["value"])
            except ValueError:
                raise ValueError(
                    f"prometheus format parsing error on line {number}: "
                    f"{m['value']!r} is not a number"
                ) from None
    if not found_family:
        raise ValueError(f"metric {name!r} not found")
    raise ValueError(f"value {location!r} not found")


# ------------------------------------------------------------------------ location


@attrs.frozen
class ValueLocation:
    """A compiled ``valueLocation`` for one ``format``."""

    location: str
    format: str
    segments: tuple[str, ...] = ()
    metric: str = ""
    labels: tuple[tuple[str, str], ...] = ()

    def extract(self, body: bytes) -> float:
        """The number at this location in ``body``. :raises ValueError: why not."""
        if self.format == "prometheus":
            text = body.decode("utf-8", errors="replace")
            value = _prometheus_value(text, self.metric, self.labels, self.location)
            if not math.isfinite(value):
                raise ValueError(f"valueLocation {self.location!r} points to {value!r}")
            return value
        data = self._decode(body)
        found = _walk(data, self.segments, self.location, gjson=self.format == "json")
        return _number(found, self.location)

    def _decode(self, body: bytes) -> Any:
        if self.format == "json":
            try:
                return json.loads(body)
            except ValueError:
                raise ValueError("the body is not valid JSON") from None
        if self.format == "yaml":
            try:
                return yaml.safe_load(body)
            except yaml.YAMLError:
                raise ValueError("the body is not valid YAML") from None
        return _xml_tree(body)


def compile_location(location: str, format: str) -> ValueLocation:
    """Check ``location`` for ``format`` once. :raises ValueError: it cannot be read."""
    if format == "prometheus":
        name, pairs = _selector(location)
        return ValueLocation(location, format, metric=name, labels=pairs)
    if format == "json":
        return ValueLocation(location, format, segments=_split_gjson(location))
    segments = tuple(location.split("."))
    if any(part == "" for part in segments):
        raise ValueError(f"valueLocation {location!r} has an empty path segment")
    return ValueLocation(location, format, segments=segments)
