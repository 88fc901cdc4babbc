// The bilinear sampler of vitae.transforms.affine_sampler: warp(I, [A | b]) and its gradients,
// reading the 2x3 matrix directly, and the same read from a displacement per pixel (CPAB's). No
// grid is stored and the image is not padded; the matrix's gradient is summed per image as the
// pixels are visited, instead of being written out per pixel and reduced afterwards.
//
// Frame (vitae.transforms.base): the output pixel (i, j) of an H x W image sits at the normalised
// point x = (2j + 1) / W - 1, y = (2i + 1) / H - 1 and reads the input at that point plus a
// displacement (dx, dy): ([A | b] - [I | 0]) (x, y, 1) for a matrix, or the pixel's own. In pixel
// units that is u = j + W/2 dx, v = i + H/2 dy, which is exactly (j, i) for a zero displacement
// (the identity): theta = 0 copies every pixel bit for bit. Bilinear, zeros outside
// (align_corners=False), as F.grid_sample.
//
// Built by affine_sampler.py with the system's C++ compiler into the user's cache, loaded through
// ctypes; plain C++17 and OpenMP, no torch headers. Work is split over the batch: one image's
// pixels, and so its share of the matrix's gradient and its image gradient, belong to one thread.
// An image's pixels are taken in runs of CHUNK (row after row, so a run may span rows): loops of
// that length vectorise even for 28 x 28 MNIST, and a run's scratch stays in the L1 cache.
//
// Every tensor has its pixels in rows (the stride of a row is W times that of a pixel: plain or
// channels-last); pixel p = i W + j of a channel then sits at p times the pixel stride.

#include <algorithm>
#include <cstdint>
#include <vector>

namespace {

constexpr int32_t CHUNK = 256;

struct Layout {  // sizes and strides (in elements) of a [B, C, H, W] tensor
    int64_t n, c, h, w;
    int64_t sn, sc, sh, sw;
};

Layout layout(const int64_t* sizes, const int64_t* strides) {
    return {sizes[0], sizes[1], sizes[2], sizes[3], strides[0], strides[1], strides[2], strides[3]};
}

// The batch split into `threads` parts, one per OpenMP thread. Built with -fopenmp and loaded into a
// process that runs torch, this is torch's own OpenMP pool (the runtime is shared by its soname):
// threads of a separate pool would have to wait for torch's, which spin for a while after each of
// its parallel operations, and on a machine with few cores that doubles a warp's time.
template <typename F>
void over_batch(int64_t batch, int threads, F body) {
    int64_t workers = threads < 1 ? 1 : threads;
    if (workers > batch) workers = batch;
#pragma omp parallel for num_threads(workers) schedule(static, 1)
    for (int64_t t = 0; t < workers; ++t) body(batch * t / workers, batch * (t + 1) / workers);
}

// Each pixel's column and row (as numbers) and its normalised point: tables of H W, shared.
template <typename T>
struct Pixels {
    std::vector<T> j, i, x, y;
    Pixels(int64_t h, int64_t w) : j(h * w), i(h * w), x(h * w), y(h * w) {
        for (int64_t r = 0; r < h; ++r)
            for (int64_t c = 0; c < w; ++c) {
                const int64_t p = r * w + c;
                j[p] = T(c), i[p] = T(r);
                x[p] = T(2 * c + 1) / T(w) - 1, y[p] = T(2 * r + 1) / T(h) - 1;
            }
    }
};

// A run's sampling: for every output pixel, the offsets (within one channel of one image) of its
// four neighbours and their bilinear weights, zero for a neighbour outside the image. Offsets of
// outside neighbours are clamped into the image so that every read is safe; with their weight or
// mask at zero they add nothing.
template <typename T>
struct Run {
    int32_t at[4][CHUNK];  // 00 (top left), 01 (top right), 10 (bottom left), 11
    T weight[4][CHUNK], mask[4][CHUNK], fu[CHUNK], fv[CHUNK];

