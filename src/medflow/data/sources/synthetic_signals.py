"""A large, seeded, procedurally generated set of ECG-like signals to pretrain on.

Each series is one lead of a few seconds of ECG: every beat is a sum of Gaussian waves
(P, Q, R, S, T and one extra wave), the model of McSharry et al.'s ECGSYN written in the
time domain. Eight rhythm and morphology classes change the beat timing or the waves:
sinus rhythm, tachycardia, bradycardia, atrial fibrillation (irregular RR, no P waves,
fibrillatory baseline), premature ventricular contractions (an early wide beat with a
compensatory pause), bundle branch block (wide notched QRS), ST elevation and inverted
T waves. Heart rate, wave amplitudes and widths, gain, baseline wander and noise are drawn
per series. Rendering is vectorised over chunks of series x beats x waves x samples, so
20,000 series take a few seconds; neurokit2's simulators draw one signal at a time and
carry no morphology classes, so they are not used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from medflow.data.base import SourceData, pool

CHUNK = 512
MIN_RR_S = 0.3  # shortest RR interval drawn (200 bpm), which bounds the beats per window

CLASS_NAMES = [
    "sinus",
    "tachycardia",
    "bradycardia",
    "atrial_fibrillation",
    "pvc",
    "bundle_branch_block",
    "st_elevation",
    "t_inversion",
]
SINUS, TACHY, BRADY, AFIB, PVC, BBB, STE, TINV = range(len(CLASS_NAMES))

# Waves P, Q, R, S, T, extra: offset from the R peak (s), amplitude (mV), width sigma (s).
OFFSET = np.array([-0.2, -0.025, 0.0, 0.03, 0.28, 0.0], dtype=np.float32)
AMPLITUDE = np.array([0.15, -0.12, 1.0, -0.25, 0.3, 0.0], dtype=np.float32)
WIDTH = np.array([0.025, 0.01, 0.012, 0.012, 0.05, 0.02], dtype=np.float32)
P, Q, R, S, T, EXTRA = range(len(OFFSET))
# Heart-rate range (bpm) per class; rhythm classes set their own, the others are sinus.
HEART_RATE = {TACHY: (110, 160), BRADY: (38, 55), AFIB: (80, 140)}
SINUS_RATE = (60, 100)


@dataclass(frozen=True)
class SignalOptions:
    """Every value from the schema's $defs entry (defaults live there only)."""

    n_series: int
    length: int
    sampling_rate: float
    noise: float
    baseline_wander: float
    classes: tuple[str, ...] | None


def _beat_times(labels: np.ndarray, duration: float, rng: np.random.Generator):
    """R-peak times (B, K) in seconds, the first one up to one RR before the window."""
    b = len(labels)
    k = int(np.ceil(duration / MIN_RR_S)) + 2
    low = np.full(b, SINUS_RATE[0], dtype=np.float32)
    high = np.full(b, SINUS_RATE[1], dtype=np.float32)
    for label, (lo, hi) in HEART_RATE.items():
        low[labels == label], high[labels == label] = lo, hi
    rr = 60.0 / rng.uniform(low, high).astype(np.float32)  # (B,)
    afib = (labels == AFIB)[:, None]
    # Sinus rhythms vary by ~3% beat to beat; atrial fibrillation is irregularly irregular.
    spread = np.where(afib, 0.25, 0.03).astype(np.float32)
    intervals = rr[:, None] * np.exp(spread * rng.standard_normal((b, k)).astype(np.float32))
    intervals = np.maximum(intervals, MIN_RR_S)
    start = -rng.uniform(0, 1, size=(b, 1)).astype(np.float32) * intervals[:, :1]
    times = start + np.cumsum(intervals, axis=1) - intervals[:, :1]
    # A PVC comes ~35% of an RR early; the next beat keeps its time (compensatory pause).
    pvc_beat = _pick_visible_beat(times, duration, rng)
    is_pvc = (labels == PVC)[:, None] & (np.arange(k)[None] == pvc_beat[:, None])
    times = np.where(is_pvc, times - 0.35 * rr[:, None], times)
    return times, is_pvc


def _pick_visible_beat(times: np.ndarray, duration: float, rng: np.random.Generator):
    """One random beat per series whose PVC lies well inside the window."""
    visible = (times > 0.6) & (times < duration - 0.3)
    score = np.where(visible, rng.uniform(size=times.shape), -1.0)
    return score.argmax(axis=1)


