"""Run a command (sshd) as a child subreaper, so that the CPU time of every descendant is counted.

    python bench/reaper.py /usr/sbin/sshd -D -e -f sshd_config

sshd's session processes are not all waited for up the chain to the
listener (a session's command outlives the sshd that started it by a
moment), so the listener's children-CPU counters miss most of the work.
Here every orphan is re-parented to this process (PR_SET_CHILD_SUBREAPER) and
reaped by it, so this process's own children-CPU counters (``cutime`` and
``cstime`` in /proc/PID/stat) hold all of it: sshd, shells and probes.
SIGTERM and SIGINT are passed on to the command; this process exits with the
command's status once every descendant has been reaped.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys

PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>


def main(argv: list[str]) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
    child = os.fork()
    if child == 0:
        os.execv(argv[0], argv)

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code = 0
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:  # nothing left to reap
            return code
        if pid == child:
            code = os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
