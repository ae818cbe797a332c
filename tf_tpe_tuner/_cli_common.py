"""What both commands (tf-tpe-tune, tf-tpe-export) do with bad input (one line, exit 2), Ctrl-C
(exit 130) and a bug (the traceback, exit 3)."""
import sys
import traceback
from typing import Callable

from absl import flags

EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED = 2, 3, 130


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
