"""The modules of the ProtoDUNE-like workflow (``protodune.yaml``): hits, patches, a CNN, clusters.

The EmTrackMichelId step of ProtoDUNE-SP reconstruction (Wang et al., arXiv:2009.04509), on
the toy collection plane of ``sonic data lartpc`` (256 wires × 384 time pixels per event):

1. ``FindHits`` (CPU): a hit is a pixel above ``threshold`` ADC that is the largest of
   ``window`` consecutive time pixels on its wire: a peak of the wire's waveform, as a
   LArSoft hit finder makes one per pulse.
2. ``CutPatches`` (CPU): a 48×48 (wire × time) patch of raw ADC around every hit, zero-padded
   at the edges, with :func:`sonic.data.lartpc.cut_patches` — the very function that cut
   the training patches of ``lartpc_cnn`` (the network divides by its own ADC scale, so
   nothing else is normalised on the client).
3. ``ClassifyPatches`` (SONIC): every patch of the event in one request, (n, 1, 48, 48) ->
   (n, 4) probabilities over none/track/shower/michel. An event with more patches than the
   model's ``max_batch_size`` sends a ragged batch: a list of requests of at most that many
   patches each, sent together, answered in order.
4. ``ClusterHits`` (CPU): hits of the same predicted class that lie close together (within
   ``link_wires`` wires and ``link_ticks`` time pixels of a chain of such hits) form a
   cluster; clusters of at least ``min_hits`` hits are kept, each with the mean score of its
   patches and the label that mean prefers; per event, the number of track, shower and
   Michel clusters.

``prepare(dest, events, seed)`` writes the input and both model repositories next to the
YAML (``python examples/workflows/prepare.py protodune``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage  # the physics extra (sonic[physics]), as for `sonic data lartpc`

from sonic.client import InferResult
from sonic.data.lartpc import CLASSES, MICHEL, PATCH, SHOWER, TRACK, cut_patches
from sonic.workflow import Event, Module, SonicModule

__all__ = ["ClassifyPatches", "ClusterHits", "CutPatches", "FindHits", "find_hits", "prepare"]

MODEL = "lartpc_cnn"
INPUT_FILE = "protodune.h5"


def find_hits(
    image: npt.NDArray[np.float32], threshold: float, window: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(wire, time) of every pixel >= ``threshold`` that is the maximum of the ``window``
    time pixels centred on it (wire by wire); wire-major order."""
    peak = ndimage.maximum_filter1d(image, size=window, axis=1, mode="nearest")
    wire, time = np.nonzero((image >= threshold) & (image == peak))
    return wire.astype(np.int64), time.astype(np.int64)


class FindHits(Module):
    """Hits: ``hit_wire``, ``hit_time`` (int32), ``hit_adc`` (float32), ``n_hits``, ``event``
    (the event's index in the job); and ``hit_truth`` (the truth class of the hit's pixel)
    when the event has a ``truth`` image."""

    def __init__(
        self, image: str = "image", truth: str | None = "truth", threshold: float = 6.0, window: int = 5
    ) -> None:
        if window < 1 or window % 2 == 0:
            raise ValueError(f"window must be an odd number of time pixels, got {window}")
        self.image = image
        self.truth = truth
        self.threshold = threshold
        self.window = window

    def produce(self, event: Event) -> None:
        image = np.asarray(event[self.image], dtype=np.float32)
        wire, time = find_hits(image, self.threshold, self.window)
        event["event"] = event.index
        event["n_hits"] = len(wire)
        event["hit_wire"] = wire.astype(np.int32)
        event["hit_time"] = time.astype(np.int32)
        event["hit_adc"] = image[wire, time]
        if self.truth is not None and self.truth in event:
            event["hit_truth"] = np.asarray(event[self.truth])[wire, time].astype(np.int32)


class CutPatches(Module):
    """``patches``: (n_hits, 48, 48) float32 ADC around the hits (consumed by the classifier)."""

    def __init__(self, image: str = "image", patches: str = "patches") -> None:
        self.image = image
        self.patches = patches

    def produce(self, event: Event) -> None:
        centres = np.stack([event["hit_wire"], event["hit_time"]], axis=1).astype(np.int64)
        event[self.patches] = cut_patches(np.asarray(event[self.image], dtype=np.float32), centres)


