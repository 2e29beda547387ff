"""How a wire message is declared: each record class is registered under its tag, with the types
its fields may hold on the wire (which :func:`daemon.protocol.decode` checks).

Stdlib only, as the rest of the wire code (:mod:`daemon.protocol`): the shim imports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from daemon.protocol import Message

# --------------------------------------------------------------------------------------------
# Messages. Each is a small immutable record (a NamedTuple: typed, frozen, and five times cheaper
# to define than a frozen dataclass, which matters because the shim defines all of them at start)
# with a TAG; `decode` is the only place that turns wire maps back into objects, and it checks
# every field's type.
# --------------------------------------------------------------------------------------------

_REGISTRY: dict[str, Any] = {}
#: Per tag: the message class, and each field's allowed types (exact: what msgpack gives).
_SPECS: dict[str, tuple[Any, dict[str, frozenset[type]]]] = {}
_TYPE_NAMES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (float, int),
    "bool": (bool,),
    "bytes": (bytes,),
    "list": (list, tuple),
    "dict": (dict,),
}


_TAGS: dict[type, str] = {}


def _register(tag: str) -> Any:
    """Class decorator: register a message type under its wire tag."""

    def register(cls: Any) -> Any:
        _record(tag, cls)
        return cls

    return register


def tag_of(message: Message) -> str:
    """The wire tag of a message (``"hello"``, ``"decide"``...)."""
    return _TAGS[type(message)]


def _record(tag: str, cls: Any) -> None:
    specs: dict[str, frozenset[type]] = {}
    for name in cls._fields:
        allowed: list[type] = []
        annotation = cls.__annotations__[name]
        for part in str(getattr(annotation, "__forward_arg__", annotation)).split("|"):
            part = part.strip()
            if part == "None":
                allowed.append(type(None))
            else:
                allowed.extend(_TYPE_NAMES[part.split("[", 1)[0]])
        specs[name] = frozenset(allowed)
    _REGISTRY[tag] = cls
    _SPECS[tag] = (cls, specs)
    _TAGS[cls] = tag
