"""A tool's Python annotations -> its contract: parameter types, the keys it reads and writes.

A state parameter annotated with a `TypedDict` declares the keys the tool reads (`NotRequired`
ones may be missing); a `TypedDict` return annotation declares the keys it writes (`required`:
always written).  Anything else (`Mapping[str, Any]`, no annotation, a name that cannot be
resolved) leaves that part of the contract unknown, so the tool stays unchecked (`any`).
The compiler is handed the result as plain `FlowType`s; it never sees a Python annotation.
"""

from __future__ import annotations

import collections.abc
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

import typing_extensions

from flowc.compiler.tools import KeyContract
from flowc.compiler.types import ANY, BOOL, FLOAT, INT, NULL, STR, FlowType, dict_of, join, list_of
from flowc.compiler.types import problems_with as type_problems

#: Annotations that are themselves types of one kind.
_SCALARS: dict[Any, FlowType] = {
    bool: BOOL, int: INT, float: FLOAT, str: STR, type(None): NULL, None: NULL,
    Any: ANY, object: ANY,
}  # fmt: skip
#: Generic origins whose values arrive as JSON lists, and as JSON objects.
_LISTS = frozenset({list, tuple, set, frozenset, collections.abc.Sequence,
                    collections.abc.MutableSequence, collections.abc.Collection,
                    collections.abc.Iterable})  # fmt: skip
_DICTS = frozenset({dict, collections.abc.Mapping, collections.abc.MutableMapping})
_UNIONS = frozenset({typing.Union, types.UnionType})
#: Wrappers that say something about a key or value but not its type: looked through.
_WRAPPERS = frozenset(
    {typing_extensions.NotRequired, typing_extensions.Required, typing_extensions.ReadOnly,
     typing_extensions.Annotated, getattr(typing, "NotRequired", None),
     getattr(typing, "Required", None), typing.ClassVar, typing.Final} - {None}
)  # fmt: skip
#: How deep an annotation may nest before the rest counts as `any` (a recursive alias).
MAX_ANNOTATION_DEPTH = 32


class _Annotations:
    """One annotation to resolve on its own, in the namespace of the function it is on."""

    def __init__(self, name: str, annotation: Any, namespace: dict[str, Any]) -> None:
        self.__annotations__ = {name: annotation}
        self.__globals__ = namespace


def resolved_hints(
    function: Callable[..., Any], signature: inspect.Signature | None = None
) -> dict[str, Any]:
    """A tool's annotations as objects, string ones (`from __future__`) resolved.

    Read from its signature, so a `functools.partial` or an object with `__call__` has them
    too.  An annotation that cannot be resolved (a name defined inside another function, a typo)
    is left out, so it counts as absent; the others are still used.
    """
    if signature is None:
        try:
            signature = inspect.signature(function)
        except (TypeError, ValueError):
            return {}
    written = {name: p.annotation for name, p in signature.parameters.items()}
    written["return"] = signature.return_annotation
    namespace = _namespace(function)
    hints: dict[str, Any] = {}
    for name, annotation in written.items():
        if annotation is inspect.Parameter.empty:
            continue
        try:
            holder = _Annotations(name, annotation, namespace)
            hints.update(typing.get_type_hints(holder, include_extras=True))
        except Exception:  # any error in an annotation's text or in evaluating it
            continue
    return hints


def _namespace(function: Any) -> dict[str, Any]:
    """The globals a function's annotations are written in (a partial's: its function's)."""
    for _ in range(MAX_ANNOTATION_DEPTH):
        function = inspect.unwrap(function)
        namespace = getattr(function, "__globals__", None)
        if isinstance(namespace, dict):
            return namespace
        inner = getattr(function, "func", None)  # functools.partial
        if inner is None and callable(function):
            inner = type(function).__call__
        if inner is None or inner is function:
            break
        function = inner
    return {}


def flow_type(annotation: Any, depth: int = 0) -> FlowType:
    """The `FlowType` of a Python annotation; `any` for what JSON types cannot say."""
    if depth > MAX_ANNOTATION_DEPTH:
        return ANY
    annotation = _underlying(annotation)
    scalar: FlowType | None = _lookup(_SCALARS, annotation)
    if scalar is not None:
        return scalar
    if is_typeddict(annotation):
        fields = [flow_type(t, depth + 1) for t in _typeddict_hints(annotation).values()]
        item = fields[0] if fields else ANY
        for other in fields[1:]:
            item = join(item, other)
        return dict_of(item)
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin is typing.Literal or origin is typing_extensions.Literal:
        return _literal(arguments)
    if origin in _UNIONS:
        return _union([flow_type(a, depth + 1) for a in arguments])
    if origin in _LISTS or _lookup(_LISTS, annotation):
        if origin is tuple and not (len(arguments) == 2 and arguments[1] is Ellipsis):
            item = _union([flow_type(a, depth + 1) for a in arguments if a is not Ellipsis])
            return list_of(item if arguments else ANY)
        return list_of(flow_type(arguments[0], depth + 1) if arguments else ANY)
    if origin in _DICTS or _lookup(_DICTS, annotation):
        return dict_of(flow_type(arguments[1], depth + 1) if len(arguments) == 2 else ANY)
    return ANY


