"""Run one object-storage emulator for tests/it and stop it when the test process exits.

Usage: emulator-guard.py LOG_FILE -- SERVER [ARGS...]

tests/it/emulators.rs starts every emulator through this guard, so a server never outlives
the test binary that started it, however that binary ends (normal exit, panic, SIGKILL):

- the guard polls its parent pid; once the test process is gone (the guard is re-parented)
  it stops the server's whole process group and exits;
- the server gets PR_SET_PDEATHSIG=SIGKILL, so it dies with the guard even if the guard
  itself is killed;
- SIGTERM/SIGINT to the guard stop the server the same way.

The server's output goes to LOG_FILE, which the guard removes when it stops the server
(set RETAIN_KEEP_EMULATOR_LOGS=1 to keep it).
"""

import ctypes
import os
import signal
import subprocess
import sys
import time

PR_SET_PDEATHSIG = 1


def _die_with_guard() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def main() -> int:
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    log_path, command = sys.argv[1], sys.argv[3:]
    parent = os.getppid()
    log = open(log_path, "ab", buffering=0)
    server = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_die_with_guard,
    )

    def stop(*_args: object) -> None:
        for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, None)):
            try:
                os.killpg(server.pid, sig)
            except ProcessLookupError:
                break
            try:
                server.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        if not os.environ.get("RETAIN_KEEP_EMULATOR_LOGS"):
            try:
                os.unlink(log_path)
            except FileNotFoundError:
                pass
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, stop)
    while True:
        code = server.poll()
        if code is not None:
            # The server died on its own: keep its log for the test's error message.
            return code if code > 0 else 1
        if os.getppid() != parent:
            stop()
        time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main())
