"""``python -m attnrnn`` is the ``attnrnn`` command line."""

from attnrnn_command import main

raise SystemExit(main())
