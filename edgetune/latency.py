"""Latency of Sessions at one batch size: warm-up, then timed engine calls only.

Torch-free. Inputs are made before the clock starts; the warm-up is excluded.
"""

from __future__ import annotations

import time

import numpy as np

from edgetune import host, progress
from edgetune.ranking import RUNOFF_MARGIN, behind
from edgetune.runtime.session import Session


def measure_latency(
    session: Session,
    shape: tuple[int, int, int],
    batch: int = 1,
    warmup: int = 10,
    runs: int | None = 50,
    seconds: float | None = None,
    seed: int = 0,
    desc: str | None = None,
) -> dict:
    """p50/p90/p99/mean in ms and images/s for `session` on random inputs of `shape` (C, H, W)."""
    x = _inputs(shape, batch, seed)
    for _ in range(warmup):
        session.run(x)
    times = []
    deadline = time.perf_counter() + seconds if seconds else None
    total = None if deadline else (runs or 50)
    with progress.stage(desc or f"time batch {batch}", total, "runs") as bar:
        while True:
            times.append(_time_call(session, x))
            bar.advance()
            if deadline is not None:
                if time.perf_counter() >= deadline and len(times) >= 3:
                    break
            elif len(times) >= total:
                break
    return _summary(times, batch, session)


def measure_interleaved(sessions: dict[str, Session], shape: tuple[int, int, int] | dict[str, tuple[int, int, int]],
                        batch: int = 1, rounds: int = 5, runs: int = 10, warmup: int = 5,
                        per_round: bool = False) -> dict[str, dict]:
    """Latency of several sessions, measured in turns: each round times every session,
    so a burst of load on a shared machine hits all candidates alike, not just one.
    `shape` (C, H, W) is every session's input, or a dict of each one's: models at different
    input sizes timed in the same turns. `per_round` adds each round's p50 ("rounds_p50"):
    ratios of two sessions round by round show whether a difference outlasts the machine's
    noise."""
    shapes = shape if isinstance(shape, dict) else dict.fromkeys(sessions, shape)
    made = {s: _inputs(s, batch, 0) for s in set(shapes.values())}
    inputs = {name: made[shapes[name]] for name in sessions}
    for name, s in sessions.items():
        for _ in range(warmup):
            s.run(inputs[name])
    times: dict[str, list[float]] = {name: [] for name in sessions}
    names = list(sessions)
    for r in progress.track(range(rounds), f"time {', '.join(sessions)}", unit="rounds"):
        # Each round starts one session later, so no session always follows the same other
        # one: the same OpenVINO graph timed in two rows of one fixed-order run came out
        # 1.23x apart (threads asleep or caches cold after the previous engine).
        for name in names[r % len(names):] + names[:r % len(names)]:
            s = sessions[name]
            # The previous session's worker threads spin for a while after their last call
            # and steal the cores: let them settle, and re-warm this one, before timing.
            time.sleep(0.05)
            x = inputs[name]
            s.run(x)
            times[name] += [_time_call(s, x) for _ in range(runs)]
    out = {name: _summary(ts, batch, sessions[name]) for name, ts in times.items()}
    if per_round:
        for name, ts in times.items():
            out[name]["rounds_p50"] = [round(float(np.median(ts[i:i + runs])) * 1e3, 3)
                                       for i in range(0, len(ts), runs)]
    return out


def measure_with_runoff(sessions: dict[str, Session], shape: tuple[int, int, int], rounds: int,
                        groups: list[list[str]], log=None) -> dict[str, dict]:
    """The export's way of timing candidates, and the device's: every session in turns,
    `rounds` rotated rounds keeping each round's p50; then a runoff: in each of `groups`
    (the names one choice weighs), those the first pass did not separate from the group's
    fastest (within RUNOFF_MARGIN of it, or faster in at least one round) are timed again,
    twice as long, side by side, all in one pass. A few rounds on a shared machine cannot
    tell 5 % apart, and the runoff's rounds are what `ranking` reads the noise from: the
    noisier the machine, the more candidates meet again. A latency from the runoff carries
    `"runoff": True`."""
    out = measure_interleaved(sessions, shape, rounds=rounds, per_round=True)
    ahead: list[str] = []
    for group in groups:
        timed = [n for n in group if n in out]
        if not timed:
            continue
        fastest = out[min(timed, key=lambda n: out[n]["p50"])]
        close = [n for n in timed if out[n]["p50"] <= fastest["p50"] * (1 + RUNOFF_MARGIN)
                 or not behind(fastest, out[n])]
        ahead += [n for n in close if n not in ahead] if len(close) > 1 else []
    if not ahead:
        return out
    if log is not None:
        log(f"time: {', '.join(ahead)} not separated from the fastest (within {RUNOFF_MARGIN:.0%}, or faster in "
            "a round); timing them again, side by side")
    again = measure_interleaved({n: sessions[n] for n in ahead}, shape, rounds=2 * rounds, per_round=True)
    return out | {n: {**again[n], "runoff": True} for n in ahead}


def _inputs(shape, batch: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, *shape), dtype=np.float32)


def _time_call(session: Session, x: np.ndarray) -> float:
    t0 = time.perf_counter()
    session.run(x)
    return time.perf_counter() - t0


def _summary(seconds: list[float], batch: int, session: Session) -> dict:
    ms = np.asarray(seconds) * 1e3
    mean = float(ms.mean())
    return {
        "batch": batch,
        "p50": round(float(np.percentile(ms, 50)), 3),
        "p90": round(float(np.percentile(ms, 90)), 3),
        "p99": round(float(np.percentile(ms, 99)), 3),
        "mean": round(mean, 3),
        "throughput": round(batch * 1e3 / mean, 1),
        "runs": len(seconds),
        "device": f"{session.backend}/{session.device} on {host.short()}",
    }
