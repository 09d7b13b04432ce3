"""The `mlops` command's entry point: a flow command starts warm when it can.

`mlops train` and `mlops monitor` (and the other flow and registry commands: WARM_COMMANDS)
import scikit-learn, MLflow, Prefect and Optuna before their flow starts: 2.6-3.4 s of a
20-trial training on the bench's machine (issue 13), where
a bare Optuna + scikit-learn script spends 1.2-1.5 s. `mlops up` starts a warm process
(flows/warm_commands.py) that has imported them once; such a command is a fork of it, ready
at once, and runs there exactly as it would here: this process hands it its arguments, its
working directory, its environment and its standard input, output and error (the file
descriptors themselves), forwards the signals it gets, and exits with its exit status.

A command run in another environment than `mlops up`'s, or whose code changed since the warm
process imported it, starts cold (flows/warm_start.py); MLOPS_WARM_START=0 always does.
Nothing here imports more than the standard library (modules the CLI imports anyway): a
command that starts cold pays for having looked a digest of the code's files (0.5 ms) and
a connection refused.
"""

import os
import signal
import socket
import sys

from flows.warm_start import (
    FORWARDED,
    WARM_COMMANDS,
    code_digest,
    receive_message,
    send_message,
    socket_path,
    this_environment,
    warm_start_wanted,
)


def main() -> None:
    args = sys.argv[1:]
    if args and args[0] in WARM_COMMANDS and warm_start_wanted():
        code = run_warm(sys.argv)
        if code is not None:
            sys.exit(code)
    from flows.cli import app

    app()


def run_warm(argv: list[str]) -> int | None:
    """Run the command in a warm process; its exit status, or None to start cold."""
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        env = this_environment()
        conn.connect(str(socket_path(env)))
        ignored = [int(s) for s in FORWARDED if signal.getsignal(s) == signal.SIG_IGN]
        send_message(conn, {"argv": argv, "cwd": os.getcwd(), "env": env,
                            "code": code_digest(), "ignored": ignored}, fds=(0, 1, 2))
        answer, _ = receive_message(conn)
    except OSError:  # none there (or not ours): cold
        return None
    if not answer or "pid" not in answer:
        return None
    return _follow(conn, answer["pid"])


def _follow(conn: socket.socket, pid: int) -> int:
    """Forward the signals this process gets to the command's, until it ends."""
    forwarded: list[int] = []

    def forward(signum, _frame) -> None:
        forwarded.append(signum)
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for signum in FORWARDED:
        if signal.getsignal(signum) != signal.SIG_IGN:  # ignored here, ignored there
            signal.signal(signum, forward)
    code = None
    while True:
        message, _ = receive_message(conn)
        if message is None:
            break
        code = message.get("exit", code)
    if code is not None:
        return code
    # It ended without an exit status: killed by a signal. Die of the one it was sent.
    if forwarded:
        signal.signal(forwarded[-1], signal.SIG_DFL)
        os.kill(os.getpid(), forwarded[-1])
    print(f"mlops: the command's process (pid {pid}) was killed", file=sys.stderr)
    return 1


if __name__ == "__main__":
    main()
