"""The typed field reader every manifest kind is read with.

A :class:`FieldReader` reads the fields of one :class:`Document` (a KEDA
``ScaledObject``, a ``Secret``, an HTTP add-on ``HTTPScaledObject``...) and collects
every problem as a :class:`~eventscale.errors.ConfigError` naming its field path
(``spec.triggers[1].metadata.lagThreshold``) instead of stopping at the first. It gives
every kind the same checks and the same wording: unknown fields with a did-you-mean
suggestion, integers limited to 32 bits as Kubernetes' ``int32`` fields are, and, for
YAML text, the line of each problem (:meth:`FieldReader.with_line`). Messages show a bad
value only when it cannot be a secret (a number); otherwise they name its type.

:func:`read_documents` turns what a loader accepts (:data:`ManifestInput`) into
documents, expanding a ``v1`` ``List``.
"""

from __future__ import annotations

import difflib
import enum
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, Protocol, TypeAlias, TypeVar

import attrs

from eventscale.errors import ConfigError, join_path
from eventscale.manifests._yaml import (
    MAX_ALIAS_NODES,
    MAX_ALIASES,
    MAX_DATA_VALUES,
    MAX_DEPTH,
    MAX_INTEGER_CHARS,
    MAX_MANIFEST_CHARS,
    MAX_SCALAR_CHARS,
    Document,
    check_data,
    decode_manifest,
    key_path,
    parse_yaml,
)
from eventscale.redaction import redact_text

__all__ = (
    "MAX_ALIASES",
    "MAX_ALIAS_NODES",
    "MAX_DATA_VALUES",
    "MAX_DEPTH",
    "MAX_INTEGER_CHARS",
    "MAX_MANIFEST_CHARS",
    "MAX_SCALAR_CHARS",
    "OBJECT_META_FIELDS",
    "Document",
    "FieldReader",
    "ManifestInput",
    "ObjectMeta",
    "decode_manifest",
    "did_you_mean",
    "key_path",
    "not_a_mapping",
    "read_documents",
    "read_kind",
    "shown",
    "type_name",
)

ManifestInput: TypeAlias = "str | bytes | Mapping[str, Any] | Sequence[Mapping[str, Any]]"
"""What the loaders read: YAML text, one manifest mapping, or a list of them."""

_INT32_MIN: Final = -(2**31)
_INT32_MAX: Final = 2**31 - 1

OBJECT_META_FIELDS: Final = frozenset(
    {
        "name",
        "namespace",
        "labels",
        "annotations",
        "generateName",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "ownerReferences",
        "finalizers",
        "managedFields",
        "selfLink",
    }
)
"""The Kubernetes ObjectMeta fields: accepted (a ``kubectl get -o yaml`` dump has them),
mostly ignored."""

_E = TypeVar("_E", bound=enum.Enum)
_S = TypeVar("_S")


@attrs.frozen
class ObjectMeta:
    """The ``metadata`` eventscale keeps: name, namespace, labels and annotations."""

    name: str
    namespace: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]


def type_name(value: Any) -> str:
    """How messages name the type of ``value`` (``an integer``, ``a mapping``, ``null``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


def shown(value: Any, *, reveal: bool = False) -> str:
    """A secret-safe rendering of a bad value for an error message.

    Numbers are shown; strings only when ``reveal`` (``kind``, ``apiVersion``): any other
    field may hold a password pasted in the wrong place, so only its type is named.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{type_name(value)} {value!r}"
    if reveal and isinstance(value, str):
        text = redact_text(repr(value))
        if len(text) > 60:
            text = text[:57] + "..."
        return f"{type_name(value)} {text}"
    return type_name(value)


