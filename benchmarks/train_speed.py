"""Time per gradient step of ``train()`` on the masked and sparse backends (issue #26), and the per-layer
measurements behind the ``"auto"`` rule.

Two parts, one process, one torch thread, denormals flushed:

- ``models``: for each model (DSSAC and DSCrossQ with 1024-1024 or 2048-2048 critics and a 256-256 actor, at
  80, 90, 95 and 98 % sparsity, batch 256; DSTD3 with the paper's 256-256 networks, λ = (7, 64), batch 100),
  ``train()`` of four versions with the same replay data: ``sparse_backend="masked"``, ``"sparse"``,
  ``"auto"``, and SB3's (or sb3-contrib's) dense algorithm with the same network shapes. Blocks of
  ``--steps`` gradient steps alternate between the four, ``--rounds`` times; each version's time per step is the
  median over rounds, and each ratio the median of the per-round ratios (robust to a machine's drifts).
- ``layers``: forward plus backward (input and weight gradients) of one sparse layer, torch's dense product on
  the masked weight against the sparse kernels, over widths, batches and densities: where the kernels win.
- ``payoff``: the agents of the payoff campaigns (``benchmarks/results/wide_*``) as their runs were configured,
  and the dense algorithm at their wide agent's widths, per gradient step in alternating blocks.

    python benchmarks/train_speed.py models --out benchmarks/results/train_speed/models.json
    python benchmarks/train_speed.py layers --out benchmarks/results/train_speed/layers.json
    python benchmarks/train_speed.py payoff --out benchmarks/results/train_speed/payoff.json
    python benchmarks/train_speed.py report --out benchmarks/results/train_speed

Results are written after each model or layer, and a rerun skips what its JSON already holds (``--redo`` to time
again). The report (``report.md``) states the issue's bars next to the measured ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch as th
import torch.nn.functional as F
from stable_baselines3.common.logger import configure
from tqdm import tqdm

import sb3_dst
from sb3_dst.benchmark.worker import code_version, machine_info
from sb3_dst.common.masking import sparse_layers

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overhead import fill_buffers  # the same random transitions in every model's buffer

BACKENDS = ("masked", "sparse", "auto")
ENV_ID = "HalfCheetah-v5"


def model_specs() -> list[dict[str, Any]]:
    """The models of the issue's bar: wide sparse SAC and CrossQ critics, and the paper's DSTD3."""
    specs = []
    for algo, dense in (("DSSAC", "SAC"), ("DSCrossQ", "CrossQ")):
        for width in (1024, 2048):
            for sparsity in (0.8, 0.9, 0.95, 0.98):
                specs.append(
                    dict(
                        name=f"{algo} {width}-{width} critics, sparsity {sparsity}", algo=algo, dense=dense,
                        width=width, sparsity=sparsity, batch_size=256,
                    )
                )  # fmt: skip
    specs.append(dict(name="DSTD3 paper (256-256, λ = 7, 64)", algo="DSTD3", dense="TD3", width=256, batch_size=100))
    return specs


def build(spec: dict[str, Any], backend: str | None) -> Any:
    """One version of ``spec``: a DST model on ``backend``, or the dense algorithm (``backend=None``)."""
    if spec["algo"] == "DSTD3":
        kwargs: dict[str, Any] = dict(policy_kwargs=dict(net_arch=[256, 256]), learning_rate=1e-3)
        sparse_kwargs: dict[str, Any] = dict(er_lambda=[7.0, 64.0])
    else:
        kwargs = dict(policy_kwargs=dict(net_arch=dict(pi=[256, 256], qf=[spec["width"]] * 2)))
        sparse_kwargs = dict(sparsity=spec["sparsity"])
    kwargs.update(batch_size=spec["batch_size"], learning_starts=0, seed=0, device="cpu")
    if backend is None:
        if spec["dense"] == "CrossQ":
            from sb3_contrib import CrossQ as dense_cls
        else:
            import stable_baselines3

            dense_cls = getattr(stable_baselines3, spec["dense"])
        model = dense_cls("MlpPolicy", ENV_ID, **kwargs)
    else:
        model = getattr(sb3_dst, spec["algo"])("MlpPolicy", ENV_ID, sparse_backend=backend, **sparse_kwargs, **kwargs)
    model.set_logger(configure(None, [""]))
    return model


def time_models(out: Path, rounds: int, steps: int, redo: bool, only: str | None) -> None:
    results = _load(out)
    specs = [s for s in model_specs() if only is None or only in s["name"]]
    for spec in tqdm(specs, desc="models", file=sys.stderr):
        if spec["name"] in results["models"] and not redo:
            continue
        versions = {backend: build(spec, backend) for backend in BACKENDS}
        versions["dense"] = build(spec, None)
        fill_buffers(ENV_ID, list(versions.values()), 2000, seed=0)
        times = _time_alternating(
            {name: (model, spec["batch_size"]) for name, model in versions.items()}, rounds, steps
        )
        per_step = {name: statistics.median(values) * 1e3 for name, values in times.items()}

        def ratio(a: str, b: str, times: dict[str, list[float]] = times) -> float:
            return statistics.median(x / y for x, y in zip(times[a], times[b], strict=True))

        layers = [
            dict(
                shape=[layer.out_features, layer.in_features], density=_density(layer), kernels=_on_kernels(layer, spec)
            )
            for layer in sparse_layers(versions["auto"].critic)
        ]
        results["models"][spec["name"]] = dict(
            spec=spec, ms_per_step=per_step, rounds=rounds, steps=steps,
            masked_over_sparse=ratio("masked", "sparse"), masked_over_auto=ratio("masked", "auto"),
            auto_over_masked=ratio("auto", "masked"), dense_over_sparse=ratio("dense", "sparse"),
            critic_layers_auto=layers,
        )  # fmt: skip
        _save(out, results)


def _time_alternating(models: dict[str, tuple[Any, int]], rounds: int, steps: int) -> dict[str, list[float]]:
    """Seconds per gradient step of each ``name: (model, batch size)``, one value per round: blocks of ``steps``
    gradient steps alternate between the models, in reverse order every other round, after a warm-up (kernels
    loaded, indices built, optimizer states made)."""
    times: dict[str, list[float]] = {name: [] for name in models}
    for model, batch_size in models.values():
        model.train(gradient_steps=2, batch_size=batch_size)
    for round_ in range(rounds):
        for name in list(models) if round_ % 2 == 0 else list(reversed(models)):
            model, batch_size = models[name]
            start = time.perf_counter()
            model.train(gradient_steps=steps, batch_size=batch_size)
            times[name].append((time.perf_counter() - start) / steps)
    return times


PAYOFF_CAMPAIGNS = ("wide_crossq_100k", "wide_sac_100k")


def payoff_specs(results_dir: Path) -> list[dict[str, Any]]:
    """The agents of the payoff campaigns (issue #26), as their runs were configured (each method's seed-0
    ``config.json``), plus the dense algorithm at the wide agent's widths, which the campaigns could not afford."""
    specs = []
    for campaign in PAYOFF_CAMPAIGNS:
        directory = results_dir / campaign
        labels = json.loads((directory / "labels.json").read_text()) if (directory / "labels.json").exists() else {}
        configs = {}
        for path in sorted(directory.glob("runs/*__seed0/config.json")):
            config = json.loads(path.read_text())
            configs[config["algo"]] = config
        if not configs:
            continue
        dense = next(config for algo, config in configs.items() if ":" not in algo and not algo.startswith("DS-"))
        for algo, config in configs.items():
            role = "dense" if config is dense else "sparse"
            specs.append(
                dict(name=f"{campaign}: {labels.get(algo, algo)}", campaign=campaign, config=config, role=role)
            )
        wide_arch = max(
            (config["hyperparams"]["policy_kwargs"]["net_arch"] for config in configs.values()), key=_widest
        )
        wide_dense = json.loads(json.dumps(dense))
        wide_dense["hyperparams"]["policy_kwargs"]["net_arch"] = wide_arch
        widths = _widest(wide_arch)
        specs.append(dict(name=f"{campaign}: {dense['algo']} {widths} (dense, not run)", campaign=campaign,
                          config=wide_dense, role="dense wide"))  # fmt: skip
    return specs


