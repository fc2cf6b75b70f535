"""Judging PyTorch's observations by the golden's round-off envelope: repro's verdict words and fields."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from .record import Record
from .replay import WindowReplay

# The safety factor on the envelope: repro's TolerancePolicy.envelopeSafetyFactor. Its size comes from
# repro's false-alarm campaign (the worst of 26 benign re-runs was 2.56 envelopes; 8 leaves a margin of 3,
# docs/verifying.md); PyTorch's sums in another order are that kind of change.
SAFETY_FACTOR = 8.0

# What PyTorch cannot observe the way repro stores it, said in every report rather than skipped silently.
NOT_OBSERVED = [
    "the checksums of activations, gradients and updates (sums of float32 bit patterns: another framework's bits "
    "differ by design; each batch's images and labels are compared bit for bit)",
    "the first forward pass's checksums and the state digests at window ends between checkpoints (bits too)",
]


@dataclass
class Beyond:
    step: int
    pass_: str
    layer: str
    place: str
    message: str
    window: int
    ratio: float


@dataclass
class Report:
    golden: str
    verdict: str = "identical"
    compared: int = 0
    differing: int = 0
    worst_ratio: float = 0.0
    worst_place: str = ""
    first_beyond: Optional[Beyond] = None
    windows: List[int] = field(default_factory=list)
    replicas: Optional[int] = None
    factor: float = SAFETY_FACTOR

    @property
    def passed(self) -> bool:
        return self.verdict in ("identical", "within-round-off")


def judge(record: Record, replays: List[WindowReplay], factor: float = SAFETY_FACTOR) -> Report:
    report = Report(golden=record.path, replicas=record.replicas, factor=factor, windows=[r.window.index for r in replays])
    # Each dataset read once, whole (an h5py read per observation cost more than the replay itself).
    stored, envelopes = {}, {}
    for replay in replays:
        for obs in sorted(replay.observations, key=lambda o: (o.step, o.order)):
            if obs.path not in stored:
                stored[obs.path] = np.asarray(record.dataset(obs.path)[()], dtype=np.float64)
                codes = record.envelope_codes(obs.path)
                envelopes[obs.path] = None if codes is None else np.asarray(codes[()], dtype=np.float64)
            golden = np.asarray(stored[obs.path][obs.index]).reshape(-1)
            width = np.zeros_like(golden)
            if envelopes[obs.path] is not None:
                c = np.asarray(envelopes[obs.path][obs.index]).reshape(-1)
                width = np.where(c > 0, np.exp2(c - 160), 0.0)
            delta = np.abs(obs.values - golden)
            delta = np.where(np.isnan(delta), np.inf, delta)
            report.compared += golden.size
            report.differing += int(np.count_nonzero(delta))
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(delta == 0, 0.0, np.where(width > 0, delta / np.where(width > 0, width, 1), np.inf))
            i = int(np.argmax(ratio))
            if ratio[i] > report.worst_ratio:
                report.worst_ratio, report.worst_place = float(ratio[i]), f"step {obs.step}, {obs.place}"
            if report.first_beyond is None and ratio[i] > factor:
                beyond = int(np.argmax(ratio > factor))
                element = f"[{beyond}]" if golden.size > 1 else ""
                message = (f"{obs.place}{element}: {float(golden[beyond])!r} vs {float(obs.values[beyond])!r}, "
                           + (f"{ratio[beyond]:.3g} envelopes (envelope {width[beyond]:.2g})" if width[beyond] > 0 else "no envelope"))
                report.first_beyond = Beyond(obs.step, obs.pass_, obs.layer, obs.place, message, replay.window.index, float(ratio[beyond]))
    report.verdict = "identical" if report.differing == 0 else ("drift" if report.first_beyond else "within-round-off")
    return report


def text(report: Report, subject: str) -> str:
    head = {"identical": "PASS", "within-round-off": "PASS", "drift": "DRIFT"}[report.verdict]
    windows = f"{len(report.windows)} window(s)"
    lines = []
    if report.verdict == "drift":
        lines.append(f"DRIFT {report.golden}: {subject} leaves the golden's round-off envelope ({windows}, × {report.factor:g})")
        b = report.first_beyond
        lines.append(f"  leaves its round-off envelope at step {b.step}, {b.message} (window {b.window})")
    else:
        what = "identical" if report.verdict == "identical" else f"within round-off: every observed value within {report.factor:g}× its envelope"
        lines.append(f"{head} {report.golden}: {subject}: {what} ({windows})")
    lines.append(f"  verdict: {report.verdict}; {report.differing} of {report.compared} observed values differ, worst "
                 f"{report.worst_ratio:.3g} envelopes" + (f" at {report.worst_place}" if report.worst_place else "")
                 + f"; envelope of {report.replicas} replicas per window, safety factor {report.factor:g}")
    lines.append("  not observed: " + "; ".join(NOT_OBSERVED))
    return "\n".join(lines)


def as_json(report: Report) -> dict:
    b = report.first_beyond
    worst = report.worst_ratio if math.isfinite(report.worst_ratio) else -1
    return {
        "golden": report.golden, "candidate": "pytorch", "passed": report.passed, "verdict": report.verdict,
        "windows": report.windows, "compared": report.compared, "differing": report.differing,
        "envelope": {"replicas": report.replicas, "factor": report.factor, "worst_ratio": worst, "worst_place": report.worst_place,
                     "first_beyond": None if b is None else {"step": b.step, "pass": b.pass_, "layer": b.layer, "place": b.place,
                                                             "message": b.message, "window": b.window}},
        "not_observed": NOT_OBSERVED,
    }