    // The run's n source points (u, v) in pixel units. Written without branches, so that the
    // compiler vectorises it.
    void set(const T* __restrict su, const T* __restrict sv, int32_t n, int32_t h, int32_t w, int32_t sh, int32_t sw) {
        const T wf = T(w), hf = T(h);
        int32_t* __restrict a00 = at[0]; int32_t* __restrict a01 = at[1];
        int32_t* __restrict a10 = at[2]; int32_t* __restrict a11 = at[3];
        T* __restrict w00 = weight[0]; T* __restrict w01 = weight[1]; T* __restrict w10 = weight[2]; T* __restrict w11 = weight[3];
        T* __restrict m00 = mask[0]; T* __restrict m01 = mask[1]; T* __restrict m10 = mask[2]; T* __restrict m11 = mask[3];
        T* __restrict pu = fu; T* __restrict pv = fv;
        const int32_t last_u = w - 1, last_v = h - 1;
        // (no "omp simd" here: with it GCC 12 stops if-converting the selects below and leaves the loop scalar)
        for (int32_t k = 0; k < n; ++k) {
            T u = su[k], v = sv[k];
            // far outside (or NaN) reads as a point two pixels out: all four neighbours outside
            u = u > T(-2) ? u : T(-2), u = u < wf + 1 ? u : wf + 1;
            v = v > T(-2) ? v : T(-2), v = v < hf + 1 ? v : hf + 1;
            // floor, exactly and in a form the compiler vectorises: truncate, then one down where
            // that went up (below zero)
            const int32_t tu = int32_t(u), tv = int32_t(v);
            const int32_t iu = tu - int32_t(T(tu) > u), iv = tv - int32_t(T(tv) > v);
            const T a = u - T(iu), b = v - T(iv);
            // a neighbour is inside when 0 <= index < size (one unsigned comparison)
            const T left = T(uint32_t(iu) < uint32_t(w)), right = T(uint32_t(iu + 1) < uint32_t(w));
            const T top = T(uint32_t(iv) < uint32_t(h)), bottom = T(uint32_t(iv + 1) < uint32_t(h));
            const int32_t cu0 = std::min(std::max(iu, 0), last_u), cu1 = std::min(std::max(iu + 1, 0), last_u);
            const int32_t cv0 = std::min(std::max(iv, 0), last_v), cv1 = std::min(std::max(iv + 1, 0), last_v);
            a00[k] = cv0 * sh + cu0 * sw, a01[k] = cv0 * sh + cu1 * sw;
            a10[k] = cv1 * sh + cu0 * sw, a11[k] = cv1 * sh + cu1 * sw;
            const T k00 = top * left, k01 = top * right, k10 = bottom * left, k11 = bottom * right;
            m00[k] = k00, m01[k] = k01, m10[k] = k10, m11[k] = k11;
            // at the identity a = b = 0: weights 1, 0, 0, 0, and the pixel is copied exactly
            w00[k] = (1 - a) * (1 - b) * k00, w01[k] = a * (1 - b) * k01;
            w10[k] = (1 - a) * b * k10, w11[k] = a * b * k11;
            pu[k] = a, pv[k] = b;
        }
    }
};

// Where the pixels read from: the source points of a run of pixels, and what becomes of their
// gradient (d loss / d u, d v). Two sources: a 2x3 matrix per image, and a displacement per pixel.

// u = j + W/2 dx, v = i + H/2 dy, the displacement (dx, dy) = ([A | b] - [I | 0]) (x, y, 1):
// exactly 0 for the identity. The matrix's gradient is summed per image (in double) as its runs
// come, and written at the image's end.
template <typename T>
struct ByMatrix {
    const T* matrix;  // [B, 2, 3]
    T* grad;          // [B, 2, 3] or null
    double du[3] = {0, 0, 0}, dv[3] = {0, 0, 0};  // d loss / d u summed with x, y and 1; and v's

    void points(int64_t b, const Pixels<T>& px, int64_t first, int32_t n, int64_t h, int64_t w, T* u, T* v) const {
        const T* m = matrix + 6 * b;
        const T half_w = T(w) / 2, half_h = T(h) / 2;
        const T a0 = half_w * (m[0] - 1), a1 = half_w * m[1], a2 = half_w * m[2];
        const T b0 = half_h * m[3], b1 = half_h * (m[4] - 1), b2 = half_h * m[5];
        const T* __restrict pj = px.j.data() + first;
        const T* __restrict pi = px.i.data() + first;
        const T* __restrict pxs = px.x.data() + first;
        const T* __restrict pys = px.y.data() + first;
        for (int32_t k = 0; k < n; ++k)
            u[k] = pj[k] + (a0 * pxs[k] + (a1 * pys[k] + a2)), v[k] = pi[k] + (b0 * pxs[k] + (b1 * pys[k] + b2));
    }
    void gradient(int64_t, const Pixels<T>& px, int64_t first, int32_t n, int64_t, int64_t, const T* gu, const T* gv) {
        const T* xs = px.x.data() + first;
        const T* ys = px.y.data() + first;
        T u_x = 0, u_y = 0, u_1 = 0, v_x = 0, v_y = 0, v_1 = 0;
#pragma omp simd reduction(+ : u_x, u_y, u_1, v_x, v_y, v_1)
        for (int32_t k = 0; k < n; ++k) {
            u_x += gu[k] * xs[k], u_y += gu[k] * ys[k], u_1 += gu[k];
            v_x += gv[k] * xs[k], v_y += gv[k] * ys[k], v_1 += gv[k];
        }
        du[0] += u_x, du[1] += u_y, du[2] += u_1;
        dv[0] += v_x, dv[1] += v_y, dv[2] += v_1;
    }
    void done(int64_t b, int64_t h, int64_t w) {
        // u moves by W/2 per unit of m[0] x + m[1] y + m[2], v by H/2 per unit of the second row
        T* gm = grad + 6 * b;
        const double half_w = double(w) / 2, half_h = double(h) / 2;
        for (int e = 0; e < 3; ++e) gm[e] = T(half_w * du[e]), gm[3 + e] = T(half_h * dv[e]);
        for (int e = 0; e < 3; ++e) du[e] = dv[e] = 0;
    }
};

// u = j + W/2 dx, v = i + H/2 dy for a displacement (dx, dy) per pixel ([B, H, W, 2], x then y,
// normalised units, as base.displaced_sample takes it): exactly 0 reads the pixel itself. Its
// gradient is written per pixel.
template <typename T>
struct ByShift {
    const T* shift;  // [B, H, W, 2]
    T* grad;         // [B, H, W, 2] or null

