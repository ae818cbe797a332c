"""Output files a user can share: their mode comes from the umask, as for any file the user
writes. (The command line's files are checked the same way in test_cli.py.)"""
import os

import pytest

from tf_tpe_tuner.export import write_atomic


@pytest.fixture
def umask():
    """Set the process umask for a test, and put the old one back."""
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_write_atomic_mode_comes_from_the_umask(tmp_path, umask, mask):
    umask(mask)
    write_atomic(str(tmp_path / "summary.json"), '{"new": true}\n')
    write_atomic(str(tmp_path / "best_model.tflite"), b"\x00\x01")
    for name in ("summary.json", "best_model.tflite"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~mask, name
    assert sorted(os.listdir(tmp_path)) == ["best_model.tflite", "summary.json"]  # no temporary left


def test_replacing_a_file_keeps_it_atomic(tmp_path, umask):
    target = tmp_path / "best_config.yaml"
    target.write_text("old\n")
    os.chmod(target, 0o600)
    write_atomic(str(target), "new\n")
    assert target.read_text() == "new\n"
    assert target.stat().st_mode & 0o777 == 0o644  # the umask's, not the old file's 0o600