def _widest(net_arch: Any) -> int:
    layers = [width for part in net_arch.values() for width in part] if isinstance(net_arch, dict) else net_arch
    return max(layers)


def time_payoff(out: Path, rounds: int, steps: int, results_dir: Path) -> None:
    """Time per gradient step of the payoff campaigns' agents, each campaign's agents side by side in alternating
    blocks on the same replay data (its dense narrow agent, its sparse agents, and the dense wide agent)."""
    from sb3_dst.benchmark.specs import RunConfig
    from sb3_dst.benchmark.worker import build_model

    results = _load(out)
    results.setdefault("payoff", {})
    specs = payoff_specs(results_dir)
    for campaign in tqdm(sorted({spec["campaign"] for spec in specs}), desc="payoff", file=sys.stderr):
        models, roles = {}, {}
        for spec in (spec for spec in specs if spec["campaign"] == campaign):
            config = RunConfig.from_json(spec["config"])
            config.hyperparams["buffer_size"] = 10_000  # the step's cost does not depend on the unused capacity
            model = build_model(config, ENV_ID)
            model.set_logger(configure(None, [""]))
            models[spec["name"]] = (model, int(config.hyperparams["batch_size"]))
            roles[spec["name"]] = spec["role"]
        fill_buffers(ENV_ID, [model for model, _ in models.values()], 2000, seed=0)
        times = _time_alternating(models, rounds, steps)
        for name, values in times.items():
            results["payoff"][name] = dict(campaign=campaign, role=roles[name], rounds=rounds, steps=steps,
                                           ms_per_step=statistics.median(values) * 1e3)  # fmt: skip
        _save(out, results)