def _lookup(table: Mapping[Any, FlowType] | frozenset[Any], annotation: Any) -> Any:
    """`table[annotation]` (or membership, for a set); None for an unhashable annotation."""
    try:
        if isinstance(table, frozenset):
            return annotation in table or None
        return table.get(annotation)
    except TypeError:  # `Annotated[int, {}]` and other unhashable metadata
        return None


def _underlying(annotation: Any) -> Any:
    """The type inside `Annotated[...]`, `NotRequired[...]`, a `NewType` and a `type` alias."""
    for _ in range(MAX_ANNOTATION_DEPTH):
        origin = typing.get_origin(annotation)
        if origin in _WRAPPERS:
            annotation = typing.get_args(annotation)[0]
        elif hasattr(annotation, "__supertype__"):  # typing.NewType
            annotation = annotation.__supertype__
        elif type(annotation).__name__ == "TypeAliasType":  # `type X = ...` (3.12)
            annotation = annotation.__value__
        else:
            return annotation
    return Any


def _literal(values: tuple[Any, ...]) -> FlowType:
    """`Literal["a", "b"]` -> `str (one of "a", "b")`; values of mixed kinds -> `any`."""
    allowed = tuple(v for v in values if v is not None)
    kinds = {_SCALARS.get(type(v), ANY) for v in allowed}
    if len(kinds) != 1 or ANY in kinds:
        return ANY if allowed else NULL
    (base,) = kinds
    literal = FlowType(base.kind, choices=allowed)
    return literal.or_null() if len(allowed) < len(values) else literal


def _union(members: list[FlowType]) -> FlowType:
    """One type for `A | B | None`: nullable when None is a member; `any` for mixed kinds."""
    if not members:
        return ANY
    found = members[0]
    for member in members[1:]:
        found = join(found, member)
    return found


def is_typeddict(annotation: Any) -> bool:
    """True for a `TypedDict` class (from `typing` or `typing_extensions`)."""
    return bool(typing_extensions.is_typeddict(annotation))


def _typeddict_hints(annotation: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(annotation, include_extras=True)
    except Exception:  # a name the TypedDict's module cannot resolve: its keys, untyped
        return dict.fromkeys(getattr(annotation, "__annotations__", {}), Any)


def keys_of(annotation: Any) -> tuple[KeyContract, ...] | None:
    """The keys of a `TypedDict` annotation (also `TypedDict | None`); None for anything else.

    `required` comes from `Required`/`NotRequired` as written, else from the class's
    `total`; under `T | None` no key is certain (the tool may return None).
    """
    annotation = _underlying(annotation)
    certain = True
    if typing.get_origin(annotation) in _UNIONS:
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) != 1:
            return None
        annotation, certain = _underlying(members[0]), False
    if not is_typeddict(annotation):
        return None
    required_keys: frozenset[str] = getattr(annotation, "__required_keys__", frozenset())
    contracts = []
    for name, hint in _typeddict_hints(annotation).items():
        origin = typing.get_origin(hint)
        if origin in (typing_extensions.NotRequired, getattr(typing, "NotRequired", None)):
            required = False
        elif origin in (typing_extensions.Required, getattr(typing, "Required", None)):
            required = True
        else:
            required = name in required_keys
        contracts.append(KeyContract(name, flow_type(hint), required and certain))
    return tuple(contracts)


def reads_and_writes(
    function: Callable[..., Any], state_param: str, hints: Mapping[str, Any] | None = None
) -> tuple[tuple[KeyContract, ...] | None, tuple[KeyContract, ...] | None]:
    """What a tool reads (from its state parameter's annotation) and writes (its return's).

    A return annotation of `None` writes nothing: `()`.
    """
    hints = resolved_hints(function) if hints is None else hints
    reads = keys_of(hints[state_param]) if state_param in hints else None
    writes: tuple[KeyContract, ...] | None = None
    if "return" in hints:
        returned = hints["return"]
        writes = () if returned is None or returned is type(None) else keys_of(returned)
    return reads, writes


def broken_write(
    writes: tuple[KeyContract, ...],
    result: Mapping[str, Any],
    delta: Mapping[str, Any],
    state: Mapping[str, Any],
) -> str | None:
    """How a tool's return value breaks its declared writes, or None when it keeps them.

    `result` is what the tool returned, `delta` its values as stored JSON; a key it returned
    unchanged is only in `state`.  A missing required key breaks the contract too.
    """
    for contract in writes:
        if contract.name not in result:
            if contract.required:
                return (
                    f"did not return `{contract.name}`, which its return annotation says it "
                    "always writes (mark it `NotRequired` if it may be left out)"
                )
            continue
        value = delta[contract.name] if contract.name in delta else state.get(contract.name)
        found = type_problems(contract.type, value, limit=1)
        if found:
            path, message = found[0]
            at = f" (at `{contract.name}{path}`)" if path else ""
            return (
                f"returned a `{contract.name}` that does not fit its return annotation"
                f"{at}: {message}"
            )
    return None
