"""What both commands (tf-tpe-tune, tf-tpe-export) do with --help (their own flags, exit 0), bad
input (one line, exit 2), a warning (one line), Ctrl-C (exit 130) and a bug (the traceback, exit 3)."""
import sys
import traceback
import warnings
from typing import Callable

from absl import flags

EXIT_OK, EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 2, 3, 130
HELP_FLAGS = ("-h", "-help", "--help", "-?", "--helpshort")  # absl's spellings of a short help


def help_if_asked(argv: list[str], doc: str, flag_values: flags.FlagValues, example_flag: str) -> None:
    """On --help: the command's doc and its own flags (those of the module that defines
    `example_flag`) on stdout, exit 0. absl's short help lists the flags of the script's main
    module, which an entry point (tf-tpe-tune) is not: it listed none, and exited 1."""
    args = argv[1:argv.index("--")] if "--" in argv else argv[1:]
    if not any(arg in HELP_FLAGS for arg in args):
        return
    module = flag_values.find_module_defining_flag(example_flag)
    listing = flag_values.module_help(module).strip("\n").splitlines()[1:]  # without "module:"
    print(doc.strip() + "\n\nflags:\n" + "\n".join(listing))
    if flag_values is flags.FLAGS:
        print("\nabsl's own flags (logging and more): --helpfull")
    sys.exit(EXIT_OK)


def one_line_warnings(prog: str) -> None:
    """Print the tuner's own warnings (`TunerInputWarning`) as `prog: warning: ...` on one line
    of stderr; other warnings as Python prints them."""
    from .checks import TunerInputWarning

    python_way = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, TunerInputWarning):
            print(f"{prog}: warning: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
        else:
            python_way(message, category, filename, lineno, file, line)

    warnings.showwarning = show


def fail(prog: str, message: str) -> None:
    print(f"{prog}: error: {message}", file=sys.stderr)
    sys.exit(EXIT_BAD_INPUT)


def parse_or_fail(prog: str, flag_values: flags.FlagValues, argv: list[str]) -> list[str]:
    """absl's parser exits 1 on a bad flag; bad input exits 2 here, with absl's first line."""
    try:
        return flag_values(argv)
    except flags.Error as err:
        fail(prog, str(err).splitlines()[0])


def run_guarded(prog: str, run: Callable[[], int], interrupted: str) -> int:
    """`run()`'s exit code; a `TunerInputError` fails as bad input, Ctrl-C prints `interrupted`
    and exits 130, any other exception is a bug: its traceback, exit 3."""
    from .errors import TunerInputError

    try:
        return run()
    except TunerInputError as err:
        fail(prog, str(err))
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception:  # noqa: BLE001  reported as a bug, with what a report needs
        traceback.print_exc()
        print(f"{prog}: internal error (a bug: please report it with the traceback above)", file=sys.stderr)
        return EXIT_INTERNAL
