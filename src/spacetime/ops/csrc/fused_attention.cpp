// Exact fp32 softmax attention for the shapes video models run on CPU: many short
// sequences (temporal attention), small heads over long sequences, 3D windows.
//
// Built by spacetime.ops.fused_attention with the system C++ compiler (no torch headers,
// loaded through ctypes). Inputs are (b, heads, n, d) with any strides whose last one is 1.
// Three paths, each computing the softmax in base 2 with a polynomial exp2 and a backward that
// recomputes the probabilities from the saved log-sum-exp (no (n, m) matrix is stored):
//
//   lanes  (n, m <= 32, d >= one vector): one SIMD lane per sequence; a group of 8 or 16
//          sequences is packed lane-interleaved and every step is plain vector arithmetic.
//   small  (d = dv = 8 or 16, longer sequences): one lane per query (forward, dq) or per key
//          (dk, dv); a head's channels are register-resident, rows are read as broadcasts.
//   blocked (everything else): one thread owns whole sequences; for each block of queries the
//          scores stay in L1/L2; register-tiled products (8 x 32 on 16-float vectors with AVX-512).
//
// Everything is plain C++ with GCC vector extensions: 16-float vectors where AVX-512 is on,
// 8-float ones otherwise.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

namespace {

typedef float v8 __attribute__((vector_size(32)));
typedef float v8u __attribute__((vector_size(32), aligned(4)));
typedef int32_t i8 __attribute__((vector_size(32)));

constexpr float kLog2e = 1.4426950408889634f;
constexpr int kW = 8;  // floats per vector

inline v8 ld(const float* p) { return *reinterpret_cast<const v8u*>(p); }
inline void st(float* p, v8 x) { *reinterpret_cast<v8u*>(p) = x; }
inline v8 splat(float x) { return v8{x, x, x, x, x, x, x, x}; }
inline v8 vmax(v8 a, v8 b) { return a > b ? a : b; }
inline float hmax(v8 x) {
  float r = x[0];
  for (int i = 1; i < kW; i++) r = std::max(r, x[i]);
  return r;
}
inline float hsum(v8 x) {
  float r = 0.0f;
  for (int i = 0; i < kW; i++) r += x[i];
  return r;
}

// Vectors of kL floats: 16 with AVX-512, 8 otherwise (the lane path's width, and the block
// size of the in-register transposes).
#if defined(__AVX512F__)
constexpr int kL = 16;
#else
constexpr int kL = 8;
#endif
typedef float vl __attribute__((vector_size(kL * 4)));
typedef float vlu __attribute__((vector_size(kL * 4), aligned(4)));
typedef int32_t il __attribute__((vector_size(kL * 4)));

inline vl lld(const float* p) { return *reinterpret_cast<const vlu*>(p); }
inline void lst(float* p, vl x) { *reinterpret_cast<vlu*>(p) = x; }
inline vl lsplat(float x) { return vl{} + x; }
inline vl vmaxl(vl a, vl b) { return a > b ? a : b; }

// a (kL x kL, one row per vector) transposed in place: log2(kL) stages, each swapping the
// off-diagonal H x H blocks of every 2H x 2H block (two-input shuffles).
template <int H>
inline void swap_blocks(vl* a) {
  il lo, hi;
  for (int j = 0; j < kL; j++) {
    lo[j] = (j & H) ? kL + j - H : j;
    hi[j] = (j & H) ? kL + j : j + H;
  }
  for (int i = 0; i < kL; i++)
    if (!(i & H)) {
      vl x = a[i], y = a[i + H];
      a[i] = __builtin_shuffle(x, y, lo);
      a[i + H] = __builtin_shuffle(x, y, hi);
    }
}

inline void transpose_lanes(vl* a) {
  if constexpr (kL == 16) swap_blocks<8>(a);
  swap_blocks<4>(a);
  swap_blocks<2>(a);
  swap_blocks<1>(a);
}

// 2^x for x <= 0 (larger x is not produced here): 1 ulp-level polynomial; x < -126 gives 0
// (so a masked key, -inf, has probability exactly 0). V: a float vector, I: its int vector.
template <class V, class I>
inline V exp2_poly(V x) {
  const V lo = V{} - 126.0f;
  I keep = x >= lo;
  x = x > lo ? x : lo;
  const V magic = V{} + 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  V t = x + magic;
  V f = x - (t - magic);  // in [-0.5, 0.5]
  I n = (I)t - (I)magic;
  V p = V{} + 1.5403530e-4f;
  p = p * f + 1.3333558e-3f;
  p = p * f + 9.6181291e-3f;
  p = p * f + 5.5504109e-2f;
  p = p * f + 2.4022651e-1f;
  p = p * f + 6.9314718e-1f;
  p = p * f + 1.0f;
  V r = p * (V)((n + 127) << 23);
  return (V)((I)r & keep);
}

inline v8 exp2v(v8 x) { return exp2_poly<v8, i8>(x); }
inline vl exp2_lanes(vl x) { return exp2_poly<vl, il>(x); }

// C (R x N, ldc) = alpha * A @ B (+ C when acc). A(r, k) = A[r*ar + k*ak]; B (K x N) has row
// stride ldb and N % 8 == 0. Register tile: ROWS x 16 (or x 8 at the edge); with AVX-512, 8 x 32
// on 16-float vectors first (wide_tile).
template <int ROWS, int COLS>
inline void tile(int K, const float* A, long ar, long ak, const float* B, long ldb, float* C, long ldc,
                 float alpha, bool acc) {
  constexpr int NV = COLS / kW;
  v8 c[ROWS][NV];
  for (int i = 0; i < ROWS; i++)
    for (int j = 0; j < NV; j++) c[i][j] = splat(0.0f);
  for (int kk = 0; kk < K; kk++) {
    v8 b[NV];
    for (int j = 0; j < NV; j++) b[j] = ld(B + kk * ldb + j * kW);
    for (int i = 0; i < ROWS; i++) {
      v8 a = splat(A[i * ar + kk * ak]);
      for (int j = 0; j < NV; j++) c[i][j] += a * b[j];
    }
  }
  const v8 al = splat(alpha);
  for (int i = 0; i < ROWS; i++)
    for (int j = 0; j < NV; j++) {
      float* p = C + i * ldc + j * kW;
      st(p, acc ? ld(p) + al * c[i][j] : al * c[i][j]);
    }
}

#if defined(__AVX512F__)
// tile() on 16-float vectors (vl, kL = 16 here): ROWS x 32 columns.
template <int ROWS>
inline void wide_tile(int K, const float* A, long ar, long ak, const float* B, long ldb, float* C, long ldc,
                      float alpha, bool acc) {
  vl c[ROWS][2];
  for (int i = 0; i < ROWS; i++) c[i][0] = c[i][1] = vl{};
  for (int kk = 0; kk < K; kk++) {
    const vl b0 = lld(B + kk * ldb), b1 = lld(B + kk * ldb + 16);
    for (int i = 0; i < ROWS; i++) {
      const float a = A[i * ar + kk * ak];
      c[i][0] += a * b0;
      c[i][1] += a * b1;
    }
  }
  for (int i = 0; i < ROWS; i++)
    for (int j = 0; j < 2; j++) {
      float* p = C + i * ldc + 16 * j;
      lst(p, acc ? lld(p) + alpha * c[i][j] : alpha * c[i][j]);
    }
}
#endif

template <int ROWS>
inline void row_panel(int N, int K, const float* A, long ar, long ak, const float* B, long ldb, float* C, long ldc,
                      float alpha, bool acc) {
  int n0 = 0;
#if defined(__AVX512F__)
  for (; n0 + 32 <= N; n0 += 32) wide_tile<ROWS>(K, A, ar, ak, B + n0, ldb, C + n0, ldc, alpha, acc);
#endif
  for (; n0 + 16 <= N; n0 += 16) tile<ROWS, 16>(K, A, ar, ak, B + n0, ldb, C + n0, ldc, alpha, acc);
  if (n0 < N) tile<ROWS, 8>(K, A, ar, ak, B + n0, ldb, C + n0, ldc, alpha, acc);
}

void gemm(int R, int N, int K, const float* A, long ar, long ak, const float* B, long ldb, float* C, long ldc,
          float alpha, bool acc) {
  int r = 0;
#if defined(__AVX512F__)  // 8 x 32 tiles: 16 accumulators of the 32 registers (AVX2 has 16 in all)
  for (; r + 8 <= R; r += 8) row_panel<8>(N, K, A + r * ar, ar, ak, B, ldb, C + r * ldc, ldc, alpha, acc);
#endif
  for (; r + 4 <= R; r += 4) row_panel<4>(N, K, A + r * ar, ar, ak, B, ldb, C + r * ldc, ldc, alpha, acc);
  for (; r < R; r++) row_panel<1>(N, K, A + r * ar, ar, ak, B, ldb, C + r * ldc, ldc, alpha, acc);
}

struct Tensor4 {  // a (b, heads, rows, cols) view: base pointer and element strides
  const float* p;
  const int64_t* s;
  const float* at(long b, long h, long r) const { return p + b * s[0] + h * s[1] + r * s[2]; }
};

struct Problem {
  Tensor4 q, k, v, o, bias;  // bias.p == nullptr: no bias; bias strides are (b, h, n, m)
  long B, H, n, m, d, dv;
  float scale;
  bool causal;
  int threads;
};

inline long round8(long x) { return (x + 7) / 8 * 8; }

// Base-2 logits of queries [r0, r0 + rows) against keys [0, mb) into S (rows x mb):
// alpha * q k^T + bias * log2(e), -inf for causal, padded and masked keys.
// q: the sequence's queries packed row-major (n x d).
void logits(const Problem& P, long b, long h, long r0, long rows, long mb, const float* q, const float* kt,
            float* S) {
  const float alpha = P.scale * kLog2e;
  gemm(rows, mb, P.d, q + r0 * P.d, P.d, 1, kt, round8(P.m), S, mb, alpha, false);
  const float ninf = -INFINITY;
  for (long r = 0; r < rows; r++) {
    float* s = S + r * mb;
    long i = r0 + r;
    if (P.bias.p) {
      const float* br = P.bias.at(b, h, i);
      long sm = P.bias.s[3];
      for (long j = 0; j < P.m && j < mb; j++) s[j] += br[j * sm] * kLog2e;
    }
    long end = P.causal ? std::min(P.m, i + 1) : P.m;
    for (long j = end; j < mb; j++) s[j] = ninf;
  }
}

// Keys a query block needs: all of them, or (causal) those up to its last query.
inline long key_extent(const Problem& P, long r0, long rows) {
  long m = P.causal ? std::min(P.m, r0 + rows) : P.m;
  return round8(m);
}

long block_rows(const Problem& P) {  // queries per block: about 32 KiB of scores
  long mp = round8(P.m);
  long rows = std::max(4L, (8192 / mp) / 4 * 4);
  return std::min(rows, P.n);
}

// Sequences packed per group: rows (r x c) of sequences (b, h) .. (b, h + g - 1), one sequence
// after another (g x r x c), read row by row across the group. A short sequence's rows lie far
// apart in a strided view (temporal attention's: a frame apart) and share one cache set, so
// fetching them one sequence at a time misses on every row; where the sequences of a row lie
// side by side (temporal attention's view) a group's row is one run of g * c floats instead.
// Everything after works on the packed copies; outputs are written to packed buffers and
// stored the same way.
inline void copy_row(float* dst, const float* src, long c) {
  for (long k = 0; k < c; k += kW) st(dst + k, ld(src + k));
}

void pack_group(const Tensor4& t, long b, long h, long g, long r, long c, float* buf) {
  for (long i = 0; i < r; i++)
    for (long j = 0; j < g; j++) copy_row(buf + (j * r + i) * c, t.at(b, h + j, i), c);
}

void store_group(const float* buf, float* base, const int64_t* st, long b, long h, long g, long r, long c) {
  for (long i = 0; i < r; i++)
    for (long j = 0; j < g; j++) copy_row(base + b * st[0] + (h + j) * st[1] + i * st[2], buf + (j * r + i) * c, c);
}

// Sequences per group: about 32 KiB of each operand (one sequence when a sequence is longer).
long group_size(const Problem& P) {
  long per = std::max(P.n, P.m) * std::max(P.d, P.dv);
  return std::max(1L, std::min(16L, 8192 / per));
}

// kt (d x mp): packed k (m x d) transposed, zero-padded keys; whole kL x kL blocks through
// registers (transpose_lanes), the edges element by element.
void transpose_keys(const float* k, long m, long d, float* kt) {
  long mp = round8(m), mf = m / kL * kL, df = d / kL * kL;
  for (long c = 0; c < d; c++) std::fill(kt + c * mp + m, kt + (c + 1) * mp, 0.0f);
  for (long j0 = 0; j0 < mf; j0 += kL)
    for (long c0 = 0; c0 < df; c0 += kL) {
      vl a[kL];
      for (long l = 0; l < kL; l++) a[l] = lld(k + (j0 + l) * d + c0);
      transpose_lanes(a);
      for (long c = 0; c < kL; c++) lst(kt + (c0 + c) * mp + j0, a[c]);
    }
  for (long j = 0; j < m; j++)
    for (long c = (j < mf ? df : 0); c < d; c++) kt[c * mp + j] = k[j * d + c];
}

struct Group {  // one group's packed operands and outputs (see pack_group)
  std::vector<float> q, k, v, o, go, dq, dk, dv;
};

// One row of base-2 logits (mb, a multiple of 8) in place to exp2(x - max); its log2-sum-exp to
// *lse (inf when every key is masked); returns 1 / sum (0 then).
float softmax_numerators(float* row, long mb, float* lse) {
  const long wide = mb / kL * kL;
  vl mxl = lsplat(-INFINITY), suml = vl{};
  for (long j = 0; j < wide; j += kL) mxl = vmaxl(mxl, lld(row + j));
  float mx = -INFINITY;
  for (int l = 0; l < kL; l++) mx = std::max(mx, mxl[l]);
  for (long j = wide; j < mb; j += kW) mx = std::max(mx, hmax(ld(row + j)));
  const float m_ = std::isinf(mx) ? 0.0f : mx;
  for (long j = 0; j < wide; j += kL) {
    vl e = exp2_lanes(lld(row + j) - m_);
    lst(row + j, e);
    suml += e;
  }
  float total = 0.0f;
  for (int l = 0; l < kL; l++) total += suml[l];
  for (long j = wide; j < mb; j += kW) {
    v8 e = exp2v(ld(row + j) - splat(m_));
    st(row + j, e);
    total += hsum(e);
  }
  *lse = total > 0.0f ? m_ + std::log2(total) : INFINITY;
  return total > 0.0f ? 1.0f / total : 0.0f;
}

// One sequence's forward from packed q, k, v into packed o; S and kt are scratch.
void forward_one(const Problem& P, long b, long h, const float* q, const float* k, const float* v, float* o,
                 float* lse, float* kt, float* S) {
  const long qb = block_rows(P);
  std::vector<float> inv(qb);
  transpose_keys(k, P.m, P.d, kt);
  for (long r0 = 0; r0 < P.n; r0 += qb) {
    long rows = std::min(qb, P.n - r0), mb = key_extent(P, r0, rows);
    logits(P, b, h, r0, rows, mb, q, kt, S);
    for (long r = 0; r < rows; r++) inv[r] = softmax_numerators(S + r * mb, mb, lse + r0 + r);
    gemm(rows, P.dv, mb < P.m ? mb : P.m, S, mb, 1, v, P.dv, o + r0 * P.dv, P.dv, 1.0f, false);
    for (long r = 0; r < rows; r++)  // normalized after the product: dv multiplies a row instead of mb
      for (long c = 0; c < P.dv; c += kW) st(o + (r0 + r) * P.dv + c, ld(o + (r0 + r) * P.dv + c) * splat(inv[r]));
  }
}

void forward_range(const Problem& P, float* out, float* lse, long s0, long s1) {
  const long mp = round8(P.m), qb = block_rows(P), G = group_size(P);
  std::vector<float> kt(P.d * mp), S(qb * mp), q(G * P.n * P.d), k(G * P.m * P.d), v(G * P.m * P.dv),
      o(G * P.n * P.dv);
  for (long s = s0; s < s1;) {
    long b = s / P.H, h = s % P.H, g = std::min({G, s1 - s, P.H - h});
    pack_group(P.q, b, h, g, P.n, P.d, q.data());
    pack_group(P.k, b, h, g, P.m, P.d, k.data());
    pack_group(P.v, b, h, g, P.m, P.dv, v.data());
    for (long j = 0; j < g; j++)
      forward_one(P, b, h + j, q.data() + j * P.n * P.d, k.data() + j * P.m * P.d, v.data() + j * P.m * P.dv,
                  o.data() + j * P.n * P.dv, lse + (s + j) * P.n, kt.data(), S.data());
    store_group(o.data(), out, P.o.s, b, h, g, P.n, P.dv);
    s += g;
  }
}

struct Grads {
  Tensor4 dout;
  const float* lse;
  float *dq, *dk, *dv;  // outputs, strides as q, k, v
  const int64_t *dqs, *dks, *dvs;
};

struct Packed {  // one sequence's operands and outputs, contiguous
  const float *q, *k, *kt, *vt, *o, *go, *lse;
  float *dq, *dk, *dv;  // dk, dv accumulate over the query blocks
};

void backward_block(const Problem& P, long b, long h, long r0, long rows, const Packed& X, float* S, float* dP) {
  long mb = key_extent(P, r0, rows), mr = std::min(mb, P.m);
  logits(P, b, h, r0, rows, mb, X.q, X.kt, S);
  const float* go = X.go + r0 * P.dv;
  gemm(rows, mb, P.dv, go, P.dv, 1, X.vt, round8(P.m), dP, mb, 1.0f, false);  // dP = dO v^T
  for (long r = 0; r < rows; r++) {
    float l = X.lse[r0 + r];
    const float* orow = X.o + (r0 + r) * P.dv;
    const float* grow = go + r * P.dv;
    v8 acc = splat(0.0f);
    for (long c = 0; c < P.dv; c += kW) acc += ld(orow + c) * ld(grow + c);
    const float delta = hsum(acc), lv = l;  // lv = inf (a query with no key): exp2(x - inf) = 0
    float* srow = S + r * mb;
    float* drow = dP + r * mb;
    const long wide = mb / kL * kL;
    for (long j = 0; j < wide; j += kL) {
      vl p = exp2_lanes(lld(srow + j) - lv);
      lst(srow + j, p);
      lst(drow + j, p * (lld(drow + j) - delta));  // d loss / d logit
    }
    for (long j = wide; j < mb; j += kW) {
      v8 p = exp2v(ld(srow + j) - splat(lv));
      st(srow + j, p);
      st(drow + j, p * (ld(drow + j) - splat(delta)));
    }
  }
  gemm(rows, P.d, mr, dP, mb, 1, X.k, P.d, X.dq + r0 * P.d, P.d, P.scale, false);
  gemm(mr, P.d, rows, dP, 1, mb, X.q + r0 * P.d, P.d, X.dk, P.d, P.scale, true);  // dK += dS^T q
  gemm(mr, P.dv, rows, S, 1, mb, go, P.dv, X.dv, P.dv, 1.0f, true);              // dV += P^T dO
}

void backward_range(const Problem& P, const Grads& G, long s0, long s1) {
  const long mp = round8(P.m), qb = block_rows(P), gs = group_size(P);
  std::vector<float> kt(P.d * mp), vt(P.dv * mp), S(qb * mp), dP(qb * mp);
  const long nq = P.n * P.d, nk = P.m * P.d, nv = P.m * P.dv, no = P.n * P.dv;
  Group X{std::vector<float>(gs * nq), std::vector<float>(gs * nk), std::vector<float>(gs * nv),
          std::vector<float>(gs * no), std::vector<float>(gs * no), std::vector<float>(gs * nq),
          std::vector<float>(gs * nk), std::vector<float>(gs * nv)};
  for (long s = s0; s < s1;) {
    long b = s / P.H, h = s % P.H, g = std::min({gs, s1 - s, P.H - h});
    pack_group(P.q, b, h, g, P.n, P.d, X.q.data());
    pack_group(P.k, b, h, g, P.m, P.d, X.k.data());
    pack_group(P.v, b, h, g, P.m, P.dv, X.v.data());
    pack_group(P.o, b, h, g, P.n, P.dv, X.o.data());
    pack_group(G.dout, b, h, g, P.n, P.dv, X.go.data());
    std::fill(X.dk.begin(), X.dk.begin() + g * nk, 0.0f);
    std::fill(X.dv.begin(), X.dv.begin() + g * nv, 0.0f);
    for (long j = 0; j < g; j++) {
      transpose_keys(X.k.data() + j * nk, P.m, P.d, kt.data());
      transpose_keys(X.v.data() + j * nv, P.m, P.dv, vt.data());
      Packed one{X.q.data() + j * nq, X.k.data() + j * nk, kt.data(), vt.data(), X.o.data() + j * no,
                 X.go.data() + j * no, G.lse + (s + j) * P.n, X.dq.data() + j * nq, X.dk.data() + j * nk,
                 X.dv.data() + j * nv};
      for (long r0 = 0; r0 < P.n; r0 += qb) backward_block(P, b, h + j, r0, std::min(qb, P.n - r0), one, S.data(),
                                                           dP.data());
    }
    store_group(X.dq.data(), G.dq, G.dqs, b, h, g, P.n, P.d);
    store_group(X.dk.data(), G.dk, G.dks, b, h, g, P.m, P.d);
    store_group(X.dv.data(), G.dv, G.dvs, b, h, g, P.m, P.dv);
    s += g;
  }
}

// ---------------------------------------------------------------------------------------------
// Many short sequences (temporal attention: T = 4-32): one SIMD lane per sequence. A group of kL
// sequences is packed lane-interleaved, element (row, col) of every sequence in one vector, so
// every product, the softmax and the backward are plain vector arithmetic with no horizontal
// step and no tile edge left idle, whatever T is. The scores of a group stay in L1/L2.

// Register tile rows x cols of the lane products: 4 x 4 of the 32 vector registers with AVX-512,
// 2 x 4 of 16 otherwise.
constexpr int kTR = kL == 16 ? 4 : 2;
constexpr int kTC = 4;

// A lane matrix: element (r, c) is the vector at p + (r * rs + c * cs) * kL.
struct LMat {
  float* p;
  long rs, cs;
  float* at(long r, long c) const { return p + (r * rs + c * cs) * kL; }
};

// C = alpha * A @ B (+ C when acc), per lane; A is R x K, B is K x N.
template <int TR, int TC>
inline void ltile(long K, const LMat& A, const LMat& B, const LMat& C, long r0, long c0, float alpha, bool acc) {
  vl c[TR][TC];
  for (int i = 0; i < TR; i++)
    for (int j = 0; j < TC; j++) c[i][j] = vl{};
  for (long k = 0; k < K; k++) {
    vl a[TR], b[TC];
    for (int i = 0; i < TR; i++) a[i] = lld(A.at(r0 + i, k));
    for (int j = 0; j < TC; j++) b[j] = lld(B.at(k, c0 + j));
    for (int i = 0; i < TR; i++)
      for (int j = 0; j < TC; j++) c[i][j] += a[i] * b[j];
  }
  for (int i = 0; i < TR; i++)
    for (int j = 0; j < TC; j++) {
      float* p = C.at(r0 + i, c0 + j);
      lst(p, acc ? lld(p) + alpha * c[i][j] : alpha * c[i][j]);
    }
}

template <int TR>
inline void lrow(long N, long K, const LMat& A, const LMat& B, const LMat& C, long r0, float alpha, bool acc) {
  long c0 = 0;
  for (; c0 + kTC <= N; c0 += kTC) ltile<TR, kTC>(K, A, B, C, r0, c0, alpha, acc);
  for (; c0 < N; c0++) ltile<TR, 1>(K, A, B, C, r0, c0, alpha, acc);
}

void lgemm(long R, long N, long K, const LMat& A, const LMat& B, const LMat& C, float alpha, bool acc) {
  long r0 = 0;
  for (; r0 + kTR <= R; r0 += kTR) lrow<kTR>(N, K, A, B, C, r0, alpha, acc);
  for (; r0 < R; r0++) lrow<1>(N, K, A, B, C, r0, alpha, acc);
}

// Where sequence s (= batch * H + head) of a (b, heads, rows, cols) view starts.
inline long seq_offset(const int64_t* st, long s, long H) { return (s / H) * st[0] + (s % H) * st[1]; }

// Sequences s .. s + g - 1 of t (rows x cols each; a group may span batch items) into kL lanes;
// lanes >= g are zero. Whole kL x kL blocks go through registers (transpose_lanes), a last partial
// block of columns element by element. Each row prefetches the row kAhead further (past the last
// row: the next group's first rows). In the temporal view a sequence's rows lie a frame apart,
// often a power of two, so every row of a group falls in the same cache sets: prefetching whole
// groups ahead evicts itself, a few rows ahead does not.
constexpr long kAhead = 4;

void pack_lanes(const Tensor4& t, long H, long s, long g, long rows, long cols, float* dst) {
  const long full = cols / kL * kL;
  const float *src[kL], *next[kL];
  for (long l = 0; l < kL; l++) {
    src[l] = t.p + seq_offset(t.s, s + std::min(l, g - 1), H);
    next[l] = t.p + seq_offset(t.s, s + kL + l, H);
  }
  if (g < kL) std::fill(dst, dst + rows * cols * kL, 0.0f);
  for (long i = 0; i < rows; i++) {
    float* out = dst + i * cols * kL;
    const long r = i * t.s[2], ia = i + kAhead;
    const float* const* pf = ia < rows ? src : next;
    const long ra = (ia < rows ? ia : ia - rows) * t.s[2];
    for (long c0 = 0; c0 < full; c0 += kL) {
      vl a[kL];
      for (long l = 0; l < kL; l++) {
        a[l] = l < g ? lld(src[l] + r + c0) : vl{};
        __builtin_prefetch(pf[l] + ra + c0);
      }
      transpose_lanes(a);
      for (long c = 0; c < kL; c++) lst(out + (c0 + c) * kL, a[c]);
    }
    for (long l = 0; l < g; l++)
      for (long c = full; c < cols; c++) out[c * kL + l] = src[l][r + c];
  }
}

void store_lanes(const float* src, float* base, const int64_t* st, long H, long s, long g, long rows, long cols) {
  const long full = cols / kL * kL;
  float* dst[kL];
  for (long l = 0; l < g; l++) dst[l] = base + seq_offset(st, s + l, H);
  for (long i = 0; i < rows; i++) {
    const float* in = src + i * cols * kL;
    const long r = i * st[2];
    for (long c0 = 0; c0 < full; c0 += kL) {
      vl a[kL];
      for (long c = 0; c < kL; c++) a[c] = lld(in + (c0 + c) * kL);
      transpose_lanes(a);
      for (long l = 0; l < g; l++) lst(dst[l] + r + c0, a[l]);
    }
    for (long l = 0; l < g; l++)
      for (long c = full; c < cols; c++) dst[l][r + c] = in[c * kL + l];
  }
}

struct LGroup {  // one group's lane-packed operands, outputs and scratch
  std::vector<float> q, k, v, o, go, dq, dk, dv, S, dP, lse;
  LGroup(const Problem& P, bool backward) {
    const long n = P.n, m = P.m;
    q.resize(n * P.d * kL), k.resize(m * P.d * kL), v.resize(m * P.dv * kL), o.resize(n * P.dv * kL);
    S.resize(n * m * kL), lse.resize(n * kL);
    if (backward) {
      go.resize(n * P.dv * kL), dq.resize(n * P.d * kL), dk.resize(m * P.d * kL), dv.resize(m * P.dv * kL);
      dP.resize(n * m * kL);
    }
  }
};

// S = base-2 logits of the group: alpha q k^T + bias log2(e), -inf where causal hides a key.
void lane_logits(const Problem& P, long s, long g, LGroup& X) {
  const long n = P.n, m = P.m, d = P.d;
  LMat S{X.S.data(), m, 1};
  lgemm(n, m, d, LMat{X.q.data(), d, 1}, LMat{X.k.data(), 1, d}, S, P.scale * kLog2e, false);
  if (P.bias.p)
    for (long l = 0; l < g; l++)
      for (long i = 0; i < n; i++) {
        const float* br = P.bias.p + seq_offset(P.bias.s, s + l, P.H) + i * P.bias.s[2];
        for (long j = 0; j < m; j++) S.at(i, j)[l] += br[j * P.bias.s[3]] * kLog2e;
      }
  if (P.causal)
    for (long i = 0; i < n; i++)
      for (long j = i + 1; j < m; j++) lst(S.at(i, j), lsplat(-INFINITY));
}

void lane_forward(const Problem& P, long s, long g, LGroup& X) {
  const long n = P.n, m = P.m;
  lane_logits(P, s, g, X);
  for (long i = 0; i < n; i++) {  // softmax per lane; a lane with no key keeps lse = inf, p = 0
    float* row = X.S.data() + i * m * kL;
    vl mx = lsplat(-INFINITY), sum = vl{};
    for (long j = 0; j < m; j++) mx = vmaxl(mx, lld(row + j * kL));
    mx = mx > lsplat(-INFINITY) ? mx : vl{};
    for (long j = 0; j < m; j++) {
      vl e = exp2_lanes(lld(row + j * kL) - mx);
      lst(row + j * kL, e);
      sum += e;
    }
    vl inv = sum > vl{} ? 1.0f / sum : vl{};
    for (long j = 0; j < m; j++) lst(row + j * kL, lld(row + j * kL) * inv);
    for (int l = 0; l < kL; l++) X.lse[i * kL + l] = sum[l] > 0.0f ? mx[l] + std::log2(sum[l]) : INFINITY;
  }
  lgemm(n, P.dv, m, LMat{X.S.data(), m, 1}, LMat{X.v.data(), P.dv, 1}, LMat{X.o.data(), P.dv, 1}, 1.0f, false);
}

void pack_qkv(const Problem& P, long s, long g, LGroup& X) {
  pack_lanes(P.q, P.H, s, g, P.n, P.d, X.q.data());
  pack_lanes(P.k, P.H, s, g, P.m, P.d, X.k.data());
  pack_lanes(P.v, P.H, s, g, P.m, P.dv, X.v.data());
}

void lane_forward_range(const Problem& P, float* out, float* lse, long s0, long s1) {
  LGroup X(P, false);
  for (long s = s0; s < s1;) {
    long g = std::min((long)kL, s1 - s);
    pack_qkv(P, s, g, X);
    lane_forward(P, s, g, X);
    store_lanes(X.o.data(), out, P.o.s, P.H, s, g, P.n, P.dv);
    for (long l = 0; l < g; l++)
      for (long i = 0; i < P.n; i++) lse[(s + l) * P.n + i] = X.lse[i * kL + l];
    s += g;
  }
}

void lane_backward(const Problem& P, long s, long g, LGroup& X) {
  const long n = P.n, m = P.m, d = P.d, dv = P.dv;
  lane_logits(P, s, g, X);
  lgemm(n, m, dv, LMat{X.go.data(), dv, 1}, LMat{X.v.data(), 1, dv}, LMat{X.dP.data(), m, 1}, 1.0f, false);
  for (long i = 0; i < n; i++) {
    const vl lv = lld(X.lse.data() + i * kL);  // inf in a lane with no key: p = 0 there
    float* sp = X.S.data() + i * m * kL;
    float* dp = X.dP.data() + i * m * kL;
    vl delta = vl{};  // o_i . do_i, as sum_j p_ij dP_ij: the output need not be read
    for (long j = 0; j < m; j++) {
      vl p = exp2_lanes(lld(sp + j * kL) - lv);
      lst(sp + j * kL, p);
      delta += p * lld(dp + j * kL);
    }
    for (long j = 0; j < m; j++) lst(dp + j * kL, lld(sp + j * kL) * (lld(dp + j * kL) - delta));  // d loss / d logit
  }
  LMat St{X.S.data(), 1, m}, dS{X.dP.data(), m, 1}, dSt{X.dP.data(), 1, m};
  lgemm(n, d, m, dS, LMat{X.k.data(), d, 1}, LMat{X.dq.data(), d, 1}, P.scale, false);
  lgemm(m, d, n, dSt, LMat{X.q.data(), d, 1}, LMat{X.dk.data(), d, 1}, P.scale, false);
  lgemm(m, dv, n, St, LMat{X.go.data(), dv, 1}, LMat{X.dv.data(), dv, 1}, 1.0f, false);
}

void lane_backward_range(const Problem& P, const Grads& G, long s0, long s1) {
  LGroup X(P, true);
  for (long s = s0; s < s1;) {
    long g = std::min((long)kL, s1 - s);
    pack_qkv(P, s, g, X);
    pack_lanes(G.dout, P.H, s, g, P.n, P.dv, X.go.data());
    std::fill(X.lse.begin(), X.lse.end(), INFINITY);
    for (long l = 0; l < g; l++)
      for (long i = 0; i < P.n; i++) X.lse[i * kL + l] = G.lse[(s + l) * P.n + i];
    lane_backward(P, s, g, X);
    store_lanes(X.dq.data(), G.dq, G.dqs, P.H, s, g, P.n, P.d);
    store_lanes(X.dk.data(), G.dk, G.dks, P.H, s, g, P.m, P.d);
    store_lanes(X.dv.data(), G.dv, G.dvs, P.H, s, g, P.m, P.dv);
    s += g;
  }
}

// The lane path serves sequences up to 32 long with head dims of at least one vector whose packed
// group (backward) fits in about 1 MiB.
bool lanes_serve(const Problem& P) {
  long floats = (2 * P.n * P.d + 2 * P.m * P.d + 2 * P.m * P.dv + 2 * P.n * P.dv + 2 * P.n * P.m) * kL;
  return P.n <= 32 && P.m <= 32 && P.d >= kL && P.dv >= kL && floats * 4 <= (1L << 20);
}

// ---------------------------------------------------------------------------------------------
// Small heads over long sequences (spatial attention at head_dim 8 or 16): one SIMD lane per
// query in the forward and the dq pass, one per key in the dk/dv pass. At d = 8 a score is only
// 8 FMAs, too few to hide a row-wise softmax and a tile's broadcasts; with lanes across queries
// (keys) the softmax statistics, the exp and all products are plain vector arithmetic on a
// head's channels held in registers, and every key (query) row is read as broadcasts.

inline vl lane_index() {
  vl r;
  for (int l = 0; l < kL; l++) r[l] = (float)l;
  return r;
}

struct Rows {  // one sequence of a (b, heads, rows, cols) view
  const float* p;
  long rs;
  const float* row(long i) const { return p + i * rs; }
};

inline Rows rows_of(const Tensor4& t, long s, long H) { return Rows{t.p + seq_offset(t.s, s, H), t.s[2]}; }

// Columns c < C of rows r0 .. r0 + kL - 1 (those < n) as C lane vectors, times alpha; other lanes 0.
template <int C>
inline void gather_rows(const Rows& X, long r0, long n, float alpha, vl* out) {
  for (int c = 0; c < C; c++) out[c] = vl{};
  for (long l = 0; l < kL && r0 + l < n; l++) {
    const float* row = X.row(r0 + l);
    for (int c = 0; c < C; c++) out[c][l] = row[c] * alpha;
  }
}

template <int C>
inline void scatter_rows(const vl* in, float* base, long rs, long r0, long n, vl scale) {
  for (long l = 0; l < kL && r0 + l < n; l++)
    for (int c = 0; c < C; c++) base[(r0 + l) * rs + c] = in[c][l] * scale[l];
}

// The bias of query i0 + l * di and key j0 + l * dj in lane l (lanes past the ends repeat the last).
inline vl bias_lanes(const Problem& P, long s, long i0, long di, long j0, long dj) {
  const float* base = P.bias.p + seq_offset(P.bias.s, s, P.H);
  vl r;
  for (long l = 0; l < kL; l++) {
    long i = std::min(i0 + l * di, P.n - 1), j = std::min(j0 + l * dj, P.m - 1);
    r[l] = base[i * P.bias.s[2] + j * P.bias.s[3]] * kLog2e;
  }
  return r;
}

template <int D, int DV>
void small_forward_seq(const Problem& P, long s, float* out, float* lse, float* St) {
  const Rows Q = rows_of(P.q, s, P.H), K = rows_of(P.k, s, P.H), V = rows_of(P.v, s, P.H);
  float* O = out + seq_offset(P.o.s, s, P.H);
  const vl lane = lane_index(), ninf = lsplat(-INFINITY);
  for (long r0 = 0; r0 < P.n; r0 += kL) {
    vl qt[D], acc[DV], mx = ninf, sum = vl{};
    gather_rows<D>(Q, r0, P.n, P.scale * kLog2e, qt);
    const long mend = P.causal ? std::min(P.m, r0 + kL) : P.m;
    for (long j = 0; j < mend; j++) {  // base-2 logits of the kL queries against key j
      const float* kr = K.row(j);
      vl sc = vl{};
      for (int c = 0; c < D; c++) sc += kr[c] * qt[c];
      if (P.bias.p) sc += bias_lanes(P, s, r0, 1, j, 0);
      if (P.causal) sc = lane + (float)(r0 - j) >= vl{} ? sc : ninf;
      lst(St + j * kL, sc);
      mx = vmaxl(mx, sc);
    }
    mx = mx > ninf ? mx : vl{};  // a query with no key: p = 0, output 0, lse = inf
    for (int c = 0; c < DV; c++) acc[c] = vl{};
    for (long j = 0; j < mend; j++) {
      vl p = exp2_lanes(lld(St + j * kL) - mx);
      sum += p;
      const float* vr = V.row(j);
      for (int c = 0; c < DV; c++) acc[c] += p * vr[c];
    }
    scatter_rows<DV>(acc, O, P.o.s[2], r0, P.n, sum > vl{} ? 1.0f / sum : vl{});
    for (long l = 0; l < kL && r0 + l < P.n; l++)
      lse[s * P.n + r0 + l] = sum[l] > 0.0f ? mx[l] + std::log2(sum[l]) : INFINITY;
  }
}

inline vl lanes_of(const float* x, long r0, long n, float fill) {  // x[r0 + l], fill past n
  vl r = lsplat(fill);
  for (long l = 0; l < kL && r0 + l < n; l++) r[l] = x[r0 + l];
  return r;
}

struct SeqRows {  // one sequence's rows of q, k, v and the output gradient, and its lse
  Rows q, k, v, go;
  const float* lse;
};

inline SeqRows seq_rows(const Problem& P, const Grads& G, long s) {
  return SeqRows{rows_of(P.q, s, P.H), rows_of(P.k, s, P.H), rows_of(P.v, s, P.H), rows_of(G.dout, s, P.H),
                 G.lse + s * P.n};
}

// dq with one lane per query: p and dS recomputed key by key from the saved lse, written to dss
// in a first sweep over the keys (q and the output gradient in registers) and summed into dq in
// a second (the dq sums in registers).
template <int D, int DV>
void small_dq_seq(const Problem& P, const Grads& G, long s, const float* delta, float* dss) {
  const SeqRows X = seq_rows(P, G, s);
  const Rows &Q = X.q, &K = X.k, &V = X.v, &dO = X.go;
  const float* lse = X.lse;
  for (long r0 = 0; r0 < P.n; r0 += kL) {
    vl qt[D], gt[DV];
    gather_rows<D>(Q, r0, P.n, P.scale * kLog2e, qt);
    gather_rows<DV>(dO, r0, P.n, 1.0f, gt);
    const vl l2 = lanes_of(lse, r0, P.n, INFINITY), dl = lanes_of(delta, r0, P.n, 0.0f);
    const vl ninf = lsplat(-INFINITY), lane = lane_index();
    const long mend = P.causal ? std::min(P.m, r0 + kL) : P.m;
    for (long j = 0; j < mend; j++) {
      const float *kr = K.row(j), *vr = V.row(j);
      vl sc = vl{}, dp = vl{};
      for (int c = 0; c < D; c++) sc += kr[c] * qt[c];
      if (P.bias.p) sc += bias_lanes(P, s, r0, 1, j, 0);
      if (P.causal) sc = lane + (float)(r0 - j) >= vl{} ? sc : ninf;
      for (int c = 0; c < DV; c++) dp += vr[c] * gt[c];
      lst(dss + j * kL, exp2_lanes(sc - l2) * (dp - dl));
    }
    vl dq[D];
    for (int c = 0; c < D; c++) dq[c] = vl{};
    for (long j = 0; j < mend; j++) {
      const float* kr = K.row(j);
      const vl ds = lld(dss + j * kL);
      for (int c = 0; c < D; c++) dq[c] += ds * kr[c];
    }
    scatter_rows<D>(dq, G.dq + seq_offset(G.dqs, s, P.H), G.dqs[2], r0, P.n, lsplat(P.scale));
  }
}

// dk and dv with one lane per key: queries read row by row as broadcasts. Two sweeps over the
// queries, so that neither holds more than two head's worth of vectors in registers: the first
// keeps k and v and writes each query's p and dS, the second keeps the dk and dv sums.
template <int D, int DV>
void small_dkv_seq(const Problem& P, const Grads& G, long s, const float* delta, float* ps, float* dss) {
  const SeqRows X = seq_rows(P, G, s);
  const Rows &Q = X.q, &K = X.k, &V = X.v, &dO = X.go;
  const float* lse = X.lse;
  for (long j0 = 0; j0 < P.m; j0 += kL) {
    vl kt[D], vt[DV];
    gather_rows<D>(K, j0, P.m, P.scale * kLog2e, kt);
    gather_rows<DV>(V, j0, P.m, 1.0f, vt);
    const vl ninf = lsplat(-INFINITY), keys = lane_index() + (float)j0;
    const vl valid = keys < (float)P.m ? vl{} : ninf;
    const long i0 = P.causal ? j0 : 0;
    for (long i = i0; i < P.n; i++) {
      const float *qr = Q.row(i), *gr = dO.row(i);
      vl sc = valid, dp = vl{};
      for (int c = 0; c < D; c++) sc += qr[c] * kt[c];
      if (P.bias.p) sc += bias_lanes(P, s, i, 0, j0, 1);
      if (P.causal) sc = keys <= (float)i ? sc : ninf;
      for (int c = 0; c < DV; c++) dp += gr[c] * vt[c];
      vl p = exp2_lanes(sc - lse[i]);
      lst(ps + i * kL, p);
      lst(dss + i * kL, p * (dp - delta[i]));
    }
    vl dk[D], dv[DV];
    for (int c = 0; c < D; c++) dk[c] = vl{};
    for (int c = 0; c < DV; c++) dv[c] = vl{};
    for (long i = i0; i < P.n; i++) {
      const float *qr = Q.row(i), *gr = dO.row(i);
      const vl p = lld(ps + i * kL), ds = lld(dss + i * kL);
      for (int c = 0; c < DV; c++) dv[c] += p * gr[c];
      for (int c = 0; c < D; c++) dk[c] += ds * qr[c];
    }
    scatter_rows<D>(dk, G.dk + seq_offset(G.dks, s, P.H), G.dks[2], j0, P.m, lsplat(P.scale));
    scatter_rows<DV>(dv, G.dv + seq_offset(G.dvs, s, P.H), G.dvs[2], j0, P.m, lsplat(1.0f));
  }
}

template <int D, int DV>
void small_forward_range(const Problem& P, float* out, float* lse, long s0, long s1) {
  std::vector<float> St(P.m * kL);
  for (long s = s0; s < s1; s++) small_forward_seq<D, DV>(P, s, out, lse, St.data());
}

template <int D, int DV>
void small_backward_range(const Problem& P, const Grads& G, long s0, long s1) {
  std::vector<float> delta(P.n), ps(P.n * kL), dss(std::max(P.n, P.m) * kL);
  for (long s = s0; s < s1; s++) {
    const Rows O = rows_of(P.o, s, P.H), dO = rows_of(G.dout, s, P.H);
    for (long i = 0; i < P.n; i++) {  // delta_i = o_i . do_i
      float acc = 0.0f;
      for (int c = 0; c < DV; c++) acc += O.row(i)[c] * dO.row(i)[c];
      delta[i] = acc;
    }
    small_dq_seq<D, DV>(P, G, s, delta.data(), dss.data());
    small_dkv_seq<D, DV>(P, G, s, delta.data(), ps.data(), dss.data());
  }
}

// Head dims the small-head path is built for; it serves sequences longer than the lane path's.
inline int small_heads(const Problem& P) {
  if (P.d == P.dv && (P.d == 8 || P.d == 16)) return (int)P.d;
  return 0;
}

template <class F>
void parallel(const Problem& P, F&& body) {
  long total = P.B * P.H;
  long work = total * P.n * P.m * (P.d + P.dv);
  int threads = (int)std::max(1L, std::min<long>(P.threads, total));
  if (work < (1L << 18)) threads = 1;  // too small to pay for a thread
  if (threads == 1) return body(0L, total);
  std::vector<std::thread> pool;
  long per = (total + threads - 1) / threads;
  for (int t = 1; t < threads; t++) {
    long s0 = std::min(total, t * per), s1 = std::min(total, s0 + per);
    pool.emplace_back([&, s0, s1] { body(s0, s1); });
  }
  body(0L, std::min(total, per));
  for (auto& th : pool) th.join();
}

Problem problem(const float* q, const int64_t* qs, const float* k, const int64_t* ks, const float* v,
                const int64_t* vs, const float* o, const int64_t* os, const float* bias, const int64_t* bs, long B,
                long H, long n, long m, long d, long dv, float scale, int causal, int threads) {
  return Problem{{q, qs}, {k, ks}, {v, vs}, {o, os}, {bias, bs}, B, H, n, m, d, dv, scale, causal != 0, threads};
}

}  // namespace

