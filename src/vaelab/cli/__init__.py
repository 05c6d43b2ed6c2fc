"""The ``vaelab`` command line: parse, build a config, call the library.

One module per command family (``train``, ``evaluate``, ``pictures``, ``answers``,
``report``, ``datasets``); shared
options in ``options``. Every user mistake is one line on stderr and exit status 2
(``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import atexit
import os
import sys
import threading

from vaelab._version import __version__
from vaelab.cli import answers, datasets, evaluate, pictures, report, train
from vaelab.errors import VaelabError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """Usage mistakes are one line too (the full usage is one --help away)."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="vaelab",
        description=(
            "Train, evaluate and inspect variational auto-encoders, with honest numbers. "
            "Start with `vaelab train` (it trains on a built-in MNIST subset), then "
            "`vaelab evaluate RUN`."
        ),
    )
    parser.add_argument("--version", action="version", version=f"vaelab {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show tracebacks for errors (default: off)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    train.add_parser(sub)
    evaluate.add_parser(sub)
    pictures.add_parsers(sub)
    answers.add_parsers(sub)
    report.add_parser(sub)
    datasets.add_parser(sub)
    return parser


# The commands whose ranks share the work under torchrun; any other would run whole on each.
SHARED_BY_RANKS = ("train", "evaluate")


def _placed() -> tuple[int, int] | None:
    """(rank, world size) under torchrun, else None."""
    from vaelab.distributed import launched_rank

    try:
        return launched_rank()
    except VaelabError:
        return None  # a malformed torchrun environment: the command itself will say so


def _speaker(placed: tuple[int, int] | None) -> tuple[str, bool]:
    """The prefix of this process's messages, and whether it reports a stop for the job.

    Under torchrun rank 0 speaks as ``vaelab`` and reports an interruption (every rank stops
    at the same step); another rank names itself, and only its own errors, which may be the
    cause of the job's end.
    """
    if placed is None or placed[0] == 0:
        return "vaelab", True
    return f"vaelab (rank {placed[0]} of {placed[1]})", False


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    from vaelab.training import TrainingInterrupted

    placed = _placed()
    who, speaks_for_job = _speaker(placed)
    if placed is not None and placed[1] > 1 and args.command not in SHARED_BY_RANKS:
        if speaks_for_job:  # each rank would do the whole job and write the same files
            print(
                f"{who}: error: `vaelab {args.command}` runs in one process; start it without "
                f"torchrun (under torchrun the ranks share {' and '.join(SHARED_BY_RANKS)})",
                file=sys.stderr,
            )
        return EXIT_USAGE
    # recorded in the run's config.json by the commands that write one
    args.command_line = ["vaelab", *(sys.argv[1:] if argv is None else argv)]
    try:
        return args.func(args)
    except TrainingInterrupted as e:
        if args.debug:
            raise
        if speaks_for_job:
            print(f"{who}: {e}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except VaelabError as e:
        if args.debug:
            raise
        print(f"{who}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # `vaelab ... | head`: the reader has all it wanted
        sys.stdout = open(os.devnull, "w")  # nothing more may reach the pipe
        return 0
    except KeyboardInterrupt:
        if args.debug:
            raise
        if speaks_for_job:
            print(f"{who}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as e:  # a full disk, a folder without permission: still one line
        if args.debug:
            raise
        where = f"{e.filename}: " if e.filename else ""
        print(f"{who}: error: {where}{e.strerror or e}", file=sys.stderr)
        return EXIT_USAGE


def command() -> None:
    """The ``vaelab`` executable (and ``python -m vaelab``): :func:`main`, then a quick exit.

    Once a command has returned, every file it wrote is closed and in place. What is left
    is the interpreter's teardown, which frees torch's and the model's objects one by one,
    a share of a short command's wall-clock that the user waits for and gains nothing from
    (benchmarks/train_attribution.py measures it). So the exit handlers run (torch's,
    logging's, a compile worker pool's), the output is flushed, and the process ends without
    the teardown. A thread of our own still running (none is, in the commands as written)
    gets the ordinary exit, which waits for it, and so does a profiler or tracer
    (``python -m cProfile -m vaelab ...``), which writes its report after the command.
    """
    code = main()
    first = threading.main_thread()
    busy = any(t is not first and not t.daemon and t.is_alive() for t in threading.enumerate())
    if busy or sys.getprofile() is not None or sys.gettrace() is not None:
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can reach it
            pass
    os._exit(code)


if __name__ == "__main__":
    command()
