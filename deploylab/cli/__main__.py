import sys

from deploylab.cli import main

sys.exit(main())