extern "C" {

int st_abi_version() { return 1; }

// out (strides os) and lse ((B*H, n) contiguous, base 2) are written.
void st_attention_forward(const float* q, const int64_t* qs, const float* k, const int64_t* ks, const float* v,
                          const int64_t* vs, float* out, const int64_t* os, float* lse, const float* bias,
                          const int64_t* bs, long B, long H, long n, long m, long d, long dv, float scale, int causal,
                          int threads) {
  Problem P = problem(q, qs, k, ks, v, vs, out, os, bias, bs, B, H, n, m, d, dv, scale, causal, threads);
  if (lanes_serve(P))
    parallel(P, [&](long s0, long s1) { lane_forward_range(P, out, lse, s0, s1); });
  else if (small_heads(P) == 8)
    parallel(P, [&](long s0, long s1) { small_forward_range<8, 8>(P, out, lse, s0, s1); });
  else if (small_heads(P) == 16)
    parallel(P, [&](long s0, long s1) { small_forward_range<16, 16>(P, out, lse, s0, s1); });
  else
    parallel(P, [&](long s0, long s1) { forward_range(P, out, lse, s0, s1); });
}

void st_attention_backward(const float* q, const int64_t* qs, const float* k, const int64_t* ks, const float* v,
                           const int64_t* vs, const float* out, const int64_t* os, const float* dout,
                           const int64_t* dos, const float* lse, const float* bias, const int64_t* bs, float* dq,
                           const int64_t* dqs, float* dk, const int64_t* dks, float* dv, const int64_t* dvs, long B,
                           long H, long n, long m, long d, long dvv, float scale, int causal, int threads) {
  Problem P = problem(q, qs, k, ks, v, vs, out, os, bias, bs, B, H, n, m, d, dvv, scale, causal, threads);
  Grads G{{dout, dos}, lse, dq, dk, dv, dqs, dks, dvs};
  if (lanes_serve(P))
    parallel(P, [&](long s0, long s1) { lane_backward_range(P, G, s0, s1); });
  else if (small_heads(P) == 8)
    parallel(P, [&](long s0, long s1) { small_backward_range<8, 8>(P, G, s0, s1); });
  else if (small_heads(P) == 16)
    parallel(P, [&](long s0, long s1) { small_backward_range<16, 16>(P, G, s0, s1); });
  else
    parallel(P, [&](long s0, long s1) { backward_range(P, G, s0, s1); });
}
}
