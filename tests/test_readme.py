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


def test_ci_runs_the_readme_commands_in_a_clean_shell():
    """CI runs both commands as a new user's shell has them: only HOME, PATH and LANG set, so a
    variable of the CI machine's shell (PYTHONUNBUFFERED, say) cannot hide a failure (issue 25)."""
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'env -i HOME="$HOME" PATH="$PATH" LANG=C.UTF-8 bash -c' in ci
    lines = ci.splitlines()
    for command in _readme_commands():
        assert f"as_a_new_user '{command}'" in lines
    # nothing else of the development shell reaches the commands: every command line goes
    # through the clean shell
    runs = [line for line in lines if "pytest" in line or "pip install" in line]
    assert runs
    assert all(line.startswith("as_a_new_user '") for line in runs)


def test_console_script_is_declared():
    assert 'distcal = "distcal.cli:main"' in (ROOT / "pyproject.toml").read_text()


def _first_python_block():
    text = (ROOT / "README.md").read_text()
    section = text.split("## Your model, calibrated", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_your_model_snippet_runs_and_its_module_matches_the_calibrator(tmp_path, monkeypatch):
    """The six lines of the README's first screen, on a small network and digits."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from distcal import load_calibrated_module
    from distcal.distill import load_digits

    data = load_digits()
    X, y = data.images, data.labels
    templates = torch.stack([X[y == k].mean(dim=0).flatten() for k in range(10)])
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10, bias=False))
    with torch.no_grad():
        net[1].weight.copy_(templates)
    val_loader = DataLoader(TensorDataset(X[:600], y[:600]), batch_size=128)
    images = X[600:700]
    monkeypatch.chdir(tmp_path)
    namespace = {"net": net, "val_loader": val_loader, "images": images}
    exec(_first_python_block(), namespace)
    mts, probabilities = namespace["mts"], namespace["probabilities"]
    torch.testing.assert_close(probabilities, mts.predict_proba(images).to(probabilities.dtype))
    rebuilt = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10, bias=False))
    loaded = load_calibrated_module(tmp_path / "calibrated.safetensors", rebuilt)
    torch.testing.assert_close(loaded(images), probabilities)
