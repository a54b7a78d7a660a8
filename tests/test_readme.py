"""The README's two commands are the ones CI and users run; keep them true."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands():
    text = (ROOT / "README.md").read_text()
    block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def test_readme_opens_with_two_commands():
    commands = _readme_commands()
    assert len(commands) == 2
    assert commands[0].endswith("&& distcal")
    assert commands[1].endswith("pytest")
    for command in commands:
        # torch first: a torch resolved by pip as a dependency is a multi-gigabyte CUDA build
        assert command.index("pip install torch==2.13.0") < command.index("pip install -e")


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert _readme_commands()[1] in ci


def test_console_script_is_declared():
    assert 'distcal = "distcal.cli:main"' in (ROOT / "pyproject.toml").read_text()
