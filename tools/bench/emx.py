"""The optional third column of //tools/bench: emmtrix's emx-onnx-cgen (PyPI), another ONNX-to-C
generator, given with `--emx=PATH` to its `emx-onnx-cgen` command.

For each model it generates C (`emx-onnx-cgen compile`, every dynamic dimension pinned to the
shape our code was built for, all weights inline), writes a timing main for the generated
function that matches the other two harnesses (same SplitMix64 inputs, same statistics, VmHWM,
one JSON line), and compiles both with gcc -O3 and the same -march as our code. Generate and
compile times are wall times of those two commands.
"""

import os
import re
import subprocess
import time

_SIGNATURE = re.compile(r"^void (\w+)\(([^)]*)\) \{$", re.M)
_PARAM = re.compile(r"^(const\s+)?(float|double|int64_t|int32_t|int8_t|uint8_t|bool)\s+(\w+)\s*((?:\[[^\]]*\])+)$")
_C_TYPES = {"float": ("float", 4), "double": ("double", 8), "int64_t": ("int64_t", 8),
            "int32_t": ("int32_t", 4), "int8_t": ("int8_t", 1), "uint8_t": ("uint8_t", 1), "bool": ("bool", 1)}

# Same numbers as <model>_benchmark and ort_benchmark: SplitMix64, one stream per input.
_FILL = {
    "float": "(float)(bits >> 40) * 0x1p-23f - 1.0f",
    "double": "(double)(bits >> 11) * 0x1p-52 - 1.0",
    "bool": "(bool)(bits >> 63)",
}

_MAIN = r"""// Written by //tools/bench (emx.py): times the function emx-onnx-cgen generated.
#define _POSIX_C_SOURCE 199309L
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "%(source)s"

static uint64_t state;
static uint64_t next_bits(void) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static int compare(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}
static long long peak_rss_kb(void) {
  FILE* f = fopen("/proc/self/status", "r");
  char line[256];
  long long kb = -1;
  if (!f) return -1;
  while (fgets(line, sizeof line, f)) if (sscanf(line, "VmHWM: %%lld kB", &kb) == 1) break;
  fclose(f);
  return kb;
}
%(buffers)s
static void run_once(void) { %(call)s; }
int main(int argc, char** argv) {
  long long runs = 50, warmup = 5, seed = 0;
  for (int i = 1; i < argc; ++i) {
    if (!strncmp(argv[i], "--runs=", 7)) runs = atoll(argv[i] + 7);
    else if (!strncmp(argv[i], "--warmup=", 9)) warmup = atoll(argv[i] + 9);
    else if (!strncmp(argv[i], "--seed=", 7)) seed = atoll(argv[i] + 7);
    else { fprintf(stderr, "usage: %%s [--runs=N] [--warmup=M] [--seed=S]\n", argv[0]); return 2; }
  }
  if (runs < 1) runs = 1;
%(fill)s
  for (long long i = 0; i < warmup; ++i) run_once();
  double* times = malloc(sizeof(double) * (size_t)runs);
  double total = 0;
  for (long long i = 0; i < runs; ++i) {
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    run_once();
    clock_gettime(CLOCK_MONOTONIC, &b);
    times[i] = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
    total += times[i];
  }
  qsort(times, (size_t)runs, sizeof(double), compare);
  size_t n = (size_t)runs, rank = (size_t)ceil(0.9 * (double)n);
  double median = n %% 2 ? times[n / 2] : (times[n / 2 - 1] + times[n / 2]) / 2;
  printf("{\"model\": \"%(name)s\", \"runtime\": \"emx-onnx-cgen\", \"runs\": %%lld, \"warmup\": %%lld, "
         "\"seed\": %%lld, \"median_ms\": %%.6g, \"min_ms\": %%.6g, \"mean_ms\": %%.6g, \"p90_ms\": %%.6g, "
         "\"max_ms\": %%.6g, \"peak_rss_kb\": %%lld, \"arena_bytes\": null, \"weight_bytes\": null, "
         "\"deterministic\": true}\n",
         runs, warmup, seed, median, times[0], total / (double)n, times[(rank ? rank : 1) - 1],
         times[n - 1], peak_rss_kb());
  return 0;
}
"""


