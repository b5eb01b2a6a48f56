import os
import signal
import sys


def _interrupted(signum, frame):  # Ctrl-C before the CLI is imported: one line, exit 130, no traceback
    sys.stderr.write("envdoctor: interrupted\n")
    os._exit(130)


signal.signal(signal.SIGINT, _interrupted)

from envdoctor.entry import main  # noqa: E402

if __name__ == "__main__":
    main()