class ClassifyPatches(SonicModule):
    """The CNN on every patch of the event: ``patch_score`` (n, 4) and ``patch_label`` (n,).

    ``acquire`` sends one request of all the event's patches, or a ragged batch (a list of
    requests of at most ``max_batch_size`` patches) when there are more; no patches, no
    request. ``n_requests``: how many requests the event made. The patches are dropped from
    the event once classified (``keep_patches`` keeps them).
    """

    def __init__(
        self,
        patches: str = "patches",
        input_name: str = "input",
        output_name: str = "output",
        keep_patches: bool = False,
    ) -> None:
        self.patches = patches
        self.input = input_name
        self.output = output_name
        self.keep_patches = keep_patches

    def acquire(self, event: Event) -> dict[str, Any] | list[dict[str, Any]] | None:
        x = np.asarray(event[self.patches], dtype=np.float32)
        if not len(x):
            return None
        x = x.reshape(len(x), 1, PATCH, PATCH)
        limit = self.model_info.max_batch_size if self.model_info is not None else 0
        if limit <= 0 or len(x) <= limit:
            return {self.input: x}
        return [{self.input: x[i : i + limit]} for i in range(0, len(x), limit)]

    def produce(self, event: Event, result: InferResult | list[InferResult] | None) -> None:
        if result is None:
            scores = np.zeros((0, len(CLASSES)), dtype=np.float32)
            event["n_requests"] = 0
        elif isinstance(result, list):
            scores = np.concatenate([np.asarray(r[self.output]) for r in result])
            event["n_requests"] = len(result)
        else:
            scores = np.array(result[self.output])
            event["n_requests"] = 1
        n = len(event["hit_wire"])
        if scores.shape != (n, len(CLASSES)):
            raise ValueError(f"expected ({n}, {len(CLASSES)}) scores for {n} patches, got {scores.shape}")
        event["patch_score"] = scores.astype(np.float32, copy=False)
        event["patch_label"] = scores.argmax(axis=1).astype(np.int32)
        if not self.keep_patches:
            event.products.pop(self.patches, None)


class ClusterHits(Module):
    """Clusters of hits of one predicted class: ``hit_cluster`` (cluster index per hit, -1 for
    none), ``cluster_label``, ``cluster_size``, ``cluster_score`` (n_clusters, 4: the mean of
    its patches' scores), and the counts ``n_track``, ``n_shower``, ``n_michel``."""

    def __init__(
        self, link_wires: int = 1, link_ticks: int = 2, min_hits: int = 5, image: str = "image"
    ) -> None:
        self.link_wires = link_wires
        self.link_ticks = link_ticks
        self.min_hits = min_hits
        self.image = image

    def produce(self, event: Event) -> None:
        wire = np.asarray(event["hit_wire"], dtype=np.int64)
        time = np.asarray(event["hit_time"], dtype=np.int64)
        label = np.asarray(event["patch_label"])
        score = np.asarray(event["patch_score"], dtype=np.float32)
        shape = np.shape(event[self.image])
        # two hits link when their boxes of (2 link_wires + 1) x (2 link_ticks + 1) pixels touch
        grow = np.ones((2 * self.link_wires + 1, 2 * self.link_ticks + 1), dtype=bool)
        touch = np.ones((3, 3), dtype=bool)
        hit_cluster = np.full(len(wire), -1, dtype=np.int32)
        labels: list[int] = []
        sizes: list[int] = []
        scores: list[npt.NDArray[np.float32]] = []
        for cls in (TRACK, SHOWER, MICHEL):
            sel = np.flatnonzero(label == cls)
            if not len(sel):
                continue
            mask = np.zeros(shape, dtype=bool)
            mask[wire[sel], time[sel]] = True
            regions, n = ndimage.label(ndimage.binary_dilation(mask, structure=grow), structure=touch)
            ids = regions[wire[sel], time[sel]] - 1
            size = np.bincount(ids, minlength=n)
            kept = np.flatnonzero(size >= self.min_hits)
            index = np.full(n, -1, dtype=np.int32)
            index[kept] = np.arange(len(labels), len(labels) + len(kept), dtype=np.int32)
            hit_cluster[sel] = index[ids]
            sums = np.zeros((n, len(CLASSES)), dtype=np.float64)
            np.add.at(sums, ids, score[sel])
            for k in kept:
                mean = (sums[k] / size[k]).astype(np.float32)
                labels.append(int(mean.argmax()))
                sizes.append(int(size[k]))
                scores.append(mean)
        event["hit_cluster"] = hit_cluster
        event["cluster_label"] = np.asarray(labels, dtype=np.int32)
        event["cluster_size"] = np.asarray(sizes, dtype=np.int32)
        event["cluster_score"] = np.stack(scores) if scores else np.zeros((0, len(CLASSES)), dtype=np.float32)
        for cls, name in ((TRACK, "n_track"), (SHOWER, "n_shower"), (MICHEL, "n_michel")):
            event[name] = labels.count(cls)


def prepare(dest: Path, events: int, seed: int) -> None:
    """Write ``protodune.h5`` (``events`` toy events from ``seed``), ``models/lartpc_cnn``
    (onnxruntime: ``sonic serve`` and the local transport) and ``models_triton/lartpc_cnn``
    (the same ONNX in a python-backend model, for NVIDIA Triton) under ``dest``."""
    from sonic.data.lartpc import LArTPCConfig, generate_lartpc, write_lartpc
    from sonic.models.repository import write_repository

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    sample = generate_lartpc(LArTPCConfig(events=events, seed=seed))
    write_lartpc(sample, dest / INPUT_FILE)
    write_repository(dest / "models", [MODEL])
    write_repository(dest / "models_triton", [MODEL], backend="python")
    print(
        f"wrote {dest / INPUT_FILE} ({events} events, seed {seed}, {sample.seconds:.1f} s), "
        f"{dest / 'models' / MODEL} and {dest / 'models_triton' / MODEL}"
    )