class EmxError(Exception):
    pass


def parse_signature(source_text):
    """(function name, [(is_const, c_type, name, dims)]) of the generated entry point: the last
    top-level `void f(...)` definition whose parameters are all arrays."""
    found = None
    for match in _SIGNATURE.finditer(source_text):
        params = []
        for raw in match.group(2).split(","):
            param = _PARAM.match(raw.strip())
            if not param:
                params = None
                break
            dims = [int(d) for d in re.findall(r"\[(?:restrict\s+)?(\d+)\]", param.group(4))]
            params.append((bool(param.group(1)), param.group(2), param.group(3), dims))
        if params:
            found = (match.group(1), params)
    if found is None:
        raise EmxError("could not find the generated function's signature")
    return found


def write_main(source_path, name, function, params, path):
    buffers, fill, args = [], [], []
    input_index = 0
    for is_const, c_type, param, dims in params:
        count = 1
        for d in dims:
            count *= d
        buffer = f"buf_{param}"
        buffers.append(f"static {_C_TYPES[c_type][0]} {buffer}[{max(count, 1)}];")
        cast = f"({c_type} (*){''.join(f'[{d}]' for d in dims[1:])})" if len(dims) > 1 else f"({c_type} *)"
        args.append(cast + buffer)
        if is_const:
            input_index += 1
            value = _FILL.get(c_type, f"({c_type})(bits >> 62)")
            fill.append(f"  state = (uint64_t)seed ^ (0xd1b54a32d192ed03ull * {input_index}ull);\n"
                        f"  for (size_t i = 0; i < {count}; ++i) {{ uint64_t bits = next_bits(); {buffer}[i] = {value}; }}")
    with open(path, "w", encoding="utf-8") as f:
        f.write(_MAIN % {"source": source_path, "buffers": "\n".join(buffers), "fill": "\n".join(fill),
                         "call": f"{function}({', '.join(args)})", "name": name})


def _static_dims(onnx_path):
    """{(input, axis)} of the model's fixed input dimensions (onnx is in tools/bazel's root)."""
    import onnx

    model = onnx.load(onnx_path, load_external_data=False)
    return {(i.name, axis) for i in model.graph.input
            for axis, d in enumerate(i.type.tensor_type.shape.dim) if d.HasField("dim_value")}


def build(emx_command, name, onnx, shapes, march, workdir):
    """Generates, compiles and returns (binary, {"codegen_s", "compile_s", "source_bytes"})."""
    source = os.path.join(workdir, name + "_emx.c")
    command = [emx_command, "compile", "--large-weight-threshold", "0", "--model-name", "emx_" + name]
    static = _static_dims(onnx)
    for input_name, dims in shapes.items():
        for axis, dim in enumerate(dims):
            if (input_name, axis) not in static:  # emx refuses to pin a static dimension
                command += ["--input-dim", f"{input_name}:{axis}={dim}"]
    started = time.monotonic()
    result = subprocess.run(command + [onnx, source], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    codegen_s = time.monotonic() - started
    if result.returncode != 0:
        raise EmxError("emx-onnx-cgen failed: " + " / ".join(result.stdout.strip().splitlines()[-3:]))
    with open(source, encoding="utf-8", errors="replace") as f:
        function, params = parse_signature(f.read())
    main = os.path.join(workdir, name + "_emx_main.c")
    write_main(source, name, function, params, main)
    binary = os.path.join(workdir, name + "_emx_benchmark")
    started = time.monotonic()
    result = subprocess.run(["gcc", "-std=gnu11", "-O3", "-DNDEBUG", "-fPIC", "-pthread"] + march
                            + ["-o", binary, main, "-lm"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    compile_s = time.monotonic() - started
    if result.returncode != 0:
        raise EmxError("compiling emx-onnx-cgen's C failed: " + " / ".join(result.stdout.strip().splitlines()[-3:]))
    return binary, {"codegen_s": round(codegen_s, 3), "compile_s": round(compile_s, 3),
                    "source_bytes": os.path.getsize(source)}
