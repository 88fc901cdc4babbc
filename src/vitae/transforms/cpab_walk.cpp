// CPAB's stepping integrator (vitae.transforms.cpab, "Integration and its error") as one compiled
// pass per point: the walk of the eager code, step by step and sub-step by sub-step, with the same
// cell choices, and its backward, which walks each point again and then goes back over its steps.
// The eager code spends its time on gathers, index lists and scatters of whole arrays per step;
// here a point's steps stay in registers.
//
// Tables: the maps of every cell over one step (coarse) and one sub-step (fine), [6, R] row-major
// (entry k of cell c at k R + c), R = images x cells; a point's cells are those of its image,
// whose first cell is its start cell rounded down to a multiple of the cells per image. Points in
// cell units (x in [0, nx], y in [0, ny] inside the square).
//
// Built and loaded by vitae.kernels; plain C++17 and OpenMP (and AVX-512 intrinsics where the CPU
// has them: the vector walk below), no torch headers. Points are walked
// in blocks side by side, a step of every point of the block before the next step, so that the
// steps of different points overlap (one point's steps depend on each other: walked alone, it
// waits on every one). Work is split over the images, so that the gradient of one image's cells
// is summed by one thread in one order, whatever the thread count.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#if defined(__AVX512F__) && defined(__AVX512DQ__) && defined(__AVX512VL__)
#include <immintrin.h>
#endif

