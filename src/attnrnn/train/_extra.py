"""The application's own dependencies, the ``train`` extra (the library needs JAX alone),
checked when ``attnrnn.train`` is first imported: all missing ones said at once, in one
``ImportError`` (``name="attnrnn.train"``, which the ``attnrnn`` command prints as one line),
rather than one module at a time — matplotlib only when a run ends."""

import importlib.util

EXTRA = ("optax", "orbax", "tqdm", "matplotlib")


def _installed(name) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent missing, or blocked in sys.modules
        return False


MISSING = [name for name in EXTRA if not _installed(name)]
if MISSING:
    raise ImportError(f"attnrnn.train needs the training extra ({', '.join(MISSING)} not "
                      "installed): pip install 'attnrnn[train]'", name="attnrnn.train")
