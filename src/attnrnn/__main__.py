"""``python -m attnrnn`` is the ``attnrnn`` command line."""

from attnrnn.cli import main

raise SystemExit(main())