namespace {

template <typename T>
struct Geometry {
    int32_t nx, ny, n_cells, n_steps, n_sub;
    int64_t rows;  // R
};

// cell_index of cpab.py: the rectangle (clamped into the square), then the triangle by the sides
// of its two diagonals (copysign: an exact 0 counts as +); NaN lands in a valid cell, never out.
template <typename T>
inline int32_t cell(T x, T y, int32_t offset, const Geometry<T>& g) {
    const T fx = std::floor(x), fy = std::floor(y);
    const T ix = fx >= T(0) ? (fx <= T(g.nx - 1) ? fx : T(g.nx - 1)) : T(0);
    const T iy = fy >= T(0) ? (fy <= T(g.ny - 1) ? fy : T(g.ny - 1)) : T(0);
    const T lx = x - ix, ly = y - iy;
    const T su = std::copysign(T(1), lx - ly), sw = std::copysign(T(1), (lx + ly) - T(1));
    const T t = (T(1.5) - su) + T(0.5) * su * sw;
    return offset + int32_t(iy) * 4 * g.nx + int32_t(ix) * 4 + int32_t(t);
}

// The multiply-adds are written out as fma, here and in the vector walk below, so that the two
// walks round alike and take the same cells.
template <typename T>
inline T lerp(T a, T b, T w) {  // torch.lerp's formula
    return w < T(0.5) ? std::fma(w, b - a, a) : std::fma(-(b - a), T(1) - w, b);
}

template <typename T>
inline void apply(const T* table, int64_t rows, int32_t c, T x, T y, T& ox, T& oy) {
    ox = std::fma(table[rows + c], y, std::fma(table[c], x, table[2 * rows + c]));
    oy = std::fma(table[4 * rows + c], y, std::fma(table[3 * rows + c], x, table[5 * rows + c]));
}

constexpr int32_t BLOCK = 64;  // points walked side by side: their steps overlap in the CPU

// The steps of a block of points (of one image), with what the backward needs: each step's start
// (x, y, cell, whether it was redone) and each sub-step's start (x, y, cell), per point.
template <typename T>
struct Block {
    int32_t n = 0;  // points in the block
    std::vector<T> x, y, sx, sy;          // [step][point], [step][sub-step][point]
    std::vector<int32_t> c, sc, redo;     // the same; redo: the points redone, as a list per step
    std::vector<int32_t> n_redo;          // [step]
    explicit Block(int32_t n_steps, int32_t n_sub)
        : x(size_t(n_steps) * BLOCK), y(size_t(n_steps) * BLOCK), sx(size_t(n_steps) * n_sub * BLOCK),
          sy(size_t(n_steps) * n_sub * BLOCK), c(size_t(n_steps) * BLOCK), sc(size_t(n_steps) * n_sub * BLOCK),
          redo(size_t(n_steps) * BLOCK), n_redo(n_steps) {}
};

// Walks the n <= BLOCK points from (px, py) in the cells c of the image whose first cell is
// `offset`, in place, recording the steps into b.
template <typename T>
void walk_block(T* px, T* py, int32_t* c, int32_t n, int32_t offset, const T* coarse, const T* fine,
                const Geometry<T>& g, Block<T>& b) {
    const T frac = T(1) / T(2 * g.n_sub);
    T x1[BLOCK], y1[BLOCK], sx[BLOCK], sy[BLOCK], mx[BLOCK], my[BLOCK];
    int32_t end[BLOCK];
    b.n = n;
    for (int32_t s = 0; s < g.n_steps; ++s) {
        for (int32_t q = 0; q < n; ++q) {
            apply(coarse, g.rows, c[q], px[q], py[q], x1[q], y1[q]);
            end[q] = cell(x1[q], y1[q], offset, g);
        }
        // the steps that left their cell are redone in sub-steps, each in its midpoint's cell
        int32_t* redo = b.redo.data() + size_t(s) * BLOCK;
        int32_t r = 0;
        for (int32_t q = 0; q < n; ++q) redo[r] = q, r += end[q] != c[q];  // no branch to mispredict
        b.n_redo[s] = r;
        for (int32_t k = 0; k < r; ++k) {
            const int32_t q = redo[k];
            sx[k] = px[q], sy[k] = py[q];
            mx[k] = lerp(px[q], x1[q], frac), my[k] = lerp(py[q], y1[q], frac);
        }
        for (int32_t sub = 0; sub < g.n_sub; ++sub) {
            const size_t at = (size_t(s) * g.n_sub + sub) * BLOCK;
            for (int32_t k = 0; k < r; ++k) {
                const int32_t sc = cell(mx[k], my[k], offset, g);
                T nx_, ny_;
                apply(fine, g.rows, sc, sx[k], sy[k], nx_, ny_);
                if (sub + 1 < g.n_sub) mx[k] = lerp(sx[k], nx_, T(1.5)), my[k] = lerp(sy[k], ny_, T(1.5));
                b.sx[at + k] = sx[k], b.sy[at + k] = sy[k], b.sc[at + k] = sc;
                sx[k] = nx_, sy[k] = ny_;
            }
        }
        for (int32_t k = 0; k < r; ++k) {
            const int32_t q = redo[k];
            x1[q] = sx[k], y1[q] = sy[k];
            end[q] = cell(sx[k], sy[k], offset, g);
        }
        const size_t at = size_t(s) * BLOCK;
        for (int32_t q = 0; q < n; ++q) {
            b.x[at + q] = px[q], b.y[at + q] = py[q], b.c[at + q] = c[q];
            px[q] = x1[q], py[q] = y1[q], c[q] = end[q];
        }
    }
}

// d(x, y) / d(map) of apply, added to column c of the [6, n_cells] gradient `grad` of one image;
// then the gradient back to the point.
template <typename T>
inline void scatter_and_pull(T* grad, int32_t n_cells, const T* table, int64_t rows, int32_t c, int32_t local, T x,
                             T y, T& gx, T& gy) {
    grad[local] += gx * x, grad[n_cells + local] += gx * y, grad[2 * n_cells + local] += gx;
    grad[3 * n_cells + local] += gy * x, grad[4 * n_cells + local] += gy * y, grad[5 * n_cells + local] += gy;
    const T ngx = std::fma(table[3 * rows + c], gy, table[c] * gx);
    const T ngy = std::fma(table[4 * rows + c], gy, table[rows + c] * gx);
    gx = ngx, gy = ngy;
}

// The images' points: [first, last) ranges of points of one image each, split over the threads,
// so that one image's cells are only ever touched by one thread, in one order. The points come
// image after image from cpab.py; out of that order (never), one image's ranges could be far
// apart, and one thread takes them all.
template <typename B, typename T, typename F>
void over_images(const int32_t* start, int64_t n, const Geometry<T>& g, int threads, F body) {
    std::vector<int64_t> bounds{0};
    bool ordered = true;
    int32_t low = n ? (start[0] / g.n_cells) * g.n_cells : 0;  // the current image's cells: [low, low + n_cells)
    for (int64_t p = 1; p < n; ++p) {
        if (start[p] >= low && start[p] - low < g.n_cells) continue;  // no division per point
        const int32_t next = (start[p] / g.n_cells) * g.n_cells;
        ordered = ordered && next > low;
        bounds.push_back(p), low = next;
    }
    bounds.push_back(n);
    const int64_t images = int64_t(bounds.size()) - 1;
#pragma omp parallel num_threads(threads < 1 || !ordered ? 1 : threads)
    {
        B block(g.n_steps, g.n_sub);
#pragma omp for schedule(static)
        for (int64_t i = 0; i < images; ++i) body(bounds[i], bounds[i + 1], block);
    }
}

// ---- The vector walk (AVX-512): the same steps, sub-steps and cells, L points per instruction.
//
// One image's maps are held in vector registers and looked up by cell with a two-table permute
// (a register pair covers 2 L cells, L the lanes; up to 4 pairs), in place of a load per point.
// Per step, every point takes its coarse step; the lanes that left their cell are packed
// (compress) into a list, whose points take the sub-steps densely, and are unpacked (expand)
// back. The end points and the points' gradients are the scalar walk's bit for bit (the same
// operations in the same order).
//
// The backward takes an image's points in the order of their start cells, and sums the maps'
// gradients first per lane while a point stays in one cell (over its steps, and over its
// sub-steps), then into one accumulator per entry, cell and lane (a masked add per distinct cell
// of the vector), reduced over the lanes at the image's end: one order whatever the thread count,
// another than the scalar walk's (the sums differ from it by rounding).
#if defined(__AVX512F__) && defined(__AVX512DQ__) && defined(__AVX512VL__)
#define VITAE_CPAB_VECTOR 1

struct F32 {
    using T = float;
    using V = __m512;
    using I = __m512i;
    using M = __mmask16;
    using Cell = int32_t;
    static constexpr int L = 16;
    static V set(T a) { return _mm512_set1_ps(a); }
    static V load(const T* p) { return _mm512_loadu_ps(p); }
    static void store(T* p, V a) { _mm512_storeu_ps(p, a); }
    static V add(V a, V b) { return _mm512_add_ps(a, b); }
    static V sub(V a, V b) { return _mm512_sub_ps(a, b); }
    static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
    static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
    static V fnma(V a, V b, V c) { return _mm512_fnmadd_ps(a, b, c); }  // c - a b
    static V floor(V a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); }
    static M ge(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_GE_OQ); }
    static M le(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_LE_OQ); }
    static V pick(M m, V no, V yes) { return _mm512_mask_blend_ps(m, no, yes); }
    static V sign_of(V a) { return _mm512_or_ps(_mm512_and_ps(a, set(-0.0f)), set(1.0f)); }  // copysign(1, a)
    static I to_cell(V a) { return _mm512_cvttps_epi32(a); }
    static I cells(const Cell* p) { return _mm512_loadu_si512(p); }
    static void store(Cell* p, I a) { _mm512_storeu_si512(p, a); }
    static I cell_set(int32_t a) { return _mm512_set1_epi32(a); }
    static I pick(M m, I no, I yes) { return _mm512_mask_blend_epi32(m, no, yes); }
    static M nonneg(I a) { return _mm512_cmpge_epi32_mask(a, _mm512_setzero_si512()); }
    static M differ(I a, I b) { return _mm512_cmpneq_epi32_mask(a, b); }
    static M same(I a, I b) { return _mm512_cmpeq_epi32_mask(a, b); }
    static M bit(I a, int32_t b) { return _mm512_test_epi32_mask(a, _mm512_set1_epi32(b)); }
    static V look(V lo, I c, V hi) { return _mm512_permutex2var_ps(lo, c, hi); }
    static V pack(M m, V a) { return _mm512_maskz_compress_ps(m, a); }
    static I pack(M m, I a) { return _mm512_maskz_compress_epi32(m, a); }
    static V unpack(V a, M m, V packed) { return _mm512_mask_expand_ps(a, m, packed); }
    static I unpack(I a, M m, I packed) { return _mm512_mask_expand_epi32(a, m, packed); }
    static V only(M m, V a) { return _mm512_maskz_mov_ps(m, a); }
    static M first(int64_t n) { return n >= L ? M(0xFFFF) : M((1u << n) - 1); }
};

