"""Tables and learning curves of a benchmark directory, in the form of the paper's Tables 1-3 and Figure 2.

- Final return R: per seed, the mean of the last 10 evaluations (Table 2); mean ± std over seeds
  (population std, ``ddof=0``).
- LCA (Eq. 10): per seed ``Σ_k R(t_k) / Δ`` over the run's evaluations, Δ = the run's step budget
  (:func:`sb3_dst.metrics.learning_curve_area`); mean ± std over seeds. It is on the paper's scale (Table 1)
  when evaluations are every 5000 steps, whatever Δ.
- Costs (Table 3): network size S (Eq. 9) and the training FLOPs executed by the run
  (:func:`sb3_dst.metrics.training_flops`), with their ratio to the dense algorithm of the same family (TD3 for
  the TD3 variants, SAC for the SAC ones, likewise DDPG, TQC and CrossQ) on the same task. A variant with
  overrides that are not DST keywords (``DS-TD3:sparsity=0.9,learning_rate=0.0003``) is compared with the dense
  run that has the same ones (``TD3:learning_rate=0.0003``) where there is one (:func:`dense_counterpart`); the
  report says when it had to fall back to the plain dense algorithm.

- Aggregates (rliable's method, :mod:`sb3_dst.benchmark.aggregates`): per task, the IQM and mean final return with
  95 % stratified-bootstrap intervals; across tasks, final returns normalized to the dense baseline's mean (IQM,
  mean, the probability of improvement over the dense baseline), a performance profile and a sample-efficiency
  curve (IQM over evaluation steps), each with its 95 % band. Fixed bootstrap seed: reports regenerate identically.
- Learning speed: per seed, the first evaluation step reaching the dense baseline's mean final return (and 90 % of
  it), "never" when no evaluation does; median over seeds with a bootstrap interval.
- A method with fewer finished seeds than ``commands.txt`` asked for, than its run directories or than the other
  methods of its task is flagged (⚠) with the missing seeds.
- Runs of 1M steps of TD3, Static-TD3 and DS-TD3 on HalfCheetah, Walker2d and Hopper are shown beside the paper's
  Table 1 (:data:`PAPER_TABLE1`).

Only finished runs (with ``done.json``) are read.

Display names: by default a variant is named by its text (``DS-TD3 (sparsity=0.95, growth='gradient', ...)``).
``--label VARIANT NAME`` gives it a short name in tables and plots (``RigL 95 %``), kept in ``labels.json`` of
the output directory so that later reports use it too; run directories and configs do not change. A variant
with ``sparsity=*`` names the method in the dense-share plot (every sparsity level of that variant).
"""

from __future__ import annotations

import csv
import json
import math
import shlex
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sb3_dst.benchmark.aggregates import (
    BOOTSTRAP_REPS,
    BOOTSTRAP_SEED,
    Interval,
    bootstrap_curve,
    first_step_reaching,
    learning_speed,
    performance_profile,
    probability_of_improvement,
    stratified_bootstrap,
)
from sb3_dst.benchmark.command_line import requested_runs
from sb3_dst.benchmark.files import CONFIG, DONE, EVALUATIONS, read_json, write_text_atomic
from sb3_dst.benchmark.specs import ALGORITHMS, DENSE_BASELINE, AlgoSpec, RunConfig, family
from sb3_dst.common.dst import EVOLUTION_KEYS, PRUNING_KEYS, TOPOLOGY_KEYS
from sb3_dst.metrics import learning_curve_area

__all__ = [
    "DST_KEYWORDS",
    "FINAL_WINDOW",
    "LABELS",
    "PAPER_TABLE1",
    "SUMMARY_COLUMNS",
    "dense_counterpart",
    "dense_share_by_sparsity",
    "load_runs",
    "normalized_scores",
    "plot_dense_share_vs_sparsity",
    "plot_learning_curves",
    "plot_performance_profile",
    "plot_return_vs_flops",
    "plot_sample_efficiency",
    "read_labels",
    "run_variants",
    "sample_efficiency",
    "save_labels",
    "seed_shortfalls",
    "summarize_run",
    "write_report",
]

#: Evaluations averaged for the final return (the paper: the last 10).
FINAL_WINDOW = 10
#: Display names of variants in an output directory: ``{variant text: name}``.
LABELS = "labels.json"
SUMMARY_COLUMNS = [
    "run_id",
    "env_id",
    "algo",
    "seed",
    "total_timesteps",
    "n_evaluations",
    "final_return",
    "lca",
    "network_size",
    "flops",
    "flops_paper",
    "wall_time",
    "train_steps_per_second",
]


def read_evaluations(run_dir: Path) -> dict[str, np.ndarray]:
    """The columns of ``evaluations.csv`` as float arrays."""
    with open(run_dir / EVALUATIONS, newline="") as file:
        rows = list(csv.DictReader(file))
    if not rows:
        return {}
    return {key: np.array([float(row[key]) for row in rows]) for key in rows[0]}


def summarize_run(run_dir: Path) -> dict[str, Any]:
    """One finished run: its configuration, final return, LCA and costs."""
    config = RunConfig.from_json(read_json(run_dir / CONFIG))
    done = read_json(run_dir / DONE)
    evals = read_evaluations(run_dir)
    returns = evals["mean_return"]
    return {
        "run_id": config.run_id,
        "env_id": config.env_id,
        "algo": config.algo,
        "seed": config.seed,
        "total_timesteps": config.total_timesteps,
        "n_evaluations": len(returns),
        "n_final": min(FINAL_WINDOW, len(returns)),
        "final_return": float(np.mean(returns[-FINAL_WINDOW:])),
        "lca": learning_curve_area(returns, total_timesteps=config.total_timesteps),
        "network_size": done["network_size"],
        "flops": done["flops"],
        "flops_paper": done["flops_paper"],
        "wall_time": done["wall_time"],
        "train_steps_per_second": done["train_steps_per_second"],
        "config": config,
        "timesteps": evals["timesteps"],
        "returns": returns,
        "wall_hours": evals["wall_time"] / 3600,
    }


def run_variants(out: Path) -> list[str]:
    """The variant of every run directory under ``out/runs``, finished or not."""
    paths = sorted((Path(out) / "runs").glob(f"*/{CONFIG}"))
    return sorted({read_json(path)["algo"] for path in paths})


def load_runs(out: Path) -> list[dict[str, Any]]:
    """Summaries of every finished run under ``out/runs``."""
    runs_dir = Path(out) / "runs"
    if not runs_dir.exists():
        return []
    return [summarize_run(d) for d in sorted(runs_dir.iterdir()) if (d / DONE).exists()]


def _algo_order(algo: str) -> tuple[Any, ...]:
    spec = AlgoSpec.parse(algo)
    values = tuple((k, v if isinstance(v, (int, float)) else math.inf, str(v)) for k, v in spec.overrides)
    return (list(ALGORITHMS).index(spec.base), values)


def _mean_std(values: Sequence[float], fmt: str) -> str:
    if not values:
        return "–"
    text = format(float(np.mean(values)), fmt)
    return f"{text} ± {format(float(np.std(values)), fmt)}" if len(values) > 1 else text


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(["---"] * len(header)) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


