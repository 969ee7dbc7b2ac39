import signal
import sys


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


# Before the imports: a SIGTERM this early stops like Ctrl-C (exit 130).
signal.signal(signal.SIGTERM, _interrupt)
try:
    from .cli import entry
except KeyboardInterrupt:
    print("gapstream: interrupted", file=sys.stderr)
    sys.exit(130)

entry()
