"""One family name through every layer: for every op in the registry (``_ops.OPS``), the files of
its family (``op.family``) exist under the family's name — backend modules, C++ kernel and header,
CUDA folder, binding, oracle, test file and benchmark — and every backend module that registers an
op is the one named for the op's family. Where a family has no such file, ``ABSENT`` says why;
files that look like a family's but belong to none are listed in ``NOT_FAMILIES`` with their role."""

import re
from pathlib import Path

import pytest

from linalg_core import _ops

ROOT = Path(__file__).resolve().parents[1]

# The files of family f, by layer.
LAYERS = {
    "backends/reference": "linalg_core/backends/reference/{f}.py",
    "backends/cpu": "linalg_core/backends/cpu/{f}.py",
    "backends/cuda": "linalg_core/backends/cuda/{f}.py",
    "backends/triton": "linalg_core/backends/triton/{f}.py",
    "cpu kernel": "csrc/cpu/{f}.cpp",
    "header": "csrc/include/linalg_core/{f}.h",
    "cuda params": "csrc/cuda/{f}/params.h",
    "cuda kernels": "csrc/cuda/{f}/kernels.cuh",
    "cuda launch": "csrc/cuda/{f}/launch.cu",
    "binding": "python/bind_{f}.cpp",
    "oracle": "tests/oracles/{f}.py",
    "test": "tests/test_{f}.py",
    "benchmark": "linalg_core/bench/{f}.py",
}
CUDA_LAYERS = ("backends/cuda", "cuda params", "cuda kernels", "cuda launch")

_NO_CUDA = {
    "convert": "convert has no CUDA kernel: CUDA tensors take torch's own conversion (the reference backend), "
               "which the CPU kernel matches bit for bit",
    "sampling": "sampling has no CUDA kernels: the Gram products run on torch's GEMM (the reference backend)",
}
# (family, layer) -> why the family has no file there.
ABSENT = {
    **{(f, layer): why for f, why in _NO_CUDA.items() for layer in CUDA_LAYERS},
    ("convert", "backends/triton"): "convert has no Triton kernel: on GPUs torch's conversion is the kernel",
    ("sampling", "backends/triton"): "sampling has no Triton kernels: on GPUs the Gram products run on torch's GEMM",
}
# Files in a family's place that are not a family, and what they are.
NOT_FAMILIES = {
    "tests/oracles/optim.py": "oracle of the GaLore projector and optimizers (no kernel op)",
    "linalg_core/backends/reference/philox.py": "Philox4x32-10 in torch, used by the reference random and sketch "
                                                "kernels",
    "linalg_core/backends/cuda/_launch.py": "the CUDA backend's device and stream helpers",
    "csrc/cpu/dispatch.cpp": "the run-time choice of the per-ISA kernel table",
    "csrc/cuda/common.cu": "build and runtime information of the CUDA part of _C",
    "csrc/cuda/not_built.cpp": "the launchers of a build without CUDA",
    "python/bind_info.cpp": "build, CPU and CUDA information",
    "tests/oracles/lowrank.py": "oracle of the low-rank public API (no kernel op)",
    "tests/oracles/regression.py": "oracle of least squares (no kernel op)",
    "tests/oracles/adapters.py": "oracle of the adapter initialisers (no kernel op)",
    "tests/oracles/vsa.py": "oracle of the VSA public API (no kernel op)",
    "tests/oracles/quant_formats.py": "oracle of the quantization formats built on the quant ops",
}

FAMILIES = sorted({op.family for op in _ops.OPS.values()})


def _path(layer, family):
    return ROOT / LAYERS[layer].format(f=family)


def test_every_op_names_a_known_family_and_every_family_has_ops():
    for name, op in _ops.OPS.items():
        assert op.family in _ops.FAMILIES, (name, op.family)
    assert FAMILIES == sorted(_ops.FAMILIES)
    with pytest.raises(ValueError, match="family='gram' is not one of"):
        _ops.define("no_such_op", "(Tensor x) -> Tensor", "", family="gram", key=None, fake=None)


@pytest.mark.parametrize("layer", sorted(LAYERS))
@pytest.mark.parametrize("family", FAMILIES)
def test_family_has_its_file_in_every_layer(family, layer):
    path = _path(layer, family)
    why = ABSENT.get((family, layer))
    if why is None:
        assert path.is_file(), f"{path.relative_to(ROOT)} is missing (ops {_ops_of(family)})"
    else:
        assert not path.exists(), f"{path.relative_to(ROOT)} exists: drop ABSENT[{family!r}, {layer!r}]"