Groups = dict[tuple[str, str], list[dict]]
#: A run's summary (:func:`summarize_run`).
Run = dict[str, Any]
#: Display names of variants (:func:`read_labels`), or None for their texts.
Labels = Mapping[str, str] | None


def _group(runs: Sequence[dict[str, Any]]) -> tuple[list[str], list[str], Groups]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        groups[run["env_id"], run["algo"]].append(run)
    envs = sorted({run["env_id"] for run in runs})
    algos = sorted({run["algo"] for run in runs}, key=_algo_order)
    return envs, algos, groups


def _canonical(variant: str) -> str:
    """One text per variant, whatever its spacing: the default display name."""
    return AlgoSpec.parse(variant).label


def _family_key(variant: str) -> str | None:
    """The variant with its ``sparsity`` value replaced by ``*`` (canonical), or None without ``sparsity``."""
    spec = AlgoSpec.parse(variant)
    if "sparsity" not in dict(spec.overrides):
        return None
    return AlgoSpec(spec.base, tuple((k, "*" if k == "sparsity" else v) for k, v in spec.overrides)).label


def _saved_labels(out: Path) -> dict[str, str]:
    """``out/labels.json`` as written: ``{variant text: name}``; ``ValueError`` naming the file if it is not that."""
    path = Path(out) / LABELS
    if not path.exists():
        return {}
    remedy = "fix or delete it (it holds display names only, no run is lost)"
    try:
        saved = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); {remedy}") from error
    if not isinstance(saved, dict) or not all(isinstance(v, str) for v in saved.values()):
        raise ValueError(f"{path} must map variant texts to names; {remedy}")
    return saved


def read_labels(out: Path) -> dict[str, str]:
    """The display names saved in ``out/labels.json``, keyed by canonical variant text (:attr:`AlgoSpec.label`)."""
    return {_canonical(variant): name for variant, name in _saved_labels(out).items()}


def save_labels(
    out: Path, pairs: Sequence[tuple[str, str]], variants: Sequence[str] | None = None, write: bool = True
) -> dict[str, str]:
    """Add ``(variant, name)`` pairs to ``out/labels.json`` (a pair for a variant named before replaces it) and
    return every label of ``out``.

    ``variants``, when given, are the variants that may be named: each pair's variant must be one of them, or
    one of them with ``sparsity=*`` (the method across sparsity levels). Raises ``ValueError`` for an unknown
    variant, an empty name, or one name given to two variants. ``write=False`` only checks."""
    allowed: set[str] | None = None
    if variants is not None:
        allowed = {_canonical(v) for v in variants} | {k for v in variants if (k := _family_key(v)) is not None}
    saved = {_canonical(variant): (variant, name) for variant, name in _saved_labels(out).items()}
    for variant, name in pairs:
        key = _canonical(variant)
        if allowed is not None and key not in allowed:
            raise ValueError(
                f"--label names {variant!r}, which is not one of the variants here (nor one of them with sparsity=*): "
                f"{', '.join(sorted(allowed))}"
            )
        if not name.strip():
            raise ValueError(f"--label gives {variant!r} an empty name")
        saved[key] = (variant, name.strip())
    owners: dict[str, str] = {}
    for variant, name in saved.values():
        if name in owners:
            raise ValueError(f"--label gives the name {name!r} to two variants: {owners[name]!r} and {variant!r}")
        owners[name] = variant
    if pairs and write:
        Path(out).mkdir(parents=True, exist_ok=True)
        text = json.dumps(dict(saved.values()), indent=2, ensure_ascii=False)
        write_text_atomic(Path(out) / LABELS, text + "\n")  # an interrupted write keeps the old names whole
    return {key: name for key, (_, name) in saved.items()}


def _label(algo: str, labels: Labels = None) -> str:
    """The display name of a variant: its ``--label`` if it has one, else its text."""
    key = _canonical(algo)
    return (labels or {}).get(key, key)


def _settings(runs: Sequence[dict[str, Any]], algos: Sequence[str], labels: Mapping[str, str]) -> str:
    first = runs[0]["config"]
    seeds = sorted({run["seed"] for run in runs})
    lines = [
        f"- Budget Δ = {first.total_timesteps:,} environment steps per run; evaluation every "
        f"{first.eval_freq:,} steps, {first.eval_episodes} deterministic episodes; seeds {seeds}.",
        _final_window_line(runs),
        "- LCA (Eq. 10) = Σ_k R(t_k) / Δ over the evaluations (paper's scale when evaluating every 5000 steps).",
        "- FLOPs: multiply-adds executed in training (`sb3_dst.metrics.training_flops`, convention `executed`: "
        "backward = 2 × forward, sparse layers count existing connections, policy delay, targets, action "
        "selection and evolution included); ratio to the dense algorithm of the same family on the same task.",
        "- steps/s: environment steps per second of wall time outside evaluation, one torch thread (machine-bound), "
        "mean over seeds. wall time: each run's hours from start to finish, evaluation included, in seed order; a run "
        "resumed from a checkpoint counts its attempts, not the time between them.",
        _denormal_line(runs),
        "",
        "Hyperparameters (first task; λ may differ per task):",
        "",
    ]
    for algo in algos:
        params = next(run["config"].hyperparams for run in runs if run["algo"] == algo)
        named = f" (`{algo}`)" if _canonical(algo) in labels else ""
        lines.append(f"- {_label(algo, labels)}{named}: `{json.dumps(params, sort_keys=True)}`")
    return "\n".join(lines)


def _final_window_line(runs: Sequence[dict[str, Any]]) -> str:
    """How many evaluations the final return averages: the last 10, or fewer where a run has fewer."""
    used = sorted({run["n_final"] for run in runs})
    if used == [FINAL_WINDOW]:
        return (
            f"- Final return: mean of the last {FINAL_WINDOW} evaluations per seed; tables give mean ± std over seeds."
        )
    counts = " or ".join(str(n) for n in used if n < FINAL_WINDOW)
    short = sum(run["n_final"] < FINAL_WINDOW for run in runs)
    return (
        f"- Final return: mean of the last {FINAL_WINDOW} evaluations per seed where a run has them; "
        f"{short} of {len(runs)} runs have fewer, so their final return averages all of their {counts} evaluations "
        "(not the paper's window). Tables give mean ± std over seeds."
    )


def _denormal_line(runs: Sequence[dict[str, Any]]) -> str:
    flushed = sum(run["config"].flush_denormal for run in runs)
    if flushed == 0:
        return "- Denormal floats were kept (not flushed to zero): dense TD3 slows down as they pile up on CPU."
    if flushed == len(runs):
        return "- Denormal floats were flushed to zero in every run (`--flush-denormal`)."
    return f"- Denormal floats were flushed to zero in {flushed} of {len(runs)} runs: their steps/s are not comparable."


#: Keywords that make a variant sparse; the others (learning rate, network width, ...) are shared with its dense
#: baseline.
DST_KEYWORDS = frozenset({*TOPOLOGY_KEYS, *EVOLUTION_KEYS, *PRUNING_KEYS, "target_pruning"})


