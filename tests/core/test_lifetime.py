"""A child that asked for it ends with its parent, even when the parent is killed with SIGKILL."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from pretrain.core.lifetime import PARENT_PID, take_expected_parent
from pretrain.testing import wait_until_gone

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG: Linux")

PARENT = textwrap.dedent(
    """
    import os, subprocess, sys, time
    from pretrain.core.lifetime import die_with_parent
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], preexec_fn=die_with_parent)
    print(child.pid, flush=True)
    os.kill(os.getpid(), 9)
    """
)


def test_a_child_ends_when_its_parent_is_killed():
    parent = subprocess.run([sys.executable, "-c", PARENT], capture_output=True, text=True, timeout=120)
    child = int(parent.stdout.split()[0])
    assert parent.returncode == -9
    assert wait_until_gone([child], 30) == []


def test_a_child_whose_parent_is_already_gone_ends_at_once():
    """The parent recorded its pid for its children; a child that finds another parent would never be signalled."""
    code = "from pretrain.core.lifetime import *; import time; die_with_parent(take_expected_parent()); time.sleep(60)"
    env = {**os.environ, PARENT_PID: "1"}  # not this child's parent: the recording parent has died
    assert subprocess.run([sys.executable, "-c", code], env=env, timeout=60).returncode == 1


def test_the_recorded_parent_is_taken_once():
    env = {PARENT_PID: "4242"}
    assert take_expected_parent(env) == 4242 and PARENT_PID not in env
    assert take_expected_parent(env) is None and take_expected_parent({PARENT_PID: "x"}) is None