def _ops_of(family):
    return ", ".join(name for name, op in _ops.OPS.items() if op.family == family)


def test_every_file_in_a_family_place_belongs_to_a_family():
    # A file named otherwise (csrc/cpu/gram.cpp next to bind_sampling.cpp) is a name that drifted.
    pattern = {layer: re.compile(re.escape(spec).replace(r"\{f\}", "(?P<f>[a-z_]+)") + "$")
               for layer, spec in LAYERS.items()}
    globs = ["linalg_core/backends/*/*.py", "csrc/cpu/*.cpp", "csrc/include/linalg_core/*.h", "csrc/cuda/*",
             "python/bind_*.cpp", "tests/oracles/*.py", "tests/test_*.py", "linalg_core/bench/*.py"]
    shared_headers = {"cpu_kernels.h", "cuda_kernels.h", "dtype.h", "memory.h", "philox.h"}
    for g in globs:
        for path in sorted(ROOT.glob(g)):
            rel = path.relative_to(ROOT).as_posix()
            if path.name == "__init__.py" or rel in NOT_FAMILIES or path.name in shared_headers:
                continue
            if g in ("tests/test_*.py", "linalg_core/bench/*.py"):
                # tests and benchmarks also cover the public API's other parts, but an op's name must
                # not stand in for its family's (tests/test_fwht.py next to tests/test_sketch.py)
                stem = path.stem.split("_", 1)[1] if g == "tests/test_*.py" else path.stem
                if stem in _ops.OPS and stem not in _ops.FAMILIES:
                    pytest.fail(f"{rel}: op {stem!r} belongs in the file of its family {_ops.OPS[stem].family!r}")
                continue
            if g == "csrc/cuda/*":
                if path.is_dir():
                    assert path.name in _ops.FAMILIES, f"{rel}/ is not named for a family"
                else:
                    assert rel in NOT_FAMILIES, f"{rel} is neither a family folder nor listed in NOT_FAMILIES"
                continue
            families = {m.group("f") for p in pattern.values() if (m := p.match(rel))}
            assert families & set(_ops.FAMILIES), f"{rel} is not named for a family ({', '.join(_ops.FAMILIES)})"


@pytest.mark.parametrize("family", FAMILIES)
def test_cuda_backend_exactly_where_cuda_kernels_are(family):
    have = [_path(layer, family).is_file() for layer in CUDA_LAYERS]
    assert all(have) or not any(have), dict(zip(CUDA_LAYERS, have))


def test_backend_modules_register_only_their_family_ops():
    _ops.load_backends()
    for name, op in _ops.OPS.items():
        assert op.impls, name
        for backend, impl in op.impls.items():
            assert impl.module == f"linalg_core.backends.{backend}.{op.family}", (name, backend, impl.module)


def test_build_and_bindings_follow_the_family_list():
    cmake = (ROOT / "CMakeLists.txt").read_text()
    listed = re.search(r"set\(LC_FAMILIES ([a-z_ ]+)\)", cmake).group(1).split()
    assert sorted(listed) == sorted(_ops.FAMILIES)
    module = (ROOT / "python/module.cpp").read_text()
    cpu_kernels = (ROOT / "csrc/include/linalg_core/cpu_kernels.h").read_text()
    for f in _ops.FAMILIES:
        assert f"bind_{f}(m);" in module, f
        assert f'#include "linalg_core/{f}.h"' in cpu_kernels, f
        for macro in (f"LC_{f.upper()}_CPU_KERNELS", f"LC_{f.upper()}_CPU_TABLE"):
            assert macro in (ROOT / f"csrc/include/linalg_core/{f}.h").read_text(), (f, macro)
            assert macro in cpu_kernels, (f, macro)
        assert f'#include "linalg_core/{f}.h"' in (ROOT / f"python/bind_{f}.cpp").read_text(), f
        launch = _path("cuda launch", f)
        if launch.is_file():
            assert f'#include "linalg_core/{f}.h"' in launch.read_text() and '#include "params.h"' in launch.read_text()


@pytest.mark.parametrize("family", FAMILIES)
def test_family_test_runs_every_usable_backend_and_the_gpu(family):
    text = _path("test", family).read_text()
    assert "usable_backends(" in text, f"tests/test_{family}.py takes no backend list"
    assert "pytest.mark.gpu" in text, f"tests/test_{family}.py has no gpu-marked case"
    assert f"tests.oracles import {family}" in text, f"tests/test_{family}.py does not use tests/oracles/{family}.py"