def _density(layer: Any) -> float:
    return float(layer.weight_mask.mean())


def _on_kernels(layer: Any, spec: dict[str, Any]) -> bool:
    from sb3_dst.common.sparse_backend import uses_sparse_kernels

    return uses_sparse_kernels(layer, spec["batch_size"])


def time_layers(out: Path, repeats: int, redo: bool) -> None:
    """Forward + backward of one layer: torch's dense product on the masked weight vs the sparse kernels."""
    from sb3_dst.common.masking import add_mask
    from sb3_dst.common.sparse_backend import set_backend

    results = _load(out)
    grid = [
        (width, batch, density)
        for width in (256, 1024, 2048)
        for batch in (16, 100, 256)
        for density in (0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5)
    ]
    for width, batch, density in tqdm(grid, desc="layers", file=sys.stderr):
        key = f"{width}x{width} batch {batch} density {density}"
        if key in results["layers"] and not redo:
            continue
        th.manual_seed(0)
        layer = th.nn.Linear(width, width)
        add_mask(layer, round(density * width * width))
        set_backend(layer, "sparse")
        weight, bias = layer.weight.detach().clone().requires_grad_(), layer.bias.detach().clone().requires_grad_()
        x = th.randn(batch, width, requires_grad=True)
        grad = th.randn(batch, width)

        # Each call starts from no gradient, as a training step does after zero_grad(): accumulating into the
        # gradients of earlier calls would time an addition that training never makes.
        def dense(x: th.Tensor = x, weight: th.Tensor = weight, bias: th.Tensor = bias, grad: th.Tensor = grad) -> None:
            _forget_gradients(x, weight, bias)
            F.linear(x, weight, bias).backward(grad)

        def sparse(layer: th.nn.Module = layer, x: th.Tensor = x, grad: th.Tensor = grad) -> None:
            _forget_gradients(x, *layer.parameters())
            layer(x).backward(grad)

        functions = {"dense": dense, "sparse": sparse}
        reference = _sparseprop_layer(layer)
        if reference is not None:

            def sparseprop(module: th.nn.Module = reference, x: th.Tensor = x, grad: th.Tensor = grad) -> None:
                _forget_gradients(x, *module.parameters())
                module(x).backward(grad)

            functions["sparseprop"] = sparseprop
        timings: dict[str, list[float]] = {name: [] for name in functions}
        for function in functions.values():
            function()
        for _ in range(repeats):
            for name, function in functions.items():
                start = time.perf_counter()
                function()
                timings[name].append(time.perf_counter() - start)
        ms = {name: statistics.median(values) * 1e3 for name, values in timings.items()}
        results["layers"][key] = dict(
            width=width, batch=batch, density=density, ms=ms, dense_over_sparse=ms["dense"] / ms["sparse"],
            dense_over_sparseprop=ms["dense"] / ms["sparseprop"] if "sparseprop" in ms else None,
        )  # fmt: skip
        _save(out, results)


