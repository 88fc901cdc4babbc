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
// Built and loaded by vitae.kernels; plain C++17 and OpenMP, no torch headers. Points are walked
// in blocks side by side, a step of every point of the block before the next step, so that the
// steps of different points overlap (one point's steps depend on each other: walked alone, it
// waits on every one). Work is split over the images, so that the gradient of one image's cells
// is summed by one thread in one order, whatever the thread count.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

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

template <typename T>
inline T lerp(T a, T b, T w) {  // torch.lerp's formula
    return w < T(0.5) ? a + w * (b - a) : b - (b - a) * (T(1) - w);
}

template <typename T>
inline void apply(const T* table, int64_t rows, int32_t c, T x, T y, T& ox, T& oy) {
    ox = (table[2 * rows + c] + table[c] * x) + table[rows + c] * y;
    oy = (table[5 * rows + c] + table[3 * rows + c] * x) + table[4 * rows + c] * y;
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
    const T ngx = table[c] * gx + table[3 * rows + c] * gy, ngy = table[rows + c] * gx + table[4 * rows + c] * gy;
    gx = ngx, gy = ngy;
}

// The images' points: [first, last) ranges of points of one image each, split over the threads,
// so that one image's cells are only ever touched by one thread, in one order. The points come
// image after image from cpab.py; out of that order (never), one image's ranges could be far
// apart, and one thread takes them all.
template <typename T, typename F>
void over_images(const int32_t* start, int64_t n, const Geometry<T>& g, int threads, F body) {
    std::vector<int64_t> bounds{0};
    bool ordered = true;
    for (int64_t p = 1; p < n; ++p) {
        const int32_t a = start[p - 1] / g.n_cells, b = start[p] / g.n_cells;
        ordered = ordered && b >= a;
        if (b != a) bounds.push_back(p);
    }
    bounds.push_back(n);
    const int64_t images = int64_t(bounds.size()) - 1;
#pragma omp parallel num_threads(threads < 1 || !ordered ? 1 : threads)
    {
        Block<T> block(g.n_steps, g.n_sub);
#pragma omp for schedule(static)
        for (int64_t i = 0; i < images; ++i) body(bounds[i], bounds[i + 1], block);
    }
}

template <typename T>
void walk(const T* x, const T* y, const int32_t* start, int64_t n, const T* coarse, const T* fine, Geometry<T> g,
          T* x_out, T* y_out, int threads) {
    over_images(start, n, g, threads, [&](int64_t first, int64_t last, Block<T>& block) {
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
               int threads) {
    const size_t table = size_t(6) * g.n_cells;
    over_images(start, n, g, threads, [&](int64_t first, int64_t last, Block<T>& b) {
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

// geometry: nx, ny, cells per image, n_steps, n_sub; rows: R of the [6, R] tables
#define VITAE_CPAB(SUFFIX, T)                                                                                   \
    void vitae_cpab_walk_##SUFFIX(const T* x, const T* y, const int32_t* start, int64_t n, const T* coarse,      \
                                  const T* fine, const int32_t* geometry, int64_t rows, T* x_out, T* y_out,      \
                                  int threads) {                                                                 \
        Geometry<T> g{geometry[0], geometry[1], geometry[2], geometry[3], geometry[4], rows};                    \
        walk(x, y, start, n, coarse, fine, g, x_out, y_out, threads);                                            \
    }                                                                                                            \
    void vitae_cpab_walk_back_##SUFFIX(const T* x, const T* y, const int32_t* start, int64_t n, const T* coarse, \
                                       const T* fine, const int32_t* geometry, int64_t rows, const T* gx,        \
                                       const T* gy, T* grad_coarse, T* grad_fine, T* gx_out, T* gy_out,          \
                                       int threads) {                                                            \
        Geometry<T> g{geometry[0], geometry[1], geometry[2], geometry[3], geometry[4], rows};                    \
        walk_back(x, y, start, n, coarse, fine, g, gx, gy, grad_coarse, grad_fine, gx_out, gy_out, threads);     \
    }

VITAE_CPAB(f32, float)
VITAE_CPAB(f64, double)
}
