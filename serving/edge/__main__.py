"""`python -m serving.edge exports/ [options]`: see `serving.edge.server.main`."""

import sys

from serving.edge.server import main

if __name__ == "__main__":
    sys.exit(main())