def _forget_gradients(*tensors: th.Tensor) -> None:
    for tensor in tensors:
        tensor.grad = None


def _sparseprop_layer(layer: th.nn.Linear) -> th.nn.Module | None:
    """The same layer as SparseProp's ``SparseLinear`` (IST-DASLab; a benchmark-only reference, not a dependency:
    ``pip install pybind11 && pip install --no-build-isolation sparseprop``), or None if it is not installed."""
    try:
        from sparseprop.modules import SparseLinear as SparsePropLinear
    except ImportError:
        return None
    bias = th.nn.Parameter(layer.bias.detach().clone())
    return SparsePropLinear(layer.weight.detach().clone(), bias)  # type: ignore[no-any-return]


def _load(out: Path) -> dict[str, Any]:
    if out.exists():
        data = json.loads(out.read_text())
        data.setdefault("models", {})
        data.setdefault("layers", {})
        return data
    return {"models": {}, "layers": {}}


def _save(out: Path, results: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    results["machine"] = machine_info()
    results["sb3_dst"] = code_version(Path(__file__))
    results["torch_threads"] = th.get_num_threads()
    results["denormals_flushed"] = th.set_flush_denormal(True)  # main() flushed them; this says whether it could
    results["measured_utc"] = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=2, sort_keys=True))
    os.replace(tmp, out)


BARS = (
    ("1024-1024 critics, sparsity 0.9", "masked_over_sparse", 2.0, "sparse at least 2x faster than masked"),
    ("1024-1024 critics, sparsity 0.95", "masked_over_sparse", 3.5, "sparse at least 3.5x faster than masked"),
)