struct F64 {
    using T = double;
    using V = __m512d;
    using I = __m512i;
    using M = __mmask8;
    using Cell = int64_t;
    static constexpr int L = 8;
    static V set(T a) { return _mm512_set1_pd(a); }
    static V load(const T* p) { return _mm512_loadu_pd(p); }
    static void store(T* p, V a) { _mm512_storeu_pd(p, a); }
    static V add(V a, V b) { return _mm512_add_pd(a, b); }
    static V sub(V a, V b) { return _mm512_sub_pd(a, b); }
    static V mul(V a, V b) { return _mm512_mul_pd(a, b); }
    static V fma(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
    static V fnma(V a, V b, V c) { return _mm512_fnmadd_pd(a, b, c); }
    static V floor(V a) { return _mm512_roundscale_pd(a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); }
    static M ge(V a, V b) { return _mm512_cmp_pd_mask(a, b, _CMP_GE_OQ); }
    static M le(V a, V b) { return _mm512_cmp_pd_mask(a, b, _CMP_LE_OQ); }
    static V pick(M m, V no, V yes) { return _mm512_mask_blend_pd(m, no, yes); }
    static V sign_of(V a) { return _mm512_or_pd(_mm512_and_pd(a, set(-0.0)), set(1.0)); }
    static I to_cell(V a) { return _mm512_cvttpd_epi64(a); }
    static I cells(const Cell* p) { return _mm512_loadu_si512(p); }
    static void store(Cell* p, I a) { _mm512_storeu_si512(p, a); }
    static I cell_set(int32_t a) { return _mm512_set1_epi64(a); }
    static I pick(M m, I no, I yes) { return _mm512_mask_blend_epi64(m, no, yes); }
    static M nonneg(I a) { return _mm512_cmpge_epi64_mask(a, _mm512_setzero_si512()); }
    static M differ(I a, I b) { return _mm512_cmpneq_epi64_mask(a, b); }
    static M same(I a, I b) { return _mm512_cmpeq_epi64_mask(a, b); }
    static M bit(I a, int32_t b) { return _mm512_test_epi64_mask(a, _mm512_set1_epi64(b)); }
    static V look(V lo, I c, V hi) { return _mm512_permutex2var_pd(lo, c, hi); }
    static V pack(M m, V a) { return _mm512_maskz_compress_pd(m, a); }
    static I pack(M m, I a) { return _mm512_maskz_compress_epi64(m, a); }
    static V unpack(V a, M m, V packed) { return _mm512_mask_expand_pd(a, m, packed); }
    static I unpack(I a, M m, I packed) { return _mm512_mask_expand_epi64(a, m, packed); }
    static V only(M m, V a) { return _mm512_maskz_mov_pd(m, a); }
    static M first(int64_t n) { return n >= L ? M(0xFF) : M((1u << n) - 1); }
};

// The six entries of one image's maps, cell c at lane c mod L of register c / L (zero past the
// image's cells), looked up by local cell with NP register pairs.
template <class S, int NP>
struct Maps {
    typename S::V t[6][2 * NP];
    Maps(const typename S::T* table, int64_t rows, int32_t offset, int32_t n_cells) {
        alignas(64) typename S::T row[2 * NP * S::L];
        for (int k = 0; k < 6; ++k) {
            for (int32_t c = 0; c < 2 * NP * S::L; ++c) row[c] = c < n_cells ? table[k * rows + offset + c] : 0;
            for (int r = 0; r < 2 * NP; ++r) t[k][r] = S::load(row + r * S::L);
        }
    }
    typename S::V operator()(int k, typename S::I c) const {
        using V = typename S::V;
        V pair[NP];
        for (int i = 0; i < NP; ++i) pair[i] = S::look(t[k][2 * i], c, t[k][2 * i + 1]);
        if constexpr (NP == 1) {
            return pair[0];
        } else {
            const auto m1 = S::bit(c, 2 * S::L);
            const V a = S::pick(m1, pair[0], pair[1]);
            if constexpr (NP == 2) {
                return a;
            } else {
                return S::pick(S::bit(c, 4 * S::L), a, S::pick(m1, pair[2], pair[3]));
            }
        }
    }
    void apply(typename S::I c, typename S::V x, typename S::V y, typename S::V& ox, typename S::V& oy) const {
        ox = S::fma((*this)(1, c), y, S::fma((*this)(0, c), x, (*this)(2, c)));
        oy = S::fma((*this)(4, c), y, S::fma((*this)(3, c), x, (*this)(5, c)));
    }
};

// cell() above, as the local cell of the image, for L points
template <class S>
inline typename S::I cells_of(typename S::V x, typename S::V y, int32_t nx, int32_t ny) {
    using V = typename S::V;
    const V zero = S::set(0), top_x = S::set(nx - 1), top_y = S::set(ny - 1);
    const V fx = S::floor(x), fy = S::floor(y);
    const V ix = S::pick(S::ge(fx, zero), zero, S::pick(S::le(fx, top_x), top_x, fx));
    const V iy = S::pick(S::ge(fy, zero), zero, S::pick(S::le(fy, top_y), top_y, fy));
    const V lx = S::sub(x, ix), ly = S::sub(y, iy);
    const V su = S::sign_of(S::sub(lx, ly)), sw = S::sign_of(S::sub(S::add(lx, ly), S::set(1)));
    const V t = S::add(S::sub(S::set(1.5), su), S::mul(S::mul(S::set(0.5), su), sw));
    return S::to_cell(S::fma(iy, S::set(4 * nx), S::fma(ix, S::set(4), t)));  // small integers: exact
}

template <class S>
inline typename S::V lerp_v(typename S::V a, typename S::V b, typename S::T w) {
    const typename S::V d = S::sub(b, a);
    return w < 0.5 ? S::fma(S::set(w), d, a) : S::fnma(d, S::set(1 - w), b);
}

constexpr int32_t VBLOCK = 256;  // points of one image walked together

// A block's record: each step's start points and cells (and, past the last step, the end), the
// lanes redone per step and vector with their place in the packed list, each sub-step's start
// (packed), and working lists; plus the gradients for the backward.
template <class S>
struct VBlock {
    using T = typename S::T;
    using Cell = typename S::Cell;
    static constexpr int32_t NV = VBLOCK / S::L, PAD = VBLOCK + S::L;
    std::vector<T> x, y, sx, sy, rx, ry, mx, my, gx, gy, rgx, rgy;
    std::vector<Cell> c, sc, rc;
    std::vector<typename S::M> redo;
    std::vector<int32_t> at, n_redo, order, cell_start;  // the last two: the backward's order of the points
    VBlock(int32_t n_steps, int32_t n_sub)
        : x(size_t(n_steps + 1) * VBLOCK), y(x.size()), sx(size_t(n_steps) * n_sub * PAD), sy(sx.size()),
          rx(PAD), ry(PAD), mx(PAD), my(PAD), gx(VBLOCK), gy(VBLOCK), rgx(PAD), rgy(PAD), c(x.size()), sc(sx.size()),
          rc(PAD), redo(size_t(n_steps) * NV), at(redo.size()), n_redo(n_steps) {}
};

// Walks the n points of b.x, b.y, b.c (step 0's slots, local cells, padded to whole vectors),
// keeping every step's start in b, and with RECORD every sub-step's, for the backward.
template <bool RECORD, class S, int NP>
void walk_vblock(VBlock<S>& b, int32_t n, const Maps<S, NP>& coarse, const Maps<S, NP>& fine, const Geometry<typename S::T>& g) {
    using T = typename S::T;
    using V = typename S::V;
    using I = typename S::I;
    constexpr int L = S::L;
    const T frac = T(1) / T(2 * g.n_sub);
    const int32_t nv = (n + L - 1) / L;
    for (int32_t s = 0; s < g.n_steps; ++s) {
        const T *x0 = &b.x[size_t(s) * VBLOCK], *y0 = &b.y[size_t(s) * VBLOCK];
        T *x1 = &b.x[size_t(s + 1) * VBLOCK], *y1 = &b.y[size_t(s + 1) * VBLOCK];
        const typename S::Cell* c0 = &b.c[size_t(s) * VBLOCK];
        typename S::Cell* c1 = &b.c[size_t(s + 1) * VBLOCK];
        int32_t r = 0;
        for (int32_t v = 0; v < nv; ++v) {
            const V x = S::load(x0 + v * L), y = S::load(y0 + v * L);
            const I c = S::cells(c0 + v * L);
            V ex, ey;
            coarse.apply(c, x, y, ex, ey);
            const I end = cells_of<S>(ex, ey, g.nx, g.ny);
            S::store(x1 + v * L, ex), S::store(y1 + v * L, ey), S::store(c1 + v * L, end);
            const typename S::M redo = S::differ(end, c) & S::first(n - v * L);
            b.redo[size_t(s) * b.NV + v] = redo, b.at[size_t(s) * b.NV + v] = r;
            S::store(&b.rx[r], S::pack(redo, x)), S::store(&b.ry[r], S::pack(redo, y));
            S::store(&b.mx[r], S::pack(redo, lerp_v<S>(x, ex, frac)));
            S::store(&b.my[r], S::pack(redo, lerp_v<S>(y, ey, frac)));
            r += __builtin_popcount(unsigned(redo));
        }
        b.n_redo[s] = r;
        const int32_t nu = (r + L - 1) / L;
        for (int32_t sub = 0; sub < g.n_sub; ++sub) {  // the packed points' sub-steps
            const size_t rec = (size_t(s) * g.n_sub + sub) * b.PAD;
            for (int32_t u = 0; u < nu; ++u) {
                const V sx = S::load(&b.rx[u * L]), sy = S::load(&b.ry[u * L]);
                const I sc = cells_of<S>(S::load(&b.mx[u * L]), S::load(&b.my[u * L]), g.nx, g.ny);
                if (RECORD) S::store(&b.sx[rec + u * L], sx), S::store(&b.sy[rec + u * L], sy), S::store(&b.sc[rec + u * L], sc);
                V nx_, ny_;
                fine.apply(sc, sx, sy, nx_, ny_);
                if (sub + 1 < g.n_sub)
                    S::store(&b.mx[u * L], lerp_v<S>(sx, nx_, T(1.5))), S::store(&b.my[u * L], lerp_v<S>(sy, ny_, T(1.5)));
                S::store(&b.rx[u * L], nx_), S::store(&b.ry[u * L], ny_);
            }
        }
        for (int32_t u = 0; u < nu; ++u)
            S::store(&b.rc[u * L], cells_of<S>(S::load(&b.rx[u * L]), S::load(&b.ry[u * L]), g.nx, g.ny));
        for (int32_t v = 0; v < nv; ++v) {
            const typename S::M redo = b.redo[size_t(s) * b.NV + v];
            if (!redo) continue;
            const int32_t k = b.at[size_t(s) * b.NV + v];
            S::store(x1 + v * L, S::unpack(S::load(x1 + v * L), redo, S::load(&b.rx[k])));
            S::store(y1 + v * L, S::unpack(S::load(y1 + v * L), redo, S::load(&b.ry[k])));
            S::store(c1 + v * L, S::unpack(S::cells(c1 + v * L), redo, S::cells(&b.rc[k])));
        }
    }
}

// Loads n points of the image whose first cell is `offset` into step 0's slots, padded to whole
// vectors: point q of the block is base + q, or base + index[q] where an index is given.
template <class S>
void load_points(VBlock<S>& b, const typename S::T* x, const typename S::T* y, const int32_t* start, int64_t base,
                 const int32_t* index, int32_t n, int32_t offset) {
    const int32_t padded = (n + S::L - 1) / S::L * S::L;
    for (int32_t q = 0; q < padded; ++q) {
        const int64_t p = base + (q < n ? (index ? index[q] : q) : 0);
        b.x[q] = q < n ? x[p] : 0, b.y[q] = q < n ? y[p] : 0, b.c[q] = q < n ? start[p] - offset : 0;
    }
}

template <class S, int NP>
void walk_vector(const typename S::T* x, const typename S::T* y, const int32_t* start, int64_t n,
                 const typename S::T* coarse, const typename S::T* fine, const Geometry<typename S::T>& g,
                 typename S::T* x_out, typename S::T* y_out, int threads) {
    over_images<VBlock<S>>(start, n, g, threads, [&](int64_t first, int64_t last, VBlock<S>& b) {
        const int32_t offset = (start[first] / g.n_cells) * g.n_cells;
        const Maps<S, NP> mc(coarse, g.rows, offset, g.n_cells), mf(fine, g.rows, offset, g.n_cells);
        const size_t end = size_t(g.n_steps) * VBLOCK;
        for (int64_t p0 = first; p0 < last; p0 += VBLOCK) {
            const int32_t m = int32_t(std::min<int64_t>(VBLOCK, last - p0));
            load_points(b, x, y, start, p0, nullptr, m, offset);
            walk_vblock<false>(b, m, mc, mf, g);
            for (int32_t q = 0; q < m; ++q) x_out[p0 + q] = b.x[end + q], y_out[p0 + q] = b.y[end + q];
        }
    });
}

// The gradients of a map's six entries from the points (x, y) with gradient (gx, gy):
// (gx x, gx y, gx, gy x, gy y, gy).
template <class S>
inline void terms_of(typename S::V x, typename S::V y, typename S::V gx, typename S::V gy, typename S::V (&t)[6]) {
    t[0] = S::mul(gx, x), t[1] = S::mul(gx, y), t[2] = gx, t[3] = S::mul(gy, x), t[4] = S::mul(gy, y), t[5] = gy;
}

// Adds the terms of the lanes m, in cells c, to the accumulators [entry][cell][lane], once per
// distinct cell among those lanes.
template <class S>
inline void add_to_cells(typename S::T* acc, int32_t n_cells, typename S::I c, typename S::M m,
                         const typename S::V (&term)[6]) {
    constexpr int L = S::L;
    alignas(64) typename S::Cell lanes[L];
    S::store(lanes, c);
    while (m) {
        const int32_t cell = int32_t(lanes[__builtin_ctz(unsigned(m))]);
        const typename S::M here = S::same(c, S::cell_set(cell)) & m;
        for (int k = 0; k < 6; ++k) {
            typename S::T* p = acc + (size_t(k) * n_cells + cell) * L;
            S::store(p, S::add(S::load(p), S::only(here, term[k])));  // the other lanes add 0
        }
        m = typename S::M(m & ~here);
    }
}

// What each lane has summed and not yet added to the accumulators: its cell (-1: none) and the
// six sums. A lane's terms are summed here while its cell stays the same, and go to the
// accumulators when it changes (and at the end, `flush`): a point keeps its cell over most of
// its steps, so most terms never touch the accumulators.
template <class S>
struct Pending {
    typename S::I cell = S::cell_set(-1);
    typename S::V sum[6] = {S::set(0), S::set(0), S::set(0), S::set(0), S::set(0), S::set(0)};

