import sys

from enrollment.cli import main

sys.exit(main())