def dense_counterpart(algo: str) -> str:
    """The dense algorithm of a variant's family with the variant's other overrides, those that are not DST
    keywords (:data:`DST_KEYWORDS`): ``DS-TD3:sparsity=0.9,learning_rate=0.0003`` -> ``TD3 (learning_rate=0.0003)``
    (canonical text)."""
    return AlgoSpec(DENSE_BASELINE[family(algo)], _shared_overrides(algo)).label


def _shared_overrides(algo: str) -> tuple[tuple[str, Any], ...]:
    """The overrides of a variant that are not DST keywords."""
    return tuple((key, value) for key, value in AlgoSpec.parse(algo).overrides if key not in DST_KEYWORDS)


def _baseline_of(env: str, algo: str, groups: Groups) -> tuple[str | None, list, bool]:
    """The dense baseline of ``algo`` on ``env``: ``(its variant, its runs, whether it is the dense counterpart)``.

    The counterpart (:func:`dense_counterpart`) if it was run; else the family's plain dense algorithm, which is
    the counterpart too when its hyperparameters already have the overridden values (``SAC`` for
    ``DS-SAC:tau=0.005``); else ``(None, [], False)``."""
    counterpart = dense_counterpart(algo)
    for (group_env, group_algo), runs in groups.items():
        if group_env == env and _canonical(group_algo) == counterpart:
            return group_algo, runs, True
    plain = DENSE_BASELINE[family(algo)]
    if not (runs := groups.get((env, plain), [])):
        return None, [], False
    params = runs[0]["config"].hyperparams
    return plain, runs, all(k in params and params[k] == v for k, v in _shared_overrides(algo))


def _run_groups(envs: Sequence[str], algos: Sequence[str], groups: Groups) -> Iterator[tuple[str, str, list]]:
    """(env, algo, its runs) for each group with runs, in table order (env, then algo)."""
    for env in envs:
        for algo in algos:
            if runs := groups.get((env, algo)):
                yield env, algo, runs


def _with_baseline(envs: Sequence[str], algos: Sequence[str], groups: Groups) -> Iterator[tuple[str, str, list, list]]:
    """(env, algo, its runs, the runs of its dense baseline on that env (:func:`_baseline_of`), or []) for each
    group with runs."""
    for env, algo, runs in _run_groups(envs, algos, groups):
        yield env, algo, runs, _baseline_of(env, algo, groups)[1]


def _baseline_line(envs: Sequence[str], algos: Sequence[str], groups: Groups, labels: Mapping[str, str]) -> str:
    """Which dense runs the shares and ratios compare against, for methods with non-DST overrides ("" if none)."""
    notes = []
    for env, algo, _ in _run_groups(envs, algos, groups):
        counterpart = dense_counterpart(algo)
        if counterpart == DENSE_BASELINE[family(algo)] or counterpart == _canonical(algo):
            continue  # only DST overrides, or a dense variant (its own baseline)
        base, _, exact = _baseline_of(env, algo, groups)
        if base is None or (exact and _canonical(base) != counterpart):
            continue  # no baseline, or the plain dense algorithm already has the overridden values
        missing = "" if exact else f" ({counterpart} was not run)"
        notes.append(f"{_label(algo, labels)} on {env} against {_label(base, labels)}{missing}")
    if not notes:
        return ""
    return (
        "Dense baseline of a method with non-DST overrides: the dense algorithm with the same non-DST overrides "
        "where it was run, else the plain dense algorithm. Here: " + "; ".join(notes) + "."
    )


def _mean(runs: Sequence[dict], key: str) -> float:
    return float(np.mean([r[key] for r in runs]))


def _costs_table(envs: Sequence[str], algos: Sequence[str], groups: Groups, labels: Mapping[str, str]) -> str:
    rows = []
    for env, algo, runs, base in _with_baseline(envs, algos, groups):
        flops = _mean(runs, "flops")
        if base:
            ratio = f"1× ({flops:.3g})" if base is runs else f"{flops / _mean(base, 'flops'):.2f}×"
        else:
            ratio = "–"
        rows.append([
            env, _label(algo, labels), f"{flops:.3g}", ratio, f"{int(_mean(runs, 'network_size')):,}",
            _mean_std([r["final_return"] for r in runs], ".1f"), f"{_mean(runs, 'train_steps_per_second'):.0f}",
            _wall_hours(runs),
        ])  # fmt: skip
    header = ["Environment", "Method", "FLOPs", "FLOPs ratio", "Network size S", "Return R", "steps/s", "wall time"]
    return _table(header, rows)


def _wall_hours(runs: Sequence[dict]) -> str:
    """Each run's wall time in hours, in seed order (one run: its time alone)."""
    hours = [r["wall_time"] / 3600 for r in sorted(runs, key=lambda r: r["seed"])]
    return ", ".join(f"{h:.2f}" for h in hours) + " h"


#: Marks a share that cannot be computed because the dense baseline's mean is zero or negative.
NONPOSITIVE = "–¹"
#: Marks a method with fewer finished seeds than its task's other methods or than its run directories.
FEWER_SEEDS = "⚠"


def _planned_seeds(out: Path | None) -> dict[tuple[str, str], set[int]]:
    """The seeds of every run directory under ``out/runs``, finished or not, by (env, variant)."""
    planned: dict[tuple[str, str], set[int]] = defaultdict(set)
    if out is not None:
        for path in sorted((Path(out) / "runs").glob(f"*/{CONFIG}")):
            config = read_json(path)
            planned[config["env_id"], config["algo"]].add(int(config["seed"]))
    return planned


def _asked_seeds(out: Path | None) -> dict[tuple[str, str], set[int]]:
    """The seeds that the ``run`` and ``ablation`` commands recorded in ``out/commands.txt`` asked for, by (env,
    canonical variant text); lines that are not such commands are skipped."""

    asked: dict[tuple[str, str], set[int]] = defaultdict(set)
    path = None if out is None else Path(out) / "commands.txt"
    if path is None or not path.exists():
        return asked
    for line in path.read_text().splitlines():
        try:
            words = shlex.split(line)
        except ValueError:
            continue
        if "sb3_dst.benchmark" not in words or line.lstrip().startswith("#"):
            continue
        try:
            runs = requested_runs(words[words.index("sb3_dst.benchmark") + 1 :])
        except ValueError:
            continue  # a line the harness of this version does not understand: nothing asked that can be checked
        for env, algo, seed in runs:
            try:
                asked[env, _canonical(algo)].add(seed)
            except ValueError:
                continue
    return asked


