// Spatial resampling kernels: Resize's interpolating passes, ConvTranspose and GridSample.
// Part of the kernels that generated models call (kernels.h includes this header at its end, and this header
// uses kernels.h's matrix-product micro-kernel); the same rules hold: standard C++17, shapes as
// compile-time constants from a parameter struct, no allocation.
#ifndef RULES_PURE_MODEL_RUNTIME_SPATIAL_H_
#define RULES_PURE_MODEL_RUNTIME_SPATIAL_H_

#include <cmath>
#include <cstddef>
#include <cstring>

#include "pure_model/kernels.h"

namespace pure_model {

// One axis of a separable resampling (Resize in linear or cubic mode, antialiased or not): the
// tensor is kOuter blocks of kIn x kInner elements and becomes kOuter blocks of kOut x kInner.
// Output coordinate j along the axis is the weighted sum of kTaps input coordinates,
// index[j * kTaps + t] with weight[j * kTaps + t]; the generator computes both tables, with the
// coordinate rules and edge handling of the node, so the kernel does no coordinate arithmetic.
// `outside` (nullptr when no coordinate is) flags output coordinates outside the input
// (tf_crop_and_resize), which take kFill. With kInner > 1 each tap adds a whole contiguous row,
// which vectorises; along the innermost axis (kInner == 1) each output is a short dot product.
// P: kOuter kIn kOut kInner kTaps kFill.
template <typename P, typename W>
inline void ResampleAxis(const float* x, const std::size_t* index, W weight, const std::size_t* outside, float* y) {
  for (int o = 0; o < P::kOuter; ++o) {
    const float* in = x + static_cast<std::size_t>(o) * P::kIn * P::kInner;
    float* out = y + static_cast<std::size_t>(o) * P::kOut * P::kInner;
    for (int j = 0; j < P::kOut; ++j) {
      float* row = out + static_cast<std::size_t>(j) * P::kInner;
      if (outside != nullptr && outside[j] != 0) {
        for (int i = 0; i < P::kInner; ++i) row[i] = P::kFill;
        continue;
      }
      const std::size_t* taps = index + static_cast<std::size_t>(j) * P::kTaps;
      const W w = weight + static_cast<std::size_t>(j) * P::kTaps;
      if constexpr (P::kInner == 1) {
        float acc = 0.f;
#pragma GCC unroll 4
        for (int t = 0; t < P::kTaps; ++t) acc += w[t] * in[taps[t]];
        row[0] = acc;
      } else {
        const float* first = in + taps[0] * P::kInner;
        for (int i = 0; i < P::kInner; ++i) row[i] = w[0] * first[i];
        for (int t = 1; t < P::kTaps; ++t) {
          const float* tap = in + taps[t] * P::kInner;
          const float wt = w[t];
          for (int i = 0; i < P::kInner; ++i) row[i] += wt * tap[i];
        }
      }
    }
  }
}

// ConvTranspose weights [C, M/group, KD, KH, KW] packed for GemmMicroKernel: per group, the
// matrix A[(m, kd, kh, kw)][c] in panels of kGemmRows rows, [group][panel][C/group][kGemmRows],
// zero rows padding the last panel. The generator packs constant weights itself (the same
// layout); weights computed at run time are packed into scratch by this.
template <typename P, typename W>
inline void PackConvTransposeWeights(W w, float* packed) {
  constexpr int kCg = P::kC / P::kGroups;
  constexpr int kRows = P::kM / P::kGroups * P::kKD * P::kKH * P::kKW;
  constexpr int kPanels = (kRows + kGemmRows - 1) / kGemmRows;
  for (int g = 0; g < P::kGroups; ++g) {
    for (int panel = 0; panel < kPanels; ++panel) {
      for (int c = 0; c < kCg; ++c) {
        const W src = w + static_cast<std::size_t>(g * kCg + c) * kRows;
        for (int i = 0; i < kGemmRows; ++i) {
          const int r = panel * kGemmRows + i;
          *packed++ = r < kRows ? src[r] : 0.f;
        }
      }
    }
  }
}

// The product and scatter, for weights already packed (`packed`, a pointer or a masked view).
template <typename P, typename W, typename B>
inline void ConvTransposePacked(const float* x, W packed, B bias, float* y, float* scratch) {
  constexpr int kCg = P::kC / P::kGroups;
  constexpr int kMg = P::kM / P::kGroups;
  constexpr int kTaps = P::kKD * P::kKH * P::kKW;
  constexpr int kRows = kMg * kTaps;
  constexpr int kPanels = (kRows + kGemmRows - 1) / kGemmRows;
  constexpr int kPositions = P::kD * P::kH * P::kW;
  constexpr int kOutPlane = P::kOD * P::kOH * P::kOW;
  // Kernel == stride, no padding, no dilation, and the output exactly the input times the
  // stride: every output element receives exactly one tap, so each result is written once (with
  // the bias), in place of the bias fill and adds. The kKW taps of one (m, kd, kh) are adjacent
  // rows of a panel (kGemmRows is a multiple of kKW), and interleave into one contiguous stretch
  // of an output row.
  constexpr bool kTiles = P::kKD == P::kStrideD && P::kKH == P::kStrideH && P::kKW == P::kStrideW &&
                          P::kPadD == 0 && P::kPadH == 0 && P::kPadW == 0 && P::kDilD == 1 && P::kDilH == 1 &&
                          P::kDilW == 1 && P::kOD == P::kD * P::kKD && P::kOH == P::kH * P::kKH &&
                          P::kOW == P::kW * P::kKW && kGemmRows % P::kKW == 0;
  float* panel_x = scratch;
  for (int n = 0; n < P::kN; ++n) {
    float* out = y + static_cast<std::size_t>(n) * P::kM * kOutPlane;
    for (int m = 0; m < P::kM && !kTiles; ++m) {
      const float b = OptionalAt(bias, m);
      for (int i = 0; i < kOutPlane; ++i) out[static_cast<std::size_t>(m) * kOutPlane + i] = b;
    }
    for (int g = 0; g < P::kGroups; ++g) {
      const float* in = x + (static_cast<std::size_t>(n) * P::kC + g * kCg) * kPositions;
      const W w_group = packed + static_cast<std::size_t>(g) * kPanels * kCg * kGemmRows;
      float* out_group = out + static_cast<std::size_t>(g) * kMg * kOutPlane;
      for (int p0 = 0; p0 < kPositions; p0 += kGemmCols) {
        const int cols = kPositions - p0 < kGemmCols ? kPositions - p0 : kGemmCols;
        for (int c = 0; c < kCg; ++c) {
          const float* src = in + static_cast<std::size_t>(c) * kPositions + p0;
          float* dst = panel_x + c * kGemmCols;
          for (int j = 0; j < cols; ++j) dst[j] = src[j];
          for (int j = cols; j < kGemmCols; ++j) dst[j] = 0.f;
        }
        // The panel's columns fall into runs of consecutive positions along one input row
        // (id, ih); within a run, a tap adds into one output row at a fixed stride.
        struct ColumnRun {
          int begin, end, id, ih, iw0;
        };
        ColumnRun runs[kGemmCols];
        int num_runs = 0;
        for (int j = 0; j < cols;) {
          const int p = p0 + j;
          const int iw0 = p % P::kW;
          const int length = cols - j < P::kW - iw0 ? cols - j : P::kW - iw0;
          runs[num_runs++] = {j, j + length, p / (P::kW * P::kH), p / P::kW % P::kH, iw0};
          j += length;
        }
        for (int panel = 0; panel < kPanels; ++panel) {
          GemmRow acc[kGemmRows];
          GemmMicroKernel<kCg>(w_group + static_cast<std::size_t>(panel) * kCg * kGemmRows, panel_x, acc);
          float tile[kGemmRows][kGemmCols];
          std::memcpy(tile, acc, sizeof(tile));
          const int rows = kRows - panel * kGemmRows < kGemmRows ? kRows - panel * kGemmRows : kGemmRows;
          if constexpr (kTiles) {
            for (int i = 0; i < rows; i += P::kKW) {
              const int r = panel * kGemmRows + i;  // the row of kw = 0
              const int tap = r % kTaps;
              const int kh = tap / P::kKW % P::kKH;
              const int kd = tap / (P::kKW * P::kKH);
              const float b = OptionalAt(bias, g * kMg + r / kTaps);
              float* plane = out_group + static_cast<std::size_t>(r / kTaps) * kOutPlane;
              for (int k = 0; k < num_runs; ++k) {
                const ColumnRun& run = runs[k];
                const int od = run.id * P::kKD + kd;
                const int oh = run.ih * P::kKH + kh;
                float* out_row = plane + (static_cast<std::size_t>(od) * P::kOH + oh) * P::kOW + run.iw0 * P::kKW;
                const int length = run.end - run.begin;
                for (int j = 0; j < length; ++j) {
                  for (int kw = 0; kw < P::kKW; ++kw) out_row[j * P::kKW + kw] = tile[i + kw][run.begin + j] + b;
                }
              }
            }
            continue;
          }
          for (int i = 0; i < rows; ++i) {
            const int r = panel * kGemmRows + i;
            const int tap = r % kTaps;
            const int kw = tap % P::kKW;
            const int kh = tap / P::kKW % P::kKH;
            const int kd = tap / (P::kKW * P::kKH);
            const int shift_d = kd * P::kDilD - P::kPadD;
            const int shift_h = kh * P::kDilH - P::kPadH;
            const int shift_w = kw * P::kDilW - P::kPadW;  // ow = iw * stride + shift_w
            // Input columns whose output column lies inside: iw in [iw_lo, iw_hi).
            const int iw_lo = shift_w >= 0 ? 0 : (-shift_w + P::kStrideW - 1) / P::kStrideW;
            const int iw_hi = P::kOW - 1 - shift_w < 0 ? 0 : (P::kOW - 1 - shift_w) / P::kStrideW + 1;
            float* plane = out_group + static_cast<std::size_t>(r / kTaps) * kOutPlane;
            const float* values = tile[i];
            for (int k = 0; k < num_runs; ++k) {
              const ColumnRun& run = runs[k];
              const int od = run.id * P::kStrideD + shift_d;
              const int oh = run.ih * P::kStrideH + shift_h;
              if (od < 0 || od >= P::kOD || oh < 0 || oh >= P::kOH) continue;
              float* out_row = plane + (static_cast<std::size_t>(od) * P::kOH + oh) * P::kOW;
              const int lo = run.iw0 > iw_lo ? run.iw0 : iw_lo;
              const int run_end = run.iw0 + run.end - run.begin;
              const int hi = run_end < iw_hi ? run_end : iw_hi;
              const float* src = values + run.begin;  // src[iw - run.iw0] is column iw's value
              for (int iw = lo; iw < hi; ++iw) out_row[iw * P::kStrideW + shift_w] += src[iw - run.iw0];
            }
          }
        }
      }
    }
  }
}

// Transposed convolution, N C D H W -> N M OD OH OW (1-D and 2-D as D = 1 and H = 1), as a
// matrix product and a scatter ("col2im"): per group, columns[(m, kd, kh, kw)][position] =
// sum over c of W[c][m, kd, kh, kw] * X[c][position], computed a panel of kGemmCols input
// positions at a time by the register-blocked GemmMicroKernel; each result then adds into the
// output element its tap reaches, od = id * kStrideD - kPadD + kd * kDilD (likewise h, w), when
// that lies inside the output. The output starts as the bias (or zero).
// `packed_w`: weights as PackConvTransposeWeights lays them out (when kPrepacked), else the
// node's plain weights, packed into `scratch` first. `scratch`: the panel of X (C/group x
// kGemmCols floats), then, without kPrepacked, the packed weights.
// P: kN kC kD kH kW kM kKD kKH kKW kOD kOH kOW kStrideD kStrideH kStrideW kPadD kPadH kPadW
//    kDilD kDilH kDilW kGroups kPrepacked.
template <typename P, typename W, typename B>
inline void ConvTranspose(const float* x, W w, B bias, float* y, float* scratch) {
  if constexpr (P::kPrepacked) {
    ConvTransposePacked<P>(x, w, bias, y, scratch);
  } else {
    float* packed = scratch + static_cast<std::size_t>(P::kC / P::kGroups) * kGemmCols;
    PackConvTransposeWeights<P>(w, packed);
    ConvTransposePacked<P>(x, static_cast<const float*>(packed), bias, y, scratch);
  }
}

// GridSample: output position p of image n reads input image n at the location grid[n][p]
// gives, (x, y) or (x, y, z) normalised to [-1, 1] across the input's W, H (and D) axes.
// The taps along each axis and the padding rules follow onnx's definition; the axes combine
// innermost first (W, then H, then D), as onnx's reference evaluator sums them.
enum class GridMode { kNearest, kLinear, kCubic };
enum class GridPadding { kZeros, kBorder, kReflection };

// Folds x into [lo, hi] by reflecting it at the bounds as often as needed.
inline double GridReflect(double x, double lo, double hi) {
  const double range = hi - lo;
  if (x < lo) {
    const double dx = lo - x;
    const int folds = static_cast<int>(dx / range);
    const double rest = dx - folds * range;
    return folds % 2 == 0 ? lo + rest : hi - rest;
  }
  if (x > hi) {
    const double dx = x - hi;
    const int folds = static_cast<int>(dx / range);
    const double rest = dx - folds * range;
    return folds % 2 == 0 ? hi - rest : lo + rest;
  }
  return x;
}

// The taps of one axis of extent `size` at normalised coordinate `v`: up to 4 input coordinates
// with weights; a tap outside the input under zero padding gets weight 0 (and coordinate 0).
template <GridMode kMode, GridPadding kPadding, bool kAlignCorners>
inline int GridAxisTaps(float v, int size, int* index, float* weight) {
  float x = kAlignCorners ? (v + 1.f) / 2.f * static_cast<float>(size - 1)
                          : ((v + 1.f) * static_cast<float>(size) - 1.f) / 2.f;
  const double lo = kAlignCorners ? 0.0 : -0.5;
  const double hi = kAlignCorners ? size - 1.0 : size - 0.5;
  if constexpr (kMode == GridMode::kNearest) x = std::nearbyint(x);  // halves to even
  if (x < lo || x > hi) {
    if constexpr (kPadding == GridPadding::kBorder) {
      x = x < 0.f ? 0.f : (x > static_cast<float>(size - 1) ? static_cast<float>(size - 1) : x);
    } else if constexpr (kPadding == GridPadding::kReflection) {
      x = static_cast<float>(GridReflect(x, lo, hi));
    }
  }
  int count = 1, first = 0;
  if constexpr (kMode == GridMode::kNearest) {
    first = static_cast<int>(x);
    weight[0] = 1.f;
  } else {
    const float floor_x = std::floor(x);
    const float t = x - floor_x;
    if constexpr (kMode == GridMode::kLinear) {
      count = 2;
      first = static_cast<int>(floor_x);
      weight[0] = 1.f - t;
      weight[1] = t;
    } else {
      constexpr float kA = -0.75f;
      count = 4;
      first = static_cast<int>(floor_x) - 1;
      const float d[4] = {t + 1.f, t, 1.f - t, 2.f - t};
      for (int k = 0; k < 4; ++k) {
        weight[k] = d[k] <= 1.f ? ((kA + 2.f) * d[k] - (kA + 3.f)) * d[k] * d[k] + 1.f
                                : ((kA * d[k] - 5.f * kA) * d[k] + 8.f * kA) * d[k] - 4.f * kA;
      }
    }
  }
  for (int k = 0; k < count; ++k) {
    int i = first + k;
    if (i < 0 || i >= size) {
      if constexpr (kPadding == GridPadding::kZeros) {
        weight[k] = 0.f;
        i = 0;
      } else if constexpr (kPadding == GridPadding::kBorder) {
        i = i < 0 ? 0 : size - 1;
      } else {
        i = static_cast<int>(GridReflect(i, lo, hi));
        i = i < 0 ? 0 : (i >= size ? size - 1 : i);
      }
    }
    index[k] = i;
  }
  return count;
}

// P: kN kC kD kH kW (input; kD = 1 for 2-D) kOD kOH kOW (output positions; kOD = 1 for 2-D)
//    kDims (2 or 3: coordinates per grid entry) kMode kPadding kAlignCorners.
template <typename P>
inline void GridSample(const float* x, const float* grid, float* y) {
  constexpr int kPlane = P::kD * P::kH * P::kW;
  constexpr int kOutPlane = P::kOD * P::kOH * P::kOW;
  for (int n = 0; n < P::kN; ++n) {
    for (int p = 0; p < kOutPlane; ++p) {
      const float* g = grid + (static_cast<std::size_t>(n) * kOutPlane + p) * P::kDims;
      int iw[4], ih[4], id[4] = {0};
      float ww[4], wh[4], wd[4] = {1.f};
      const int nw = GridAxisTaps<P::kMode, P::kPadding, P::kAlignCorners>(g[0], P::kW, iw, ww);
      const int nh = GridAxisTaps<P::kMode, P::kPadding, P::kAlignCorners>(g[1], P::kH, ih, wh);
      int nd = 1;
      if constexpr (P::kDims == 3) nd = GridAxisTaps<P::kMode, P::kPadding, P::kAlignCorners>(g[2], P::kD, id, wd);
      for (int c = 0; c < P::kC; ++c) {
        const float* plane = x + (static_cast<std::size_t>(n) * P::kC + c) * kPlane;
        float value = 0.f;
        for (int a = 0; a < nd; ++a) {
          float depth_sum = 0.f;
          for (int b = 0; b < nh; ++b) {
            const float* row = plane + (static_cast<std::size_t>(id[a]) * P::kH + ih[b]) * P::kW;
            float row_sum = 0.f;
            for (int k = 0; k < nw; ++k) row_sum += ww[k] * row[iw[k]];
            depth_sum += wh[b] * row_sum;
          }
          value += wd[a] * depth_sum;
        }
        y[(static_cast<std::size_t>(n) * P::kC + c) * kOutPlane + p] = value;
      }
    }
  }
}

}  // namespace pure_model

#endif  // RULES_PURE_MODEL_RUNTIME_SPATIAL_H_
