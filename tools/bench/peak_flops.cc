// peak_flops: this core's float32 FMA throughput, the ceiling for the benchmark's GFLOP/s.
//
//   tools/bazel run //tools/bench:peak_flops
//
// Runs chains of fused multiply-adds on 16 (AVX-512) or 12 (AVX2) independent accumulators, enough
// to cover the FMA latency times the number of FMA pipes of current x86 cores, with AVX-512 and AVX2 where
// the CPU has them, and reports the best of 25 short trials (the best one is the one least
// disturbed by whatever else runs on the machine). One thread: the benchmarks run on one
// core too. Prints one JSON line: {"avx512_gflops": ..., "avx2_gflops": ..., "peak_gflops": ...}.
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>

namespace {

constexpr long kIterations = 4'000'000;
constexpr int kTrials = 25;

volatile float g_sink;

// Sixteen named accumulators rather than an array: with an array gcc keeps them in memory and
// the loop measures store-to-load forwarding instead of the FMA units.
#define DECLARE(k, type, set1) type acc##k = set1(static_cast<float>(k));
#define STEP(k, fma, unused) acc##k = fma(acc##k, a, b);
#define ADD(k, add, unused) sum = add(sum, acc##k);
#define SIXTEEN(M, x, y) \
  M(0, x, y) M(1, x, y) M(2, x, y) M(3, x, y) M(4, x, y) M(5, x, y) M(6, x, y) M(7, x, y) \
  M(8, x, y) M(9, x, y) M(10, x, y) M(11, x, y) M(12, x, y) M(13, x, y) M(14, x, y) M(15, x, y)
// AVX2 has 16 vector registers: 12 accumulators leave room for the two constants.
#define TWELVE(M, x, y) \
  M(0, x, y) M(1, x, y) M(2, x, y) M(3, x, y) M(4, x, y) M(5, x, y) M(6, x, y) M(7, x, y) \
  M(8, x, y) M(9, x, y) M(10, x, y) M(11, x, y)

// Every accumulator runs acc = acc * a + b, which converges to b / (1 - a): no overflow, no
// denormals, and no way for the compiler to fold the chain.
__attribute__((target("avx512f"))) double Avx512Gflops() {
  const __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(0.001f);
  SIXTEEN(DECLARE, __m512, _mm512_set1_ps)
  const auto start = std::chrono::steady_clock::now();
  for (long i = 0; i < kIterations; ++i) {
    SIXTEEN(STEP, _mm512_fmadd_ps, )
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  __m512 sum = _mm512_setzero_ps();
  SIXTEEN(ADD, _mm512_add_ps, )
  g_sink = _mm512_reduce_add_ps(sum);
  return 16.0 * 16 * 2 * kIterations / seconds / 1e9;
}

__attribute__((target("avx2,fma"))) double Avx2Gflops() {
  const __m256 a = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(0.001f);
  TWELVE(DECLARE, __m256, _mm256_set1_ps)
  const auto start = std::chrono::steady_clock::now();
  for (long i = 0; i < kIterations; ++i) {
    TWELVE(STEP, _mm256_fmadd_ps, )
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  __m256 sum = _mm256_setzero_ps();
  TWELVE(ADD, _mm256_add_ps, )
  float lanes[8];
  _mm256_storeu_ps(lanes, sum);
  g_sink = lanes[0] + lanes[7];
  return 12.0 * 8 * 2 * kIterations / seconds / 1e9;
}

double Best(double (*measure)()) {
  double best = 0;
  for (int i = 0; i < kTrials; ++i) best = std::max(best, measure());
  return best;
}

}  // namespace

int main() {
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f");
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const double avx512_gflops = avx512 ? Best(Avx512Gflops) : 0;
  const double avx2_gflops = avx2 ? Best(Avx2Gflops) : 0;
  std::fprintf(stderr, "peak_flops: one core, float32 FMA: AVX-512 %.1f GFLOP/s, AVX2 %.1f GFLOP/s\n",
               avx512_gflops, avx2_gflops);
  std::printf("{\"avx512_gflops\": %s, \"avx2_gflops\": %s, \"peak_gflops\": %.4g}\n",
              avx512 ? std::to_string(avx512_gflops).c_str() : "null",
              avx2 ? std::to_string(avx2_gflops).c_str() : "null",
              std::max(avx512_gflops, avx2_gflops));
  return 0;
}