def seed_shortfalls(
    runs: Sequence[Run], out: Path | None = None
) -> dict[tuple[str, str], tuple[list[int], list[int], list[int]]]:
    """Methods with fewer finished seeds than expected: ``{(env, variant): (finished, unfinished, not run)}``.

    The seeds expected of a method on a task are those the commands in ``out/commands.txt`` asked for, those of its
    own run directories (``out/runs``, finished or not) and the finished or planned seeds of every other method on
    that task: a method whose runs are still going or were never started is flagged, so its aggregate is not read
    as if it had as many runs as asked. A method asked for with no finished run at all is included, with an empty
    list of finished seeds."""
    planned = _planned_seeds(out)
    asked = _asked_seeds(out)
    finished: dict[tuple[str, str], set[int]] = defaultdict(set)
    for run in runs:
        finished[run["env_id"], run["algo"]].add(int(run["seed"]))
    by_env: dict[str, set[int]] = defaultdict(set)
    for (env, _), seeds in [*finished.items(), *planned.items()]:
        by_env[env] |= seeds
    canonical = {(env, _canonical(algo)): (env, algo) for env, algo in [*finished, *planned]}
    expected: dict[tuple[str, str], set[int]] = {key: set(by_env[key[0]]) for key in finished}
    for (env, name), seeds in asked.items():
        key = canonical.get((env, name), (env, name))
        expected[key] = expected.get(key, set(by_env[env])) | seeds
    for key in planned:
        expected.setdefault(key, set(by_env[key[0]]))
    short = {}
    for key, seeds in expected.items():
        done = finished.get(key, set())
        missing = seeds - done
        if missing:
            unfinished = sorted(missing & planned.get(key, set()))
            short[key] = (sorted(done), unfinished, sorted(missing - set(unfinished)))
    return short


def _seed_notes(short: Mapping[tuple[str, str], tuple[list[int], list[int], list[int]]], labels: Labels) -> str:
    """A footnote per flagged method (:func:`seed_shortfalls`), "" if none."""
    notes = []
    for (env, algo), (done, unfinished, absent) in sorted(short.items()):
        finished = f"seed{'s' if len(done) > 1 else ''} {', '.join(map(str, done))} finished"
        parts = [finished if done else "no run finished"]
        if unfinished:
            parts.append(f"{', '.join(map(str, unfinished))} not finished")
        if absent:
            parts.append(f"{', '.join(map(str, absent))} not run")
        notes.append(f"{_label(algo, labels)} on {env}: " + "; ".join(parts))
    if not notes:
        return ""
    return (
        f"{FEWER_SEEDS} Fewer finished seeds than asked (`commands.txt`), than its run directories or than the other "
        "methods of the task, so its mean, std and intervals rest on fewer runs (a method with no finished run is "
        "in no table): " + ". ".join(notes) + "."
    )


def _seeds_cell(env: str, algo: str, runs: Sequence[Run], short: Mapping[tuple[str, str], Any]) -> str:
    if (env, algo) not in short:
        return str(len(runs))
    done, unfinished, absent = short[env, algo]
    return f"{len(done)} of {len(done) + len(unfinished) + len(absent)} {FEWER_SEEDS}"


def _summary_table(
    envs: Sequence[str], algos: Sequence[str], groups: Groups, labels: Mapping[str, str],
    short: Mapping[tuple[str, str], Any] | None = None,
) -> str:  # fmt: skip
    """One row per task and method: seeds, final return and LCA (mean ± std), both as a share of the dense
    baseline's mean (how much of dense performance survives), the training-FLOPs ratio and S; footnotes under the
    table explain each "–" and each flagged seed count."""
    marks: set[str] = set()

    def share(runs: list[dict], base: list[dict], key: str) -> str:
        if not base:
            marks.add("–")
            return "–"
        reference = _mean(base, key)
        if reference <= 0:
            marks.add(NONPOSITIVE)
            return NONPOSITIVE
        return f"{100 * _mean(runs, key) / reference:.0f} %"

    rows = []
    for env, algo, runs, base in _with_baseline(envs, algos, groups):
        rows.append([
            env, _label(algo, labels), _seeds_cell(env, algo, runs, short or {}),
            _mean_std([r["final_return"] for r in runs], ".0f"), share(runs, base, "final_return"),
            _mean_std([r["lca"] for r in runs], ".3f"), share(runs, base, "lca"),
            f"{_mean(runs, 'flops') / _mean(base, 'flops'):.2f}×" if base else "–",
            f"{int(_mean(runs, 'network_size')):,}",
        ])  # fmt: skip
    header = ["Environment", "Method", "seeds", "final R", "R / dense", "LCA", "LCA / dense", "FLOPs ratio", "S"]
    notes = []
    if NONPOSITIVE in marks:
        notes.append(
            f"{NONPOSITIVE} The dense baseline's mean final return (or LCA) on this task is zero or negative: a share "
            "of it would mean nothing (a better method would show a smaller or negative percentage), so compare the "
            "returns themselves, and the probability of improvement below."
        )
    if "–" in marks:
        notes.append("– No dense baseline of this method's family was run on this task.")
    if short and (seed_note := _seed_notes(short, labels)):
        notes.append(seed_note)
    return _table(header, rows) + "".join(f"\n\n{note}" for note in notes)


def _env_groups(runs: Sequence[dict[str, Any]], env_id: str, algos: Sequence[str]) -> list[tuple[str, list[dict]]]:
    """(algo, its runs on ``env_id``) for each of ``algos`` with runs there, in the order of ``algos``."""
    groups = [(algo, [r for r in runs if r["env_id"] == env_id and r["algo"] == algo]) for algo in algos]
    return [(algo, group) for algo, group in groups if group]


