"""`unify dev` without the test kit installed (``unify-cli`` without its ``[dev]`` extra): a
clear message naming the extra, exit status 1, nothing started."""

from __future__ import annotations

import os
import site
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_dev_without_the_kit_names_the_extra(tmp_path):
    # a real interpreter whose path has the CLI, unify-common and the third-party packages,
    # but not the test kit: -S skips site-packages' .pth files (where the editable installs
    # hook in), so only the folders listed here are importable
    path = [str(ROOT / "cli" / "src"), str(ROOT / "libs" / "unify-common" / "src"),
            *site.getsitepackages()]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    result = subprocess.run(
        [sys.executable, "-S", "-m", "unify_cli.main", "dev", "up", "--workdir",
         str(tmp_path / "dev")], capture_output=True, text=True, env=env, timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (
        1, "", "unify dev: needs the development extra (unify_testkit is missing): "
               "pip install 'unify-cli[dev]'\n")
    assert not (tmp_path / "dev").exists()
