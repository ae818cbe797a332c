"""What both commands (tf-tpe-tune, tf-tpe-export) do with bad input: one line, exit 2."""
import sys

from absl import flags

EXIT_BAD_INPUT = 2


def fail(prog: str, message: str) -> None:
    print(f"{prog}: error: {message}", file=sys.stderr)
    sys.exit(EXIT_BAD_INPUT)


def parse_or_fail(prog: str, flag_values: flags.FlagValues, argv: list[str]) -> list[str]:
    """absl's parser exits 1 on a bad flag; bad input exits 2 here, with absl's first line."""
    try:
        return flag_values(argv)
    except flags.Error as err:
        fail(prog, str(err).splitlines()[0])
