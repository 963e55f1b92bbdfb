"""``python -m hf_patchdist.cli``: the ``hf-patchdist`` command."""

import sys

from .main import main


sys.exit(main())
