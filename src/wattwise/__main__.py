import sys

from wattwise.cli.main import main

sys.exit(main())
