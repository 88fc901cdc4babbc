// The Bernoulli log-likelihood of vitae.models.likelihoods on the CPU, in one pass over the pixels
// (vitae.models.bernoulli_kernel): per image, the sum of x log p + (1 - x) log(1 - p), and where a
// gradient is wanted, each pixel's derivative of that sum, kept for the backward. Two forms:
//
// * from logits l (the VAE's decoder output), clamped to +-bound: the sum of x l - softplus(l),
//   derivative x - sigmoid(l) (zero where |l| > bound, where the clamp holds it);
// * from a mean m (the VITAE's warped mean), p = clamp(m, eps, 1 - eps): the sum of
//   x log p + (1 - x) log(1 - p), derivative (x - p) / (p (1 - p)) (zero where the clamp moved m).
//
// torch's path is a chain of element-wise operations, each a pass over the images (a large part of
// an MNIST VAE step). Here exp and log are polynomials of vitae's own (below), so that the compiler
// vectorises the loop; they are accurate to a few units in the last place of the type. A sum is
// taken in double, in the same order whatever the number of threads (the threads share out the
// images). NaN in the input comes out as NaN in the image's sum, as on torch's path.
//
// Built and loaded by vitae.kernels; plain C++17 and OpenMP, no torch headers.

#include <cmath>
#include <cstdint>
#include <vector>

namespace {

constexpr double LN2 = 0.693147180559945309417232121458176568;
constexpr double SQRT2 = 1.41421356237309504880168872420969808;

// per type: the terms of the two series, the bits of the exponent field, and ln 2 split in two
// so that n * LN2_HI is exact for the n that occur (|n| < 2^12 for float, 2^20 for double)
template <typename T> struct Spec;
template <> struct Spec<float> {
    using Bits = int32_t;
    static constexpr int EXP_TERMS = 8;    // exp(r) to r^7 / 7!, |r| <= ln2 / 2: remainder r^8 / 8! < 6e-9
    static constexpr int ATANH_TERMS = 6;  // 2 (s + ... + s^13 / 13), |s| <= 0.172: remainder 2 s^15 / 15 < 1e-12
    static constexpr int MANTISSA = 23, BIAS = 127, MIN_EXP = -125;
    static constexpr double HI_SCALE = 4096.0;
};
template <> struct Spec<double> {
    using Bits = int64_t;
    static constexpr int EXP_TERMS = 14;    // to r^13 / 13!: remainder r^14 / 14! < 5e-18
    static constexpr int ATANH_TERMS = 12;  // up to s^25 / 25: remainder 2 s^27 / 27 < 2e-22
    static constexpr int MANTISSA = 52, BIAS = 1023, MIN_EXP = -1021;
    static constexpr double HI_SCALE = 1048576.0 * 4096.0;
};

// (GCC and Clang's __builtin_bit_cast, std::bit_cast of C++20; memcpy would stop vectorisation)
template <typename T> inline T from_bits(typename Spec<T>::Bits b) { return __builtin_bit_cast(T, b); }
template <typename T> inline typename Spec<T>::Bits to_bits(T v) { return __builtin_bit_cast(typename Spec<T>::Bits, v); }

// exp(-a) for a >= 0 (0 where it would be subnormal): -a = n ln2 + r, exp(r) by its Taylor series
template <typename T> inline T exp_neg(T a) {
    using S = Spec<T>;
    const T hi = T(std::floor(LN2 * S::HI_SCALE) / S::HI_SCALE), lo = T(LN2 - double(hi));
    T n = std::nearbyint(-a * T(1 / LN2));
    const bool tiny = n < T(S::MIN_EXP);
    n = tiny ? T(0) : n;
    const T r = (-a - n * hi) - n * lo;
    T sum = T(1);
    for (int k = S::EXP_TERMS - 1; k >= 1; --k) sum = T(1) + r * sum * T(1.0 / k);  // 1 + r (1 + r/2 (1 + ...))
    const T scale = from_bits<T>((typename S::Bits(n) + S::BIAS) << S::MANTISSA);
    return tiny ? T(0) : sum * scale;
}

// log(1 + f) for f in [sqrt(1/2) - 1, sqrt(2) - 1]: 2 atanh(s), s = f / (2 + f), by its series
template <typename T> inline T log1p_reduced(T f) {
    using S = Spec<T>;
    const T s = f / (T(2) + f), s2 = s * s;
    T sum = T(1) / T(2 * S::ATANH_TERMS + 1);
    for (int k = S::ATANH_TERMS - 1; k >= 0; --k) sum = T(1) / T(2 * k + 1) + s2 * sum;
    return T(2) * s * sum;
}

// log(1 + e) for e in [0, 1], without forming 1 + e (which would lose a small e)
template <typename T> inline T log1p_unit(T e) {
    const bool halve = e > T(SQRT2 - 1);  // then log(1 + e) = ln2 + log(1 + (e - 1) / 2)
    return (halve ? T(LN2) : T(0)) + log1p_reduced(halve ? (e - T(1)) * T(0.5) : e);
}

// log(v) for a positive normal v: v = m 2^k with m in [sqrt(1/2), sqrt(2))
template <typename T> inline T log_positive(T v) {
    using S = Spec<T>;
    using B = typename S::Bits;
    const B bits = to_bits(v);
    B k = (bits >> S::MANTISSA) - S::BIAS;
    T m = from_bits<T>((bits & ((B(1) << S::MANTISSA) - 1)) | (B(S::BIAS) << S::MANTISSA));  // in [1, 2)
    const bool halve = m > T(SQRT2);
    m = m * (halve ? T(0.5) : T(1));
    k += B(halve);
    return T(k) * T(LN2) + log1p_reduced(m - T(1));
}

// Each image's sum, the threads sharing out the images: term(i, n, out) writes the terms of the
// image's pixels i .. i + n - 1 (n <= BLOCK) to out, in a vectorised loop; they are added up in
// double by LANES partial sums, pixel j into sum j % LANES, so that the order of the additions is
// fixed (the same bits whatever the number of threads) and yet not one long chain of dependent
// additions (an in-order reduction is what a compiler makes of a plain loop's sum).
constexpr int64_t BLOCK = 512, LANES = 8;

template <typename T, typename Term>
void per_image_sums(T* sums, int64_t images, int64_t pixels, int threads, Term term) {
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t b = 0; b < images; ++b) {
        T out[BLOCK];
        double partial[LANES] = {};
        for (int64_t start = 0; start < pixels; start += BLOCK) {
            const int64_t n = pixels - start < BLOCK ? pixels - start : BLOCK;
            term(b * pixels + start, n, out);
            for (int64_t j = n; j % LANES != 0; ++j) out[j] = T(0);
            for (int64_t j = 0; j < n; j += LANES)
                for (int64_t k = 0; k < LANES; ++k) partial[k] += double(out[j + k]);
        }
        double sum = 0;
        for (int64_t k = 0; k < LANES; ++k) sum += partial[k];
        sums[b] = T(sum);
    }
}

