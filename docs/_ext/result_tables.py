"""Tables of measured numbers, written from the committed result files when the documentation is built.

The pages include the Markdown files this writes (``_generated/*.md`` in the source directory), so every number
they show is read from a file a benchmark script produced; nothing is typed in by hand. A result file that is
missing or lacks a field stops the build (the error names the file).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results"


def _load(name: str) -> dict[str, Any]:
    path = RESULTS / name
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise RuntimeError(f"cannot read the result file {path}: {error}") from error


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _source(name: str, data: dict[str, Any]) -> str:
    command = data.get("command")
    made = f", written by `{command}`" if command else ""
    return f"\nFrom `benchmarks/results/{name}`{made}.\n"


def _percent(x: float) -> str:
    return f"{x * 100:+.1f} %".replace("-", "−")


def file_sizes() -> str:
    name = "file_sizes.json"
    data = _load(name)
    algos = data["algorithms"]
    header = ["sparsity"]
    for algo, entry in algos.items():
        ref = entry["reference"]
        header += [f"{algo} compact", f"{algo}, dense format", ref, f"compact / {ref}"]
    by_sparsity: dict[float, list[str]] = {}
    for entry in algos.values():
        for row in entry["rows"]:
            cells = by_sparsity.setdefault(row["sparsity"], [f"{row['sparsity']:.0%}"])
            cells += [
                f"{row['compact_bytes'] / 1e6:.2f}",
                f"{row['dense_format_bytes'] / 1e6:.2f}",
                f"{row['reference_bytes'] / 1e6:.2f}",
                f"{row['compact_over_reference']:.2f}",
            ]
    intro = (
        f"{data['env']}, {'-'.join(map(str, data['net_arch']))} networks, {data['gradient_steps']} gradient steps, "
        "file sizes in MB:\n\n"
    )
    return intro + _table(header, by_sparsity.values()) + _source(name, data)


def overhead() -> str:
    files = [
        ("overhead_train_fused.json", "`train()`, per gradient step"),
        ("overhead_learn_fused.json", "`learn()`, per environment step"),
        ("overhead_learn_tqc.json", "`learn()`, per environment step"),
        ("overhead_learn_crossq.json", "`learn()`, per environment step"),
        ("overhead_train_fused_epyc.json", "`train()`, per gradient step, later machine"),
        ("overhead_learn_fused_epyc.json", "`learn()`, per environment step, later machine"),
    ]
    header = [
        "what is timed",
        "dense",
        "sparse",
        "dense ms",
        "sparse ms",
        "overhead (paired median)",
        "ratio of medians",
        "of total times",
        "single rounds",
        "rounds × steps",
        "result file",
    ]
    rows = []
    for name, what in files:
        data = _load(name)
        dense, sparse = data.get("dense", "TD3"), data.get("sparse", "DSTD3")
        medians = data["median_ms_per_step"]
        # files written before benchmarks/overhead.py keyed its timings by class name call the two "TD3" and "DSTD3"
        dense_ms = medians.get(dense, medians.get("TD3"))
        sparse_ms = medians.get(sparse, medians.get("DSTD3"))
        per_round = data["overhead_per_round"]
        rows.append(
            [
                what,
                dense,
                sparse,
                f"{dense_ms:.2f}",
                f"{sparse_ms:.2f}",
                _percent(data["overhead"]),
                _percent(data["overhead_of_medians"]),
                _percent(data["overhead_of_totals"]),
                f"{_percent(min(per_round))} to {_percent(max(per_round))}",
                f"{data['rounds']} × {data['steps_per_round']}",
                f"`{name}`",
            ]
        )
    return _table(header, rows)


def overhead_variants() -> str:
    """The two extra models of the TD3 measurements: DSTD3 with torch's Adam, TD3 with torch's fused Adam."""
    header = ["what is timed", "model", "ms per step", "overhead over TD3 (paired median)", "of total times"]
    rows = []
    files = [
        ("overhead_train_fused.json", "`train()`"),
        ("overhead_learn_fused.json", "`learn()`"),
        ("overhead_train_fused_epyc.json", "`train()`, later machine"),
        ("overhead_learn_fused_epyc.json", "`learn()`, later machine"),
    ]
    for name, what in files:
        data = _load(name)
        medians = data["median_ms_per_step"]
        for model, key in [("DSTD3 (torch Adam)", "torch_adam"), ("TD3 (fused Adam)", "td3_fused_adam")]:
            if f"overhead_{key}" in data:
                rows.append(
                    [
                        what,
                        model,
                        f"{medians[model]:.2f}",
                        _percent(data[f"overhead_{key}"]),
                        _percent(data[f"overhead_of_totals_{key}"]),
                    ]
                )
    return _table(header, rows)


PATHS = [
    ("sb3_predict", "SB3 `predict`"),
    ("torch_actor", "torch actor"),
    ("onnxruntime", "onnxruntime"),
    ("numpy_dense", "NumPy dense"),
    ("sparse_policy", "`SparsePolicy`"),
    ("c_ctypes", "C via ctypes"),
    ("c_native", "C, timed in C"),
]


def _inference_rows(
    results: list[dict[str, Any]], key: str, value: Callable[[dict[str, Any]], str]
) -> tuple[list[str], list[list[str]]]:
    paths = [(path, title) for path, title in PATHS if path in results[0][key]]
    header = ["actor", "sparsity"] + [title for _, title in paths]
    rows = []
    for result in results:
        cells = ["-".join(map(str, result["hidden"])), f"{result['sparsity']:.0%}"]
        cells += [value(result[key][path]) for path, _ in paths]
        rows.append(cells)
    return header, rows


def inference_latency() -> str:
    data = _load("inference/inference.json")
    header, rows = _inference_rows(data["results"], "latency_batch1", lambda t: f"{t['median_s'] * 1e6:.1f}")
    header.append("load")
    for row, result in zip(rows, data["results"], strict=True):
        row.append(f"{result['load_average_after'][0]:.1f}")
    return _table(header, rows) + _source("inference/inference.json", data)


def inference_throughput() -> str:
    data = _load("inference/inference.json")
    header, rows = _inference_rows(data["results"], "throughput_batch", lambda t: f"{t['obs_per_s_median'] / 1e3:.0f}")
    return _table(header, rows)


def inference_sizes() -> str:
    data = _load("inference/inference.json")
    files = [
        ("sb3_model_zip", "SB3 model.zip"),
        ("torch_actor_state_dict", "torch actor state_dict"),
        ("onnx", ".onnx"),
        ("sparse_npz", "sparse .npz"),
        ("c_source", "C .c + .h"),
        ("c_shared_library", "C .so"),
    ]
    header = ["actor", "sparsity", "connections"] + [title for _, title in files] + ["max error"]
    rows = []
    for result in data["results"]:
        cells = ["-".join(map(str, result["hidden"])), f"{result['sparsity']:.0%}", f"{result['actor_connections']:,}"]
        cells += [f"{result['file_bytes'][key] / 1e3:,.0f}" for key, _ in files]
        cells.append(f"{max(result['max_abs_error_vs_predict'].values()):.1e}")
        rows.append(cells)
    return _table(header, rows)


def inference_bar() -> str:
    data = _load("inference/inference.json")
    bar = data["bar"]
    met = "met" if bar["met"] else "not met"
    return (
        f"The bar ({bar['what']}) is **{met}**: `SparsePolicy` took {bar['sparse_policy_us']:.1f} µs, the fastest "
        f"dense path (`{bar['fastest_dense_path']}`) {bar['fastest_dense_us']:.1f} µs, a speed-up of "
        f"{bar['speedup']:.1f}.\n"
    )


TABLES: dict[str, Callable[[], str]] = {
    "file_sizes": file_sizes,
    "overhead": overhead,
    "overhead_variants": overhead_variants,
    "inference_latency": inference_latency,
    "inference_throughput": inference_throughput,
    "inference_sizes": inference_sizes,
    "inference_bar": inference_bar,
}


def write_tables(folder: Path) -> None:
    """Write ``folder/<name>.md`` for each table, leaving files whose text did not change untouched."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, make in TABLES.items():
        path = folder / f"{name}.md"
        text = make()
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)


def _on_builder_inited(app: Any) -> None:
    write_tables(Path(app.srcdir) / "_generated")


def setup(app: Any) -> dict[str, Any]:
    app.connect("builder-inited", _on_builder_inited)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
