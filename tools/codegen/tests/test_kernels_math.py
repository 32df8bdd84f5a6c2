"""The kernels' vectorisable Exp, Tanh and Sigmoid against float64 references, over the whole
float range: a dense sweep of every region plus random bit patterns, NaN and the infinities."""

import os
import shutil
import subprocess

import numpy as np
import pytest

from helpers import _kernels_include

_PROGRAM = r"""
#include <cstdio>
#include <vector>
#include "pure_model/kernels.h"
int main(int argc, char** argv) {
  (void)argc;
  std::FILE* in = std::fopen(argv[1], "rb");
  std::vector<float> x(%(count)d), e(x.size()), t(x.size()), s(x.size());
  if (std::fread(x.data(), sizeof(float), x.size(), in) != x.size()) return 1;
  std::fclose(in);
  for (std::size_t i = 0; i < x.size(); ++i) e[i] = pure_model::Exp(x[i]);
  for (std::size_t i = 0; i < x.size(); ++i) t[i] = pure_model::Tanh(x[i]);
  for (std::size_t i = 0; i < x.size(); ++i) s[i] = pure_model::Sigmoid(x[i]);
  std::FILE* out = std::fopen(argv[2], "wb");
  for (const auto* v : {&e, &t, &s}) std::fwrite(v->data(), sizeof(float), v->size(), out);
  std::fclose(out);
  return 0;
}
"""

# The whole domain, densest where the functions change: around 0, the polynomial/formula switch of
# Tanh at 0.625, the subnormal results of Exp below -87.3 and its overflow near 88.72.
_SWEEP = np.concatenate([
    np.linspace(-110, 95, 400_001), np.linspace(-1, 1, 100_001), np.linspace(0.6, 0.65, 10_001),
    np.linspace(-104, -86, 50_001), np.linspace(88, 89.5, 20_001), np.geomspace(1e-30, 1e-3, 5_001),
    -np.geomspace(1e-30, 1e-3, 5_001), [0.0, -0.0, np.inf, -np.inf, np.nan],
]).astype(np.float32)


def _inputs():
    rng = np.random.default_rng(3)
    bits = rng.integers(0, 1 << 32, 200_000, dtype=np.uint64).astype(np.uint32)
    return np.concatenate([_SWEEP, bits.view(np.float32)])


def _ulp_errors(got, expected):
    with np.errstate(over="ignore"):
        expected32 = expected.astype(np.float32)
    both_nan = np.isnan(got) & np.isnan(expected32)
    same = (got == expected32) | both_nan
    ulp = np.spacing(np.abs(expected32)).astype(np.float64)
    ulp[ulp == 0] = np.spacing(np.float32(0))
    with np.errstate(invalid="ignore"):
        error = np.abs(got.astype(np.float64) - expected) / ulp
    # Results that should be subnormal count as right within the smallest normal float: Sigmoid's
    # 1 / (1 + e^-x), like the library's, gives 0 where e^-x overflows (x < -88.7).
    tiny = (np.abs(expected) < np.finfo(np.float32).tiny) & (np.abs(got) < np.finfo(np.float32).tiny)
    return np.where(same | tiny, 0.0, np.nan_to_num(error, nan=np.inf))


@pytest.mark.parametrize("flags", [["-O2"], ["-O3", "-march=x86-64-v3"]], ids=["baseline", "avx2-fma"])
def test_exp_tanh_sigmoid_within_a_few_ulp(tmp_path, flags):
    x = _inputs()
    source = tmp_path / "math.cc"
    source.write_text(_PROGRAM % dict(count=x.size))
    binary = str(tmp_path / "math")
    subprocess.run([shutil.which("g++") or "c++", "-std=c++17", "-Wall", "-Werror", *flags, "-I", _kernels_include(),
                    str(source), "-o", binary], check=True)
    x.tofile(tmp_path / "in.bin")
    subprocess.run([binary, str(tmp_path / "in.bin"), str(tmp_path / "out.bin")], check=True)
    exp_got, tanh_got, sigmoid_got = np.fromfile(tmp_path / "out.bin", np.float32).reshape(3, -1)
    with np.errstate(invalid="ignore"):
        x64 = x.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        references = {"Exp": (exp_got, np.exp(x64)), "Tanh": (tanh_got, np.tanh(x64)),
                      "Sigmoid": (sigmoid_got, 1 / (1 + np.exp(-x64)))}
    for name, (got, expected) in references.items():
        errors = _ulp_errors(got, expected)
        worst = int(np.argmax(errors))
        print(f"{name}: worst {errors[worst]:.2f} ulp at {x[worst]!r}")
        assert errors[worst] <= 3, (f"{name}({x[worst]!r}) = {got[worst]!r}, expected {expected[worst]!r} "
                                    f"({errors[worst]:.1f} ulp)")


if os.uname().machine != "x86_64":  # the -march flag above is x86's
    pytestmark = pytest.mark.skip(reason="x86-64 flags")
