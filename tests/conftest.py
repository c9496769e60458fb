"""Suite-wide JAX settings: float64 available for references, and no silent rank promotion."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")
# One compilation cache for the whole run, shared by both xdist workers and every subprocess
# they start (the CLI, kill/resume, debug-loss and notebook kernels recompile the same
# functions): JAX's persistent cache, every entry kept (~50 MB a run; `make clean` removes
# it). About 20% off the subprocess tests.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".cache", "jax-tests"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
