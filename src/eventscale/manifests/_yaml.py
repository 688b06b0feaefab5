"""YAML manifest text to documents, with the source line of every field.

:func:`parse_yaml` composes each ``---`` document once and records, for every field
path (``spec.triggers[0].metadata.topic``), the line it starts on and, for plain
(unquoted) scalars, their raw text, so a number such as ``0010`` reads as KEDA would
see it (a string). The YAML library's own error messages are not repeated: they quote
the source line, which may hold a password.

Every manifest reader (KEDA's kinds and the HTTP add-on's ``HTTPScaledObject``) goes
through :func:`parse_yaml`, so its bounds hold for all of them (docs/errors.md,
"Limits"): the text's size, the nesting depth, the number of aliases and the nodes
they repeat, a scalar's length and an integer's digits. Each is checked while the
document is composed or indexed, before anything is built from it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import attrs

from eventscale.errors import ConfigError, join_path

if TYPE_CHECKING:
    import yaml

__all__ = (
    "MAX_ALIASES",
    "MAX_ALIAS_NODES",
    "MAX_DEPTH",
    "MAX_INTEGER_CHARS",
    "MAX_MANIFEST_CHARS",
    "MAX_SCALAR_CHARS",
    "MAX_DATA_VALUES",
    "Document",
    "check_data",
    "decode_manifest",
    "key_path",
    "parse_yaml",
    "yaml_error",
)

#: The longest manifest text (a stream of documents), in characters: 4 MiB, more than
#: the Kubernetes API server accepts in one request (3 MiB).
MAX_MANIFEST_CHARS: Final = 4 * 1024 * 1024
#: The deepest nesting of mappings and lists.
MAX_DEPTH: Final = 64
#: The most aliases (``*name``) in one stream.
MAX_ALIASES: Final = 1000
#: The most nodes aliases may repeat in one document (a "billion laughs" bound).
MAX_ALIAS_NODES: Final = 100_000
#: The longest scalar (a value or a key), in characters: 128 KiB.
MAX_SCALAR_CHARS: Final = 128 * 1024
#: The longest integer scalar, in characters.
MAX_INTEGER_CHARS: Final = 100
# The field paths one document may record (their characters, all together): only a
# deep document of long keys and long lists comes near it.
_MAX_PATH_CHARS: Final = 64 * 1024 * 1024

#: The most values a manifest given as data (mappings, lists) may hold, each repeat of a
#: shared mapping or list counted.
MAX_DATA_VALUES: Final = 1_000_000

_IDENT: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
_INT_TAG: Final = "tag:yaml.org,2002:int"
_STR_TAG: Final = "tag:yaml.org,2002:str"


def key_path(parent: str | None, key: str) -> str:
    """``parent.key`` for plain keys, ``parent['a.b/c']`` for keys with dots or slashes."""
    part = key if _IDENT.fullmatch(key) else f"[{key!r}]"
    if part.startswith("["):
        return f"{parent}{part}" if parent else part
    return join_path(parent, part) or part


@attrs.frozen
class Document:
    """One manifest document, with the source line and raw text of its fields (from YAML).

    ``index`` is its 0-based position in the stream, ``data`` the parsed value,
    ``lines`` maps a field path to its 1-based line and ``raw`` maps the path of a plain
    scalar to its text as written. Both tables are empty for a document given as a
    mapping.
    """

    index: int
    data: Any
    lines: Mapping[str, int] = attrs.field(factory=dict)
    raw: Mapping[str, str] = attrs.field(factory=dict)


def yaml_error(exc: Exception) -> ConfigError:
    """A :class:`~eventscale.errors.ConfigError` naming the problem and where it is."""
    # Only the problem and its position: the YAML library's own message quotes the
    # source line, which may hold a password.
    position = getattr(exc, "position", None)
    character = getattr(exc, "character", None)
    if isinstance(position, int) and isinstance(character, int):  # the reader's error
        return ConfigError(
            f"invalid YAML at character {position}: U+{character:04X} is not allowed"
        )
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or type(exc).__name__
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return ConfigError(f"invalid YAML{where}: {problem}")


def decode_manifest(data: bytes, what: str = "manifest text") -> str:
    """``data`` decoded as UTF-8; a leading byte-order mark is dropped.

    :raises ConfigError: bytes that are not UTF-8, naming the byte offset and line.
    """
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"{what} is not UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start} (line {line})"
        ) from None


def check_data(data: Any, path: str | None = None) -> None:
    """Check a manifest given as data (not YAML text) against the same limits.

    Nesting depth, string length, integer size and valid Unicode, as :func:`parse_yaml`
    checks them, and at most :data:`MAX_DATA_VALUES` values, shared ones counted at
    every use (a mapping that contains itself is an error).

    :raises ConfigError: the first value beyond a limit, at its field path.
    """
    stack: list[tuple[Any, str | None, int, frozenset[int]]] = [(data, path, 1, frozenset())]
    count = 0
    while stack:
        value, where, depth, parents = stack.pop()
        count += 1
        if count > MAX_DATA_VALUES:
            raise ConfigError(f"the manifest holds more than {MAX_DATA_VALUES} values")
        if isinstance(value, str):
            _check_text(value, where)
        elif isinstance(value, int) and not isinstance(value, bool):
            if value.bit_length() > 3 * MAX_INTEGER_CHARS:  # about as many digits
                raise ConfigError(f"an integer of more than {MAX_INTEGER_CHARS} digits", path=where)
        elif isinstance(value, Mapping | list | tuple):
            if depth > MAX_DEPTH:
                raise ConfigError(f"nested deeper than {MAX_DEPTH} levels", path=where)
            if id(value) in parents:
                raise ConfigError("a mapping or list contains itself", path=where)
            inner = parents | {id(value)}
            if isinstance(value, Mapping):
                for key, item in value.items():
                    child = key_path(where, key[:200]) if isinstance(key, str) else where
                    if isinstance(key, str):
                        _check_text(key, where)
                    stack.append((item, child, depth + 1, inner))
            else:
                for i, item in enumerate(value):
                    stack.append((item, f"{where or ''}[{i}]", depth + 1, inner))


def _check_text(value: str, where: str | None) -> None:
    if len(value) > MAX_SCALAR_CHARS:
        raise ConfigError(f"longer than {MAX_SCALAR_CHARS} characters", path=where)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError("not valid Unicode text: a lone surrogate", path=where) from None


def _loader(text: str) -> yaml.SafeLoader:
    """A safe loader that bounds depth and aliases while it composes."""
    import yaml

    class BoundedLoader(yaml.SafeLoader):
        aliases = 0
        depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            event: Any = self.peek_event()  # type: ignore[no-untyped-call]
            mark: Any = event.start_mark
            if isinstance(event, yaml.AliasEvent):
                self.aliases += 1
                if self.aliases > MAX_ALIASES:
                    raise yaml.composer.ComposerError(
                        None, None, f"more than {MAX_ALIASES} aliases", mark
                    )
                return super().compose_node(parent, index)
            self.depth += 1
            try:
                if self.depth > MAX_DEPTH:
                    raise yaml.composer.ComposerError(
                        None, None, f"nested deeper than {MAX_DEPTH} levels", mark
                    )
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

        def construct_yaml_timestamp(self, node: Any) -> Any:
            try:
                return super().construct_yaml_timestamp(node)
            except (ValueError, OverflowError):
                raise yaml.constructor.ConstructorError(
                    None, None, "not a valid timestamp", node.start_mark
                ) from None

    BoundedLoader.add_constructor(
        "tag:yaml.org,2002:timestamp", BoundedLoader.construct_yaml_timestamp
    )
    return BoundedLoader(text)


def _expanded_size(node: yaml.Node, sizes: dict[int, int], active: set[int]) -> int:
    """The nodes under ``node`` with every alias repeated (memoized; cycles are errors)."""
    import yaml

    known = sizes.get(id(node))
    if known is not None:
        return known
    if id(node) in active:
        raise ConfigError(
            f"invalid YAML at line {node.start_mark.line + 1}: an alias refers to itself"
        )
    active.add(id(node))
    size = 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            size += _expanded_size(key_node, sizes, active)
            size += _expanded_size(value_node, sizes, active)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            size += _expanded_size(item, sizes, active)
    active.discard(id(node))
    # Capped, so the numbers stay small; the cap is far above any limit checked.
    sizes[id(node)] = min(size, 2**40)
    return sizes[id(node)]


def _check_scalar(node: yaml.ScalarNode, path: str | None, errors: list[ConfigError]) -> None:
    value: str = node.value
    line = node.start_mark.line + 1
    if len(value) > MAX_SCALAR_CHARS:
        errors.append(
            ConfigError(f"longer than {MAX_SCALAR_CHARS} characters (line {line})", path=path)
        )
    elif node.tag == _INT_TAG and len(value) > MAX_INTEGER_CHARS:
        errors.append(
            ConfigError(
                f"an integer of more than {MAX_INTEGER_CHARS} characters (line {line})",
                path=path,
            )
        )
    else:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            errors.append(
                ConfigError(f"not valid Unicode text: a lone surrogate (line {line})", path=path)
            )


class _Indexer:
    """Records the line and raw text of every field, and checks every scalar."""

    def __init__(self) -> None:
        self.lines: dict[str, int] = {}
        self.raw: dict[str, str] = {}
        self.errors: list[ConfigError] = []
        self.path_chars = 0

    def index(self, node: yaml.Node, path: str | None) -> None:
        import yaml

        if path is not None:
            self.path_chars += len(path)
            if self.path_chars > _MAX_PATH_CHARS:
                raise ConfigError("invalid YAML: too many fields under too long keys")
            self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode):
                    _check_scalar(key_node, path, self.errors)
                    child = key_path(path, key_node.value)
                    self.lines.setdefault(child, key_node.start_mark.line + 1)
                    self.index(value_node, child)
                else:
                    self.index(key_node, path)
                    self.index(value_node, path)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self.index(item, f"{path or ''}[{i}]")
        elif isinstance(node, yaml.ScalarNode):
            _check_scalar(node, path, self.errors)
            if node.style is None and node.tag != _STR_TAG and path is not None:
                self.raw[path] = node.value


def parse_yaml(text: str) -> list[Document]:
    """The non-empty documents of ``text``, each with its line index.

    :raises ConfigError: the text is not valid YAML (the message names line and column),
        or it is beyond a limit of this module (the message names the field path where
        there is one).
    """
    import yaml

    if len(text) > MAX_MANIFEST_CHARS:
        raise ConfigError(f"manifest text is longer than {MAX_MANIFEST_CHARS} characters")
    docs: list[Document] = []
    try:
        loader = _loader(text)
    except yaml.YAMLError as exc:  # a character YAML does not allow (NUL, ...)
        raise yaml_error(exc) from None
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None or (
                isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"
            ):
                continue  # an empty document, as kubectl skips it
            sizes: dict[int, int] = {}
            repeated = _expanded_size(node, sizes, set()) - len(sizes)
            if repeated > MAX_ALIAS_NODES:
                raise ConfigError(
                    f"invalid YAML at line {node.start_mark.line + 1}: aliases repeat"
                    f" more than {MAX_ALIAS_NODES} nodes"
                )
            indexer = _Indexer()
            indexer.index(node, None)
            if indexer.errors:
                errors = indexer.errors
                if len(errors) == 1:
                    raise errors[0]
                raise ConfigError(f"invalid YAML ({len(errors)} problems)", errors=errors[:20])
            data = loader.construct_document(node)
            docs.append(Document(len(docs), data, indexer.lines, indexer.raw))
    except yaml.YAMLError as exc:
        raise yaml_error(exc) from None
    finally:
        loader.dispose()
    return docs
