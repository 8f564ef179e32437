"""``python -m peft_mpn.cli``: the ``peft-mpn`` command."""

import sys

from . import main

sys.exit(main())