    void points(int64_t b, const Pixels<T>& px, int64_t first, int32_t n, int64_t h, int64_t w, T* u, T* v) const {
        const T half_w = T(w) / 2, half_h = T(h) / 2;
        const T* __restrict s = shift + 2 * (b * h * w + first);
        const T* __restrict pj = px.j.data() + first;
        const T* __restrict pi = px.i.data() + first;
        for (int32_t k = 0; k < n; ++k) u[k] = pj[k] + half_w * s[2 * k], v[k] = pi[k] + half_h * s[2 * k + 1];
    }
    void gradient(int64_t b, const Pixels<T>&, int64_t first, int32_t n, int64_t h, int64_t w, const T* gu, const T* gv) {
        const T half_w = T(w) / 2, half_h = T(h) / 2;
        T* __restrict g = grad + 2 * (b * h * w + first);
        for (int32_t k = 0; k < n; ++k) g[2 * k] = half_w * gu[k], g[2 * k + 1] = half_h * gv[k];
    }
    void done(int64_t, int64_t, int64_t) {}
};

template <typename T, typename Source>
void forward(const T* image, Layout in, const Source& source, T* out, Layout o, int threads) {
    const Pixels<T> px(in.h, in.w);
    const int64_t pixels = in.h * in.w;
    over_batch(in.n, threads, [&](int64_t first, int64_t last) {
        Run<T> run;
        T u[CHUNK], v[CHUNK];
        for (int64_t b = first; b < last; ++b)
            for (int64_t p0 = 0; p0 < pixels; p0 += CHUNK) {
                const int32_t n = int32_t(std::min<int64_t>(CHUNK, pixels - p0));
                source.points(b, px, p0, n, in.h, in.w, u, v);
                run.set(u, v, n, int32_t(in.h), int32_t(in.w), int32_t(in.sh), int32_t(in.sw));
                for (int64_t c = 0; c < in.c; ++c) {
                    const T* p = image + b * in.sn + c * in.sc;
                    T* q = out + b * o.sn + c * o.sc + p0 * o.sw;
                    for (int32_t k = 0; k < n; ++k)
                        q[k * o.sw] = run.weight[0][k] * p[run.at[0][k]] + run.weight[1][k] * p[run.at[1][k]]
                                      + run.weight[2][k] * p[run.at[2][k]] + run.weight[3][k] * p[run.at[3][k]];
                }
            }
    });
}

// grad_image and the source's gradient (either may be null: not wanted) are written whole.
// grad_image is zeroed here, by the thread that fills it, rather than by torch before the call:
// torch's threads would then still be spinning on the cores this call wants.
template <typename T, typename Source>
void backward(const T* image, Layout in, const Source& source, const T* grad_out, Layout g, T* grad_image, Layout gi,
              int threads) {
    const Pixels<T> px(in.h, in.w);
    const int64_t pixels = in.h * in.w;
    over_batch(in.n, threads, [&](int64_t first, int64_t last) {
        Source mine = source;  // this thread's sums
        Run<T> run;    // the image's offsets
        Run<T> other;  // the same points in grad_image's strides, where those differ
        const bool same = gi.sw == in.sw;
        Run<T>& grad = same ? run : other;
        T go[CHUNK], gu[CHUNK], gv[CHUNK], u[CHUNK], v[CHUNK];
        const bool want_source = mine.grad != nullptr;
        for (int64_t b = first; b < last; ++b) {
            if (grad_image)
                for (int64_t c = 0; c < in.c; ++c)
                    for (int64_t p = 0; p < pixels; ++p) grad_image[b * gi.sn + c * gi.sc + p * gi.sw] = 0;
            for (int64_t p0 = 0; p0 < pixels; p0 += CHUNK) {
                const int32_t n = int32_t(std::min<int64_t>(CHUNK, pixels - p0));
                const int32_t h = int32_t(in.h), w = int32_t(in.w);
                mine.points(b, px, p0, n, in.h, in.w, u, v);
                run.set(u, v, n, h, w, int32_t(in.sh), int32_t(in.sw));
                if (grad_image && !same) grad.set(u, v, n, h, w, int32_t(gi.sh), int32_t(gi.sw));
                for (int32_t k = 0; k < n; ++k) gu[k] = 0, gv[k] = 0;
                for (int64_t c = 0; c < in.c; ++c) {
                    const T* g_run = grad_out + b * g.sn + c * g.sc + p0 * g.sw;
                    for (int32_t k = 0; k < n; ++k) go[k] = g_run[k * g.sw];
                    if (want_source) {
                        const T* p = image + b * in.sn + c * in.sc;
                        for (int32_t k = 0; k < n; ++k) {
                            const T v00 = run.mask[0][k] * p[run.at[0][k]], v01 = run.mask[1][k] * p[run.at[1][k]];
                            const T v10 = run.mask[2][k] * p[run.at[2][k]], v11 = run.mask[3][k] * p[run.at[3][k]];
                            gu[k] += go[k] * ((1 - run.fv[k]) * (v01 - v00) + run.fv[k] * (v11 - v10));
                            gv[k] += go[k] * ((1 - run.fu[k]) * (v10 - v00) + run.fu[k] * (v11 - v01));
                        }
                    }
                    if (grad_image) {
                        // a scatter: neighbouring pixels share neighbours, so one corner at a time
                        // (a pixel's right neighbour is the next one's left: adding both in one
                        // pass would make each addition wait for the one before)
                        T* q = grad_image + b * gi.sn + c * gi.sc;
                        for (int corner = 0; corner < 4; ++corner)
                            for (int32_t k = 0; k < n; ++k) q[grad.at[corner][k]] += go[k] * grad.weight[corner][k];
                    }
                }
                if (want_source) mine.gradient(b, px, p0, n, in.h, in.w, gu, gv);
            }
            if (want_source) mine.done(b, in.h, in.w);
        }
    });
}

}  // namespace

