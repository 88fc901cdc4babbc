// CPAB's cell maps over one sub-step and one step (vitae.transforms.cpab.flows with the powers
// (n_sub,)), and their gradient, as one compiled pass per block of cells instead of a chain of
// some sixty small tensor operations and their backward.
//
// Per cell, the velocity map a = (l00, l01, b0, l10, l11, b1) times the time s = t 0.5^k: its 2x2
// linear part is mu I + N with N = [[n, l01], [l10, -n]] and N^2 = z I, so every function of it
// is p I + q N. The series phi_1 (Horner, of degree `order`) gives the sub-step's map (c I + d N,
// e), squared k times (undoing the scaling); the step's map is the sub-step's composed n_sub
// times; the outputs are the rows of each, [6, R] row-major as the walk reads them. The gradient
// is reverse mode through the same operations, the forward recomputed with its record.
//
// The control flow (order, k, n_sub) is the same for every cell, so the loops over a block's
// cells vectorise (each cell's numbers only read and write its own lane: "omp simd"). Built and loaded by vitae.kernels; plain C++17 and OpenMP, no torch headers;
// threads share out the blocks, each cell's numbers coming out alike whatever the thread count.

#include <algorithm>
#include <cstdint>
#include <vector>

namespace {

constexpr int BLOCK = 64;  // cells computed side by side

template <typename T>
struct Maps {  // the maps (c I + d N, (e0, e1)) of a block's cells
    T c[BLOCK], d[BLOCK], e0[BLOCK], e1[BLOCK];
    void zero(int m) {
        #pragma omp simd
        for (int i = 0; i < m; ++i) c[i] = d[i] = e0[i] = e1[i] = T(0);
    }
};

template <typename T>
struct Field {  // what every map of a cell shares: N = [[n, l01], [l10, -n]], N^2 = z I
    T n[BLOCK], l01[BLOCK], l10[BLOCK], z[BLOCK];
};

// f o g, for maps of the same N (they commute); out may be f or g
template <typename T>
void compose(const Field<T>& F, const Maps<T>& f, const Maps<T>& g, Maps<T>& out, int m) {
    #pragma omp simd
    for (int i = 0; i < m; ++i) {
        const T ng0 = F.n[i] * g.e0[i] + F.l01[i] * g.e1[i], ng1 = F.l10[i] * g.e0[i] - F.n[i] * g.e1[i];
        const T c = f.c[i] * g.c[i] + f.d[i] * g.d[i] * F.z[i], d = f.c[i] * g.d[i] + f.d[i] * g.c[i];
        const T e0 = (f.e0[i] + f.c[i] * g.e0[i]) + f.d[i] * ng0, e1 = (f.e1[i] + f.c[i] * g.e1[i]) + f.d[i] * ng1;
        out.c[i] = c, out.d[i] = d, out.e0[i] = e0, out.e1[i] = e1;
    }
}

// compose's gradient: the output's (ob) added to f's (fb), g's (gb) and the field's (Fb); fb and gb
// may be the same maps (a squaring), ob is neither
template <typename T>
void compose_back(const Field<T>& F, const Maps<T>& f, const Maps<T>& g, const Maps<T>& ob, Maps<T>& fb,
                  Maps<T>& gb, Field<T>& Fb, int m) {
    #pragma omp simd
    for (int i = 0; i < m; ++i) {
        const T ng0 = F.n[i] * g.e0[i] + F.l01[i] * g.e1[i], ng1 = F.l10[i] * g.e0[i] - F.n[i] * g.e1[i];
        const T C = ob.c[i], D = ob.d[i], E0 = ob.e0[i], E1 = ob.e1[i];
        const T bng0 = E0 * f.d[i], bng1 = E1 * f.d[i];
        const T fc = C * g.c[i] + D * g.d[i] + E0 * g.e0[i] + E1 * g.e1[i];
        const T fd = C * g.d[i] * F.z[i] + D * g.c[i] + E0 * ng0 + E1 * ng1;
        const T gc = C * f.c[i] + D * f.d[i], gd = C * f.d[i] * F.z[i] + D * f.c[i];
        const T ge0 = E0 * f.c[i] + bng0 * F.n[i] + bng1 * F.l10[i];
        const T ge1 = E1 * f.c[i] + bng0 * F.l01[i] - bng1 * F.n[i];
        Fb.z[i] += C * f.d[i] * g.d[i];
        Fb.n[i] += bng0 * g.e0[i] - bng1 * g.e1[i];
        Fb.l01[i] += bng0 * g.e1[i];
        Fb.l10[i] += bng1 * g.e0[i];
        fb.c[i] += fc, fb.d[i] += fd, fb.e0[i] += E0, fb.e1[i] += E1;
        gb.c[i] += gc, gb.d[i] += gd, gb.e0[i] += ge0, gb.e1[i] += ge1;
    }
}

// One block's forward, with its record: the Horner steps (x, y), the k + 1 maps of the squarings
// (the last is the sub-step's) and the powers of the sub-step (the last is the step's).
template <typename T>
struct Block {
    int m = 0;
    T s = 0;
    T mu[BLOCK], b0[BLOCK], b1[BLOCK];
    Field<T> F;
    std::vector<T> x, y;          // [order][BLOCK]: x, y before each Horner step, the last after them
    std::vector<Maps<T>> sq, pw;  // [k + 1], [n_sub]