def plot_learning_curves(
    runs: Sequence[Run],
    env_id: str,
    path: Path,
    algos: Sequence[str],
    title: str | None = None,
    labels: Labels = None,
    wall_clock: bool = False,
) -> None:
    """One PNG: mean evaluation return over seeds per algorithm, shaded ± one std (named in the legend), against
    environment steps or, with ``wall_clock``, against the hours of wall time at which each evaluation was taken
    (the mean over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    groups = _env_groups(runs, env_id, algos)
    fig, ax = plt.subplots(figsize=(7.5, 4.2 + 0.22 * len(groups)))
    for algo, group in groups:
        length = min(len(r["returns"]) for r in group)
        if wall_clock:
            x = np.mean([r["wall_hours"][:length] for r in group], axis=0)
        else:
            x = group[0]["timesteps"][:length]
        curves = np.stack([r["returns"][:length] for r in group])
        mean, std = curves.mean(axis=0), curves.std(axis=0)
        (line,) = ax.plot(x, mean, label=f"{_label(algo, labels)} (n={len(group)})", linewidth=1.8)
        if len(group) > 1:
            ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2, linewidth=0)
    if any(len(group) > 1 for _, group in groups):
        ax.fill_between([], [], [], color="grey", alpha=0.2, label="shaded: mean ± 1 std over seeds")
    episodes = runs[0]["config"].eval_episodes if runs else 0
    ax.set_ylabel(f"evaluation return (mean of {episodes} episode{'s' if episodes != 1 else ''})")
    ax.set_title(title or f"{env_id}: mean ± std over seeds")
    ax.grid(alpha=0.3)
    if wall_clock:
        ax.set_xlabel("wall time (hours; mean over seeds at each evaluation, evaluations included)")
    else:
        ax.set_xlabel("environment steps")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1000:g}k" if x else "0"))
    # Below the axes: long method labels (``DS-TD3 (sparsity=0.9, growth='gradient', ...)``) neither hide curves
    # nor get cut off.
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), fontsize=8, frameon=False)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def plot_return_vs_flops(
    runs: Sequence[Run], env_id: str, path: Path, algos: Sequence[str], title: str | None = None, labels: Labels = None
) -> bool:
    """One PNG: final return against training FLOPs (log scale), one point per algorithm (mean over seeds, bars ±
    one std, the seeds as small dots), the network size S beside each point: what each method buys with its
    compute. Returns False (and writes nothing) when fewer than two algorithms have runs on ``env_id``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = _env_groups(runs, env_id, algos)
    if len(groups) < 2:
        return False
    fig, ax = plt.subplots(figsize=(7.5, 4.2 + 0.22 * len(groups)))
    for algo, group in groups:
        flops = np.array([r["flops"] for r in group], dtype=float)
        returns = np.array([r["final_return"] for r in group], dtype=float)
        x, y = float(flops.mean()), float(returns.mean())
        container = ax.errorbar(
            x, y, yerr=float(returns.std()) if len(group) > 1 else None, fmt="o", markersize=7, capsize=4,
            label=f"{_label(algo, labels)} (n={len(group)})",
        )  # fmt: skip
        color = container.lines[0].get_color()
        ax.scatter(flops, returns, s=12, color=color, alpha=0.45, linewidths=0)
        size = int(np.mean([r["network_size"] for r in group]))
        ax.annotate(f"S={size:,}", (x, y), textcoords="offset points", xytext=(7, -12), fontsize=8, color=color)
    ax.set_xscale("log")
    ax.set_xlabel("training FLOPs (multiply-adds executed, log scale)")
    ax.set_ylabel(f"final return (mean of the last {FINAL_WINDOW} evaluations)")
    ax.set_title(title or f"{env_id}: final return vs training FLOPs")
    ax.grid(alpha=0.3, which="both")
    ax.margins(x=0.12, y=0.12)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize=8, frameon=False)  # below: no point hidden
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return True


def _sparsity_family(algo: str, labels: Labels = None) -> str | None:
    """The method of a variant that sets ``sparsity``: the ``--label`` of the variant with ``sparsity=*`` if it has
    one, else a label with that value left out (``DS-TD3 (sparsity=…, growth='gradient')``); None when the variant
    does not set ``sparsity``."""
    key = _family_key(algo)
    if key is None:
        return None
    if labels and key in labels:
        return labels[key]
    spec = AlgoSpec.parse(algo)
    rest = [f"{k}={v!r}" for k, v in spec.overrides if k != "sparsity"]
    return f"{spec.base} ({', '.join(['sparsity=…', *rest])})"


def dense_share_by_sparsity(
    runs: Sequence[Run], env_id: str, algos: Sequence[str], labels: Labels = None
) -> dict[str, list[dict[str, float]]]:
    """How much of dense performance survives as sparsity grows, on ``env_id``.

    For each method run at several ``sparsity`` values (variants equal but for ``sparsity``), one point per value,
    in order of sparsity: ``sparsity`` = 1 − S / S_dense (the measured share of the dense network's parameters
    removed, dense output layers and biases included), and the final return and LCA of each seed as a share of the
    dense baseline's mean (``r_mean``/``r_std``, ``lca_mean``/``lca_std``, over ``n`` seeds). Methods with a single
    sparsity level, and tasks without dense baseline runs, give nothing."""
    points: dict[str, list[dict[str, float]]] = defaultdict(list)
    for _, algo, group, base in _with_baseline([env_id], algos, _group(runs)[2]):
        name = _sparsity_family(algo, labels)
        if name is None or not base:
            continue
        dense_r, dense_lca = _mean(base, "final_return"), _mean(base, "lca")
        if dense_r <= 0 or dense_lca <= 0:
            continue  # a share of a non-positive return means nothing
        r_share = [r["final_return"] / dense_r for r in group]
        lca_share = [r["lca"] / dense_lca for r in group]
        points[name].append({
            "sparsity": 1.0 - _mean(group, "network_size") / _mean(base, "network_size"),
            "r_mean": float(np.mean(r_share)), "r_std": float(np.std(r_share)),
            "lca_mean": float(np.mean(lca_share)), "lca_std": float(np.std(lca_share)), "n": len(group),
        })  # fmt: skip
    return {name: sorted(p, key=lambda q: q["sparsity"]) for name, p in points.items() if len(p) > 1}


def plot_dense_share_vs_sparsity(
    runs: Sequence[Run], env_id: str, path: Path, algos: Sequence[str], title: str | None = None, labels: Labels = None
) -> bool:
    """One PNG, two panels (final return, LCA), each as a share of the dense baseline against sparsity, one line
    per method run at several sparsity levels (:func:`dense_share_by_sparsity`), bars ± one std over seeds.
    Returns False (and writes nothing) when no method on ``env_id`` was run at two sparsity levels or more."""
    data = dense_share_by_sparsity(runs, env_id, algos, labels)
    if not data:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import PercentFormatter

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2 + 0.22 * len(data)), sharex=True)
    for name, points in data.items():
        x = [100 * p["sparsity"] for p in points]
        for ax, key in zip(axes, ("r", "lca"), strict=True):
            ax.errorbar(
                x, [100 * p[f"{key}_mean"] for p in points], yerr=[100 * p[f"{key}_std"] for p in points],
                fmt="o-", capsize=3, markersize=5, label=name if key == "r" else None,
            )  # fmt: skip
    for ax, what in zip(axes, ("final return", "LCA"), strict=True):
        ax.axhline(100, color="black", linewidth=1, linestyle="--", label="dense baseline" if what == "LCA" else None)
        ax.set_xlabel("sparsity: parameters removed, 1 − S / S_dense")
        ax.set_ylabel(f"{what}, share of the dense baseline")
        ax.xaxis.set_major_formatter(PercentFormatter(decimals=0))
        ax.yaxis.set_major_formatter(PercentFormatter(decimals=0))
        ax.grid(alpha=0.3)
    fig.suptitle(title or f"{env_id}: how much of dense performance survives (mean ± std over seeds)")
    fig.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), fontsize=8, frameon=False)  # below the panels
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return True


# --- rliable-style aggregates (sb3_dst.benchmark.aggregates) ----------------------------------------------------

#: The paper's Table 1 final returns (v3 environments, 1M steps, 5 seeds): ``{env base name: {method: return}}``.
PAPER_TABLE1: dict[str, dict[str, float]] = {
    "HalfCheetah": {"TD3": 11153, "Static-TD3": 10584, "DS-TD3": 11460},
    "Walker2d": {"TD3": 4042, "Static-TD3": 3951, "DS-TD3": 4871},
    "Hopper": {"TD3": 2185, "Static-TD3": 3571, "DS-TD3": 3587},
}
#: The step budget of the paper's runs: the paper's column appears only next to runs of this budget.
PAPER_STEPS = 1_000_000
PAPER_COLUMN = "Paper (Table 1, v3, 1M steps, 5 seeds)"


