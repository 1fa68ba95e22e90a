"""OpenMP threads sleep early unless the user chose otherwise (see glnet_cli/openmp.py)."""

from __future__ import annotations

import os
import subprocess
import sys

from glnet_cli.openmp import SPIN_COUNT, share_cores


def test_spin_count_is_set_when_the_user_chose_nothing(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    share_cores()
    assert os.environ["GOMP_SPINCOUNT"] == str(SPIN_COUNT)


def test_the_users_settings_win(monkeypatch):
    monkeypatch.setenv("GOMP_SPINCOUNT", "5")
    share_cores()
    assert os.environ["GOMP_SPINCOUNT"] == "5"
    monkeypatch.delenv("GOMP_SPINCOUNT")
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    share_cores()
    assert "GOMP_SPINCOUNT" not in os.environ


def test_the_cli_sets_it_before_torch_is_imported():
    code = ("import os, sys; from glnet_cli.cli import main; "
            "sys.argv = ['glnet', 'info', '--help']\n"
            "try: main()\n"
            "except SystemExit: pass\n"
            "print(os.environ.get('GOMP_SPINCOUNT'), 'torch' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, check=True)
    assert done.stdout.split()[-2:] == [str(SPIN_COUNT), "False"]
