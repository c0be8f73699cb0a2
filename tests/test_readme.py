"""The README's first examples run as written: the quick start (its Python part, with this interpreter rather than a
fresh virtual environment), the load/predict/evaluate example after it, and the HER example."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_zoo import run

README = Path(__file__).resolve().parents[1] / "README.md"


def code_blocks(language: str) -> list[str]:
    """The README's fenced code blocks of ``language``, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```$", README.read_text(), flags=re.S | re.M)


def block_with(language: str, marker: str) -> str:
    blocks = [block for block in code_blocks(language) if marker in block]
    assert len(blocks) == 1, f"{len(blocks)} {language} blocks of README.md contain {marker!r}"
    return blocks[0]


def quick_start_code() -> str:
    """The program the quick start hands to ``python -c "..."``."""
    command = block_with("bash", "model.save('ds_td3_halfcheetah')")
    match = re.search(r'python -c "\n(.*?)\n"', command, flags=re.S)
    assert match, command
    return match.group(1)


def run_python(code: str, cwd: Path, timeout: float = 240) -> str:
    process = run(["-c", code], cwd, timeout)  # as a user would, as the zoo tests run their commands
    assert process.returncode == 0, process.stdout[-6000:]
    return process.stdout


@pytest.fixture(scope="module")
def quick_start(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The folder where the quick start ran, and what it printed."""
    folder = tmp_path_factory.mktemp("quick_start")
    return folder, run_python(quick_start_code(), folder)


def test_quick_start_trains_and_saves(quick_start: tuple[Path, str]) -> None:
    folder, out = quick_start
    assert (folder / "ds_td3_halfcheetah.zip").is_file()
    assert "dst/" in out and "connections" in out and "evolutions" in out and "total_timesteps" in out


def test_load_predict_evaluate_example(quick_start: tuple[Path, str]) -> None:
    folder, _ = quick_start
    out = run_python(block_with("python", 'DSTD3.load("ds_td3_halfcheetah")'), folder)
    assert re.search(r"return -?\d+\.\d ± \d+\.\d over 2 episodes", out), out


def test_her_example(tmp_path: Path) -> None:
    code = block_with("python", "HerReplayBuffer")
    run_python(code + "\nassert action.shape == (4,) and model.replay_buffer is not None\n", tmp_path)
    assert (tmp_path / "ds_sac_her.zip").is_file()
