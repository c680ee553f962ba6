"""The modules of the jet-tagging workflow (``jet_tagging.yaml``).

``JetTagger`` is a SONIC module: ``acquire`` hands the model the 16 substructure features of
every large-radius jet of the event (one batch per event; an event without jets makes no
request), and ``produce`` stores the five class probabilities (g, q, W, Z, t) per jet and the
most likely class. ``CountTagged`` is a plain module: the number of jets tagged as a given
class, per event, and a filter on it if asked.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sonic.workflow import Event, Module, SonicModule

LABELS = ("g", "q", "W", "Z", "t")


class JetTagger(SonicModule):
    def __init__(self, jets: str = "fatjet", prefix: str = "FatJet") -> None:
        self.jets = jets  # the (n_jets, 16) collection the source stacks (TAGGER_FEATURES order)
        self.prefix = prefix

    def acquire(self, event: Event) -> dict[str, Any]:
        return {"input": np.asarray(event[self.jets], dtype=np.float32)}

    def produce(self, event: Event, result: Any) -> None:
        scores = result["output"]  # (n_jets, 5) softmax probabilities
        event[f"{self.prefix}_score"] = scores
        event[f"{self.prefix}_tag"] = scores.argmax(axis=1).astype(np.int32)


class CountTagged(Module):
    def __init__(self, label: str = "t", min_count: int = 0, prefix: str = "FatJet") -> None:
        if label not in LABELS:
            raise ValueError(f"label must be one of {LABELS}, got {label!r}")
        self.index = LABELS.index(label)
        self.label = label
        self.min_count = min_count
        self.prefix = prefix

    def produce(self, event: Event) -> bool:
        n = int((event[f"{self.prefix}_tag"] == self.index).sum())
        event[f"n_{self.label}_tagged"] = n
        return n >= self.min_count
