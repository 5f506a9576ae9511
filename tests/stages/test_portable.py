"""One commit, one set of bytes on any x86-64 machine: what git tracks does not depend on the CPU.

A second CPU is emulated in one run: OpenBLAS on another kernel (``OPENBLAS_CORETYPE``) and one
thread, numpy's loops without AVX2 and AVX-512 (``NPY_DISABLE_CPU_FEATURES``), and PyTorch asked for
other kernels (``ATEN_CPU_CAPABILITY``, ``ONEDNN_MAX_CPU_ISA``, ``MKL_CBWR``), which fmproto.representation.cnn must
override. The compiled ANN libraries cannot be swapped at run time, so their machine code is read:
built for the x86-64 baseline, it uses no AVX register.
"""

import hashlib
import importlib.util
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from fmproto.representation import hog
from repos import BIN, run

ANOTHER_CPU = {
    "OPENBLAS_CORETYPE": "Nehalem",  # SSE4.2 kernels; this machine's own is chosen when unset
    "OPENBLAS_NUM_THREADS": "1",
    "NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL",
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_CBWR": "AUTO",
}

TRAIN_TINY_NETWORK = """
import hashlib, sys
import numpy as np
from fmproto.representation import cnn
rng = np.random.default_rng(0)
images, labels = rng.integers(0, 256, size=(256, 16, 16), dtype=np.uint8), rng.integers(0, 4, size=256)
state = cnn.fit(images, labels, 4, width=4, embedding=8, epochs=2, seed=3, threads=2)
features = cnn.embed(images, state)  # in numpy, on OpenBLAS
print(hashlib.sha256(b"".join(state[name].tobytes() for name in sorted(state)) + features.tobytes()).hexdigest())
"""


def _env(**extra) -> dict:
    env = {key: value for key, value in os.environ.items() if key not in ANOTHER_CPU}
    return {**env, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **extra}


def _tracked_bytes(repo: Path) -> dict[str, str]:
    """SHA-256 of every file git tracks in the repository's results: dvc.lock, metrics/ and plots/."""
    files = [repo / "dvc.lock", *sorted((repo / "metrics").rglob("*")), *sorted((repo / "plots").rglob("*"))]
    return {str(f.relative_to(repo)): hashlib.sha256(f.read_bytes()).hexdigest() for f in files if f.is_file()}


@pytest.mark.parametrize("module", ["annoy", "hnswlib"])
def test_ann_libraries_are_built_for_the_x86_64_baseline(module):
    """No AVX, AVX-512 or FMA instruction: what ``make env`` builds computes alike on any x86-64 CPU."""
    spec = importlib.util.find_spec(module)
    if spec is None:
        pytest.skip(f"{module} is not installed")
    if shutil.which("objdump") is None:
        pytest.skip("objdump (binutils) is not installed")
    origin = Path(spec.origin)
    libraries = [origin] if origin.suffix == ".so" else sorted(origin.parent.glob("*.so"))
    assert libraries, f"no compiled library found for {module}"
    for library in libraries:
        code = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(library)], capture_output=True,
                              text=True, check=True).stdout
        wide = re.findall(r"\t(v\w+)\s.*%[yz]mm\d+|\t(vfmadd\w+)", code)
        assert not wide, f"{library.name} was compiled for this CPU (e.g. {wide[0]}); rebuild it with `make env`"


@pytest.mark.e2e
def test_the_network_trains_and_embeds_alike_on_another_cpu():
    pytest.importorskip("torch")
    here = run([sys.executable, "-c", TRAIN_TINY_NETWORK], Path.cwd(), env=_env())
    there = run([sys.executable, "-c", TRAIN_TINY_NETWORK], Path.cwd(), env=_env(**ANOTHER_CPU))
    assert here.stdout.strip() == there.stdout.strip() != ""


@pytest.mark.e2e
def test_the_pipeline_gives_the_same_bytes_on_another_cpu(repo):
    """Every stage, the network and HOG included, run here and then again (`dvc repro -f`) on the
    emulated CPU: dvc.lock, metrics and plots byte for byte."""
    pytest.importorskip("torch")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["features"].update(kind="cnn+hog", hog_cell=3, cnn_width=4, cnn_embedding=8, cnn_epochs=2)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run([BIN / "dvc", "repro"], repo, env=_env())
    here = _tracked_bytes(repo)
    run([BIN / "dvc", "repro", "-f"], repo, env=_env(**ANOTHER_CPU))
    assert _tracked_bytes(repo) == here


def test_hog_angles_are_the_c_librarys():
    """uint8 images take their gradient angles from a table of math.atan2; other inputs numpy's."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(20, 15, 13), dtype=np.uint8)
    table = hog._angles()
    for gy, gx in [(0, 0), (-255, 3), (17, -255), (255, 255), (-1, 0)]:
        assert table[gy + 255, gx + 255] == np.float32(math.atan2(gy, gx))
    np.testing.assert_allclose(hog.hog(images, 3, 9), hog.hog(images.astype(np.float32), 3, 9), atol=1e-5)
