"""YAML manifest text to documents, with the source line of every field.

:func:`parse_yaml` composes each ``---`` document once and records, for every field
path (``spec.triggers[0].metadata.topic``), the line it starts on and, for plain
(unquoted) scalars, their raw text, so a number such as ``0010`` reads as KEDA would
see it (a string). The YAML library's own error messages are not repeated: they quote
the source line, which may hold a password.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import attrs

from eventscale.errors import ConfigError, join_path

if TYPE_CHECKING:
    import yaml

__all__ = ("Document", "key_path", "parse_yaml", "yaml_error")

_IDENT: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")


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
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or type(exc).__name__
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return ConfigError(f"invalid YAML{where}: {problem}")


def _index_node(
    node: yaml.Node,
    path: str | None,
    lines: dict[str, int],
    raw: dict[str, str],
    active: set[int],
) -> None:
    import yaml

    if id(node) in active:  # a recursive alias: nothing more to learn
        return
    if path is not None:
        lines.setdefault(path, node.start_mark.line + 1)
    active.add(id(node))
    try:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode):
                    child = key_path(path, key_node.value)
                    lines.setdefault(child, key_node.start_mark.line + 1)
                    _index_node(value_node, child, lines, raw, active)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                _index_node(item, f"{path or ''}[{i}]", lines, raw, active)
        elif (
            isinstance(node, yaml.ScalarNode)
            and node.style is None
            and node.tag != "tag:yaml.org,2002:str"
            and path is not None
        ):
            raw[path] = node.value
    finally:
        active.discard(id(node))


def parse_yaml(text: str) -> list[Document]:
    """The non-empty documents of ``text``, each with its line index.

    :raises ConfigError: the text is not valid YAML (the message names line and column).
    """
    import yaml

    docs: list[Document] = []
    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
        for node in nodes:
            if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
                continue  # an empty document, as kubectl skips it
            data = yaml.SafeLoader("").construct_document(node)
            lines: dict[str, int] = {}
            raw: dict[str, str] = {}
            _index_node(node, None, lines, raw, set())
            docs.append(Document(len(docs), data, lines, raw))
    except yaml.YAMLError as exc:
        raise yaml_error(exc) from None
    return docs
