"""How sb3_dst's modules depend on each other.

- The exported sparse policy runs with NumPy (and Numba) only: :mod:`sb3_dst.inference` imports and computes the
  torch policy's actions in a process where torch, Stable-Baselines3, sb3-contrib and gymnasium cannot be imported.
- ``import sb3_dst`` is light: the algorithm classes, and torch with them, are imported when first asked for.
- No import cycles among sb3_dst's modules, counting imports deferred into functions (a deferred import hides a
  cycle from the interpreter, not from the reader).
- ``sb3_dst.common`` depends on nothing of sb3_dst outside it.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import pickle
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import sb3_dst

PACKAGE = Path(sb3_dst.__file__).parent

#: What an exported policy must not need (the inference test blocks these).
HEAVY = ("torch", "stable_baselines3", "sb3_contrib", "gymnasium")

#: Installs a finder that refuses the heavy packages, before anything else is imported.
BLOCKER = textwrap.dedent(
    f"""
    import sys

    BLOCKED = {HEAVY!r}

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{{name}} is blocked: the exported policy must run without it")
            return None

    assert not [m for m in sys.modules if m.split(".")[0] in BLOCKED], "imported before the blocker"
    sys.meta_path.insert(0, Blocker())
    """
)


def run_python(code: str, *args: str) -> str:
    """Run ``code`` in a fresh interpreter (one thread) and return its stdout; fail with its stderr."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, f"the subprocess failed:\n{result.stderr[-3000:]}"
    return result.stdout


# --- inference without torch --------------------------------------------------------------------------------------


def test_exported_policy_runs_with_torch_and_sb3_blocked(tmp_path: Path) -> None:
    from sb3_dst import DSTD3
    from sb3_dst.export import export

    model = DSTD3(
        "MlpPolicy",
        "Pendulum-v1",
        sparsity=0.9,
        evolution_interval=10,
        policy_kwargs=dict(net_arch=[32, 32]),
        learning_starts=50,
        batch_size=32,
        seed=1,
    )
    model.learn(100)  # 50 gradient steps and 5 evolutions: trained weights, a topology that is not the initial one
    export(model, tmp_path / "policy.npz", format="sparse")
    rng = np.random.default_rng(0)
    obs = (rng.normal(size=(32, 3)) * rng.choice([0.5, 2.0, 20.0], size=(32, 1))).astype(np.float32)
    np.save(tmp_path / "obs.npy", obs)
    want = model.predict(obs, deterministic=True)[0]

    child = BLOCKER + textwrap.dedent(
        """
        import json
        from pathlib import Path

        import numpy as np

        from sb3_dst.inference import SparsePolicy

        folder = Path(sys.argv[1])
        obs = np.load(folder / "obs.npy")
        actions = {}
        for backend in ("numba", "numpy"):
            policy = SparsePolicy.load(folder / "policy.npz", backend=backend)
            actions[backend] = policy.predict(obs).tolist()
            actions[backend + " one by one"] = np.stack([policy.predict(o) for o in obs]).tolist()
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        print(json.dumps({"actions": actions, "heavy": loaded}))
        """
    )
    out = json.loads(run_python(child, str(tmp_path)).splitlines()[-1])
    assert out["heavy"] == []
    assert set(out["actions"]) == {"numba", "numba one by one", "numpy", "numpy one by one"}
    for backend, actions in out["actions"].items():
        np.testing.assert_allclose(np.array(actions), want, rtol=0, atol=1e-5, err_msg=backend)


def test_the_blocker_blocks() -> None:
    """The blocked-import test above can fail: torch cannot be imported behind the blocker."""
    code = BLOCKER + "\ntry:\n    import torch\nexcept ImportError as error:\n    print(error)\n"
    assert "torch is blocked" in run_python(code)


# --- import sb3_dst is light ----------------------------------------------------------------------------------------


def test_import_sb3_dst_loads_algorithms_on_first_use() -> None:
    code = textwrap.dedent(
        f"""
        import json
        import sys

        import sb3_dst

        heavy = lambda: sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r}))
        before = heavy()
        listed = set(sb3_dst.__all__) <= set(dir(sb3_dst))
        from sb3_dst import DSTD3

        after = heavy()
        print(json.dumps([before, listed, after, DSTD3.__module__, sb3_dst.DSSAC.__module__]))
        """
    )
    before, listed, after, *modules = json.loads(run_python(code).splitlines()[-1])
    assert before == [], f"import sb3_dst imported {before}: the algorithm classes should load on first use"
    assert listed, "dir(sb3_dst) should list every name of __all__ before they are imported"
    assert {"torch", "stable_baselines3"} <= set(after)
    assert modules == ["sb3_dst.dstd3.dstd3", "sb3_dst.dssac.dssac"]


def test_every_public_name_resolves() -> None:
    for name in sb3_dst.__all__:
        if name != "__version__":
            assert getattr(sb3_dst, name) is getattr(importlib.import_module(sb3_dst._LAZY[name]), name)
    with pytest.raises(AttributeError, match="no attribute 'DSTD4'"):
        sb3_dst.DSTD4  # noqa: B018
    with pytest.raises(ImportError):
        from sb3_dst import DSTD4  # type: ignore[attr-defined]  # noqa: F401


