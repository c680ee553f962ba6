"""Modules: the steps of a process, run on every event in order.

Two kinds, as in CMSSW:

- :class:`Module` — a plain producer: ``produce(event)`` does CPU work on the event (reads
  columns and products, puts products). Returning ``False`` rejects the event: the modules
  after it do not see it and it is not written (a filter).
- :class:`SonicModule` — a SONIC producer, CMS's ``ExternalWork`` pattern split in two:
  ``acquire(event)`` turns the event into the model's inputs (name -> array, a list of those
  for a ragged batch, or None to skip the call); the process sends them through the module's
  client, and *while the event waits for the answer the other streams go on*; then
  ``produce(event, result)`` turns the outputs into products. ``result`` is the client's
  :class:`~sonic.client.InferResult` (``result["output"]``), a list of them for a ragged
  batch, or None when ``acquire`` returned None.

A module is plain Python: constructor keyword arguments are its parameters (the ``params:``
of a YAML description), ``begin()``/``end()`` run once per job (per partition under Dask),
and the instance must be picklable before ``begin`` (Dask sends it to the workers).

``name`` defaults to the class name; ``client`` (SONIC modules) names the client to use from
the process's ``clients`` (None: the process's only or ``default`` client), or is a client
configuration of its own. The process sets ``model_info`` (the model's inputs, outputs and
datatypes, from the server) before ``begin``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sonic.client import ClientConfig, InferResult, ModelInfo
from sonic.workflow._event import Event

__all__ = ["Inputs", "Module", "SonicModule", "module_name"]

Inputs = Mapping[str, Any] | Sequence[Mapping[str, Any]] | None


class _Base:
    name: str = ""

    def begin(self) -> None:
        """Once per job, before the first event (clients are started)."""

    def end(self) -> None:
        """Once per job, after the last event (also when the job fails)."""


def module_name(m: _Base) -> str:
    """The module's ``name``, or its class name."""
    name = getattr(m, "name", "")
    return name if isinstance(name, str) and name else type(m).__name__


class Module(_Base):
    """A plain producer (CPU work on the event)."""

    def produce(self, event: Event) -> bool | None:
        """Work on ``event``; return False to reject it."""
        raise NotImplementedError(f"{type(self).__name__}.produce(event) is not implemented")


class SonicModule(_Base):
    """A SONIC producer: ``acquire`` -> inference on a server -> ``produce``."""

    client: str | ClientConfig | Mapping[str, Any] | None = None
    model_info: ModelInfo | None = None

    def acquire(self, event: Event) -> Inputs:
        """The model's inputs for ``event`` (None: no call for this event)."""
        raise NotImplementedError(f"{type(self).__name__}.acquire(event) is not implemented")

    def produce(self, event: Event, result: InferResult | list[InferResult] | None) -> bool | None:
        """Turn the model's outputs into products; return False to reject the event."""
        raise NotImplementedError(f"{type(self).__name__}.produce(event, result) is not implemented")