    void add(typename S::T* acc, int32_t n_cells, typename S::I c, typename S::M m, const typename S::V (&term)[6]) {
        const typename S::M moved = m & S::differ(cell, c);
        const typename S::M leaving = moved & S::nonneg(cell);  // the lanes whose earlier cell has sums
        if (leaving) add_to_cells<S>(acc, n_cells, cell, leaving, sum);
        for (int k = 0; k < 6; ++k) sum[k] = S::add(S::pick(moved, sum[k], S::set(0)), S::only(m, term[k]));
        cell = S::pick(m, cell, c);
    }
    void flush(typename S::T* acc, int32_t n_cells) {
        add_to_cells<S>(acc, n_cells, cell, S::nonneg(cell), sum);
        *this = Pending();
    }
};

template <class S, int NP>
inline void pull_back(const Maps<S, NP>& maps, typename S::I c, typename S::V& gx, typename S::V& gy) {
    const typename S::V ngx = S::fma(maps(3, c), gy, S::mul(maps(0, c), gx));
    gy = S::fma(maps(4, c), gy, S::mul(maps(1, c), gx)), gx = ngx;
}

template <class S, int NP>
void walk_back_vector(const typename S::T* x, const typename S::T* y, const int32_t* start, int64_t n,
                      const typename S::T* coarse, const typename S::T* fine, const Geometry<typename S::T>& g,
                      const typename S::T* gx, const typename S::T* gy, typename S::T* grad_coarse,
                      typename S::T* grad_fine, typename S::T* gx_out, typename S::T* gy_out, int threads) {
    using T = typename S::T;
    using V = typename S::V;
    using I = typename S::I;
    constexpr int L = S::L;
    const size_t table = size_t(6) * g.n_cells * L;
    over_images<VBlock<S>>(start, n, g, threads, [&](int64_t first, int64_t last, VBlock<S>& b) {
        const int32_t offset = (start[first] / g.n_cells) * g.n_cells;
        const Maps<S, NP> mc(coarse, g.rows, offset, g.n_cells), mf(fine, g.rows, offset, g.n_cells);
        std::vector<T> acc_coarse(table, T(0)), acc_fine(table, T(0));  // [entry][cell][lane]
        // the image's points in the order of their start cells (a stable counting sort): a vector
        // then holds few distinct cells, and stays so over the steps, as neighbours flow alike
        const int64_t count = last - first;
        b.order.resize(size_t(count));
        b.cell_start.assign(size_t(g.n_cells) + 1, 0);
        for (int64_t p = first; p < last; ++p) ++b.cell_start[size_t(start[p] - offset) + 1];
        for (int32_t c = 0; c < g.n_cells; ++c) b.cell_start[c + 1] += b.cell_start[c];
        for (int64_t p = first; p < last; ++p) b.order[size_t(b.cell_start[size_t(start[p] - offset)]++)] = int32_t(p - first);
        for (int64_t o0 = 0; o0 < count; o0 += VBLOCK) {
            const int32_t m = int32_t(std::min<int64_t>(VBLOCK, count - o0)), nv = (m + L - 1) / L;
            const int32_t* index = b.order.data() + o0;
            load_points(b, x, y, start, first, index, m, offset);
            walk_vblock<true>(b, m, mc, mf, g);
            for (int32_t q = 0; q < nv * L; ++q)
                b.gx[q] = q < m ? gx[first + index[q]] : 0, b.gy[q] = q < m ? gy[first + index[q]] : 0;
            Pending<S> coarse_pending[VBlock<S>::NV];  // a point's coarse cell stays the same but over a redone step
            for (int32_t s = g.n_steps - 1; s >= 0; --s) {
                const int32_t r = b.n_redo[s], nu = (r + L - 1) / L;
                for (int32_t v = 0; v < nv; ++v) {  // the redone points' gradients, packed
                    const typename S::M redo = b.redo[size_t(s) * b.NV + v];
                    const int32_t k = b.at[size_t(s) * b.NV + v];
                    S::store(&b.rgx[k], S::pack(redo, S::load(&b.gx[v * L])));
                    S::store(&b.rgy[k], S::pack(redo, S::load(&b.gy[v * L])));
                }
                for (int32_t u = 0; u < nu; ++u) {  // each packed vector's sub-steps, last first
                    V sgx = S::load(&b.rgx[u * L]), sgy = S::load(&b.rgy[u * L]), term[6];
                    const typename S::M valid = S::first(r - u * L);
                    Pending<S> pending;
                    for (int32_t sub = g.n_sub - 1; sub >= 0; --sub) {
                        const size_t rec = (size_t(s) * g.n_sub + sub) * b.PAD + u * L;
                        const I sc = S::cells(&b.sc[rec]);
                        terms_of<S>(S::load(&b.sx[rec]), S::load(&b.sy[rec]), sgx, sgy, term);
                        pending.add(acc_fine.data(), g.n_cells, sc, valid, term);
                        pull_back(mf, sc, sgx, sgy);
                    }
                    pending.flush(acc_fine.data(), g.n_cells);
                    S::store(&b.rgx[u * L], sgx), S::store(&b.rgy[u * L], sgy);
                }
                // a redone step's own map was replaced by its sub-steps: it gets no gradient
                const size_t at = size_t(s) * VBLOCK;
                for (int32_t v = 0; v < nv; ++v) {
                    const typename S::M redo = b.redo[size_t(s) * b.NV + v];
                    const int32_t k = b.at[size_t(s) * b.NV + v];
                    const I c = S::cells(&b.c[at + v * L]);
                    V vgx = S::load(&b.gx[v * L]), vgy = S::load(&b.gy[v * L]), term[6];
                    terms_of<S>(S::load(&b.x[at + v * L]), S::load(&b.y[at + v * L]), vgx, vgy, term);
                    coarse_pending[v].add(acc_coarse.data(), g.n_cells, c, typename S::M(S::first(m - v * L) & ~redo), term);
                    pull_back(mc, c, vgx, vgy);
                    S::store(&b.gx[v * L], S::unpack(vgx, redo, S::load(&b.rgx[k])));
                    S::store(&b.gy[v * L], S::unpack(vgy, redo, S::load(&b.rgy[k])));
                }
            }
            for (int32_t v = 0; v < nv; ++v) coarse_pending[v].flush(acc_coarse.data(), g.n_cells);
            if (gx_out)
                for (int32_t q = 0; q < m; ++q) gx_out[first + index[q]] = b.gx[q], gy_out[first + index[q]] = b.gy[q];
        }
        for (int32_t k = 0; k < 6; ++k)
            for (int32_t cell = 0; cell < g.n_cells; ++cell) {
                T sum_coarse = 0, sum_fine = 0;
                const size_t at = (size_t(k) * g.n_cells + cell) * L;
                for (int32_t lane = 0; lane < L; ++lane) sum_coarse += acc_coarse[at + lane], sum_fine += acc_fine[at + lane];
                grad_coarse[k * g.rows + offset + cell] += sum_coarse;
                grad_fine[k * g.rows + offset + cell] += sum_fine;
            }
    });
}

// The vector walk where it applies (up to 4 L cells per image), with NP chosen by the cells;
// false where the scalar walk is to be used.
template <class S, typename F>
bool by_pairs(int32_t n_cells, F go) {
    if (n_cells <= 2 * S::L) return go(std::integral_constant<int, 1>{}), true;
    if (n_cells <= 4 * S::L) return go(std::integral_constant<int, 2>{}), true;
    if (n_cells <= 8 * S::L) return go(std::integral_constant<int, 4>{}), true;
    return false;
}

template <typename T> struct Lanes;
template <> struct Lanes<float> { using S = F32; };
template <> struct Lanes<double> { using S = F64; };
#endif

// The vector walk's lanes for T, 0 where it was not built (no AVX-512 here).
template <typename T>
int lanes() {
#ifdef VITAE_CPAB_VECTOR
    return Lanes<T>::S::L;
#else
    return 0;
#endif
}

template <typename T>
void walk(const T* x, const T* y, const int32_t* start, int64_t n, const T* coarse, const T* fine, Geometry<T> g,
          T* x_out, T* y_out, int threads, int vector) {
#ifdef VITAE_CPAB_VECTOR
    using S = typename Lanes<T>::S;
    if (vector && by_pairs<S>(g.n_cells, [&](auto np) {
            walk_vector<S, decltype(np)::value>(x, y, start, n, coarse, fine, g, x_out, y_out, threads);
        }))
        return;
#endif
    over_images<Block<T>>(start, n, g, threads, [&](int64_t first, int64_t last, Block<T>& block) {
        int32_t c[BLOCK];
        for (int64_t p0 = first; p0 < last; p0 += BLOCK) {
            const int32_t m = int32_t(std::min<int64_t>(BLOCK, last - p0));
            for (int32_t q = 0; q < m; ++q) x_out[p0 + q] = x[p0 + q], y_out[p0 + q] = y[p0 + q], c[q] = start[p0 + q];
            walk_block(x_out + p0, y_out + p0, c, m, (c[0] / g.n_cells) * g.n_cells, coarse, fine, g, block);
        }
    });
}

constexpr int32_t COPIES = 4;  // gradient sums kept apart by point, q mod 4: neighbouring points
                               // share cells, and one sum would make each addition wait for the last

template <typename T>
void walk_back(const T* x, const T* y, const int32_t* start, int64_t n, const T* coarse, const T* fine,
               Geometry<T> g, const T* gx, const T* gy, T* grad_coarse, T* grad_fine, T* gx_out, T* gy_out,
               int threads, int vector) {
#ifdef VITAE_CPAB_VECTOR
    using S = typename Lanes<T>::S;
    if (vector && by_pairs<S>(g.n_cells, [&](auto np) {
            walk_back_vector<S, decltype(np)::value>(x, y, start, n, coarse, fine, g, gx, gy, grad_coarse, grad_fine,
                                                     gx_out, gy_out, threads);
        }))
        return;
#endif
    const size_t table = size_t(6) * g.n_cells;
    over_images<Block<T>>(start, n, g, threads, [&](int64_t first, int64_t last, Block<T>& b) {
        // one image's gradients: [copy][6][cell], for the coarse and the fine maps
        std::vector<T> local_coarse(COPIES * table, T(0)), local_fine(COPIES * table, T(0));
        const int32_t offset = (start[first] / g.n_cells) * g.n_cells;
        T px[BLOCK], py[BLOCK], gxs[BLOCK], gys[BLOCK];
        int32_t c[BLOCK];
        char redone[BLOCK];
        for (int64_t p0 = first; p0 < last; p0 += BLOCK) {
            const int32_t m = int32_t(std::min<int64_t>(BLOCK, last - p0));
            for (int32_t q = 0; q < m; ++q)
                px[q] = x[p0 + q], py[q] = y[p0 + q], c[q] = start[p0 + q], gxs[q] = gx[p0 + q], gys[q] = gy[p0 + q];
            walk_block(px, py, c, m, offset, coarse, fine, g, b);
            for (int32_t s = g.n_steps - 1; s >= 0; --s) {
                const int32_t* redo = b.redo.data() + size_t(s) * BLOCK;
                for (int32_t q = 0; q < m; ++q) redone[q] = 0;
                for (int32_t k = 0; k < b.n_redo[s]; ++k) redone[redo[k]] = 1;
                // a redone step's own map was replaced by its sub-steps: it gets no gradient
                for (int32_t k = 0; k < b.n_redo[s]; ++k) {
                    const int32_t q = redo[k];
                    T* grad = local_fine.data() + (q % COPIES) * table;
                    for (int32_t sub = g.n_sub - 1; sub >= 0; --sub) {
                        const size_t at = (size_t(s) * g.n_sub + sub) * BLOCK + k;
                        const int32_t sc = b.sc[at];
                        scatter_and_pull(grad, g.n_cells, fine, g.rows, sc, sc - offset, b.sx[at], b.sy[at], gxs[q], gys[q]);
                    }
                }
                // (without a branch: a redone point adds zeros and keeps its gradient)
                const size_t at = size_t(s) * BLOCK;
                for (int32_t q = 0; q < m; ++q) {
                    const T keep = redone[q] ? T(0) : T(1);
                    T gxq = gxs[q] * keep, gyq = gys[q] * keep;
                    const int32_t cq = b.c[at + q];
                    scatter_and_pull(local_coarse.data() + (q % COPIES) * table, g.n_cells, coarse, g.rows, cq,
                                     cq - offset, b.x[at + q], b.y[at + q], gxq, gyq);
                    gxs[q] = redone[q] ? gxs[q] : gxq, gys[q] = redone[q] ? gys[q] : gyq;
                }
            }
            if (gx_out)
                for (int32_t q = 0; q < m; ++q) gx_out[p0 + q] = gxs[q], gy_out[p0 + q] = gys[q];
        }
        for (int32_t k = 0; k < 6; ++k)
            for (int32_t cell = 0; cell < g.n_cells; ++cell) {
                T sum_coarse = 0, sum_fine = 0;
                for (int32_t copy = 0; copy < COPIES; ++copy) {
                    sum_coarse += local_coarse[copy * table + size_t(k) * g.n_cells + cell];
                    sum_fine += local_fine[copy * table + size_t(k) * g.n_cells + cell];
                }
                grad_coarse[k * g.rows + offset + cell] += sum_coarse;
                grad_fine[k * g.rows + offset + cell] += sum_fine;
            }
    });
}

}  // namespace

