"""train.sh and test.sh find the project's Python as run_tests.sh does, and say what to do without torch."""
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ("train.sh", "test.sh", "find_python.sh")


def fake_python(path, torch_importable: bool, log) -> None:
    """A stand-in interpreter: `-c "import torch"` succeeds or fails as asked; any other call
    writes its arguments, one a line, to `log`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/usr/bin/env bash\n"
                    f'if [ "$1" = "-c" ]; then exit {0 if torch_importable else 1}; fi\n'
                    f'printf "%s\\n" "$@" > "{log}"\n')
    path.chmod(0o755)


@pytest.fixture
def checkout(tmp_path):
    for name in SCRIPTS:
        shutil.copy(os.path.join(ROOT, name), tmp_path / name)
    return tmp_path


def run(checkout, *args, path=None):
    env = {**os.environ, "PATH": path or os.environ["PATH"]}
    env.pop("PYTHON", None)
    return subprocess.run(["bash", *args], cwd=checkout, capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.parametrize("script, args, expected", [
    ("test.sh", ["config/x.toml"], ["main.py", "--config=config/x.toml", "--phase=test"]),
    ("train.sh", ["config/x.toml", "--resume", "latest_model"],
     ["-m", "torch.distributed.run", "--nproc_per_node=4", "main.py", "--config=config/x.toml", "--resume",
      "latest_model"]),
])
def test_the_scripts_run_the_projects_venv(checkout, script, args, expected):
    fake_python(checkout / ".venv" / "bin" / "python", True, checkout / "calls.txt")
    result = run(checkout, script, *args)
    assert result.returncode == 0, result.stderr
    assert (checkout / "calls.txt").read_text().splitlines() == expected


@pytest.mark.parametrize("script", ["train.sh", "test.sh"])
def test_without_torch_the_scripts_say_what_to_install(checkout, tmp_path_factory, script):
    bin_dir = tmp_path_factory.mktemp("bin")
    fake_python(bin_dir / "python3", False, bin_dir / "calls.txt")
    for tool in ("dirname", "bash"):
        os.symlink(shutil.which(tool), bin_dir / tool)
    result = run(checkout, script, path=str(bin_dir))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "python3 cannot import torch" in result.stderr
    assert ".venv/bin/pip install -r requirements.txt" in result.stderr and "./quickstart.sh" in result.stderr
    assert not (bin_dir / "calls.txt").exists()
