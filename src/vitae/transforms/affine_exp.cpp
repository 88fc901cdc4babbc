// The matrix exponential of the diffeomorphic affine family (vitae.transforms.affine_exp):
// E = expm(G) for G = [[g0, g1, g2], [g3, g4, g5], [0, 0, 0]], one per image, and the gradient
// of a loss through it. torch.linalg.matrix_exp handles a batch of 3x3 matrices with batched
// products of its own and differentiates by exponentiating a 6x6 block matrix per image; here each
// matrix is a few hundred multiply-adds in double precision, forward and backward.
//
// Method: scaling and squaring. X = G / 2^k with the 1-norm of G's linear part / 2^k <= 1/2 (k
// per matrix, so that one image's result does not depend on the others), T = the Taylor series
// of degree DEGREE in Horner's form, E = T^(2^k). Truncation below 1e-14 relative. The backward is
// reverse-mode differentiation of exactly these operations, so the gradient is that of the computed
// E. G = 0 gives E = I exactly.
//
// Built and loaded by vitae.kernels; plain C++17 and OpenMP, no torch headers.

#include <cmath>
#include <cstdint>

namespace {

constexpr int DEGREE = 12;
constexpr int MAX_SQUARINGS = 64;

struct M3 {
    double a[3][3];
};

inline M3 zero() {
    M3 m{};
    return m;
}

inline M3 identity() {
    M3 m = zero();
    m.a[0][0] = m.a[1][1] = m.a[2][2] = 1;
    return m;
}

inline M3 mul(const M3& x, const M3& y) {  // x y
    M3 r = zero();
    for (int i = 0; i < 3; ++i)
        for (int k = 0; k < 3; ++k)
            for (int j = 0; j < 3; ++j) r.a[i][j] += x.a[i][k] * y.a[k][j];
    return r;
}

inline M3 mul_tn(const M3& x, const M3& y) {  // x^T y
    M3 r = zero();
    for (int i = 0; i < 3; ++i)
        for (int k = 0; k < 3; ++k)
            for (int j = 0; j < 3; ++j) r.a[i][j] += x.a[k][i] * y.a[k][j];
    return r;
}

inline M3 mul_nt(const M3& x, const M3& y) {  // x y^T
    M3 r = zero();
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j)
            for (int k = 0; k < 3; ++k) r.a[i][j] += x.a[i][k] * y.a[j][k];
    return r;
}

template <typename T>
M3 generator(const T* g) {
    M3 m = zero();
    for (int j = 0; j < 3; ++j) m.a[0][j] = double(g[j]), m.a[1][j] = double(g[3 + j]);
    return m;
}

int squarings_for(const M3& g) {  // the 1-norm of the linear part, halved until at most 1/2
    const double norm = std::fmax(std::fabs(g.a[0][0]) + std::fabs(g.a[1][0]), std::fabs(g.a[0][1]) + std::fabs(g.a[1][1]));
    if (!(norm > 0.5)) return 0;  // also NaN
    const int k = int(std::ceil(std::log2(norm / 0.5)));
    return k < MAX_SQUARINGS ? k : MAX_SQUARINGS;
}

// Horner: P_DEGREE = I + X / DEGREE, P_j = I + (X / j) P_{j+1}, T = P_1; then k squarings.
// `horner` receives P_2 ... P_DEGREE (P[j] at index j), `powers` T^(2^i) for i < k.
struct Trace {
    M3 x;
    M3 p[DEGREE + 1];
    M3 powers[MAX_SQUARINGS + 1];
    int k;
};

M3 expm(const M3& g, Trace& t) {
    t.k = squarings_for(g);
    const double scale = std::ldexp(1.0, -t.k);
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) t.x.a[i][j] = g.a[i][j] * scale;
    M3 p = identity();
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) p.a[i][j] += t.x.a[i][j] / DEGREE;
    for (int j = DEGREE - 1; j >= 1; --j) {
        t.p[j + 1] = p;
        M3 next = mul(t.x, p);
        for (int r = 0; r < 3; ++r)
            for (int c = 0; c < 3; ++c) next.a[r][c] = (r == c ? 1.0 : 0.0) + next.a[r][c] / j;
        p = next;
    }
    for (int i = 0; i < t.k; ++i) {
        t.powers[i] = p;
        p = mul(p, p);
    }
    return p;
}

template <typename T>
void forward(const T* g, T* out, int64_t n, int threads) {
#pragma omp parallel for num_threads(threads < 1 ? 1 : threads) schedule(static)
    for (int64_t b = 0; b < n; ++b) {
        Trace t;
        const M3 e = expm(generator(g + 6 * b), t);
        for (int j = 0; j < 3; ++j) out[6 * b + j] = T(e.a[0][j]), out[6 * b + 3 + j] = T(e.a[1][j]);
    }
}

template <typename T>
void backward(const T* g, const T* grad_out, T* grad_g, int64_t n, int threads) {
#pragma omp parallel for num_threads(threads < 1 ? 1 : threads) schedule(static)
    for (int64_t b = 0; b < n; ++b) {
        Trace t;
        expm(generator(g + 6 * b), t);
        M3 bar = generator(grad_out + 6 * b);  // d loss / d E (its third row does not reach the loss)
        for (int i = t.k - 1; i >= 0; --i)     // through Q = P P: d/dP = bar P^T + P^T bar
        {
            const M3& p = t.powers[i];
            const M3 a = mul_nt(bar, p), c = mul_tn(p, bar);
            for (int r = 0; r < 3; ++r)
                for (int s = 0; s < 3; ++s) bar.a[r][s] = a.a[r][s] + c.a[r][s];
        }
        // through P_j = I + X P_{j+1} / j, j = 1 .. DEGREE - 1, then P_DEGREE = I + X / DEGREE
        M3 x_bar = zero();
        for (int j = 1; j < DEGREE; ++j) {
            const M3 a = mul_nt(bar, t.p[j + 1]), c = mul_tn(t.x, bar);
            for (int r = 0; r < 3; ++r)
                for (int s = 0; s < 3; ++s) x_bar.a[r][s] += a.a[r][s] / j, bar.a[r][s] = c.a[r][s] / j;
        }
        const double scale = std::ldexp(1.0, -t.k);
        for (int j = 0; j < 3; ++j) {
            grad_g[6 * b + j] = T((x_bar.a[0][j] + bar.a[0][j] / DEGREE) * scale);
            grad_g[6 * b + 3 + j] = T((x_bar.a[1][j] + bar.a[1][j] / DEGREE) * scale);
        }
    }
}

}  // namespace

extern "C" {

// g, out, grad_out, grad_g: [n, 6], the top two rows of G and of E, row by row
void vitae_affine_exp_f32(const float* g, float* out, int64_t n, int threads) { forward(g, out, n, threads); }
void vitae_affine_exp_f64(const double* g, double* out, int64_t n, int threads) { forward(g, out, n, threads); }
void vitae_affine_exp_back_f32(const float* g, const float* grad_out, float* grad_g, int64_t n, int threads) {
    backward(g, grad_out, grad_g, n, threads);
}
void vitae_affine_exp_back_f64(const double* g, const double* grad_out, double* grad_g, int64_t n, int threads) {
    backward(g, grad_out, grad_g, n, threads);
}
}