def did_you_mean(value: Any, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the choice closest to ``value``, or ``""``."""
    if not isinstance(value, str):
        return ""
    close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.5)
    if not close:
        lowered = {c.lower(): c for c in choices}
        if value.lower() in lowered:
            close = [lowered[value.lower()]]
    return f" (did you mean {close[0]!r}?)" if close else ""


class FieldReader:
    """Reads the fields of one document, collecting every error with its path.

    Each method takes the mapping that holds a field, the field's key and the path of
    that mapping (``""`` for the document itself), and returns the value, or its default
    after recording a problem in :attr:`errors`. ``doc`` supplies the line index and
    the raw text of plain YAML scalars; without one (a document built in code), errors
    carry no line.
    """

    def __init__(self, doc: Document | None = None) -> None:
        self.doc = doc if doc is not None else Document(0, None)
        self.errors: list[ConfigError] = []

    def fail(self, path: str | None, reason: str) -> None:
        """Record a problem of the field at ``path``."""
        self.errors.append(ConfigError(reason, path=path))

    def failed_under(self, path: str) -> bool:
        """Whether a problem was recorded at ``path`` or a field under it."""
        return any(
            e.path is not None and (e.path == path or e.path.startswith((path + ".", path + "[")))
            for e in self.errors
        )

    # -- shapes --------------------------------------------------------------------

    def mapping(
        self,
        value: Any,
        path: str,
        allowed: Iterable[str] | None = None,
        *,
        notes: Mapping[str, str] | None = None,
    ) -> Mapping[str, Any] | None:
        """``value`` as a mapping with string keys; unknown keys are errors when ``allowed``.

        An unknown key gets a did-you-mean hint, or its entry of ``notes`` (for a field a
        kind renamed: ``{"host": "the add-on renamed 'host' to 'hosts'"}``).
        """
        if not isinstance(value, Mapping):
            self.fail(path, f"must be a mapping, got {type_name(value)}")
            return None
        allowed_set = frozenset(allowed) if allowed is not None else None
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                self.fail(path, f"keys must be strings, got {shown(key)}")
                continue
            if allowed_set is not None and key not in allowed_set:
                note = notes.get(key) if notes is not None else None
                hint = f" ({note})" if note else _suggest(key, allowed_set)
                self.fail(key_path(path, key), f"unknown field {key!r}{hint}")
                continue
            out[key] = item
        return out

    def sub(
        self,
        obj: Mapping[str, Any],
        key: str,
        path: str,
        allowed: Iterable[str] | None = None,
        *,
        required: bool = False,
        notes: Mapping[str, str] | None = None,
    ) -> Mapping[str, Any] | None:
        """An optional (or required) nested mapping; ``null`` counts as absent.

        ``allowed`` and ``notes`` are those of :meth:`mapping`.
        """
        value = obj.get(key)
        sub_path = key_path(path, key) if path else key
        if value is None:
            if required:
                self.fail(sub_path, "is required")
            return None
        return self.mapping(value, sub_path, allowed, notes=notes)

    def items(self, obj: Mapping[str, Any], key: str, path: str) -> list[Any] | None:
        """An optional list (``None`` when absent or ``null``)."""
        value = obj.get(key)
        if value is None:
            return None
        if not isinstance(value, list | tuple):
            self.fail(key_path(path, key), f"must be a list, got {type_name(value)}")
            return None
        return list(value)

    # -- scalars -------------------------------------------------------------------

    def string(
        self,
        obj: Mapping[str, Any],
        key: str,
        path: str,
        *,
        required: bool = False,
        default: str | None = None,
        choices: Sequence[str] | None = None,
    ) -> str | None:
        """A string; ``""`` counts as absent. ``choices`` limits it to those values."""
        field = key_path(path, key) if path else key
        value = obj.get(key)
        if value is None or value == "":
            if required:
                self.fail(field, "is required")
            return default
        if not isinstance(value, str):
            self.fail(field, f"must be a string, got {shown(value)}")
            return default
        if not _encodable(value):
            self.fail(field, "is not valid Unicode text (a lone surrogate)")
            return default
        if choices is not None and value not in choices:
            listed = ", ".join(choices)
            hint = did_you_mean(value, choices)
            self.fail(field, f"must be one of {listed}; got {shown(value)}{hint}")
            return default
        return value

    def integer(
        self,
        obj: Mapping[str, Any],
        key: str,
        path: str,
        *,
        default: int | None,
        required: bool = False,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int | None:
        """An integer (not a boolean) in 32 bits and within ``minimum``..``maximum``."""
        field = key_path(path, key) if path else key
        value = obj.get(key)
        if value is None:
            if required:
                self.fail(field, "is required")
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(field, f"must be an integer, got {shown(value)}")
            return default
        if not _INT32_MIN <= value <= _INT32_MAX:
            self.fail(field, f"{value} is out of range for a 32-bit integer")
            return default
        if minimum is not None and value < minimum:
            self.fail(field, f"must be >= {minimum}, got {value}")
            return default
        if maximum is not None and value > maximum:
            self.fail(field, f"must be <= {maximum}, got {value}")
            return default
        return value

    def boolean(self, obj: Mapping[str, Any], key: str, path: str, *, default: bool) -> bool:
        """A YAML boolean (``true``/``false``; strings are not booleans)."""
        field = key_path(path, key) if path else key
        value = obj.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.fail(field, f"must be true or false, got {shown(value)}")
            return default
        return value

    def number(
        self, obj: Mapping[str, Any], key: str, path: str, *, required: bool = False
    ) -> float | None:
        """A float written as a number or a numeric string (KEDA keeps these as strings)."""
        field = key_path(path, key) if path else key
        value = obj.get(key)
        if value is None or value == "":
            if required:
                self.fail(field, "is required")
            return None
        parsed: float | None = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            parsed = float(value)
        elif isinstance(value, str):
            try:
                parsed = float(value.strip())
            except ValueError:
                parsed = None
        if parsed is None or not math.isfinite(parsed):
            self.fail(field, f"must be a finite number, got {shown(value)}")
            return None
        return parsed

    def enum(
        self,
        obj: Mapping[str, Any],
        key: str,
        path: str,
        enum_type: type[_E],
        *,
        default: _E,
    ) -> _E:
        """A member of ``enum_type`` given by its value; ``""`` counts as absent."""
        field = key_path(path, key) if path else key
        value = obj.get(key)
        if value is None or value == "":
            return default
        for member in enum_type:
            if member.value == value:
                return member
        choices = ", ".join(str(m.value) for m in enum_type)
        hint = did_you_mean(value, [str(m.value) for m in enum_type])
        self.fail(field, f"must be one of {choices}; got {shown(value)}{hint}")
        return default

    def string_map(self, obj: Mapping[str, Any], key: str, path: str) -> dict[str, str]:
        """A ``map[string]string``: YAML numbers and booleans become their text."""
        field = key_path(path, key) if path else key
        value = obj.get(key)
        if value is None:
            return {}
        mapping = self.mapping(value, field)
        if mapping is None:
            return {}
        out: dict[str, str] = {}
        for name, item in mapping.items():
            item_path = key_path(field, name)
            text = self.scalar_text(item, item_path)
            if text is None:
                # Only the type: a mapping under `password` may hold the password.
                self.fail(item_path, f"must be a string, got {type_name(item)}")
                continue
            if not _encodable(text):
                self.fail(item_path, "is not valid Unicode text (a lone surrogate)")
                continue
            out[name] = text
        return out

    def scalar_text(self, value: Any, path: str) -> str | None:
        """The text of a scalar as KEDA would see it: ``None`` for mappings and lists."""
        if value is None:
            return ""
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        raw = self.doc.raw.get(path)
        if raw is not None:
            return raw
        if isinstance(value, int | float):
            return str(value)
        if isinstance(value, Mapping | list | tuple):
            return None
        return str(value)

    # -- common shapes ---------------------------------------------------------------

    def object_meta(
        self, doc: Mapping[str, Any], allowed: Iterable[str] | None = OBJECT_META_FIELDS
    ) -> ObjectMeta:
        """The document's ``metadata`` (required, with a ``name``); ``namespace`` defaults
        to ``default``. Fields outside ``allowed`` are errors (``None``: any field)."""
        meta = self.sub(doc, "metadata", "", allowed, required=True) or {}
        name = self.string(meta, "name", "metadata", required=True) or ""
        namespace = self.string(meta, "namespace", "metadata", default="default") or "default"
        return ObjectMeta(
            name=name,
            namespace=namespace,
            labels=self.string_map(meta, "labels", "metadata"),
            annotations=self.string_map(meta, "annotations", "metadata"),
        )

    def build(self, make: Callable[[], _S], check: Callable[[_S], None] | None = None) -> _S | None:
        """Build a spec; its cross-field errors join the field errors (minus duplicates)."""
        try:
            spec = make()
            if check is not None:
                check(spec)
        except ConfigError as exc:
            for err in exc.errors or (exc,):
                if err.path is None or not self.failed_under(err.path):
                    self.errors.append(err)
            return None
        return spec

    # -- final error ---------------------------------------------------------------

    def error(self, what: str, *, multi: bool = False) -> ConfigError | None:
        """The problems recorded so far as one error (``None`` if there are none).

        Each problem carries its line; several are gathered under ``invalid {what}``
        (with the line of ``kind`` when the document is one of a stream, ``multi``).
        """
        errors = [self.with_line(e) for e in self.errors]
        if len(errors) <= 1:
            return errors[0] if errors else None
        line = self.line_of("kind")
        at = f", line {line}" if line is not None and multi else ""
        return ConfigError(f"invalid {what}{at} ({len(errors)} problems)", errors=errors)

    def with_line(self, err: ConfigError) -> ConfigError:
        """``err`` (and each error under it) with `` (line N)`` added where known."""
        if err.errors:
            return ConfigError(
                err.reason, path=err.path, errors=[self.with_line(e) for e in err.errors]
            )
        line = self.line_of(err.path)
        if line is None:
            return err
        return ConfigError(f"{err.reason} (line {line})", path=err.path)

    def line_of(self, path: str | None) -> int | None:
        """The line of ``path``, or of the nearest enclosing field that has one."""
        lines = self.doc.lines
        while path:
            if path in lines:
                return lines[path]
            cut = max(path.rfind("."), path.rfind("["))
            path = path[:cut] if cut > 0 else None
        return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _suggest(key: str, allowed: frozenset[str]) -> str:
    close = difflib.get_close_matches(key, sorted(allowed), n=1)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return ""


def not_a_mapping(data: Any, path: str | None) -> ConfigError:
    """The error for a document that is not a mapping, at ``path`` (``[doc N]``)."""
    return ConfigError(f"a manifest document must be a mapping, got {type_name(data)}", path=path)


class _Keyed(Protocol):
    @property
    def key(self) -> str: ...


K = TypeVar("K", bound=_Keyed)


def read_kind(
    source: ManifestInput,
    kind: str,
    read_one: Callable[[FieldReader, Mapping[str, Any]], K | None],
    *,
    ignore_unknown_kinds: bool = True,
) -> tuple[K, ...]:
    """Every document of ``kind`` in ``source``, each read by ``read_one``.

    The loop every single-kind reader shares: documents that are not mappings are
    errors; other kinds are skipped (or errors, with ``ignore_unknown_kinds=False``); a
    second object with the same ``key`` is a duplicate; every problem of every document
    is collected, with ``[doc N]`` before its path in a stream of several documents.

    :raises ConfigError: listing every problem.
    """
    docs, multi = read_documents(source)
    out: list[K] = []
    problems: list[ConfigError] = []
    seen: set[str] = set()
    for doc in docs:
        prefix = f"[doc {doc.index}]" if multi else None
        data = doc.data
        if not isinstance(data, Mapping):
            problems.append(not_a_mapping(data, prefix))
            continue
        if data.get("kind") != kind:
            if not ignore_unknown_kinds:
                problems.append(
                    ConfigError(
                        f"unsupported kind {data.get('kind')!r} (expected {kind})",
                        path=join_path(prefix, "kind"),
                    )
                )
            continue
        r = FieldReader(doc)
        spec = read_one(r, data)
        if spec is not None and spec.key in seen:
            r.fail("metadata.name", f"duplicate {kind} {spec.key!r}")
        err = r.error(kind, multi=multi)
        if err is not None:
            problems.append(err.prefixed(prefix) if prefix else err)
            continue
        if spec is not None:
            seen.add(spec.key)
            out.append(spec)
    ConfigError.collect(problems, what="invalid manifests")
    return tuple(out)


def read_documents(source: ManifestInput) -> tuple[list[Document], bool]:
    """The documents of ``source`` and whether it was a multi-document stream.

    Empty YAML documents are skipped; each item of a ``v1`` ``List`` becomes a document.

    Bytes are decoded as UTF-8, with or without a leading byte-order mark.

    :raises ConfigError: invalid YAML (naming line and column), text that is not UTF-8
        (naming the byte offset and line), text beyond a limit of docs/errors.md
        ("Limits"), or a ``source`` of another type.
    """
    if isinstance(source, bytes):
        source = decode_manifest(source)
    if isinstance(source, str):
        docs = parse_yaml(source)
    elif isinstance(source, Mapping):
        check_data(source)
        docs = [Document(0, source)]
    elif isinstance(source, Sequence):
        check_data(source)
        docs = [Document(i, item) for i, item in enumerate(source)]
    else:
        raise ConfigError(
            f"expected YAML text, a mapping or a list of mappings, got {type_name(source)}"
        )
    expanded: list[Document] = []
    for doc in docs:
        data = doc.data
        if (
            isinstance(data, Mapping)
            and data.get("kind") == "List"
            and data.get("apiVersion") == "v1"
            and isinstance(data.get("items"), list)
        ):
            for j, item in enumerate(data["items"]):
                prefix = f"items[{j}]"
                expanded.append(
                    Document(
                        len(expanded),
                        item,
                        _strip(doc.lines, prefix),
                        _strip(doc.raw, prefix),
                    )
                )
        else:
            expanded.append(attrs.evolve(doc, index=len(expanded)))
    return expanded, len(expanded) > 1


def _strip(table: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, value in table.items():
        if path.startswith(prefix + "."):
            out[path[len(prefix) + 1 :]] = value
        elif path.startswith(prefix + "["):
            out[path[len(prefix) :]] = value
    return out
