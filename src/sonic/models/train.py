"""Training scripts of the reference models: minutes on 2 CPU cores, reproducible from a seed.

Where this sits: ``sonic train <model>`` runs one of :data:`TRAINERS`. Each generates its
training and held-out samples with :mod:`sonic.data` (different seeds, so the held-out
sample is statistically independent) unless files are given, trains with Adam, evaluates on
the held-out sample and writes to the output folder:

- ``<name>.pt`` — the ``state_dict`` (normalisation buffers included),
- ``<name>.onnx`` — the ONNX export (``sonic serve`` loads it as is),
- ``<name>.json`` — the quality report, the data and the command that made it.

Reproducibility: data come from seeded generators; torch is seeded and runs with a fixed
thread count (``threads``, default 2), so the same command on the same machine and versions
gives the same weights.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from sonic.models.export import check_exports, export_onnx
from sonic.models.metrics import asd_ratio, classification_report, matched_filter_snr
from sonic.models.nets import DeepClean, JetMLP, ParticleTagger, PatchCNN

__all__ = ["TRAINERS", "TrainConfig", "train"]


@dataclass
class TrainConfig:
    model: str
    out_dir: Path
    seed: int = 1
    events: int | None = None  # training-sample size (meaning per model); None = default
    epochs: int | None = None
    threads: int = 2
    data: list[Path] = field(default_factory=list)  # training files (else generated)
    test_data: list[Path] = field(default_factory=list)  # held-out files (else generated)
    work_dir: Path | None = None  # where generated samples are cached (default: $TMPDIR/sonic-data)
    command: str = ""
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True)


def _seed_everything(cfg: TrainConfig) -> None:
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)


def _work(cfg: TrainConfig) -> Path:
    d = cfg.work_dir or (Path(tempfile.gettempdir()) / "sonic-data")
    d.mkdir(parents=True, exist_ok=True)
    return d


def _fit_classifier(
    model: nn.Module,
    inputs: tuple[npt.NDArray[np.float32], ...],
    label: npt.NDArray[np.int64],
    n_classes: int,
    epochs: int,
    cfg: TrainConfig,
    lr: float = 2e-3,
    batch: int = 256,
) -> None:
    """Adam + class-weighted cross-entropy, cosine learning-rate decay, 10% for validation log."""
    n = len(label)
    gen = np.random.Generator(np.random.PCG64(cfg.seed))
    order = gen.permutation(n)
    n_val = max(1, n // 10)
    val, tr = order[:n_val], order[n_val:]
    counts = np.bincount(label[tr], minlength=n_classes).astype(np.float64)
    weights = torch.tensor(
        np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / n_classes, 0.0), dtype=torch.float32
    )
    loss_fn = nn.CrossEntropyLoss(weight=weights)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * math.ceil(len(tr) / batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
    t_in = [torch.from_numpy(np.ascontiguousarray(a)) for a in inputs]
    t_lab = torch.from_numpy(label.astype(np.int64))
    logits_fn: Any = model.logits
    for epoch in range(epochs):
        model.train()
        perm = tr[gen.permutation(len(tr))]
        total = 0.0
        for i in range(0, len(perm), batch):
            idx = torch.from_numpy(perm[i : i + batch])
            opt.zero_grad()
            loss = loss_fn(logits_fn(*[a[idx] for a in t_in]), t_lab[idx])
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        model.eval()
        with torch.no_grad():
            vidx = torch.from_numpy(val)
            vl = logits_fn(*[a[vidx] for a in t_in])
            vacc = float((vl.argmax(1) == t_lab[vidx]).float().mean())
        cfg.log(f"  epoch {epoch + 1}/{epochs}: loss {total / len(tr):.4f}, validation accuracy {vacc:.3f}")


def _predict(
    model: nn.Module, inputs: tuple[npt.NDArray[np.float32], ...], batch: int = 4096
) -> npt.NDArray[np.float64]:
    model.eval()
    outs = []
    with torch.no_grad():
        for i in range(0, len(inputs[0]), batch):
            outs.append(
                model(*[torch.from_numpy(np.ascontiguousarray(a[i : i + batch])) for a in inputs]).numpy()
            )
    return np.concatenate(outs).astype(np.float64)


def _save(model: nn.Module, name: str, cfg: TrainConfig, report: dict[str, Any]) -> dict[str, Any]:
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    pt = cfg.out_dir / f"{name}.pt"
    torch.save(model.state_dict(), pt)
    onnx_path = export_onnx(model, cfg.out_dir / f"{name}.onnx")
    report["export_max_abs_diff"] = check_exports(model, onnx_path, None)
    report["files"] = {p.name: p.stat().st_size for p in (pt, onnx_path)}
    report["command"] = cfg.command
    report["seed"] = cfg.seed
    report["torch"] = torch.__version__
    (cfg.out_dir / f"{name}.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report


# --------------------------------------------------------------------------------------------
# Jets
# --------------------------------------------------------------------------------------------

_JET_PROCS = (("qcd", 1.0), ("ttbar", 1.0), ("wprime", 0.8))


def _jet_files(cfg: TrainConfig, n: int) -> tuple[list[Path], list[Path]]:
    if cfg.data:
        return cfg.data, cfg.test_data or cfg.data
    from sonic.data.io import write_nanoaod
    from sonic.data.jets import JetGenConfig, generate_jets

    work = _work(cfg)
    train_files: list[Path] = []
    test_files: list[Path] = []
    for k, (proc, frac) in enumerate(_JET_PROCS):
        for split, seed, events in (
            ("train", cfg.seed * 100 + k, int(n * frac)),
            ("test", cfg.seed * 100 + 50 + k, int(n * frac) // 4),
        ):
            path = work / f"jets_{proc}_{split}_s{seed}_n{events}.root"
            if not path.exists():
                cfg.log(f"generating {events} {proc} events (seed {seed}) -> {path}")
                s = generate_jets(JetGenConfig(process=proc, events=events, seed=seed))
                cfg.log(f"  {s.seconds:.0f} s, {len(s.jets['pt'])} jets")
                write_nanoaod(
                    path,
                    event=s.event,
                    collections={"FatJet": (s.n_jets, s.jets), "FatJetPFCands": (s.n_cands, s.cands)},
                    meta=s.meta,
                )
            (train_files if split == "train" else test_files).append(path)
    return train_files, test_files


def _jets_common(cfg: TrainConfig) -> tuple[dict[str, Any], dict[str, Any], list[Path], list[Path]]:
    from sonic.models.features import load_jets

    train_files, test_files = _jet_files(cfg, cfg.events or 2500)
    return load_jets(train_files), load_jets(test_files), train_files, test_files


def _jet_report(prob: npt.NDArray[np.float64], label: npt.NDArray[np.int64]) -> dict[str, Any]:
    from sonic.data.jets import LABELS

    rep = classification_report(prob, label, LABELS)
    # the usual tagging figures: W vs QCD (g+q), top vs QCD, each with its own discriminant
    qcd = (label == 0) | (label == 1)
    from sonic.models.metrics import roc_auc

    for name, k in (("W_vs_QCD_auc", 2), ("Z_vs_QCD_auc", 3), ("t_vs_QCD_auc", 4)):
        sel = qcd | (label == k)
        rep[name] = round(
            roc_auc(prob[sel, k] / (prob[sel, k] + prob[sel, 0] + prob[sel, 1]), label[sel] == k), 4
        )
    return rep


def train_jets_mlp(cfg: TrainConfig) -> dict[str, Any]:
    from sonic.models.features import jet_inputs

    _seed_everything(cfg)
    tr, te, trf, tef = _jets_common(cfg)
    x, y = jet_inputs(tr), tr["FatJet_label"].astype(np.int64)
    keep = y >= 0
    x, y = x[keep], y[keep]
    model = JetMLP()
    model.norm.set(torch.from_numpy(x.mean(0)), torch.from_numpy(x.std(0)))
    cfg.log(f"jets_mlp: {len(y)} training jets, counts {np.bincount(y, minlength=5).tolist()}")
    t0 = time.perf_counter()
    _fit_classifier(model, (x,), y, 5, cfg.epochs or 40, cfg)
    xt, yt = jet_inputs(te), te["FatJet_label"].astype(np.int64)
    kt = yt >= 0
    report = _jet_report(_predict(model, (xt[kt],)), yt[kt])
    report.update(
        model="jets_mlp",
        train_seconds=round(time.perf_counter() - t0, 1),
        train_jets=len(y),
        train_files=[p.name for p in trf],
        test_files=[p.name for p in tef],
    )
    return _save(model, "jets_mlp", cfg, report)


def train_jets_particle(cfg: TrainConfig) -> dict[str, Any]:
    from sonic.models.features import particle_inputs

    _seed_everything(cfg)
    tr, te, trf, tef = _jets_common(cfg)
    (f, m), y = particle_inputs(tr), tr["FatJet_label"].astype(np.int64)
    keep = y >= 0
    f, m, y = f[keep], m[keep], y[keep]
    model = ParticleTagger()
    real = f[m > 0]
    model.norm.set(torch.from_numpy(real.mean(0)), torch.from_numpy(real.std(0)))
    cfg.log(f"jets_particle: {len(y)} training jets")
    t0 = time.perf_counter()
    _fit_classifier(model, (f, m), y, 5, cfg.epochs or 30, cfg, lr=2e-3)
    (ft, mt), yt = particle_inputs(te), te["FatJet_label"].astype(np.int64)
    kt = yt >= 0
    report = _jet_report(_predict(model, (ft[kt], mt[kt])), yt[kt])
    report.update(
        model="jets_particle",
        train_seconds=round(time.perf_counter() - t0, 1),
        train_jets=len(y),
        train_files=[p.name for p in trf],
        test_files=[p.name for p in tef],
    )
    return _save(model, "jets_particle", cfg, report)


# --------------------------------------------------------------------------------------------
# LArTPC
# --------------------------------------------------------------------------------------------


def _lartpc_files(cfg: TrainConfig, n: int) -> tuple[list[Path], list[Path]]:
    if cfg.data:
        return cfg.data, cfg.test_data or cfg.data
    from sonic.data.lartpc import LArTPCConfig, generate_lartpc, write_lartpc

    work = _work(cfg)
    out: list[list[Path]] = [[], []]
    for i, (split, seed, events) in enumerate(
        (("train", cfg.seed * 100, n), ("test", cfg.seed * 100 + 50, n // 4))
    ):
        path = work / f"lartpc_{split}_s{seed}_n{events}.h5"
        if not path.exists():
            cfg.log(f"generating {events} LArTPC events (seed {seed}) -> {path}")
            s = generate_lartpc(
                LArTPCConfig(events=events, seed=seed, patches_per_class=8, keep_images=False)
            )
            cfg.log(f"  {s.seconds:.0f} s, {len(s.patch_label)} patches")
            write_lartpc(s, path)
        out[i].append(path)
    return out[0], out[1]


def _patches(paths: list[Path]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    from sonic.data.lartpc import read_lartpc

    xs, ys = [], []
    for p in paths:
        s = read_lartpc(p)
        xs.append(s.patches)
        ys.append(s.patch_label)
    return np.concatenate(xs)[:, None].astype(np.float32), np.concatenate(ys).astype(np.int64)


def train_lartpc_cnn(cfg: TrainConfig) -> dict[str, Any]:
    from sonic.data.lartpc import CLASSES

    _seed_everything(cfg)
    trf, tef = _lartpc_files(cfg, cfg.events or 600)
    x, y = _patches(trf)
    model = PatchCNN()
    cfg.log(f"lartpc_cnn: {len(y)} training patches, counts {np.bincount(y, minlength=4).tolist()}")
    t0 = time.perf_counter()
    _fit_classifier(model, (x,), y, 4, cfg.epochs or 12, cfg, lr=2e-3, batch=128)
    xt, yt = _patches(tef)
    report = classification_report(_predict(model, (xt,)), yt, CLASSES)
    report.update(
        model="lartpc_cnn",
        train_seconds=round(time.perf_counter() - t0, 1),
        train_patches=len(y),
        train_files=[p.name for p in trf],
        test_files=[p.name for p in tef],
    )
    return _save(model, "lartpc_cnn", cfg, report)


# --------------------------------------------------------------------------------------------
# DeepClean
# --------------------------------------------------------------------------------------------


def _gw_files(cfg: TrainConfig, seconds: int) -> tuple[list[Path], list[Path]]:
    if cfg.data:
        return cfg.data, cfg.test_data or cfg.data
    from sonic.data.gw import GWConfig, generate_gw, write_gw

    work = _work(cfg)
    out: list[list[Path]] = [[], []]
    specs = (("train", cfg.seed * 100, seconds, 0.0, 32.0), ("test", cfg.seed * 100 + 50, 256, 20.0, 16.0))
    for i, (split, seed, duration, snr, interval) in enumerate(specs):
        path = work / f"gw_{split}_s{seed}_d{duration}.h5"
        if not path.exists():
            cfg.log(f"generating {duration} s of strain (seed {seed}) -> {path}")
            write_gw(
                generate_gw(GWConfig(duration=duration, seed=seed, snr=snr, injection_interval=interval)),
                path,
            )
        out[i].append(path)
    return out[0], out[1]


def _band_weights(n: int, fs: float, bands: tuple[tuple[float, float], ...]) -> torch.Tensor:
    from sonic.data.gw import design_psd

    freq = np.fft.rfftfreq(n, 1.0 / fs).astype(np.float64)
    psd = design_psd(freq)
    sel = np.zeros(len(freq), dtype=bool)
    for lo, hi in bands:
        sel |= (freq >= lo) & (freq <= hi)
    w = np.where(sel & (psd > 0), 1.0 / np.where(psd > 0, psd, 1.0), 0.0)
    return torch.tensor(w / w.max(), dtype=torch.float32)


BANDS = ((55.0, 65.0), (115.0, 125.0))


def bandpass(
    x: npt.NDArray[np.float64], fs: float, bands: tuple[tuple[float, float], ...] = BANDS, edge: float = 1.0
) -> npt.NDArray[np.float64]:
    """Keep only ``bands`` of ``x`` (FFT mask with raised-cosine edges of ``edge`` Hz).

    DeepClean subtracts the prediction only in the bands it was trained on: outside them the
    network's output is unconstrained and would add noise.
    """
    freq = np.fft.rfftfreq(x.shape[-1], 1.0 / fs)
    mask = np.zeros(len(freq))
    for lo, hi in bands:
        inner = (freq >= lo) & (freq <= hi)
        mask[inner] = 1.0
        for f0, sign in ((lo, -1.0), (hi, 1.0)):
            ramp = (sign * (freq - f0) > 0) & (sign * (freq - f0) < edge)
            mask[ramp] = np.maximum(mask[ramp], 0.5 * (1 + np.cos(np.pi * np.abs(freq[ramp] - f0) / edge)))
    out: npt.NDArray[np.float64] = np.fft.irfft(np.fft.rfft(x) * mask, x.shape[-1])
    return out


def clean(
    model: DeepClean,
    witness: npt.NDArray[np.float64],
    fs: float = 4096.0,
    frame: int = 4096,
    context: int = 2048,
) -> npt.NDArray[np.float64]:
    """Predicted coupled noise for a whole stretch, as the streaming workflow computes it.

    Frames of ``frame`` samples get ``context`` samples of witnesses either side; the
    prediction is band-passed to :data:`BANDS` on the padded frame and the context dropped.
    """
    model.eval()
    _, n = witness.shape
    pad = np.pad(witness, ((0, 0), (context, context + frame)), mode="reflect")
    out = np.zeros(n + frame)
    with torch.no_grad():
        for start in range(0, n, frame):
            seg = pad[:, start : start + frame + 2 * context].astype(np.float32)
            pred = model(torch.from_numpy(seg)[None]).numpy()[0].astype(np.float64)
            out[start : start + frame] = bandpass(pred, fs)[context : context + frame]
    return out[:n]


def train_deepclean(cfg: TrainConfig) -> dict[str, Any]:
    from sonic.data.gw import WITNESSES, read_gw

    _seed_everything(cfg)
    trf, tef = _gw_files(cfg, cfg.events or 512)
    tr = read_gw(trf[0])
    fs = tr.config.sample_rate
    scale = 1e21
    w = np.stack([tr.witness[k] for k in WITNESSES]).astype(np.float32)
    h = (tr.strain * scale).astype(np.float32)
    model = DeepClean(len(WITNESSES))
    model.norm.set(torch.from_numpy(w.mean(1)), torch.from_numpy(w.std(1)))
    win = fs  # 1 s windows
    bw = _band_weights(win, fs, BANDS)
    taper = torch.hann_window(win, periodic=False)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    steps = (cfg.epochs or 6) * 100  # an "epoch" here is 100 steps of 16 one-second windows
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    gen = np.random.Generator(np.random.PCG64(cfg.seed))
    tw, th = torch.from_numpy(w), torch.from_numpy(h)
    cfg.log(f"deepclean: {tr.config.duration} s of training strain, {steps} steps of 16 x 1 s windows")
    t0 = time.perf_counter()
    for step in range(steps):
        model.train()
        starts = gen.integers(0, len(h) - win, 16)
        xb = torch.stack([tw[:, s : s + win] for s in starts])
        yb = torch.stack([th[s : s + win] for s in starts])
        opt.zero_grad()
        resid = (yb - model.scaled(xb)) * taper
        ref = yb * taper
        pr = (torch.fft.rfft(resid).abs() ** 2 * bw).sum(1)
        po = (torch.fft.rfft(ref).abs() ** 2 * bw).sum(1)
        loss = (pr / po).mean()
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % 100 == 0:
            cfg.log(f"  step {step + 1}/{steps}: in-band residual/strain power {float(loss):.4f}")
    model.eval()
    report: dict[str, Any] = {"model": "deepclean", "train_seconds": round(time.perf_counter() - t0, 1)}
    report.update(deepclean_quality(model, tef[0]))
    report.update(train_files=[p.name for p in trf], test_files=[p.name for p in tef])
    return _save(model, "deepclean", cfg, report)


def deepclean_quality(model: DeepClean, path: Path) -> dict[str, Any]:
    """ASD ratios at 60/120 Hz and matched-filter SNR on the injections of a held-out file."""
    from sonic.data.gw import WITNESSES, read_gw

    te = read_gw(path)
    fs = te.config.sample_rate
    w = np.stack([te.witness[k] for k in WITNESSES])
    cleaned = te.strain - clean(model, w, fs)
    ideal = te.strain - te.coupled
    rep: dict[str, Any] = {"test_seconds": te.config.duration}
    for f0 in (60.0, 120.0):
        rep[f"asd_ratio_{int(f0)}hz"] = round(asd_ratio(te.strain, cleaned, fs, f0), 4)
        rep[f"asd_ratio_{int(f0)}hz_floor"] = round(asd_ratio(te.strain, ideal, fs, f0), 4)
    snr_raw, snr_clean, snr_ideal = [], [], []
    inj = te.injections
    for t_m in inj["t_merger"]:
        a, b = int((t_m - 8) * fs), int((t_m + 8) * fs)
        if a < 0 or b > len(te.strain):
            continue
        tmpl = te.signal[a:b]
        snr_raw.append(matched_filter_snr(te.strain[a:b], tmpl, fs))
        snr_clean.append(matched_filter_snr(cleaned[a:b], tmpl, fs))
        snr_ideal.append(matched_filter_snr(ideal[a:b], tmpl, fs))
    rep.update(
        injections=len(snr_raw),
        injected_optimal_snr=float(te.config.snr),
        matched_filter_snr_raw=round(float(np.mean(snr_raw)), 3) if snr_raw else None,
        matched_filter_snr_cleaned=round(float(np.mean(snr_clean)), 3) if snr_clean else None,
        matched_filter_snr_no_coupling=round(float(np.mean(snr_ideal)), 3) if snr_ideal else None,
    )
    return rep


TRAINERS: dict[str, Callable[[TrainConfig], dict[str, Any]]] = {
    "jets_mlp": train_jets_mlp,
    "jets_particle": train_jets_particle,
    "lartpc_cnn": train_lartpc_cnn,
    "deepclean": train_deepclean,
}


def train(cfg: TrainConfig) -> dict[str, Any]:
    return TRAINERS[cfg.model](cfg)