def test_public_names_are_declared_consistently() -> None:
    """``__all__``, the lazy table and the ``TYPE_CHECKING`` imports (what type checkers see) list the same names,
    and the classes among them are the family table's (a new family's classes must be added to both lists)."""
    from sb3_dst.families import FAMILIES, VARIANTS

    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    checked: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            checked |= {alias.name for stmt in node.body if isinstance(stmt, ast.ImportFrom) for alias in stmt.names}
    public = set(sb3_dst.__all__) - {"__version__"}
    assert checked == public
    assert set(sb3_dst._LAZY) == public
    classes = {family.class_name(variant) for family in FAMILIES for variant in VARIANTS}
    assert public - {"DSTCallback", "matching_sparsity"} == classes


def test_saved_model_loads_in_a_fresh_process(tmp_path: Path) -> None:
    """A model saved by one process loads in another where nothing but ``import sb3_dst`` has run."""
    from sb3_dst import DSTD3

    model = DSTD3("MlpPolicy", "Pendulum-v1", sparsity=0.9, policy_kwargs=dict(net_arch=[16, 16]), seed=0)
    model.save(tmp_path / "model.zip")
    obs = np.linspace(-1, 1, 9, dtype=np.float32).reshape(3, 3)
    np.save(tmp_path / "obs.npy", obs)
    (tmp_path / "class.pkl").write_bytes(pickle.dumps(DSTD3))
    code = textwrap.dedent(
        """
        import pickle
        import sys
        from pathlib import Path

        import numpy as np

        import sb3_dst

        folder = Path(sys.argv[1])
        cls = pickle.loads((folder / "class.pkl").read_bytes())
        assert cls is sb3_dst.DSTD3
        model = cls.load(folder / "model.zip")
        np.save(folder / "actions.npy", model.predict(np.load(folder / "obs.npy"), deterministic=True)[0])
        """
    )
    run_python(code, str(tmp_path))
    np.testing.assert_array_equal(np.load(tmp_path / "actions.npy"), model.predict(obs, deterministic=True)[0])


# --- no import cycles ---------------------------------------------------------------------------------------------


def _modules(root: Path) -> dict[str, Path]:
    """Dotted name -> file of every module of the package at ``root``."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _imported(module: str, path: Path, modules: dict[str, Path]) -> Iterator[str]:
    """The package's modules that ``module`` imports anywhere in its file (at the top, in functions, or under
    ``TYPE_CHECKING``): ``from a import b`` names ``a.b`` when that is a module, else ``a``."""

    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for name in names:
            target = known(name)
            if target is not None and target != module:
                yield target


def import_graph(root: Path) -> dict[str, set[str]]:
    """Each module of the package at ``root`` -> the package's modules it imports."""
    modules = _modules(root)
    return {module: set(_imported(module, path, modules)) for module, path in modules.items()}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each as one cycle through them."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)

    def cycle(component: set[str]) -> list[str]:  # a shortest way back to the first module, by breadth-first search
        start = min(component)
        paths = {start: [start]}
        frontier = [start]
        while frontier:
            following = []
            for node in frontier:
                for other in sorted(graph[node] & component):
                    if other == start:
                        return [*paths[node], start]
                    if other not in paths:
                        paths[other] = [*paths[node], other]
                        following.append(other)
            frontier = following
        raise AssertionError("a strongly connected component without a cycle")

    return [cycle(component) for component in components]


def test_no_import_cycles() -> None:
    cycles = import_cycles(import_graph(PACKAGE))
    assert not cycles, "import cycles (move what both sides need into a module of its own):\n" + "\n".join(
        " -> ".join(cycle) for cycle in cycles
    )


def test_cycle_finder_sees_deferred_imports(tmp_path: Path) -> None:
    """The cycle test can fail: a cycle made of imports deferred into functions is found, an acyclic package is not."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from .a import f\n")
    (package / "sub" / "a.py").write_text("def f():\n    from pkg.b import g\n")
    (package / "b.py").write_text("import os\n\ndef g():\n    from pkg.sub import a\n")
    (package / "c.py").write_text("from pkg import b\nfrom pkg.sub.a import f\n")
    graph = import_graph(package)
    assert graph["pkg.c"] == {"pkg.b", "pkg.sub.a"} and graph["pkg.sub"] == {"pkg.sub.a"}
    assert import_cycles(graph) == [["pkg.b", "pkg.sub.a", "pkg.b"]]
    (package / "b.py").write_text("def g():\n    pass\n")
    assert import_cycles(import_graph(package)) == []


def test_common_depends_only_on_common() -> None:
    """``sb3_dst.common`` is the bottom layer: the algorithms, metrics, export and harness build on it."""
    graph = import_graph(PACKAGE)
    outside = {
        module: sorted(target for target in targets if not target.startswith("sb3_dst.common"))
        for module, targets in graph.items()
        if module.startswith("sb3_dst.common")
    }
    assert {module: targets for module, targets in outside.items() if targets} == {}


def test_inference_imports_nothing_of_sb3_dst() -> None:
    assert import_graph(PACKAGE)["sb3_dst.inference"] == set()


def test_names_shared_across_a_broken_cycle_agree() -> None:
    """Values spelled out on both sides of a cycle that was removed, and re-exports, are the same."""
    from sb3_dst import metrics
    from sb3_dst.benchmark import __main__ as benchmark_main
    from sb3_dst.benchmark import command_line, files, worker
    from sb3_dst.common import flops, masking, sparse_backend

    assert sparse_backend._MASK_NAME == masking.MASK_NAME
    for name in ("FlopsBreakdown", "count_connections", "flops_breakdown", "network_size", "training_flops"):
        assert getattr(metrics, name) is getattr(flops, name)
    assert metrics._CACHE is flops._CACHE
    for name in files.__all__:
        assert getattr(worker, name) is getattr(files, name)
    assert benchmark_main.requested_runs is command_line.requested_runs
