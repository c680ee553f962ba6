"""The four reference networks (PyTorch), shaped for serving.

Where this sits: :mod:`sonic.models.train` trains them on :mod:`sonic.data` samples,
:mod:`sonic.models.export` writes them as ONNX and TorchScript for the backends, and the
workflows call them through SONIC. Each network takes *raw* physics inputs and returns what a
client wants (class probabilities, or the predicted noise in strain): the input normalisation
lives inside the network as buffers, so a served model needs no side file.

Tensor names and shapes of the exports (batch dimension ``batch`` is dynamic):

============== ==================================================== ===========================
model          inputs                                               output
============== ==================================================== ===========================
jets_mlp       ``input`` [batch, 16] (TAGGER_FEATURES)              ``output`` [batch, 5]
jets_particle  ``pf_features`` [batch, 50, 10], ``pf_mask``         ``output`` [batch, 5]
               [batch, 50] (1 = real constituent)
lartpc_cnn     ``input`` [batch, 1, 48, 48] (ADC)                   ``output`` [batch, 4]
deepclean      ``witness`` [batch, 3, time] (time % 16 == 0)        ``noise`` [batch, time]
============== ==================================================== ===========================

``jets_mlp`` and ``lartpc_cnn`` have the shapes and tensor names of the untrained stand-ins
in :mod:`sonic.zoo` (16→64→32→32→5; Conv 8/16/32 + Dense 64 → 4), so a trained model drops
into the same model repository.
"""

# No ``from __future__ import annotations`` here: TorchScript must see the buffer annotations
# (``mean: torch.Tensor``) as real types, not strings.
import itertools

import torch
from torch import nn

__all__ = ["DeepClean", "JetMLP", "ParticleTagger", "PatchCNN"]


class _Standardize(nn.Module):
    mean: torch.Tensor
    scale: torch.Tensor

    def __init__(self, n: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n))
        self.register_buffer("scale", torch.ones(n))

    def set(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean.copy_(mean)
        self.scale.copy_(1.0 / torch.clamp(std, min=1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) * self.scale


class JetMLP(nn.Module):
    """The hls4ml jet-tagging benchmark: 16 high-level features → 64 → 32 → 32 → 5 (g q W Z t)."""

    def __init__(self, layers: tuple[int, ...] = (16, 64, 32, 32, 5)) -> None:
        super().__init__()
        self.norm = _Standardize(layers[0])
        mods: list[nn.Module] = []
        for i in range(len(layers) - 1):
            mods.append(nn.Linear(layers[i], layers[i + 1]))
            if i < len(layers) - 2:
                mods.append(nn.ReLU())
        self.net = nn.Sequential(*mods)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(self.norm(x))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(x), dim=-1)


class ParticleTagger(nn.Module):
    """A Deep Sets (Energy-Flow-Network-like) tagger on up to 50 constituents.

    Each constituent's 10 features go through a shared MLP Φ (10 → 64 → 64 → 64); the masked
    sum over constituents goes through F (64 → 64 → 32 → 5). Permutation invariant, and
    padded constituents (mask 0) contribute nothing.
    """

    def __init__(self, n_features: int = 10, hidden: int = 64, n_classes: int = 5) -> None:
        super().__init__()
        self.norm = _Standardize(n_features)
        self.phi = nn.Sequential(
            nn.Linear(n_features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
        )
        self.f = nn.Sequential(
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 32),
            nn.ReLU(),
            nn.Linear(32, n_classes),
        )

    def logits(self, pf_features: torch.Tensor, pf_mask: torch.Tensor) -> torch.Tensor:
        per = self.phi(self.norm(pf_features)) * pf_mask.unsqueeze(-1)
        pooled = per.sum(dim=1) / 10.0
        out: torch.Tensor = self.f(pooled)
        return out

    def forward(self, pf_features: torch.Tensor, pf_mask: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(pf_features, pf_mask), dim=-1)


class PatchCNN(nn.Module):
    """EmTrackMichel-like patch classifier: 1×48×48 ADC patch → (none, track, shower, michel).

    Three blocks of Conv 3×3 (8, 16, 32 channels) + ReLU + MaxPool 2, Dense 64, Dense 4.
    The input is divided by ``adc_scale`` (a MIP is ~25 ADC) inside the network.
    """

    adc_scale: torch.Tensor

    def __init__(self, channels: tuple[int, ...] = (8, 16, 32), hidden: int = 64, n_classes: int = 4) -> None:
        super().__init__()
        self.register_buffer("adc_scale", torch.tensor(25.0))
        mods: list[nn.Module] = []
        c_in, side = 1, 48
        for c in channels:
            mods += [nn.Conv2d(c_in, c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            c_in, side = c, side // 2
        self.features = nn.Sequential(*mods)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c_in * side * side, hidden),
            nn.ReLU(),
            nn.Linear(hidden, n_classes),
        )

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.features(x / self.adc_scale))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(x), dim=-1)


class DeepClean(nn.Module):
    """DeepClean-like 1-D convolutional autoencoder: witnesses → coupled strain noise.

    Four stride-2 Conv1d (3 → 8 → 16 → 32 → 64, kernel 7, tanh), four ConvTranspose1d back
    (64 → 32 → 16 → 8 → 8), and a Conv1d to one channel. Fully convolutional: any length that
    is a multiple of 16. Witnesses are standardised inside; the output is multiplied by
    ``out_scale`` (1e-21), so it is in strain.
    """

    out_scale: torch.Tensor

    def __init__(self, n_witness: int = 3) -> None:
        super().__init__()
        self.norm = _Standardize(n_witness)
        self.register_buffer("out_scale", torch.tensor(1e-21, dtype=torch.float32))
        down = [n_witness, 8, 16, 32, 64]
        enc: list[nn.Module] = []
        for a, b in itertools.pairwise(down):
            enc += [nn.Conv1d(a, b, 7, stride=2, padding=3), nn.BatchNorm1d(b), nn.Tanh()]
        self.encoder = nn.Sequential(*enc)
        up = [64, 32, 16, 8, 8]
        dec: list[nn.Module] = []
        for a, b in itertools.pairwise(up):
            dec += [nn.ConvTranspose1d(a, b, 4, stride=2, padding=1), nn.BatchNorm1d(b), nn.Tanh()]
        self.decoder = nn.Sequential(*dec)
        self.out = nn.Conv1d(8, 1, 7, padding=3)

    def scaled(self, witness: torch.Tensor) -> torch.Tensor:
        """The prediction in units of ``out_scale`` (training works in these units)."""
        x = self.norm(witness.transpose(1, 2)).transpose(1, 2)
        out: torch.Tensor = self.out(self.decoder(self.encoder(x))).squeeze(1)
        return out

    def forward(self, witness: torch.Tensor) -> torch.Tensor:
        return self.scaled(witness) * self.out_scale
