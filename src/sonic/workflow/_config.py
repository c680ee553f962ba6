"""A process described in YAML (``sonic run process.yaml``), with its clients in the same file.

::

    name: jet-tagging
    streams: 8
    source:
      type: root                      # root | hdf5 | package.module:Class
      files: [jets.root]              # relative to this file; globs and root:// URLs too
      tree: Events
      branches: [event]
      collections: {jet: "Jet_*"}     # stacked into (n_jets, 16) per event
      step_size: 1000
      # type: hdf5, datasets: {strain: strain/strain}, frame: 4096, context: 2048: a time
      # series cut into frames (one event each) with context either side
    modules:
      - module: sonic.workflow.modules:Infer      # or tagger.py:JetTagger next to this file
        name: tagger
        client: tagger
        params: {inputs: {input: jet}, outputs: {output: score}}
    sinks:
      - {type: root, path: scores.root, tree: Events, columns: [event, score]}
      - {type: parquet, path: scores.parquet}
      - {type: hdf5, path: scores.h5}         # concat: [col] writes frames as one series
    clients:
      tagger:                         # every key of sonic.client.ClientConfig
        model: mlp
        transport: grpc
        servers: ["gpu1:8001", "gpu2:8001"]
        fallback: true
        repository: [models/]
    dask:                             # optional; `sonic run --dask` overrides the cluster
      cluster: local:4                # local:N | tcp://host:8786 | {class: dask_jobqueue:SLURMCluster, ...}
      partitions: 8

Every error names the file, the line and the key path, and suggests the nearest valid key.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sonic.client import ClientConfig
from sonic.protocol.errors import InvalidArgument, SonicError, nearest
from sonic.workflow._deps import require
from sonic.workflow._modules import Module, SonicModule
from sonic.workflow._process import Process
from sonic.workflow._sinks import H5Sink, ParquetSink, RootSink, Sink
from sonic.workflow._sources import H5Source, RootSource, Source

__all__ = ["ConfigError", "load_process", "process_from_mapping", "resolve"]


class ConfigError(InvalidArgument):
    """A process description that cannot be used: where (file:line, key path) and why."""


class _Map(dict[str, Any]):
    line: int = 0
    key_lines: dict[str, int]


class _Seq(list[Any]):
    line: int = 0


def _loader() -> Any:
    yaml = require("yaml", "YAML process descriptions")

    class Loader(yaml.SafeLoader):  # type: ignore[name-defined,misc]
        pass

    def mapping(loader: Any, node: Any) -> _Map:
        loader.flatten_mapping(node)
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=True)
            if key in seen:
                raise ConfigError(
                    f"line {key_node.start_mark.line + 1}: duplicate key {key!r} (first on line {seen[key]})"
                )
            seen[key] = key_node.start_mark.line + 1
        m = _Map(loader.construct_mapping(node, deep=True))
        m.line = node.start_mark.line + 1
        m.key_lines = {str(k): v for k, v in seen.items()}
        return m

    def sequence(loader: Any, node: Any) -> _Seq:
        s = _Seq(loader.construct_sequence(node, deep=True))
        s.line = node.start_mark.line + 1
        return s

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, sequence)
    return Loader


class _Ctx:
    def __init__(self, file: str, base: Path) -> None:
        self.file = file
        self.base = base

    def error(self, path: str, message: str, node: Any = None, key: str | None = None) -> ConfigError:
        line = 0
        if isinstance(node, _Map) and key is not None:
            line = node.key_lines.get(key, node.line)
        elif isinstance(node, _Map | _Seq):
            line = node.line
        where = f"{self.file}:{line}" if line else self.file
        return ConfigError(f"{where}: {path}: {message}")

    def mapping(self, value: Any, path: str, parent: Any = None, key: str | None = None) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.error(path, f"expected a mapping (key: value), got {_kind(value)}", parent, key)
        return value

    def keys(
        self, m: Mapping[str, Any], allowed: tuple[str, ...], path: str, required: tuple[str, ...] = ()
    ) -> None:
        for k in m:
            if k not in allowed:
                raise self.error(path, f"unknown key {k!r}" + nearest(str(k), allowed), m, str(k))
        for k in required:
            if k not in m:
                raise self.error(path, f"missing required key {k!r}", m)

    def path(self, value: Any, path: str, node: Any = None, key: str | None = None) -> str:
        if not isinstance(value, str) or not value:
            raise self.error(path, f"expected a path, got {_kind(value)}", node, key)
        if "://" in value:
            return value
        p = Path(value).expanduser()
        return str(p if p.is_absolute() else self.base / p)

    def paths(self, value: Any, path: str, node: Any = None, key: str | None = None) -> list[str]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items:
            raise self.error(path, f"expected a path or a list of paths, got {_kind(value)}", node, key)
        return [self.path(v, f"{path}[{i}]", items) for i, v in enumerate(items)]


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return f"{type(value).__name__} {value!r}"[:80]


TOP_KEYS = (
    "name",
    "source",
    "modules",
    "sinks",
    "sink",
    "streams",
    "threads",
    "sync",
    "max_events",
    "client",
    "clients",
    "dask",
    "server_stats",
)
ROOT_SOURCE_KEYS = ("type", "files", "file", "tree", "branches", "collections", "step_size")
H5_SOURCE_KEYS = ("type", "files", "file", "datasets", "step_size", "frame", "context", "pad")
ROOT_SINK_KEYS = ("type", "path", "tree", "columns", "title")
PARQUET_SINK_KEYS = ("type", "path", "columns", "compression")
H5_SINK_KEYS = ("type", "path", "columns", "concat", "attrs", "compression")
CUSTOM_KEYS = ("type", "params")
MODULE_KEYS = ("module", "name", "client", "params")
DASK_KEYS = ("cluster", "partitions")
CLUSTER_KEYS = ("class", "options", "jobs", "workers")


def load_process(path: str | Path, overrides: Sequence[str] = ()) -> Process:
    """Read a YAML process description (see the module doc).

    ``overrides`` are ``key.path=value`` strings applied to the description before it is
    read (``sonic run --set``): the key path is dotted, list items by index
    (``modules.0.params.label=W``), the value is YAML (``clients.tagger.servers=[gpu1:8001]``,
    ``clients.tagger.transport=local``). Relative paths stay relative to the description.
    """
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the process description: {exc.strerror or exc}") from None
    yaml = require("yaml", "YAML process descriptions")
    try:
        data = yaml.load(text, Loader=_loader())
    except ConfigError as exc:
        raise ConfigError(f"{p}:{exc.message.removeprefix('line ')}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark is not None else str(p)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: not valid YAML: {problem}") from None
    for item in overrides:
        _override(data, item, yaml)
    return process_from_mapping(data, base_dir=p.resolve().parent, file=str(p))


def _override(data: Any, item: str, yaml: Any) -> None:
    """Set ``key.path=value`` in ``data`` (the mapping read from YAML), in place."""
    key, sep, text = item.partition("=")
    parts = key.strip().split(".") if key.strip() else []
    if not sep or not parts or any(not k for k in parts):
        raise ConfigError(f"--set {item!r}: expected key.path=value (e.g. clients.tagger.transport=local)")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {item!r}: the value is not valid YAML: {exc}") from None
    node = data
    for i, k in enumerate(parts):
        last = i == len(parts) - 1
        where = ".".join(parts[: i + 1])
        if isinstance(node, list):
            if not k.lstrip("-").isdigit() or not -len(node) <= int(k) < len(node):
                raise ConfigError(f"--set {item!r}: {where}: no item {k} in a list of {len(node)}")
            if last:
                node[int(k)] = value
            else:
                node = node[int(k)]
        elif isinstance(node, dict):
            if last:
                node[k] = value
            else:
                if k not in node:
                    hint = nearest(k, [str(x) for x in node])
                    raise ConfigError(f"--set {item!r}: {where}: no such key{hint}")
                node = node[k]
        else:
            parent = ".".join(parts[:i]) or "the description"
            raise ConfigError(f"--set {item!r}: {where}: {parent} is not a mapping or a list")


def process_from_mapping(data: Any, *, base_dir: str | Path = ".", file: str = "<process>") -> Process:
    """A :class:`Process` from a mapping (what the YAML file holds); paths are relative to
    ``base_dir``."""
    ctx = _Ctx(file, Path(base_dir))
    top = ctx.mapping(data, "process")
    ctx.keys(top, TOP_KEYS, "process", required=("source", "modules"))
    if "sink" in top and "sinks" in top:
        raise ctx.error("process", "give 'sink' or 'sinks', not both", top, "sink")
    base = str(ctx.base)
    if base not in sys.path:
        sys.path.insert(0, base)  # modules next to the description import by name
    source = _source(ctx, top["source"], top)
    modules_node = top["modules"]
    if not isinstance(modules_node, list) or not modules_node:
        raise ctx.error("modules", f"expected a list of modules, got {_kind(modules_node)}", top, "modules")
    modules = [_module(ctx, m, f"modules[{i}]", modules_node) for i, m in enumerate(modules_node)]
    sinks_node = top.get("sinks", [top["sink"]] if "sink" in top else [])
    if not isinstance(sinks_node, list):
        raise ctx.error("sinks", f"expected a list of sinks, got {_kind(sinks_node)}", top, "sinks")
    sinks = [_sink(ctx, s, f"sinks[{i}]", sinks_node) for i, s in enumerate(sinks_node)]
    clients: dict[str, ClientConfig] = {}
    if "clients" in top:
        cm = ctx.mapping(top["clients"], "clients", top, "clients")
        for name, cfg in cm.items():
            clients[str(name)] = _client(ctx, cfg, f"clients.{name}", cm, str(name))
    if "client" in top:
        if "default" in clients:
            raise ctx.error("client", "a client named 'default' exists already in 'clients'", top, "client")
        clients["default"] = _client(ctx, top["client"], "client", top, "client")
    kwargs: dict[str, Any] = {}
    for key in ("streams", "threads", "max_events"):
        if key in top:
            value = top[key]
            if type(value) is not int:
                raise ctx.error(key, f"expected an integer, got {_kind(value)}", top, key)
            kwargs[key] = value
    for key in ("sync", "server_stats"):
        if key in top:
            if type(top[key]) is not bool:
                raise ctx.error(key, f"expected true or false, got {_kind(top[key])}", top, key)
            kwargs[key] = top[key]
    if "name" in top:
        kwargs["name"] = str(top["name"])
    try:
        process = Process(source, modules, sinks, clients=clients, **kwargs)
    except SonicError as exc:
        raise ctx.error("process", exc.message, top) from None
    if "dask" in top:
        process.dask, process.partitions = _dask(ctx, top["dask"], top)
    return process


def _source(ctx: _Ctx, node: Any, parent: Any) -> Source:
    m = ctx.mapping(node, "source", parent, "source")
    kind = m.get("type")
    if not isinstance(kind, str):
        raise ctx.error("source", "missing 'type' (root, hdf5, or package.module:Class)", m)

    def files() -> list[str]:
        if "files" in m and "file" in m:
            raise ctx.error("source", "give 'files' or 'file', not both", m, "file")
        key = "files" if "files" in m else "file"
        if key not in m:
            raise ctx.error("source", "missing 'files' (paths, globs or URLs)", m)
        return ctx.paths(m[key], f"source.{key}", m, key)

    try:
        if kind == "root":
            ctx.keys(m, ROOT_SOURCE_KEYS, "source")
            return RootSource(
                files(),
                str(m.get("tree", "Events")),
                _str_list(ctx, m, "branches", "source") if "branches" in m else None,
                collections=_collections(ctx, m),
                step_size=m.get("step_size", 1000),
            )
        if kind in ("hdf5", "h5"):
            ctx.keys(m, H5_SOURCE_KEYS, "source", required=("datasets",))
            ds = m["datasets"]
            datasets = (
                {str(k): str(v) for k, v in ds.items()}
                if isinstance(ds, Mapping)
                else _str_list(ctx, m, "datasets", "source")
            )
            return H5Source(
                files(),
                datasets,
                step_size=m.get("step_size"),
                frame=m.get("frame"),
                context=m.get("context", 0),
                pad=str(m.get("pad", "reflect")),
            )
    except SonicError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ctx.error("source", exc.message, m) from None
    if ":" in kind:
        ctx.keys(m, CUSTOM_KEYS, "source")
        obj = _construct(ctx, kind, m.get("params"), "source", m, Source)
        assert isinstance(obj, Source)
        return obj
    raise ctx.error(
        "source.type",
        f"unknown source type {kind!r}; expected root, hdf5 or package.module:Class"
        + nearest(kind, ["root", "hdf5"]),
        m,
        "type",
    )


def _collections(ctx: _Ctx, m: Mapping[str, Any]) -> dict[str, list[str]] | None:
    if "collections" not in m:
        return None
    c = ctx.mapping(m["collections"], "source.collections", m, "collections")
    out: dict[str, list[str]] = {}
    for name, members in c.items():
        if isinstance(members, str):
            out[str(name)] = [members]
        elif isinstance(members, list) and members and all(isinstance(x, str) for x in members):
            out[str(name)] = list(members)
        else:
            raise ctx.error(
                f"source.collections.{name}",
                f"expected a glob or a list of branch names, got {_kind(members)}",
                c,
                str(name),
            )
    return out


def _str_list(ctx: _Ctx, m: Mapping[str, Any], key: str, path: str) -> list[str]:
    v = m[key]
    if isinstance(v, str):
        return [v]
    if not isinstance(v, list) or not all(isinstance(x, str | int) for x in v):
        raise ctx.error(f"{path}.{key}", f"expected a list of names, got {_kind(v)}", m, key)
    return [str(x) for x in v]


def _sink(ctx: _Ctx, node: Any, path: str, parent: Any) -> Sink:
    m = ctx.mapping(node, path, parent)
    kind = m.get("type")
    if not isinstance(kind, str):
        raise ctx.error(path, "missing 'type' (root, parquet, hdf5, or package.module:Class)", m)
    columns = _str_list(ctx, m, "columns", path) if "columns" in m else None
    try:
        if kind == "root":
            ctx.keys(m, ROOT_SINK_KEYS, path, required=("path",))
            return RootSink(
                ctx.path(m["path"], f"{path}.path", m, "path"),
                str(m.get("tree", "Events")),
                columns,
                title=str(m.get("title", "")),
            )
        if kind == "parquet":
            ctx.keys(m, PARQUET_SINK_KEYS, path, required=("path",))
            return ParquetSink(
                ctx.path(m["path"], f"{path}.path", m, "path"),
                columns,
                compression=str(m.get("compression", "zstd")),
            )
        if kind in ("hdf5", "h5"):
            ctx.keys(m, H5_SINK_KEYS, path, required=("path",))
            attrs = ctx.mapping(m["attrs"], f"{path}.attrs", m, "attrs") if "attrs" in m else None
            return H5Sink(
                ctx.path(m["path"], f"{path}.path", m, "path"),
                columns,
                concat=_str_list(ctx, m, "concat", path) if "concat" in m else (),
                attrs=attrs,
                compression=str(m["compression"]) if m.get("compression") is not None else None,
            )
    except SonicError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ctx.error(path, exc.message, m) from None
    if ":" in kind:
        ctx.keys(m, CUSTOM_KEYS, path)
        obj = _construct(ctx, kind, m.get("params"), path, m, Sink)
        assert isinstance(obj, Sink)
        return obj
    raise ctx.error(
        f"{path}.type",
        f"unknown sink type {kind!r}; expected root, parquet, hdf5 or package.module:Class"
        + nearest(kind, ["root", "parquet", "hdf5"]),
        m,
        "type",
    )


def _module(ctx: _Ctx, node: Any, path: str, parent: Any) -> Module | SonicModule:
    m = ctx.mapping(node, path, parent)
    ctx.keys(m, MODULE_KEYS, path, required=("module",))
    ref = m["module"]
    if not isinstance(ref, str):
        raise ctx.error(f"{path}.module", f"expected 'package.module:Class', got {_kind(ref)}", m, "module")
    obj: Module | SonicModule = _construct(ctx, ref, m.get("params"), path, m, (Module, SonicModule))
    if "name" in m:
        obj.name = str(m["name"])
    if "client" in m:
        if not isinstance(obj, SonicModule):
            raise ctx.error(
                f"{path}.client", f"module {ref} is not a SONIC module (it has no client)", m, "client"
            )
        c = m["client"]
        if isinstance(c, str):
            obj.client = c
        else:
            obj.client = _client(ctx, c, f"{path}.client", m, "client")
    return obj


def _construct(
    ctx: _Ctx, ref: str, params: Any, path: str, node: Mapping[str, Any], base: type | tuple[type, ...]
) -> Any:
    key = "module" if "module" in node else "type"
    try:
        cls = resolve(ref, ctx.base)
    except SonicError as exc:
        raise ctx.error(f"{path}.{key}", exc.message, node, key) from None
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise ctx.error(
            f"{path}.params", f"expected a mapping of parameters, got {_kind(params)}", node, "params"
        )
    if not (isinstance(cls, type) and issubclass(cls, base)) and not callable(cls):
        raise ctx.error(f"{path}.{key}", f"{ref} is not a class", node, key)
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):
        sig = None
    if sig is not None:
        _check_params(ctx, ref, sig, params, path, node, "params" if "params" in node else key)
    try:
        obj = cls(**params)
    except SonicError as exc:
        raise ctx.error(f"{path}.params", exc.message, node, "params" if "params" in node else key) from None
    except Exception as exc:  # the user's constructor: say where, keep the cause
        raise ctx.error(
            f"{path}.params",
            f"{ref}: constructing it failed: {type(exc).__name__}: {exc}",
            node,
            "params" if "params" in node else key,
        ) from exc
    if not isinstance(obj, base):
        want = " or ".join(b.__name__ for b in (base if isinstance(base, tuple) else (base,)))
        raise ctx.error(
            f"{path}.{key}", f"{ref} made a {type(obj).__name__}, which is not a {want}", node, key
        )
    return obj


def _check_params(
    ctx: _Ctx, ref: str, sig: inspect.Signature, params: Mapping[str, Any], path: str, node: Any, key: str
) -> None:
    """Unknown parameters (with the nearest names), then missing ones: before constructing."""
    ps = sig.parameters.values()
    names = [p.name for p in ps if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    listing = f"; {ref} takes {', '.join(names) or 'no parameters'}"
    if not any(p.kind is p.VAR_KEYWORD for p in ps):
        for k in params:
            if k not in names:
                raise ctx.error(
                    f"{path}.params", f"unknown parameter {k!r}" + nearest(str(k), names) + listing, node, key
                )
    missing = [
        p.name
        for p in ps
        if p.default is p.empty
        and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        and p.name not in params
    ]
    if missing:
        raise ctx.error(f"{path}.params", f"missing parameter {missing[0]!r}" + listing, node, key)


def resolve(ref: str, base_dir: Path | None = None) -> Any:
    """``package.module:Name`` or ``path/to/file.py:Name`` -> the object."""
    modname, sep, attr = ref.rpartition(":")
    if not sep or not modname or not attr:
        raise InvalidArgument(f"{ref!r} is not a reference; expected 'package.module:ClassName'")
    if modname.endswith(".py") or "/" in modname:
        file = Path(modname).expanduser()
        if not file.is_absolute() and base_dir is not None:
            file = base_dir / file
        if not file.is_file():
            raise InvalidArgument(f"{ref}: no file {file}")
        name = f"sonic_user_{file.stem}_{abs(hash(str(file.resolve()))):x}"
        module = sys.modules.get(name)
        if module is None:
            spec = importlib.util.spec_from_file_location(name, file)
            if spec is None or spec.loader is None:
                raise InvalidArgument(f"{ref}: cannot load {file} as a Python module")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except Exception as exc:
                del sys.modules[name]
                raise InvalidArgument(
                    f"{ref}: importing {file} failed: {type(exc).__name__}: {exc}"
                ) from None
            _pickle_by_value(module)
    else:
        try:
            module = importlib.import_module(modname)
        except ModuleNotFoundError as exc:
            raise InvalidArgument(
                f"{ref}: cannot import {modname!r} ({exc}); is it installed, on PYTHONPATH, or next "
                "to the process description?"
            ) from None
        except Exception as exc:
            raise InvalidArgument(
                f"{ref}: importing {modname!r} failed: {type(exc).__name__}: {exc}"
            ) from None
    try:
        return getattr(module, attr)
    except AttributeError:
        names = [n for n in dir(module) if not n.startswith("_")]
        raise InvalidArgument(f"{ref}: module {modname!r} has no {attr!r}" + nearest(attr, names)) from None


def _pickle_by_value(module: Any) -> None:
    """Classes loaded from a file are not importable on Dask workers: ship them by value."""
    try:
        cloudpickle = importlib.import_module("cloudpickle")
    except ImportError:
        return
    register: Callable[[Any], None] | None = getattr(cloudpickle, "register_pickle_by_value", None)
    if register is not None:
        register(module)


def _client(ctx: _Ctx, node: Any, path: str, parent: Any, key: str) -> ClientConfig:
    m = dict(ctx.mapping(node, path, parent, key))
    for k in ("repository",):
        if k in m:
            m[k] = ctx.paths(m[k], f"{path}.{k}", node, k)
    try:
        return ClientConfig.from_mapping(m)
    except SonicError as exc:
        msg = exc.message.removeprefix("client config: ")
        bad = next((k for k in m if k not in ClientConfig.__dataclass_fields__), None)
        raise ctx.error(path, msg, node, bad) from None
    except TypeError as exc:
        raise ctx.error(path, str(exc), node) from None


def _dask(ctx: _Ctx, node: Any, parent: Any) -> tuple[Any, int | None]:
    if isinstance(node, str):
        return node, None
    m = ctx.mapping(node, "dask", parent, "dask")
    ctx.keys(m, DASK_KEYS, "dask")
    parts = m.get("partitions")
    if parts is not None and (type(parts) is not int or parts < 1):
        raise ctx.error("dask.partitions", f"expected an integer >= 1, got {_kind(parts)}", m, "partitions")
    cluster = m.get("cluster")
    if isinstance(cluster, Mapping):
        ctx.keys(cluster, CLUSTER_KEYS, "dask.cluster", required=("class",))
        return dict(cluster), parts
    if cluster is not None and not isinstance(cluster, str):
        raise ctx.error(
            "dask.cluster",
            f"expected 'local:N', an address, or a mapping, got {_kind(cluster)}",
            m,
            "cluster",
        )
    return cluster, parts
