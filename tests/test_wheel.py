"""The wheel works outside the source tree: built from the repository, installed into a
fresh virtual environment (its dependencies borrowed from the test environment, without its
editable install of attnrnn), it imports and trains from the command line. Catches what an
editable install hides: a subpackage or entry point missing from the wheel."""

import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_installs_and_trains(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "--wheel-dir", str(dist), str(ROOT)], check=True)
    (wheel,) = dist.glob("attnrnn-*.whl")
    fresh = tmp_path / "fresh"
    venv.create(fresh, with_pip=True)
    python = fresh / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-index", str(wheel)], check=True)
    # Dependencies (jax, optax, ...) from this environment: a plain path, so its .pth files
    # (the editable install's finder among them) are not read.
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "borrowed-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    where = subprocess.run([str(python), "-c", "import attnrnn, attnrnn.train; "
                            "print(attnrnn.__file__)"], capture_output=True, text=True, check=True)
    assert where.stdout.strip().startswith(site), where.stdout  # the wheel's, not src/
    out = tmp_path / "run"
    run = subprocess.run([str(fresh / "bin" / "attnrnn"), "train", "--level", "easy", "--steps",
                          "20", "--hidden", "8", "--heldout", "64", "--no-progress", "--out",
                          str(out)], capture_output=True, text=True,
                         env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert run.returncode == 0, run.stderr[-2000:]
    assert (out / "summary.json").exists() and (out / "params").is_dir()


def test_the_library_needs_jax_alone():
    """With the `train` extra's packages absent, the library imports and runs, and the
    `attnrnn` command says in one line which extra to install (exit 1)."""
    script = (
        "import sys\n"
        "for name in ('optax', 'orbax', 'tqdm', 'matplotlib'):\n"
        "    sys.modules[name] = None  # as if not installed: importing it fails\n"
        "import jax.numpy as jnp\n"
        "import attnrnn as ar\n"
        "import jax\n"
        "params = ar.gated_rnn_init(jax.random.PRNGKey(0), 3, 4)\n"
        "print(ar.gated_rnn(params, jnp.ones((5, 3))).shape)\n"
        "import attnrnn_command\n"
        "sys.argv = ['attnrnn', 'train', '--steps', '1']\n"
        "sys.exit(attnrnn_command.main())\n")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert run.returncode == 1, run.stderr[-2000:]
    assert run.stdout.strip() == "(5, 4)"
    assert run.stderr.strip() == (
        "attnrnn: attnrnn.train needs the training extra (optax, orbax, tqdm, matplotlib not "
        "installed): pip install 'attnrnn[train]'")