    Block(int order, int k, int n_sub) : x(size_t(order) * BLOCK), y(x.size()), sq(size_t(k) + 1), pw(size_t(n_sub)) {}

    void forward(const T* a, int64_t rows, int64_t first, int count, T scale, int order) {
        m = count, s = scale;
        const int k = int(sq.size()) - 1, n_sub = int(pw.size());
        #pragma omp simd
        for (int i = 0; i < m; ++i) {
            const T l00 = a[first + i] * s, l01 = a[rows + first + i] * s, l10 = a[3 * rows + first + i] * s;
            const T l11 = a[4 * rows + first + i] * s;
            b0[i] = a[2 * rows + first + i] * s, b1[i] = a[5 * rows + first + i] * s;
            mu[i] = (l00 + l11) * T(0.5), F.n[i] = (l00 - l11) * T(0.5);
            F.l01[i] = l01, F.l10[i] = l10, F.z[i] = F.n[i] * F.n[i] + l01 * l10;
        }
        // Horner for phi_1 = x I + y N, from the last term 1 / (order + 1)!
        T f = T(1) / T(order + 1);
        #pragma omp simd
        for (int i = 0; i < m; ++i) x[i] = mu[i] * f + 1, y[i] = f;
        for (int j = 1, deg = order - 1; deg >= 1; ++j, --deg) {
            f = T(1) / T(deg + 1);
            const T* px = &x[size_t(j - 1) * BLOCK];
            const T* py = &y[size_t(j - 1) * BLOCK];
            T* nx = &x[size_t(j) * BLOCK];
            T* ny = &y[size_t(j) * BLOCK];
            #pragma omp simd
            for (int i = 0; i < m; ++i)
                nx[i] = (mu[i] * px[i] + F.z[i] * py[i]) * f + 1, ny[i] = (px[i] + mu[i] * py[i]) * f;
        }
        const T* hx = &x[size_t(order - 1) * BLOCK];
        const T* hy = &y[size_t(order - 1) * BLOCK];
        Maps<T>& s0 = sq[0];
        #pragma omp simd
        for (int i = 0; i < m; ++i) {
            const T nb0 = F.n[i] * b0[i] + F.l01[i] * b1[i], nb1 = F.l10[i] * b0[i] - F.n[i] * b1[i];
            s0.c[i] = (mu[i] * hx[i] + F.z[i] * hy[i]) + 1, s0.d[i] = hx[i] + mu[i] * hy[i];
            s0.e0[i] = hx[i] * b0[i] + hy[i] * nb0, s0.e1[i] = hx[i] * b1[i] + hy[i] * nb1;
        }
        for (int q = 0; q < k; ++q) compose(F, sq[q], sq[q], sq[q + 1], m);
        pw[0] = sq[k];
        for (int j = 1; j < n_sub; ++j) compose(F, pw[j - 1], sq[k], pw[j], m);
    }

    // the rows (c + d n, d l01, e0, d l10, c - d n, e1) of maps mp into out [6, rows] at first
    void write(const Maps<T>& mp, T* out, int64_t rows, int64_t first) const {
        #pragma omp simd
        for (int i = 0; i < m; ++i) {
            const T dn = mp.d[i] * F.n[i];
            out[first + i] = mp.c[i] + dn, out[rows + first + i] = mp.d[i] * F.l01[i], out[2 * rows + first + i] = mp.e0[i];
            out[3 * rows + first + i] = mp.d[i] * F.l10[i], out[4 * rows + first + i] = mp.c[i] - dn;
            out[5 * rows + first + i] = mp.e1[i];
        }
    }

