"""`python -m serving.edge exports/ [options]`: see `serving.edge.server.main`.

Not `kerasdl.console.quiet_startup()`: it sends stderr through a filter process for the whole
run, and the server writes one log line per request there, which would then reach the log
after the answer reaches the client, and cost a pipe hop per line. TensorFlow's start-up lines
are filtered where TensorFlow is imported (`serving.edge.quiet.import_tensorflow`, the
SavedModel backend), and its C++ log level is set here, before anything can import it.
"""

import os
import sys

from serving.edge.server import main

if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # As quiet_startup sets it: ERROR and FATAL still show.
    sys.exit(main())
