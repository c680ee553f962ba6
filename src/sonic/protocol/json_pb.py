"""Protobuf messages <-> the JSON that Triton's HTTP API shows for them.

The HTTP edge answers ``/v2/models/{m}/config``, ``/v2/models/stats``, the repository index
and the like with the same protobuf messages that gRPC returns, rendered as JSON. Triton
renders them with the proto field names (``max_batch_size``, not ``maxBatchSize``), enums
by name, every field without presence printed even at its default (``"batch_input": []``,
``"is_shape_tensor": false``), and 64-bit integers as JSON numbers: protobuf's own JSON
mapping writes those as strings, which Triton undoes and so do we, guided by the
descriptors. Well-known types (``google.protobuf.*``) keep their canonical JSON form.
"""

from __future__ import annotations

import threading
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from sonic.protocol.errors import InvalidArgument

__all__ = ["json_dict_to_message", "message_to_json_dict"]

M = TypeVar("M", bound=Message)

_INT64_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED64,
    }
)

# What to do with one JSON key of a message: (key, action, repeated, sub-descriptor).
_INT = 0  # int64 scalar or repeated -> int
_MSG = 1  # message or repeated message -> recurse
_MAP_INT = 2  # map with int64 values -> int values
_MAP_MSG = 3  # map with message values -> recurse into values
_Plan = tuple[tuple[str, int, bool, Any], ...]


def _is_wkt(desc: Any) -> bool:
    return bool(desc.full_name.startswith("google.protobuf."))


_plans: dict[Any, _Plan] = {}
_planning: set[Any] = set()
_plan_lock = threading.RLock()


def _plan(desc: Descriptor) -> _Plan:
    """The fields of ``desc`` whose JSON needs fixing, computed once per message type."""
    plan = _plans.get(desc)
    if plan is None:
        with _plan_lock:
            plan = _plans.get(desc)
            if plan is None:
                _planning.add(desc)
                try:
                    plan = _plans[desc] = _plan_fields(desc)
                finally:
                    _planning.discard(desc)
    return plan


def _needs_fix(desc: Any) -> bool:
    """Whether a nested message type has anything to fix. A type that (indirectly)
    contains itself counts as needing it while it is being planned: a harmless extra walk."""
    if _is_wkt(desc):
        return False
    return desc in _planning or bool(_plan(desc))


def _plan_fields(desc: Any) -> _Plan:
    steps: list[tuple[str, int, bool, Any]] = []
    for f in desc.fields:
        sub = f.message_type
        if sub is not None:
            if sub.GetOptions().map_entry:
                value = sub.fields_by_name["value"]
                if value.type in _INT64_TYPES:
                    steps.append((f.name, _MAP_INT, False, None))
                elif value.message_type is not None and _needs_fix(value.message_type):
                    steps.append((f.name, _MAP_MSG, False, value.message_type))
            elif _needs_fix(sub):
                steps.append((f.name, _MSG, f.is_repeated, sub))
        elif f.type in _INT64_TYPES:
            steps.append((f.name, _INT, f.is_repeated, None))
    return tuple(steps)


def _fix(desc: Any, d: dict[str, Any]) -> None:
    for key, action, repeated, sub in _plan(desc):
        value = d.get(key)
        if value is None:
            continue
        if action == _INT:
            d[key] = [int(v) for v in value] if repeated else int(value)
        elif action == _MSG:
            if repeated:
                for v in value:
                    _fix(sub, v)
            else:
                _fix(sub, value)
        elif action == _MAP_INT:
            d[key] = {k: int(v) for k, v in value.items()}
        else:
            for v in value.values():
                _fix(sub, v)


def message_to_json_dict(msg: Any, *, include_defaults: bool = True) -> dict[str, Any]:
    """A protobuf message -> a JSON-ready dict as Triton's HTTP API shows it.

    ``include_defaults`` prints fields without presence at their defaults, as Triton's
    ``/config`` and ``/stats`` do; pass False for the compact form.
    """
    d: dict[str, Any] = json_format.MessageToDict(
        msg,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=include_defaults,
    )
    _fix(msg.DESCRIPTOR, d)
    return d


def json_dict_to_message(d: dict[str, Any], msg_type: type[M], *, ignore_unknown_fields: bool = False) -> M:
    """A JSON dict (proto or camelCase field names; 64-bit integers as numbers or strings;
    enums by name or number) -> a new message of ``msg_type``.

    Raises InvalidArgument naming the message type and the offending field.
    """
    msg = msg_type()
    name = getattr(getattr(msg_type, "DESCRIPTOR", None), "full_name", msg_type.__name__)
    if not isinstance(d, dict):
        raise InvalidArgument(f"invalid JSON for {name}: expected an object, got {type(d).__name__}")
    try:
        json_format.ParseDict(d, msg, ignore_unknown_fields=ignore_unknown_fields)
    except json_format.ParseError as e:
        raise InvalidArgument(f"invalid JSON for {name}: {e}") from None
    return msg
