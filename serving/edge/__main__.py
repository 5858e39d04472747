"""`python -m serving.edge exports/ [options]`: see `serving.edge.server.main`."""

import sys

from serving.edge.server import main

if __name__ == "__main__":
    from kerasdl.console import quiet_startup  # Before TensorFlow loads; see kerasdl/console.py.

    quiet_startup()
    sys.exit(main())