extern "C" {

// images and outputs: [B, C, H, W] with any strides; matrix: [B, 2, 3] and shift: [B, H, W, 2],
// contiguous; grad_image, grad_matrix, grad_shift: null where not wanted.
#define VITAE_SAMPLER(SUFFIX, T)                                                                                  \
    void vitae_affine_forward_##SUFFIX(const T* image, const int64_t* sizes, const int64_t* strides,              \
                                       const T* matrix, T* out, const int64_t* out_strides, int threads) {       \
        forward(image, layout(sizes, strides), ByMatrix<T>{matrix, nullptr}, out, layout(sizes, out_strides),   \
                threads);                                                                                       \
    }                                                                                                           \
    void vitae_affine_backward_##SUFFIX(const T* image, const int64_t* sizes, const int64_t* strides,             \
                                        const T* matrix, const T* grad_out, const int64_t* grad_out_strides,    \
                                        T* grad_image, const int64_t* grad_image_strides, T* grad_matrix,       \
                                        int threads) {                                                          \
        backward(image, layout(sizes, strides), ByMatrix<T>{matrix, grad_matrix}, grad_out,                     \
                 layout(sizes, grad_out_strides), grad_image, layout(sizes, grad_image_strides), threads);      \
    }                                                                                                           \
    void vitae_shift_forward_##SUFFIX(const T* image, const int64_t* sizes, const int64_t* strides,               \
                                      const T* shift, T* out, const int64_t* out_strides, int threads) {        \
        forward(image, layout(sizes, strides), ByShift<T>{shift, nullptr}, out, layout(sizes, out_strides),     \
                threads);                                                                                       \
    }                                                                                                           \
    void vitae_shift_backward_##SUFFIX(const T* image, const int64_t* sizes, const int64_t* strides,              \
                                       const T* shift, const T* grad_out, const int64_t* grad_out_strides,      \
                                       T* grad_image, const int64_t* grad_image_strides, T* grad_shift,         \
                                       int threads) {                                                           \
        backward(image, layout(sizes, strides), ByShift<T>{shift, grad_shift}, grad_out,                        \
                 layout(sizes, grad_out_strides), grad_image, layout(sizes, grad_image_strides), threads);      \
    }

VITAE_SAMPLER(f32, float)
VITAE_SAMPLER(f64, double)

int vitae_affine_version() { return 2; }
}