extern "C" {

// geometry: nx, ny, cells per image, n_steps, n_sub; rows: R of the [6, R] tables; vector: 0 for
// the scalar walk even where the vector walk applies (tests compare the two)
#define VITAE_CPAB(SUFFIX, T)                                                                                   \
    void vitae_cpab_walk_##SUFFIX(const T* x, const T* y, const int32_t* start, int64_t n, const T* coarse,      \
                                  const T* fine, const int32_t* geometry, int64_t rows, T* x_out, T* y_out,      \
                                  int threads, int vector) {                                                     \
        Geometry<T> g{geometry[0], geometry[1], geometry[2], geometry[3], geometry[4], rows};                    \
        walk(x, y, start, n, coarse, fine, g, x_out, y_out, threads, vector);                                    \
    }                                                                                                            \
    void vitae_cpab_walk_back_##SUFFIX(const T* x, const T* y, const int32_t* start, int64_t n, const T* coarse, \
                                       const T* fine, const int32_t* geometry, int64_t rows, const T* gx,        \
                                       const T* gy, T* grad_coarse, T* grad_fine, T* gx_out, T* gy_out,          \
                                       int threads, int vector) {                                                \
        Geometry<T> g{geometry[0], geometry[1], geometry[2], geometry[3], geometry[4], rows};                    \
        walk_back(x, y, start, n, coarse, fine, g, gx, gy, grad_coarse, grad_fine, gx_out, gy_out, threads,      \
                  vector);                                                                                       \
    }                                                                                                            \
    int vitae_cpab_vector_lanes_##SUFFIX() { return lanes<T>(); }

VITAE_CPAB(f32, float)
VITAE_CPAB(f64, double)
}
