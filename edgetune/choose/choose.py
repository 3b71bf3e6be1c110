"""`edgetune choose`: rank pretrained backbones for the user's images before training any.

Each candidate (model, weights, input size) runs once over the images through the feature
cache, and its pooled features are scored: LogME (`scores.logme`), and a cross-validated
linear probe. Each model and size is exported as an fp32 graph and timed here in turns, or its
time is taken from the device's `bench --json` files. The ranking, its Pareto set and the
command for the best within `--latency-budget` are printed and written to OUT.
"""

from __future__ import annotations

import time
from pathlib import Path

from edgetune import files
from edgetune.choose import candidates as cands
from edgetune.choose import ranking, timing
from edgetune.choose.ranking import Row
from edgetune.config import ChooseConfig, to_dict
from edgetune.errors import ConfigError, EdgetuneError

GRAPHS = "graphs"  # the candidates' fp32 graphs, <arch>-<size>.onnx: copy them to the device for bench


def choose(cfg: ChooseConfig, out: str | Path, log=print) -> list[Row]:
    """Rank the candidates; returns the rows, best first. Raises ConfigError when none is
    within --latency-budget (after writing the ranking)."""
    # Everything a user can get wrong is checked before the first model loads.
    pairs = cands.parse_models(cfg.models, cfg.weights, log)
    sizes = cands.parse_sizes(cfg.image_sizes)
    known = timing.read_files(cfg.latency_from)
    from edgetune.data.scan import scan

    data = cfg.data
    splits = scan(data, cfg.val_fraction, cfg.seed)
    out = Path(out)
    if (out / files.MANIFEST).is_file():
        raise ConfigError(f"--out {out} holds a bundle; choose writes its own folder: pass another --out")
    out.mkdir(parents=True, exist_ok=True)
    cache_dir = files.cache_folder(cfg.cache_dir, out)
    log(f"choose: {len(pairs)} model(s) x {len(sizes)} size(s) on {len(splits.train) + len(splits.val)} "
        f"images of {len(splits.classes)} classes ({data}); features cached in {cache_dir}")
    rows = _score_all(pairs, sizes, splits, cfg, cache_dir, out / GRAPHS, known, log)
    _add_latency(rows, known, out / GRAPHS, log)
    rows = ranking.rank(rows, cfg.rank_by, cfg.latency_budget)
    ranking.write(out, rows, to_dict(cfg), files.CHOICE_JSON, files.CHOICE_CSV)
    for line in ranking.table(rows, cfg.rank_by, cfg.latency_budget):
        log(line)
    best = ranking.best_within(rows, cfg.latency_budget)
    if best is None:
        fastest = min(rows, key=lambda r: r.p50_ms)
        raise ConfigError(f"--latency-budget {cfg.latency_budget:g} ms: no candidate meets it; the fastest is "
                          f"{fastest.candidate} at {fastest.size} px, {fastest.p50_ms:.2f} ms; raise the budget "
                          f"or add smaller models or sizes (ranking in {out / files.CHOICE_CSV})")
    within = "" if cfg.latency_budget is None else f" within {cfg.latency_budget:g} ms"
    log(f"choose: best{within}: {best.candidate} at {best.size} px (LogME {best.logme:.3f}, "
        f"{best.p50_ms:.2f} ms); ranking in {out / files.CHOICE_CSV}")
    log(f"next: {ranking.run_command(best, data)}")
    return rows


def _score_all(pairs, sizes, splits, cfg: ChooseConfig, cache_dir: Path, graphs: Path, known: dict,
               log) -> list[Row]:
    from edgetune.choose.features import extract
    from edgetune.choose.scores import linear_probe, logme
    from edgetune.train.model import preprocess_for

    def resolve(arch: str, weights: str, size: int | None):
        """The input size (without --image-sizes, the weights' own) and whether the device's
        files time it, or the error that skips the candidate."""
        try:
            at = size or preprocess_for(arch, weights, None).size[0]
        except EdgetuneError as exc:
            return exc, False
        return at, timing.shipped(known, arch, at) is not None

    planned = [(cands.Candidate(arch, weights, size), *resolve(arch, weights, size))
               for arch, weights in pairs for size in sizes]
    rows, skipped, last = [], [], {}
    for cand, at, timed in planned:
        arch, weights = cand.arch, cand.weights
        t0 = time.perf_counter()
        try:
            if isinstance(at, EdgetuneError):
                raise at
            got = extract(cand, splits, cfg.data, cache_dir, None if timed else graphs, cfg.batch_size, log, last)
        except EdgetuneError as exc:  # weights that cannot load here: skip, say why
            skipped.append(cand.name)
            log(f"choose: skipping {cand.name}: {exc}")
            continue
        cand = cands.Candidate(arch, weights, got.size)
        score = logme(got.features, got.labels)
        probe = linear_probe(got.features, got.labels, seed=cfg.seed)
        rows.append(Row(cand.name, arch, weights, got.size, round(score, 4),
                        None if probe is None else round(probe, 4),
                        seconds=round(time.perf_counter() - t0, 1)))
        probe_text = "" if probe is None else f", probe top-1 {probe:.1%}"
        log(f"choose: {cand.name} {got.size} px: LogME {score:.3f}{probe_text} "
            f"({got.features.shape[1]} features, {rows[-1].seconds:.1f} s)")
    # Two weights files of one name (run-a/best.pt, run-b/best.pt) are told apart by their paths.
    shared = [r for r in rows if sum(o.candidate == r.candidate and o.size == r.size for o in rows) > 1]
    for r in shared:
        r.candidate = f"{r.arch}@{r.weights}"
    if not rows:
        raise ConfigError(f"no candidate could be scored ({', '.join(skipped)} skipped, reasons above); pass "
                          "--models with weights at hand: NAME@PATH, or --weights none")
    return rows


def _add_latency(rows: list[Row], known: dict, graphs: Path, log) -> None:
    """Each row's p50: the device's from --latency-from where it has the model and size, else
    this machine's on the fp32 graph."""
    here = {}
    for r in rows:
        found = timing.shipped(known, r.arch, r.size)
        if found is not None:
            r.p50_ms, r.latency_from = found
        else:
            here[(r.arch, r.size)] = graphs / cands.Candidate(r.arch, "none", r.size).graph
    if known and here:
        log("choose: not in --latency-from, timed here: " + ", ".join(f"{a} {s} px" for a, s in here))
    measured = timing.measure_here(here)
    for r in rows:
        if (r.arch, r.size) in measured:
            r.p50_ms, r.latency_from = measured[(r.arch, r.size)], "here"