def _steps(value: float) -> str:
    """Environment steps, short: ``45k``, ``1M``, ``never``."""
    if math.isinf(value):
        return "never"
    if value >= 1_000_000 and value % 100_000 == 0:
        return f"{value / 1_000_000:g}M"
    return f"{value / 1000:g}k" if value >= 1000 else f"{value:g}"


def _interval_note(runs: Sequence[Run]) -> str:
    fewest = min(len(group) for group in _group(runs)[2].values())
    trim = (
        " With fewer than 4 runs the IQM trims nothing and equals the mean; with 1 run the interval is a point."
        if fewest < 4
        else ""
    )
    return (
        f"Intervals are 95 % stratified-bootstrap percentile intervals ({BOOTSTRAP_REPS:,} replicates resampling "
        f"the seeds of each task, bootstrap seed {BOOTSTRAP_SEED}, so the report regenerates identically; rliable's "
        "method, computed by `sb3_dst.benchmark.aggregates`). IQM = interquartile mean, the mean of the middle 50 % "
        f"of the runs.{trim} With 3 seeds an interval is wide and only a large gap is evidence of a difference."
    )


def _per_task_table(envs: Sequence[str], algos: Sequence[str], groups: Groups, labels: Mapping[str, str]) -> str:
    rows = []
    for env, algo, runs in _run_groups(envs, algos, groups):
        scores = [np.array([r["final_return"] for r in runs])]
        rows.append([
            env, _label(algo, labels), str(len(runs)), _mean_std(list(scores[0]), ".0f"),
            stratified_bootstrap(scores, "mean").format(".0f"), stratified_bootstrap(scores, "iqm").format(".0f"),
        ])  # fmt: skip
    header = ["Environment", "Method", "seeds", "final R, mean ± std (paper's column)", "mean [95 % CI]",
              "IQM [95 % CI]"]  # fmt: skip
    return _table(header, rows)


def normalized_scores(
    envs: Sequence[str], algos: Sequence[str], groups: Groups
) -> tuple[dict[str, dict[str, tuple[np.ndarray, np.ndarray, float]]], list[str]]:
    """Final returns normalized to the dense baseline: ``{variant: {env: (its final returns, its baseline's final
    returns, the baseline's mean)}}`` over the tasks where the baseline was run and its mean final return is
    positive; the normalized score of a run is its final return over that mean. Also returns the tasks left out
    because a baseline's mean there is zero or negative."""
    scores: dict[str, dict[str, tuple[np.ndarray, np.ndarray, float]]] = defaultdict(dict)
    skipped = []
    for env, algo, runs, base in _with_baseline(envs, algos, groups):
        if not base:
            continue
        reference = _mean(base, "final_return")
        if reference <= 0:
            skipped.append(env)
            continue
        own = np.array([r["final_return"] for r in runs])
        scores[algo][env] = (own, np.array([r["final_return"] for r in base]), reference)
    return dict(scores), sorted(set(skipped))


def _is_dense(algo: str) -> bool:
    return _canonical(algo) == dense_counterpart(algo)


def _poi_reading(poi: Interval) -> str:
    """What a probability of improvement's interval says: above or below the dense baseline, or undecided."""
    if poi.low > 0.5:
        return "above dense"
    if poi.high < 0.5:
        return "below dense"
    return "undecided (CI contains 0.5)"


def _across_tasks_table(
    envs: Sequence[str], algos: Sequence[str], groups: Groups, labels: Mapping[str, str]
) -> tuple[str, dict[str, list[np.ndarray]]]:
    """Per method, over the tasks with a positive dense baseline: IQM and mean of the normalized final return and
    P(method > dense baseline), each with its interval; also returns the normalized scores per method (one array
    per task) for the performance profile."""
    scores, _ = normalized_scores(envs, algos, groups)
    rows, normalized = [], {}
    for algo in algos:
        if algo not in scores:
            continue
        per_env = scores[algo]
        tasks = [own / reference for own, _, reference in per_env.values()]
        normalized[algo] = tasks
        if _is_dense(algo):
            improvement, reading = "– (the baseline)", "–"
        else:
            poi = probability_of_improvement(
                [own for own, _, _ in per_env.values()], [base for _, base, _ in per_env.values()]
            )
            improvement, reading = poi.format(".2f"), _poi_reading(poi)
        base_names = sorted({_label(_baseline_of(env, algo, groups)[0] or "", labels) for env in per_env})
        rows.append([
            _label(algo, labels), ", ".join(base_names), str(len(tasks)), str(sum(len(t) for t in tasks)),
            stratified_bootstrap(tasks, "iqm").format(".2f"), stratified_bootstrap(tasks, "mean").format(".2f"),
            improvement, reading,
        ])  # fmt: skip
    header = ["Method", "dense baseline", "tasks", "runs", "IQM of R / dense [95 % CI]", "mean of R / dense [95 % CI]",
              "P(method > dense) [95 % CI]", "reading"]  # fmt: skip
    return _table(header, rows), normalized


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _runs_tasks(runs: int, tasks: int) -> str:
    return f"n={runs} run{'s' if runs != 1 else ''}, {tasks} task{'s' if tasks != 1 else ''}"


def plot_performance_profile(normalized: Mapping[str, list[np.ndarray]], path: Path, labels: Labels = None) -> None:
    """One PNG: for each method, the fraction of runs whose final return over the dense baseline's mean exceeds τ,
    against τ, with its 95 % stratified-bootstrap band."""
    plt = _plt()
    top = max(float(np.max(t)) for tasks in normalized.values() for t in tasks)
    bottom = min(float(np.min(t)) for tasks in normalized.values() for t in tasks)
    margin = 0.05 * max(top - bottom, 0.1)
    taus = np.linspace(min(0.9, bottom - margin), max(1.1, top + margin), 161)
    fig, ax = plt.subplots(figsize=(7.5, 4.2 + 0.22 * len(normalized)))
    for algo, tasks in normalized.items():
        value, low, high = performance_profile(tasks, taus)
        n = sum(len(t) for t in tasks)
        (line,) = ax.plot(taus, value, label=f"{_label(algo, labels)} ({_runs_tasks(n, len(tasks))})", linewidth=1.8)
        ax.fill_between(taus, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.fill_between([], [], [], color="grey", alpha=0.2, label="shaded: 95 % stratified-bootstrap CI")
    ax.axvline(1.0, color="black", linewidth=1, linestyle="--", label="dense baseline's mean final return")
    ax.set_xlabel("τ, final return / dense baseline's mean final return on the task")
    ax.set_ylabel("fraction of runs with score > τ")
    ax.set_title("Performance profile (final return normalized to the dense baseline)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), fontsize=8, frameon=False)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def sample_efficiency(
    envs: Sequence[str], algos: Sequence[str], groups: Groups
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, int]]:
    """Per method, the IQM over runs and tasks of the evaluation return normalized to the dense baseline's mean
    final return, at each evaluation step that all its runs share: ``{variant: (steps, iqm, low, high, runs,
    tasks)}`` (tasks with a positive dense baseline only)."""
    scores, _ = normalized_scores(envs, algos, groups)
    curves = {}
    for algo, per_env in scores.items():
        group_runs = {env: groups[env, algo] for env in per_env}
        common = set.intersection(*(set(r["timesteps"].tolist()) for runs in group_runs.values() for r in runs))
        steps = np.array(sorted(common))
        if len(steps) == 0:
            continue
        tasks = []
        for env, runs in group_runs.items():
            reference = per_env[env][2]
            rows = [r["returns"][np.searchsorted(r["timesteps"], steps)] / reference for r in runs]
            tasks.append(np.stack(rows))
        value, low, high = bootstrap_curve(tasks, "iqm")
        curves[algo] = (steps, value, low, high, sum(len(t) for t in tasks), len(tasks))
    return curves