def _wave_params(labels: np.ndarray, is_pvc: np.ndarray, rr: np.ndarray, rng):
    """Offsets, amplitudes and widths (B, K, W) of every wave of every beat."""
    b, k = is_pvc.shape
    w = len(OFFSET)
    jitter = rng.uniform(0.85, 1.15, size=(3, b, 1, w)).astype(np.float32)
    offset = np.broadcast_to(OFFSET * jitter[0], (b, k, w)).copy()
    amplitude = np.broadcast_to(AMPLITUDE * jitter[1], (b, k, w)).copy()
    width = np.broadcast_to(WIDTH * jitter[2], (b, k, w)).copy()
    # QT shortens with heart rate (Bazett: QT ~ sqrt(RR)).
    offset[..., T] *= np.sqrt(np.clip(rr, MIN_RR_S, 2.0))
    cls = labels[:, None]
    amplitude[..., P] = np.where(cls == AFIB, 0.0, amplitude[..., P])
    bbb = cls == BBB  # wide QRS with a second R peak (R')
    width[..., R] = np.where(bbb, 0.022, width[..., R])
    width[..., S] = np.where(bbb, 0.03, width[..., S])
    offset[..., S] = np.where(bbb, 0.09, offset[..., S])
    offset[..., EXTRA] = np.where(bbb, 0.055, offset[..., EXTRA])
    amplitude[..., EXTRA] = np.where(bbb, 0.6, amplitude[..., EXTRA])
    ste = cls == STE  # a raised plateau between S and T
    offset[..., EXTRA] = np.where(ste, 0.14, offset[..., EXTRA])
    amplitude[..., EXTRA] = np.where(ste, rng.uniform(0.15, 0.3, (b, 1)), amplitude[..., EXTRA])
    width[..., EXTRA] = np.where(ste, 0.06, width[..., EXTRA])
    amplitude[..., T] = np.where(cls == TINV, -np.abs(amplitude[..., T]), amplitude[..., T])
    # A ventricular beat: no P, a wide tall QRS, a discordant T.
    for wave, (off, amp, sig) in {
        P: (-0.2, 0.0, 0.025),
        Q: (-0.03, 0.0, 0.01),
        R: (0.0, 1.3, 0.035),
        S: (0.08, -0.5, 0.04),
        T: (0.3, -0.35, 0.07),
        EXTRA: (0.0, 0.0, 0.02),
    }.items():
        offset[..., wave] = np.where(is_pvc, off, offset[..., wave])
        amplitude[..., wave] = np.where(is_pvc, amp, amplitude[..., wave])
        width[..., wave] = np.where(is_pvc, sig, width[..., wave])
    return offset, amplitude, width


def _render_chunk(labels: np.ndarray, opts: SignalOptions, rng: np.random.Generator):
    b = len(labels)
    duration = opts.length / opts.sampling_rate
    t = (np.arange(opts.length, dtype=np.float32) / opts.sampling_rate)[None, None, None, :]
    times, is_pvc = _beat_times(labels, duration, rng)
    rr = np.diff(times, axis=1, prepend=times[:, :1] - 0.8)
    offset, amplitude, width = _wave_params(labels, is_pvc, rr, rng)
    centre = times[..., None, None] + offset[..., None]  # (B, K, W, 1)
    waves = amplitude[..., None] * np.exp(-0.5 * ((t - centre) / width[..., None]) ** 2)
    ecg = waves.sum(axis=(1, 2))  # (B, T)
    t = t[0, 0]
    phase = rng.uniform(0, 2 * np.pi, size=(b, 3, 1)).astype(np.float32)
    # Baseline wander: breathing-rate sinusoids; atrial fibrillation adds 4-8 Hz f-waves.
    freq = rng.uniform(0.1, 0.5, size=(b, 3, 1)).astype(np.float32)
    wander = (np.sin(2 * np.pi * freq * t + phase).sum(axis=1) / 3) * opts.baseline_wander
    f_freq = rng.uniform(4, 8, size=(b, 1)).astype(np.float32)
    f_waves = 0.06 * np.sin(2 * np.pi * f_freq * t + phase[:, 0]) * (labels == AFIB)[:, None]
    gain = rng.uniform(0.7, 1.3, size=(b, 1)).astype(np.float32)
    noise = opts.noise * rng.standard_normal((b, opts.length)).astype(np.float32)
    return gain * (ecg + f_waves) + wander + noise


def generate(opts: SignalOptions, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Series (N, 1, T) float32 and balanced labels (N,) indexing ``opts.classes`` (default:
    CLASS_NAMES), fully determined by seed."""
    rng = np.random.default_rng(seed)
    chosen = np.array([CLASS_NAMES.index(c) for c in opts.classes or CLASS_NAMES])
    labels = rng.permutation(np.arange(opts.n_series) % len(chosen)).astype(np.int64)
    x = np.empty((opts.n_series, 1, opts.length), dtype=np.float32)
    for start in range(0, opts.n_series, CHUNK):
        chunk = chosen[labels[start : start + CHUNK]]
        x[start : start + len(chunk), 0] = _render_chunk(chunk, opts, rng)
    return x, labels


def load(options: dict[str, Any], seed: int) -> SourceData:
    opts = SignalOptions(**options)
    x, labels = generate(opts, seed)
    names = list(opts.classes or CLASS_NAMES)
    return SourceData(
        task="binary" if len(names) == 2 else "multiclass",
        kind="sequence",
        class_names=names,
        splits=pool(x, labels),
        feature_names=["ecg"],
        sampling_rate=opts.sampling_rate,
    )