template <typename T, bool GRAD>
void from_logits(const T* x, const T* logits, T bound, T* sums, T* grad, int64_t images, int64_t pixels, int threads) {
    per_image_sums(sums, images, pixels, threads, [=](int64_t at, int64_t n, T* out) {
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) {
            const T raw = logits[at + i], xi = x[at + i];
            const T l = raw > bound ? bound : (raw < -bound ? -bound : raw);  // NaN stays NaN
            const T a = l < T(0) ? -l : l;
            const T e = exp_neg(a);
            const T softplus = (l > T(0) ? l : T(0)) + log1p_unit(e);
            out[i] = xi * l - softplus + (l - l);  // l - l: 0, or NaN where the logit was NaN
            if constexpr (GRAD) {
                const T sigmoid = (l >= T(0) ? T(1) : e) / (T(1) + e);
                grad[at + i] = (raw <= bound && raw >= -bound) ? xi - sigmoid : T(0);
            }
        }
    });
}

// The gradient is computed whether or not it is wanted, into a scratch block on the heap where it
// is not: without that store, or with the block on the stack, GCC 12 leaves this loop unvectorised
// (20 times slower); the division costs far less.
template <typename T, bool GRAD>
void from_mean(const T* x, const T* mean, T lo, T hi, T* sums, T* grad, int64_t images, int64_t pixels, int threads) {
    per_image_sums(sums, images, pixels, threads, [=](int64_t at, int64_t n, T* out) {
        static thread_local std::vector<T> scratch(BLOCK);
        T* g = GRAD ? grad + at : scratch.data();
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) {
            const T raw = mean[at + i], xi = x[at + i];
            const T p = raw > hi ? hi : (raw < lo ? lo : raw);  // NaN stays NaN
            const T q = T(1) - p;
            const T log_p = log_positive(p), log_q = log_positive(q);
            out[i] = log_q + xi * (log_p - log_q) + (p - p);  // p - p: 0, or NaN where the mean was NaN
            const T d = (xi - p) / (q * p);  // computed everywhere, kept where the clamp let the mean be
            g[i] = p == raw ? d : T(0);
        }
    });
}

}  // namespace

extern "C" {

// x, logits or mean, grad: [images, pixels], each image's pixels in one block (any layout, the
// same for all three); sums: [images]; grad may be null (no gradient wanted). The logits are
// clamped to [-bound, bound], the mean to [lo, hi], each bound rounded to the type.
void vitae_bernoulli_logits_f32(const float* x, const float* l, double bound, float* sums, float* grad, int64_t images,
                                int64_t pixels, int threads) {
    if (grad) from_logits<float, true>(x, l, float(bound), sums, grad, images, pixels, threads);
    else from_logits<float, false>(x, l, float(bound), sums, grad, images, pixels, threads);
}
void vitae_bernoulli_logits_f64(const double* x, const double* l, double bound, double* sums, double* grad,
                                int64_t images, int64_t pixels, int threads) {
    if (grad) from_logits<double, true>(x, l, bound, sums, grad, images, pixels, threads);
    else from_logits<double, false>(x, l, bound, sums, grad, images, pixels, threads);
}
void vitae_bernoulli_mean_f32(const float* x, const float* m, double lo, double hi, float* sums, float* grad,
                              int64_t images, int64_t pixels, int threads) {
    if (grad) from_mean<float, true>(x, m, float(lo), float(hi), sums, grad, images, pixels, threads);
    else from_mean<float, false>(x, m, float(lo), float(hi), sums, grad, images, pixels, threads);
}
void vitae_bernoulli_mean_f64(const double* x, const double* m, double lo, double hi, double* sums, double* grad,
                              int64_t images, int64_t pixels, int threads) {
    if (grad) from_mean<double, true>(x, m, lo, hi, sums, grad, images, pixels, threads);
    else from_mean<double, false>(x, m, lo, hi, sums, grad, images, pixels, threads);
}
}