def plot_sample_efficiency(curves: Mapping[str, tuple], path: Path, labels: Labels = None) -> None:
    """One PNG of :func:`sample_efficiency`: IQM of the normalized return over steps, 95 % CI bands."""
    plt = _plt()
    from matplotlib.ticker import FuncFormatter

    fig, ax = plt.subplots(figsize=(7.5, 4.2 + 0.22 * len(curves)))
    for algo, (steps, value, low, high, n, tasks) in curves.items():
        (line,) = ax.plot(steps, value, label=f"{_label(algo, labels)} ({_runs_tasks(n, tasks)})", linewidth=1.8)
        ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.fill_between([], [], [], color="grey", alpha=0.2, label="shaded: 95 % stratified-bootstrap CI of the IQM")
    ax.axhline(1.0, color="black", linewidth=1, linestyle="--", label="dense baseline's mean final return")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("IQM of evaluation return / dense final return")
    ax.set_title("Sample efficiency: IQM over runs and tasks, normalized to the dense baseline")
    ax.grid(alpha=0.3)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1000:g}k" if x else "0"))
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), fontsize=8, frameon=False)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def _reach_cell(steps: Sequence[float], budget: float) -> tuple[str, str, str]:
    """(per-seed steps, median [95 % CI], median as a share of the budget) of the steps to reach a target."""
    per_seed = ", ".join(_steps(s) for s in steps)
    speed = learning_speed(steps)
    never = sum(math.isinf(s) for s in steps)
    over = f"> {_steps(budget)}"
    if never == len(steps):
        return per_seed, f"{over}, {'all ' if never > 1 else ''}{never} seed{'s' if never > 1 else ''} never", "> 100 %"
    text = over if math.isinf(speed.value) else _steps(speed.value)
    text += f" [{_steps(speed.low) if not math.isinf(speed.low) else over}, "
    text += f"{_steps(speed.high) if not math.isinf(speed.high) else over}]"
    if never:
        text += f", {never} of {len(steps)} seed{'s' if len(steps) > 1 else ''} never"
    share = "> 100 %" if math.isinf(speed.value) else f"{100 * speed.value / budget:.0f} %"
    return per_seed, text, share


def _learning_speed_table(envs: Sequence[str], algos: Sequence[str], groups: Groups, labels: Mapping[str, str]) -> str:
    """Per task and method: the evaluation step at which each seed first reaches the dense baseline's mean final
    return (and 90 % of it), with the median over seeds and its interval."""
    rows = []
    nonpositive = False
    for env, algo, runs, base in _with_baseline(envs, algos, groups):
        if not base:
            continue
        target = _mean(base, "final_return")
        budget = float(max(r["total_timesteps"] for r in runs))
        full = _reach_cell([first_step_reaching(r["timesteps"], r["returns"], target) for r in runs], budget)
        if target > 0:
            ninety = _reach_cell([first_step_reaching(r["timesteps"], r["returns"], 0.9 * target) for r in runs],
                                 budget)  # fmt: skip
        else:
            nonpositive = True
            ninety = (NONPOSITIVE, NONPOSITIVE, NONPOSITIVE)
        rows.append([env, _label(algo, labels), f"{target:.0f}", *full, *ninety])
    if not rows:
        return ""
    header = ["Environment", "Method", "target: dense final R", "steps to 100 % (per seed)", "median [95 % CI]",
              "share of Δ", "steps to 90 % (per seed)", "median [95 % CI]", "share of Δ"]  # fmt: skip
    note = f"\n\n{NONPOSITIVE} 90 % of a zero or negative return is not below it: not computed." if nonpositive else ""
    return _table(header, rows) + note


def _paper_table(
    envs: Sequence[str], algos: Sequence[str], groups: Groups, labels: Mapping[str, str],
    short: Mapping[tuple[str, str], Any] | None = None,
) -> str:  # fmt: skip
    """Our final returns beside the paper's Table 1, for runs of the paper's budget (1M steps) of TD3, Static-TD3
    and DS-TD3 without overrides on HalfCheetah, Walker2d and Hopper; "" when there are none."""
    rows = []
    for env, algo, runs in _run_groups(envs, algos, groups):
        paper = PAPER_TABLE1.get(env.partition("-")[0], {}).get(_canonical(algo))
        if paper is None or any(r["total_timesteps"] != PAPER_STEPS for r in runs):
            continue
        scores = [np.array([r["final_return"] for r in runs])]
        mean = float(np.mean(scores[0]))
        rows.append([
            env, _label(algo, labels), _seeds_cell(env, algo, runs, short or {}), _mean_std(list(scores[0]), ".0f"),
            stratified_bootstrap(scores, "iqm").format(".0f"), f"{paper:.0f}", f"{100 * mean / paper:.0f} %",
        ])  # fmt: skip
    if not rows:
        return ""
    header = ["Environment", "Method", "seeds", "ours: final R, mean ± std", "ours: IQM [95 % CI]", PAPER_COLUMN,
              "ours / paper"]  # fmt: skip
    return _table(header, rows) + (
        "\n\nThe paper's numbers are mean returns over the last 10 evaluations of 5 seeds on the v3 environments "
        "(mujoco-py); ours are the same statistic on the environment versions named in the first column, with the "
        "seeds counted in the table. Different environment versions and seed counts: read the comparison as a "
        "check of the order of magnitude and of the ranking, not as a test."
    )


