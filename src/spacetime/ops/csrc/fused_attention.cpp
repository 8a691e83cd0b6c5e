// Exact fp32 softmax attention for the shapes video models run on CPU: many short
// sequences (temporal attention), small heads over long sequences, 3D windows.
//
// Built by spacetime.ops.fused_attention with the system C++ compiler (no torch headers,
// loaded through ctypes). One thread owns whole sequences; for each block of queries the
// scores stay in L1/L2, the softmax runs in base 2 with a polynomial exp2, and the
// backward recomputes the probabilities from the saved log-sum-exp (no (n, m) matrix is
// stored). Inputs are (b, heads, n, d) with any strides whose last one is 1; the head dims
// are multiples of 8 (one AVX vector). Everything is plain C++ with GCC vector extensions.

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

// 2^x for x <= 0 (larger x is not produced here): 1 ulp-level polynomial; x < -126 gives 0
// (so a masked key, -inf, has probability exactly 0).
inline v8 exp2v(v8 x) {
  const v8 lo = splat(-126.0f);
  i8 keep = x >= lo;
  x = vmax(x, lo);
  const v8 magic = splat(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer
  v8 t = x + magic;
  v8 xi = t - magic;
  v8 f = x - xi;  // in [-0.5, 0.5]
  i8 n = (i8)t - (i8)magic;
  v8 p = splat(1.5403530e-4f);
  p = p * f + splat(1.3333558e-3f);
  p = p * f + splat(9.6181291e-3f);
  p = p * f + splat(5.5504109e-2f);
  p = p * f + splat(2.4022651e-1f);
  p = p * f + splat(6.9314718e-1f);
  p = p * f + splat(1.0f);
  i8 scale_bits = (n + 127) << 23;
  v8 r = p * (v8)scale_bits;
  return (v8)((i8)r & keep);
}

// C (R x N, ldc) = alpha * A @ B (+ C when acc). A(r, k) = A[r*ar + k*ak]; B (K x N) has row
// stride ldb and N % 8 == 0. Register tile: ROWS x 16 (or x 8 at the edge).
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

template <int ROWS>
inline void row_panel(int N, int K, const float* A, long ar, long ak, const float* B, long ldb, float* C, long ldc,
                      float alpha, bool acc) {
  int n0 = 0;
  for (; n0 + 16 <= N; n0 += 16) tile<ROWS, 16>(K, A, ar, ak, B + n0, ldb, C + n0, ldc, alpha, acc);
  if (n0 < N) tile<ROWS, 8>(K, A, ar, ak, B + n0, ldb, C + n0, ldc, alpha, acc);
}

void gemm(int R, int N, int K, const float* A, long ar, long ak, const float* B, long ldb, float* C, long ldc,
          float alpha, bool acc) {
  int r = 0;
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

// kt (d x mp): packed k (m x d) transposed, zero-padded keys.
void transpose_keys(const float* k, long m, long d, float* kt) {
  long mp = round8(m);
  for (long c = 0; c < d; c++) std::fill(kt + c * mp + m, kt + (c + 1) * mp, 0.0f);
  for (long j = 0; j < m; j++)
    for (long c = 0; c < d; c++) kt[c * mp + j] = k[j * d + c];
}

struct Group {  // one group's packed operands and outputs (see pack_group)
  std::vector<float> q, k, v, o, go, dq, dk, dv;
};

// One sequence's forward from packed q, k, v into packed o; S and kt are scratch.
void forward_one(const Problem& P, long b, long h, const float* q, const float* k, const float* v, float* o,
                 float* lse, float* kt, float* S) {
  const long qb = block_rows(P);
  transpose_keys(k, P.m, P.d, kt);
  for (long r0 = 0; r0 < P.n; r0 += qb) {
    long rows = std::min(qb, P.n - r0), mb = key_extent(P, r0, rows);
    logits(P, b, h, r0, rows, mb, q, kt, S);
    for (long r = 0; r < rows; r++) {  // softmax numerators and each row's log2-sum-exp
      float* row = S + r * mb;
      v8 mx = splat(-INFINITY);
      for (long j = 0; j < mb; j += kW) mx = vmax(mx, ld(row + j));
      float m_ = hmax(mx);
      v8 sum = splat(0.0f);
      const v8 mv = splat(std::isinf(m_) ? 0.0f : m_);
      for (long j = 0; j < mb; j += kW) {
        v8 e = exp2v(ld(row + j) - mv);
        st(row + j, e);
        sum += e;
      }
      float total = hsum(sum);
      lse[r0 + r] = total > 0.0f ? m_ + std::log2(total) : INFINITY;
      float inv = total > 0.0f ? 1.0f / total : 0.0f;
      for (long j = 0; j < mb; j += kW) st(row + j, ld(row + j) * splat(inv));
    }
    gemm(rows, P.dv, mb < P.m ? mb : P.m, S, mb, 1, v, P.dv, o + r0 * P.dv, P.dv, 1.0f, false);
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
    const v8 delta = splat(hsum(acc)), lv = splat(std::isinf(l) ? 0.0f : l);
    float* srow = S + r * mb;
    float* drow = dP + r * mb;
    for (long j = 0; j < mb; j += kW) {
      v8 p = std::isinf(l) ? splat(0.0f) : exp2v(ld(srow + j) - lv);
      st(srow + j, p);
      st(drow + j, p * (ld(drow + j) - delta));  // d loss / d logit
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
  parallel(P, [&](long s0, long s1) { forward_range(P, out, lse, s0, s1); });
}

void st_attention_backward(const float* q, const int64_t* qs, const float* k, const int64_t* ks, const float* v,
                           const int64_t* vs, const float* out, const int64_t* os, const float* dout,
                           const int64_t* dos, const float* lse, const float* bias, const int64_t* bs, float* dq,
                           const int64_t* dqs, float* dk, const int64_t* dks, float* dv, const int64_t* dvs, long B,
                           long H, long n, long m, long d, long dvv, float scale, int causal, int threads) {
  Problem P = problem(q, qs, k, ks, v, vs, out, os, bias, bs, B, H, n, m, d, dvv, scale, causal, threads);
  Grads G{{dout, dos}, lse, dq, dk, dv, dqs, dks, dvs};
  parallel(P, [&](long s0, long s1) { backward_range(P, G, s0, s1); });
}
}