def write_report(directory: Path) -> Path:
    """``report.md``: the models' times and ratios, the issue's bars, and the layers' break-even densities."""
    lines = ["# Training speed: masked vs sparse backend", ""]
    models = _load(directory / "models.json")
    layers = _load(directory / "layers.json")
    machine = models.get("machine") or layers.get("machine") or {}
    lines += [
        f"Machine: {machine.get('cpu', '?')}, {machine.get('torch_cpu_capability', '?')}, one torch thread.",
        "",
        *(f"- {_provenance(name, data)}" for name, data in (("models.json", models), ("layers.json", layers))),
        "",
        "## Time per gradient step of train()",
        "",
        "Median over alternating rounds; ratios are medians of per-round ratios. `auto` layers: the critic's sparse "
        "layers the auto rule puts on the kernels.",
        "",
        "| model | dense (ms) | masked (ms) | sparse (ms) | auto (ms) | masked / sparse | auto / masked | "
        "dense / sparse | auto on kernels |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in models["models"].items():
        ms = row["ms_per_step"]
        on = sum(layer["kernels"] for layer in row["critic_layers_auto"])
        lines.append(
            f"| {name} | {ms['dense']:.1f} | {ms['masked']:.1f} | {ms['sparse']:.1f} | {ms['auto']:.1f} | "
            f"{row['masked_over_sparse']:.2f}x | {row['auto_over_masked']:.3f} | {row['dense_over_sparse']:.2f}x | "
            f"{on} of {len(row['critic_layers_auto'])} |"
        )
    lines += ["", "## The issue's bars", ""]
    for algo in ("DSSAC", "DSCrossQ"):
        for suffix, key, bar, text in BARS:
            row = models["models"].get(f"{algo} {suffix}")
            if row is not None:
                verdict = "met" if row[key] >= bar else "NOT met"
                lines.append(f"- {algo} {suffix}: {text}: {row[key]:.2f}x, {verdict}")
    worst = max((row["auto_over_masked"], name) for name, row in models["models"].items()) if models["models"] else None
    if worst is not None:
        verdict = "met" if worst[0] <= 1.03 else "NOT met"
        lines.append(f"- auto never more than 3 % slower than masked: worst {worst[0]:.3f} ({worst[1]}), {verdict}")
    if layers["layers"]:
        lines += [
            "",
            "## One layer, forward + backward: dense product / sparse kernels",
            "",
            "Each cell: how many times faster than torch's dense product on the masked weight (forward, input and "
            "weight gradients), sb3-dst's kernels first, then SparseProp's (IST-DASLab, one thread) where it ran.",
            "",
            "| width | batch | " + " | ".join(f"d={d}" for d in (0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5)) + " |",
            "| --- | --- | " + " | ".join("---" for _ in range(7)) + " |",
        ]
        for width in (256, 1024, 2048):
            for batch in (16, 100, 256):
                cells = []
                for density in (0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5):
                    row = layers["layers"].get(f"{width}x{width} batch {batch} density {density}")
                    if row is None:
                        cells.append("")
                    elif row.get("dense_over_sparseprop"):
                        cells.append(f"{row['dense_over_sparse']:.2f} / {row['dense_over_sparseprop']:.2f}")
                    else:
                        cells.append(f"{row['dense_over_sparse']:.2f}")
                lines.append(f"| {width} | {batch} | " + " | ".join(cells) + " |")
        lines += _rule_against_layers(layers["layers"])
        lines += _against_sparseprop(layers["layers"])
    payoff = _load(directory / "payoff.json")
    if payoff.get("payoff"):
        lines += _payoff_table(payoff["payoff"], _provenance("payoff.json", payoff))
    path = directory / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _provenance(name: str, data: dict[str, Any]) -> str:
    """Which code measured a results file, when, and whether denormals were flushed (files from before these
    fields were recorded say so)."""
    flushed = data.get("denormals_flushed")
    if flushed is None:
        flushed = "denormals flushed by the script (not recorded in the file)"
    else:
        flushed = "denormals flushed" if flushed else "denormals NOT flushed (the CPU cannot)"
    measured = data.get("measured_utc", "on a date not recorded")
    return f"`{name}`: sb3-dst {data.get('sb3_dst', '?')}, measured {measured}, {flushed}."


def _payoff_table(payoff: dict[str, Any], provenance: str) -> list[str]:
    """The payoff agents' time per gradient step, against each campaign's dense narrow agent (role "dense")."""
    lines = [
        "",
        "## The payoff agents, per gradient step",
        "",
        "The agents of the payoff campaigns as their runs were configured (seed 0's `config.json`), and the dense "
        "algorithm at the wide agent's widths, timed side by side in alternating blocks on the same replay data "
        f"(`payoff` part). {provenance}",
        "",
        "| campaign | agent | ms per gradient step | × the dense 256-wide agent |",
        "| --- | --- | --- | --- |",
    ]
    for campaign in dict.fromkeys(row["campaign"] for row in payoff.values()):
        rows = {name: row for name, row in payoff.items() if row["campaign"] == campaign}
        reference = next((row["ms_per_step"] for row in rows.values() if row["role"] == "dense"), None)
        for name, row in rows.items():
            times = f"{row['ms_per_step'] / reference:.2f}x" if reference else "–"
            lines.append(f"| {campaign} | {name.split(': ', 1)[1]} | {row['ms_per_step']:.1f} | {times} |")
    return lines


def _rule_against_layers(layers: dict[str, Any]) -> list[str]:
    """The ``"auto"`` rule (``sparse_is_faster``) read against the layer timings: its worst choice on each side."""
    from sb3_dst.common.sparse_backend import sparse_is_faster

    rows = list(layers.values())
    inside = [row for row in rows if sparse_is_faster(row["density"], row["width"], row["width"], row["batch"])]
    outside = [row for row in rows if row not in inside]
    lines = ["", '## The `"auto"` rule against these timings', ""]
    if inside:
        worst = min(inside, key=lambda row: row["dense_over_sparse"])
        lines.append(
            f"- Layers the rule puts on the kernels: {len(inside)}; the kernels' smallest speed-up among them is "
            f"{worst['dense_over_sparse']:.2f}x ({worst['width']} wide, batch {worst['batch']}, d={worst['density']})."
        )
        slower = [row for row in inside if row["dense_over_sparse"] < 1]
        if slower:
            lines.append(f"- Of those, {len(slower)} were slower on the kernels than dense: the rule is wrong there.")
    if outside:
        best = max(outside, key=lambda row: row["dense_over_sparse"])
        lines.append(
            f"- Layers it keeps dense: {len(outside)}; the largest speed-up it forgoes is "
            f"{best['dense_over_sparse']:.2f}x ({best['width']} wide, batch {best['batch']}, d={best['density']})."
        )
    return lines


def _against_sparseprop(layers: dict[str, Any]) -> list[str]:
    """The issue's anchor in words: sb3-dst's kernels against SparseProp's on the same layers, where both ran."""
    both = [row for row in layers.values() if row.get("dense_over_sparseprop")]
    if not both:
        return ["", "SparseProp was not installed when the layers were timed: no comparison with it."]
    lines = ["", "## Against SparseProp", ""]
    for density in (0.1, 0.05):
        row = layers.get(f"1024x1024 batch 256 density {density}")
        if row and row.get("dense_over_sparseprop"):
            lines.append(
                f"- The issue's shape, 1024 x 1024 at batch 256, density {density}: sb3-dst "
                f"{row['dense_over_sparse']:.2f}x dense, SparseProp {row['dense_over_sparseprop']:.2f}x "
                f"({row['dense_over_sparse'] / row['dense_over_sparseprop']:.2f}x SparseProp's speed)."
            )
    lines.append(
        f"- Over the grid, sb3-dst's kernels are the faster in "
        f"{sum(row['dense_over_sparse'] >= row['dense_over_sparseprop'] for row in both)} of {len(both)} layers. "
        "Where SparseProp is the faster (its speed-up over dense, against sb3-dst's):"
    )
    lines += ["", "| width | batch | densities where SparseProp is the faster |", "| --- | --- | --- |"]
    for width, batch in sorted({(row["width"], row["batch"]) for row in both}):
        behind = sorted(
            (row for row in both if (row["width"], row["batch"]) == (width, batch)
             and row["dense_over_sparse"] < row["dense_over_sparseprop"]),
            key=lambda row: row["density"],
        )  # fmt: skip
        if behind:
            cells = ", ".join(
                f"{row['density']} ({row['dense_over_sparseprop']:.2f}x vs {row['dense_over_sparse']:.2f}x)"
                for row in behind
            )
            lines.append(f"| {width} | {batch} | {cells} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("part", choices=["models", "layers", "payoff", "report"])
    parser.add_argument(
        "--out", type=Path, required=True, help="JSON file (models, layers, payoff) or directory (report)"
    )
    parser.add_argument("--rounds", type=int, default=6, help="alternating rounds per model (default 6)")
    parser.add_argument("--steps", type=int, default=6, help="gradient steps per block (default 6)")
    parser.add_argument("--repeats", type=int, default=30, help="timings per layer setting (default 30)")
    parser.add_argument("--only", default=None, help="time only the models whose name contains this text")
    parser.add_argument("--redo", action="store_true", help="time again what the JSON already holds")
    parser.add_argument(
        "--results", type=Path, default=Path(__file__).resolve().parent / "results",
        help="payoff: the directory holding the payoff campaigns (default benchmarks/results)",
    )  # fmt: skip
    args = parser.parse_args()
    th.set_num_threads(1)
    if not th.set_flush_denormal(True):
        print("warning: this CPU cannot flush denormals", file=sys.stderr)
    if args.part == "models":
        time_models(args.out, args.rounds, args.steps, args.redo, args.only)
    elif args.part == "layers":
        time_layers(args.out, args.repeats, args.redo)
    elif args.part == "payoff":
        time_payoff(args.out, args.rounds, args.steps, args.results)
    else:
        print(write_report(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
