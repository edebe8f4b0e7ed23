import sys

from fulfilment_load.cli import main

sys.exit(main())