    // write's gradient: the rows' (g [6, rows], or null) added to the maps' (mb) and the field's
    void write_back(const Maps<T>& mp, const T* g, int64_t rows, int64_t first, Maps<T>& mb, Field<T>& Fb) const {
        if (!g) return;
        #pragma omp simd
        for (int i = 0; i < m; ++i) {
            const T g0 = g[first + i], g1 = g[rows + first + i], g2 = g[2 * rows + first + i];
            const T g3 = g[3 * rows + first + i], g4 = g[4 * rows + first + i], g5 = g[5 * rows + first + i];
            mb.c[i] += g0 + g4, mb.d[i] += (g0 - g4) * F.n[i] + g1 * F.l01[i] + g3 * F.l10[i];
            mb.e0[i] += g2, mb.e1[i] += g5;
            Fb.n[i] += (g0 - g4) * mp.d[i], Fb.l01[i] += g1 * mp.d[i], Fb.l10[i] += g3 * mp.d[i];
        }
    }

    // the gradient to a [6, rows] at first, from the fine and coarse rows' (either may be null)
    void backward(const T* gfine, const T* gcoarse, T* ga, int64_t rows, int64_t first, int order) {
        const int k = int(sq.size()) - 1, n_sub = int(pw.size());
        Field<T> Fb;
        #pragma omp simd
        for (int i = 0; i < m; ++i) Fb.n[i] = Fb.l01[i] = Fb.l10[i] = Fb.z[i] = T(0);
        Maps<T> fine_b, cur, next;
        fine_b.zero(m), cur.zero(m);
        write_back(pw[n_sub - 1], gcoarse, rows, first, cur, Fb);
        for (int j = n_sub - 1; j >= 1; --j) {  // pw[j] = pw[j - 1] o fine
            next.zero(m);
            compose_back(F, pw[j - 1], sq[k], cur, next, fine_b, Fb, m);
            cur = next;
        }
        #pragma omp simd
        for (int i = 0; i < m; ++i) fine_b.c[i] += cur.c[i], fine_b.d[i] += cur.d[i], fine_b.e0[i] += cur.e0[i], fine_b.e1[i] += cur.e1[i];
        write_back(sq[k], gfine, rows, first, fine_b, Fb);
        cur = fine_b;
        for (int q = k - 1; q >= 0; --q) {  // sq[q + 1] = sq[q] o sq[q]
            next.zero(m);
            compose_back(F, sq[q], sq[q], cur, next, next, Fb, m);
            cur = next;
        }
        // the sub-step's map before the squarings, from phi_1's (x, y)
        const T* hx = &x[size_t(order - 1) * BLOCK];
        const T* hy = &y[size_t(order - 1) * BLOCK];
        T xb[BLOCK], yb[BLOCK], mub[BLOCK], b0b[BLOCK], b1b[BLOCK];
        #pragma omp simd
        for (int i = 0; i < m; ++i) {
            const T nb0 = F.n[i] * b0[i] + F.l01[i] * b1[i], nb1 = F.l10[i] * b0[i] - F.n[i] * b1[i];
            const T C = cur.c[i], D = cur.d[i], E0 = cur.e0[i], E1 = cur.e1[i];
            xb[i] = C * mu[i] + D + E0 * b0[i] + E1 * b1[i];
            yb[i] = C * F.z[i] + D * mu[i] + E0 * nb0 + E1 * nb1;
            mub[i] = C * hx[i] + D * hy[i];
            Fb.z[i] += C * hy[i];
            const T bnb0 = E0 * hy[i], bnb1 = E1 * hy[i];
            b0b[i] = E0 * hx[i] + bnb0 * F.n[i] + bnb1 * F.l10[i];
            b1b[i] = E1 * hx[i] + bnb0 * F.l01[i] - bnb1 * F.n[i];
            Fb.n[i] += bnb0 * b0[i] - bnb1 * b1[i];
            Fb.l01[i] += bnb0 * b1[i];
            Fb.l10[i] += bnb1 * b0[i];
        }
        // Horner, last step first: (x', y') = ((mu x + z y) f + 1, (x + mu y) f)
        for (int j = order - 1, deg = 1; j >= 1; --j, ++deg) {
            const T f = T(1) / T(deg + 1);
            const T* px = &x[size_t(j - 1) * BLOCK];
            const T* py = &y[size_t(j - 1) * BLOCK];
            #pragma omp simd
            for (int i = 0; i < m; ++i) {
                const T X = xb[i] * f, Y = yb[i] * f;
                mub[i] += X * px[i] + Y * py[i];
                Fb.z[i] += X * py[i];
                xb[i] = X * mu[i] + Y, yb[i] = X * F.z[i] + Y * mu[i];
            }
        }
        const T f = T(1) / T(order + 1);
        #pragma omp simd
        for (int i = 0; i < m; ++i) {
            mub[i] += xb[i] * f;  // x = mu f + 1, y = f
            // z = n^2 + l01 l10; mu = (l00 + l11) / 2, n = (l00 - l11) / 2
            const T nb = Fb.n[i] + Fb.z[i] * 2 * F.n[i];
            const T l01b = Fb.l01[i] + Fb.z[i] * F.l10[i], l10b = Fb.l10[i] + Fb.z[i] * F.l01[i];
            ga[first + i] = (mub[i] + nb) * T(0.5) * s, ga[4 * rows + first + i] = (mub[i] - nb) * T(0.5) * s;
            ga[rows + first + i] = l01b * s, ga[3 * rows + first + i] = l10b * s;
            ga[2 * rows + first + i] = b0b[i] * s, ga[5 * rows + first + i] = b1b[i] * s;
        }
    }
};

// The blocks shared out over the threads, each thread with one Block (its record) for all of its
// blocks
template <typename T, typename F>
void over_blocks(int64_t rows, int k, int order, int n_sub, int threads, F body) {
    const int64_t blocks = (rows + BLOCK - 1) / BLOCK;
#pragma omp parallel num_threads(threads < 1 ? 1 : threads)
    {
        Block<T> b(order, k, n_sub);
#pragma omp for schedule(static)
        for (int64_t i = 0; i < blocks; ++i) body(b, i * BLOCK, int(std::min<int64_t>(BLOCK, rows - i * BLOCK)));
    }
}

template <typename T>
void flows(const T* a, T* fine, T* coarse, int64_t rows, double scale, int k, int order, int n_sub, int threads) {
    over_blocks<T>(rows, k, order, n_sub, threads, [&](Block<T>& b, int64_t first, int m) {
        b.forward(a, rows, first, m, T(scale), order);
        b.write(b.sq[k], fine, rows, first);
        b.write(b.pw[n_sub - 1], coarse, rows, first);
    });
}

template <typename T>
void flows_back(const T* a, const T* gfine, const T* gcoarse, T* ga, int64_t rows, double scale, int k, int order,
                int n_sub, int threads) {
    over_blocks<T>(rows, k, order, n_sub, threads, [&](Block<T>& b, int64_t first, int m) {
        b.forward(a, rows, first, m, T(scale), order);
        b.backward(gfine, gcoarse, ga, rows, first, order);
    });
}

}  // namespace

extern "C" {

// a: the cell-unit velocity maps [6, rows]; fine, coarse, ga: [6, rows]; gfine, gcoarse: null
// where that output has no gradient. scale = t 0.5^k, k squarings, Horner of degree `order`,
// the step n_sub sub-steps.
#define VITAE_CPAB_FLOWS(SUFFIX, T)                                                                               \
    void vitae_cpab_flows_##SUFFIX(const T* a, T* fine, T* coarse, int64_t rows, double scale, int k, int order,  \
                                   int n_sub, int threads) {                                                     \
        flows(a, fine, coarse, rows, scale, k, order, n_sub, threads);                                           \
    }                                                                                                            \
    void vitae_cpab_flows_back_##SUFFIX(const T* a, const T* gfine, const T* gcoarse, T* ga, int64_t rows,       \
                                        double scale, int k, int order, int n_sub, int threads) {                \
        flows_back(a, gfine, gcoarse, ga, rows, scale, k, order, n_sub, threads);                                \
    }

VITAE_CPAB_FLOWS(f32, float)
VITAE_CPAB_FLOWS(f64, double)
}
