"""Event processing with inference as a service: sources, modules, streams, sinks.

A *process* reads events from a source, runs modules on each event in order, and writes the
products to sinks. A SONIC module splits its work in two, as CMSSW's ``ExternalWork``:
``acquire(event)`` makes the model's inputs, the client sends them to a server (or runs them
in-process), and ``produce(event, result)`` stores the outputs; while one event waits for its
answer the other *streams* go on, so the inference latency hides behind CPU work::

    from sonic.workflow import Process, RootSource, RootSink, SonicModule

    class JetTagger(SonicModule):
        def acquire(self, event):
            return {"input": event["jet"]}            # (n_jets, 16): one batch per event
        def produce(self, event, result):
            event["score"] = result["output"]          # (n_jets, 5)

    process = Process(
        RootSource("jets.root", "Events", ["event"], collections={"jet": "Jet_*"}),
        [JetTagger()],
        [RootSink("scores.root", columns=["event", "score"])],
        client={"model": "mlp", "transport": "grpc", "servers": ["gpu1:8001"]},
        streams=8,
    )
    report = process.run()               # or process.run(dask="local:4")
    print(report.table())

The same process reads from YAML (:func:`load_process`; ``sonic run process.yaml``).
"""

from sonic.workflow._columns import Jagged
from sonic.workflow._config import ConfigError, load_process, process_from_mapping
from sonic.workflow._event import Chunk, Event
from sonic.workflow._modules import Module, SonicModule
from sonic.workflow._process import Process, WorkflowError
from sonic.workflow._report import ClientReport, ModuleReport, Report
from sonic.workflow._sinks import ArraySink, H5Sink, ParquetSink, RootSink, Sink, read_columns
from sonic.workflow._sources import ArraySource, H5Source, Range, RootSource, Source

__all__ = [
    "ArraySink",
    "ArraySource",
    "Chunk",
    "ClientReport",
    "ConfigError",
    "Event",
    "H5Sink",
    "H5Source",
    "Jagged",
    "Module",
    "ModuleReport",
    "ParquetSink",
    "Process",
    "Range",
    "Report",
    "RootSink",
    "RootSource",
    "Sink",
    "SonicModule",
    "Source",
    "WorkflowError",
    "load_process",
    "process_from_mapping",
    "read_columns",
]
