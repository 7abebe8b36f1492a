import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "copy_testing_alpha.sh")


def run(*args):
    return subprocess.run(["bash", SCRIPT, *args], capture_output=True, text=True)


def test_copies_20_per_alpha_with_spaces_in_the_path_and_reruns(tmp_path):
    test_set = tmp_path / "Test set" / "Adobe-licensed images"
    (test_set / "alpha").mkdir(parents=True)
    (test_set / "alpha" / "boy 1.png").write_bytes(b"alpha-one")
    (test_set / "alpha" / "girl.png").write_bytes(b"alpha-two")
    for _ in range(2):
        result = run(str(test_set))
        assert result.returncode == 0, result.stderr
        assert "copied 2 alpha mattes x 20" in result.stdout
    copies = sorted(os.listdir(test_set / "alpha_copy"))
    assert len(copies) == 40
    assert "boy 1_0.png" in copies and "boy 1_19.png" in copies and "girl_7.png" in copies
    assert (test_set / "alpha_copy" / "boy 1_19.png").read_bytes() == b"alpha-one"


def test_usage_on_wrong_arguments(tmp_path):
    for args in ([], ["a", "b"], [str(tmp_path)]):
        result = run(*args)
        assert result.returncode == 2
        assert "usage:" in result.stderr
    assert "no folder" in run(str(tmp_path)).stderr
