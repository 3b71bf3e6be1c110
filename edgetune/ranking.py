"""Which of several timed artifacts to recommend, and the verdict on each. Torch-free.

The rule, shared by the export (`calib.select`) and the device (`edgetune bench --choose`):
the fastest within the accuracy budget, where "fastest" only counts beyond the measured
noise. Two candidates timed in the same rounds (`latency.measure_with_runoff`) are tied
unless the slower one was slower in so many rounds that chance would rarely do it (a sign
test: every round of a few, 9 of 10): on a shared 2-core machine a 3 % gap between medians
is noise, and a greedy choice once shipped a graph 0.84 points less accurate and 4x larger
for it. Among tied candidates the most accurate wins, then the
smallest file, then the lower median.
"""

from __future__ import annotations

from functools import cmp_to_key
from math import comb
from typing import Protocol

# Candidates this close to the fastest are timed again in the runoff even when they were
# slower in every round of the first pass: a few rounds on a shared machine cannot tell 5 %
# apart (latency.measure_with_runoff).
RUNOFF_MARGIN = 0.10
# A latency is behind another when it was slower in so many of their common rounds that two
# equally fast sessions would be that lopsided with probability under SIGN_TEST_P (one-sided
# sign test). Three or four rounds then need all of them; the runoff's ten need nine. The
# demo's export once called a graph slower by 34 % at the median "tied" with the fastest, the
# two rounds in ten that went the other way being read as noise.
SIGN_TEST_P = 0.05


class Timed(Protocol):
    name: str
    top1: float | None
    latency: dict | None  # {"p50", …, "rounds_p50": [...], "runoff": bool}
    size_bytes: int
    verdict: str


def within(c: Timed, floor: float) -> bool:
    return c.top1 is not None and c.top1 >= floor - 1e-9


def behind(fast: dict, slow: dict) -> bool:
    """Latency `slow` is behind `fast` beyond the noise: timed in the same rounds, it was
    slower in every one of them, or in enough that chance is unlikely (`SIGN_TEST_P`);
    without rounds, the medians alone decide."""
    ra, rb = fast.get("rounds_p50"), slow.get("rounds_p50")
    if not ra or not rb or len(ra) != len(rb):
        return slow["p50"] > fast["p50"]
    slower = sum(y > x for x, y in zip(ra, rb))
    return slower == len(ra) or _sign_test(slower, len(ra)) < SIGN_TEST_P


def _sign_test(wins: int, rounds: int) -> float:
    """P(at least `wins` of `rounds` fair coin flips come up one way)."""
    return sum(comb(rounds, k) for k in range(wins, rounds + 1)) / 2**rounds


def separated(fast: Timed, slow: Timed) -> bool:
    """`slow` is slower than `fast` beyond the noise. Timed in different passes (one in the
    runoff, one not), the one left out was behind in every round of the first pass and by
    more than RUNOFF_MARGIN: separated."""
    a, b = fast.latency or {}, slow.latency or {}
    if bool(a.get("runoff")) != bool(b.get("runoff")):
        return True
    return behind(a, b)


SAME_SIZE = 0.01  # files this close in size are as small as each other (a zero-point's dtype is a few bytes)


def _smaller(a: Timed, b: Timed) -> bool:
    return a.size_bytes < b.size_bytes * (1 - SAME_SIZE)


def _before(a: Timed, b: Timed) -> int:
    """-1 when `a` goes before `b` among tied candidates: more accurate, then smaller, then faster."""
    if (a.top1 or 0.0) != (b.top1 or 0.0):
        return -1 if (a.top1 or 0.0) > (b.top1 or 0.0) else 1
    if _smaller(a, b) or _smaller(b, a):
        return -1 if _smaller(a, b) else 1
    return -1 if a.latency["p50"] < b.latency["p50"] else 1 if a.latency["p50"] > b.latency["p50"] else 0


def rank(candidates: list[Timed], floor: float) -> list[Timed]:
    """The timed candidates within the budget, best first: each place goes to the fastest of
    those left, or to one tied with it that is more accurate, then smaller."""
    left = [c for c in candidates if within(c, floor) and c.latency]
    out = []
    while left:
        fastest = min(left, key=lambda c: c.latency["p50"])
        tied = [c for c in left if c is fastest or not separated(fastest, c)]
        best = sorted(tied, key=cmp_to_key(_before))[0]
        out.append(best)
        left = [c for c in left if c is not best]
    return out


def tied_with(winner: Timed, candidates: list[Timed], floor: float) -> list[Timed]:
    """The candidates within budget that the winner was tied with: those not separated from
    the fastest (the winner is the fastest, or one of them)."""
    timed = [c for c in candidates if within(c, floor) and c.latency]
    fastest = min(timed, key=lambda c: c.latency["p50"])
    ties = [c for c in timed if c is not winner and (c is fastest or not separated(fastest, c))]
    return sorted(ties, key=lambda c: c.latency["p50"])


def choose(candidates: list[Timed], floor: float, max_drop: float, measure: str = "top-1") -> Timed:
    """The winner (`rank`'s first; fp32, the reference, is always within budget) and a verdict
    on every candidate, naming `measure` (what top1 holds: top-1, or agreement with fp32)."""
    winner = rank(candidates, floor)[0]
    ties = tied_with(winner, candidates, floor)
    for c in candidates:
        if c is winner:
            c.verdict = (f"chosen: tied with {_ties_text(winner, ties)}" if ties else
                         f"chosen: fastest within {max_drop:g} {measure} points of fp32")
        elif not within(c, floor):
            c.verdict = f"over budget: {measure} {c.top1:.2%} < {floor:.2%}"
        elif not c.latency:
            c.verdict = "not timed"
        elif any(c is t for t in ties):
            c.verdict = f"tied with {winner.name}, {_why_not(c, winner)}"
        else:
            c.verdict = f"slower: {c.latency['p50'] / winner.latency['p50']:.2f}x the winner's p50"
    return winner


def _why(winner: Timed, tie: Timed) -> str:
    """Why the winner went before `tie`, a candidate it was tied with (`_before`)."""
    if (winner.top1 or 0) > (tie.top1 or 0):
        return "more accurate"
    if _smaller(winner, tie):
        return "as accurate, smaller"
    return "as accurate and as small, faster"


def _why_not(tie: Timed, winner: Timed) -> str:
    """The same, from the side of the one that lost."""
    return {"more accurate": "less accurate", "as accurate, smaller": "as accurate, larger",
            "as accurate and as small, faster": "as accurate and as small, slower"}[_why(winner, tie)]


def _ties_text(winner: Timed, ties: list[Timed]) -> str:
    """'int8-profiled, fp32 within noise, more accurate', or each tie with its own reason."""
    reasons = {t.name: _why(winner, t) for t in ties}
    if len(set(reasons.values())) == 1:
        return f"{', '.join(reasons)} within noise, {next(iter(reasons.values()))}"
    return ", ".join(f"{name} ({why})" for name, why in reasons.items()) + " within noise"
