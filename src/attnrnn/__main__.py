"""``python -m attnrnn`` is the ``attnrnn`` command line."""

from attnrnn.train.cli import main

raise SystemExit(main())