def _aggregate_sections(
    out: Path, envs: Sequence[str], algos: Sequence[str], groups: Groups, labels: Mapping[str, str], runs: list[Run]
) -> list[str]:
    """The report's rliable-style sections (per task, across tasks, the two plots) and its learning-speed section,
    as Markdown lines; writes ``performance_profile.png`` and ``sample_efficiency.png`` where there is a dense
    baseline to normalize to."""
    parts = ["## Aggregates with 95 % confidence intervals", "", _interval_note(runs), ""]
    parts += ["**Per task: final return R**", "", _per_task_table(envs, algos, groups, labels), ""]
    table, normalized = _across_tasks_table(envs, algos, groups, labels)
    _, skipped = normalized_scores(envs, algos, groups)
    parts += ["**Across tasks: final return normalized to the dense baseline (R / dense)**", ""]
    for name in ("performance_profile.png", "sample_efficiency.png"):
        (out / name).unlink(missing_ok=True)  # a plot of an earlier report must not outlive its data
    if normalized:
        parts += [
            "Each run's final return is divided by the mean final return of its family's dense baseline on the "
            "same task (TD3 for the TD3 variants, SAC for the SAC ones, ...; see the Summary), so the dense "
            "baseline's mean is 1. P(method > dense) is the probability that a run of the method ends above a run "
            "of the dense baseline on the same task (ties count half), averaged over tasks; 0.5 means no "
            'difference. "reading" says whether its interval lies above or below 0.5. With 3 seeds the bootstrap '
            "understates the uncertainty: an interval of [0.00, 0.00] means every run of the method ended below "
            "every dense run, not that the method is worse for certain.",
            "",
            table,
            "",
        ]
        plot_performance_profile(normalized, out / "performance_profile.png", labels)
        parts += ["![Performance profile](performance_profile.png)", ""]
        parts += ["Performance profile: the fraction of runs whose R / dense exceeds τ; shaded bands: 95 % "
                  "stratified-bootstrap confidence intervals.", ""]  # fmt: skip
        curves = sample_efficiency(envs, algos, groups)
        if curves:
            plot_sample_efficiency(curves, out / "sample_efficiency.png", labels)
            parts += ["![Sample efficiency](sample_efficiency.png)", ""]
            parts += ["Sample efficiency: IQM over runs and tasks of each evaluation's return divided by the dense "
                      "baseline's mean final return on the task; shaded bands: 95 % stratified-bootstrap confidence "
                      "intervals of the IQM.", ""]  # fmt: skip
    else:
        parts += ["None: no method here has its dense baseline run on the same task (or that baseline's mean final "
                  "return is zero or negative).", ""]  # fmt: skip
    if skipped:
        parts += [f"Left out of the normalized aggregates: {', '.join(skipped)}, where a dense baseline's mean "
                  "final return is zero or negative (a ratio to it means nothing).", ""]  # fmt: skip
    speed = _learning_speed_table(envs, algos, groups, labels)
    parts += ["## Learning speed: steps to reach the dense baseline's final return", ""]
    if speed:
        parts += [
            "For each seed, the first evaluation step whose return reaches the dense baseline's mean final return "
            'on the task (the target), and 90 % of it; "never" if no evaluation within the budget Δ does. One '
            "evaluation at or above the target counts, so a noisy curve can reach it early. The "
            "median over seeds has a 95 % bootstrap interval over seeds; a median or bound beyond the budget reads "
            "\"> Δ\". The paper's claim to check: DS-TD3 reaches TD3's final performance with 40-50 % of the "
            "steps (at 1M steps). The dense baseline's own row shows when its seeds first reach their mean.",
            "",
            speed,
            "",
        ]
    else:
        parts += ["None: no dense baseline was run, so there is no target to reach.", ""]
    return parts


def write_report(out: Path, title: str | None = None) -> Path | None:
    """Write ``out/report.md``, ``out/learning_curves_<env>.png`` (against steps),
    ``out/learning_curves_wall_<env>.png`` (against wall time), ``out/return_vs_flops_<env>.png`` and, where a
    method was run at several sparsity levels, ``out/dense_share_<env>.png``, naming variants by the labels of
    ``out/labels.json`` (:func:`save_labels`); returns the report path (None if no runs)."""
    out = Path(out)
    runs = load_runs(out)
    if not runs:
        return None
    envs, algos, groups = _group(runs)
    labels = read_labels(out)

    def cell(env: str, algo: str, key: str, fmt: str) -> str:
        return _mean_std([r[key] for r in groups.get((env, algo), [])], fmt)

    header = ["Environment", *[_label(a, labels) for a in algos]]
    final = _table(header, [[env, *[cell(env, a, "final_return", ".1f") for a in algos]] for env in envs])
    lca = _table(header, [[env, *[cell(env, a, "lca", ".4f") for a in algos]] for env in envs])
    parts = [f"# {title or 'Benchmark results'}", ""]
    commands = out / "commands.txt"
    if commands.exists():
        parts += ["Commands:", "", "```", commands.read_text().strip(), "```", ""]
    baseline_line = _baseline_line(envs, algos, groups, labels)
    parts += [_settings(runs, algos, labels), "", *([baseline_line, ""] if baseline_line else [])]
    short = seed_shortfalls(runs, out)
    parts += ["## Summary", "", _summary_table(envs, algos, groups, labels, short), ""]
    if paper := _paper_table(envs, algos, groups, labels, short):
        parts += ["## Side by side with the paper's Table 1", "", paper, ""]
    parts += ["## Final return R (Table 2)", "", final, ""]
    parts += ["## Learning curve area, LCA (Eq. 10, Table 1)", "", lca, ""]
    parts += ["## Costs (Table 3)", "", _costs_table(envs, algos, groups, labels), ""]
    parts += _aggregate_sections(out, envs, algos, groups, labels, runs)
    parts += ["## Learning curves", ""]
    for env in envs:
        png = out / f"learning_curves_{env}.png"
        plot_learning_curves(runs, env, png, algos, title=f"{title}: {env}" if title else None, labels=labels)
        parts.append(f"![{env}]({png.name})")
    parts += ["", "Lines: mean evaluation return over seeds; shaded bands: ± 1 std over seeds (population std), drawn "
              "for methods with more than one seed."]  # fmt: skip
    parts += ["", "## Learning curves against wall time", ""]
    for env in envs:
        png = out / f"learning_curves_wall_{env}.png"
        plot_learning_curves(runs, env, png, algos, f"{title}: {env}" if title else None, labels, wall_clock=True)
        parts.append(f"![{env}: return vs wall time]({png.name})")
    parts += ["", "The same curves against the wall time at which each evaluation was taken (mean over seeds): where "
              "methods differ in cost per step, which is ahead after the same time. Wall time is this machine's, "
              "with its load (runs side by side, pauses for other work): read the ratios between methods of one "
              "campaign, not the hours."]  # fmt: skip
    costs = [
        env for env in envs if plot_return_vs_flops(runs, env, out / f"return_vs_flops_{env}.png", algos, labels=labels)
    ]
    if costs:
        parts += ["", "## Final return vs training FLOPs", ""]
        parts += [f"![{env}: return vs FLOPs](return_vs_flops_{env}.png)" for env in costs]
        parts += ["", "Points: mean over seeds; bars: ± 1 std over seeds (population std); small dots: the seeds."]
    shares = [
        env
        for env in envs
        if plot_dense_share_vs_sparsity(runs, env, out / f"dense_share_{env}.png", algos, labels=labels)
    ]
    if shares:
        parts += ["", "## Share of dense performance vs sparsity", ""]
        parts += [f"![{env}: share of dense vs sparsity](dense_share_{env}.png)" for env in shares]
        parts += ["", "Points: mean over seeds of each seed's share of the dense baseline's mean; bars: ± 1 std over "
                  "seeds (population std)."]  # fmt: skip
    path = out / "report.md"
    path.write_text("\n".join(parts) + "\n")
    return path
