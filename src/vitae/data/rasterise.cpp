// The z-buffered rasteriser of vitae.data.rasterise, compiled: the same rules and the same float64
// arithmetic as its numpy path, so that both make the same images bit for bit. The numpy path
// enumerates every triangle's candidate pixels for the whole batch as arrays; here each image is a
// loop over its triangles in order, with a depth buffer and a winner per pixel, the threads sharing
// out the images.
//
// Rules (see rasterise.py): a pixel belongs to a triangle when its centre lies inside it (closed
// edges, barycentric a >= 0, b >= 0, a + b <= 1); the nearest (largest z) wins and, at equal depth,
// the lower face index (faces are visited in order and only a strictly nearer one replaces the
// winner); a covered pixel takes its triangle's shade, the background 0.
//
// No fused multiply-adds: numpy rounds every product and every sum, and so must this, or a centre
// on an edge could fall on the other side of it.
//
// Built and loaded by vitae.kernels; plain C++17 and OpenMP, no torch headers.

#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace {

constexpr double AMBIENT = 0.3, DIFFUSE = 0.7;

void render(const double* px, const double* py, const double* pz, const int64_t* faces, int64_t num_faces,
            double scale, int64_t height, int64_t width, float* image, double* depth, int64_t* winner, float* shade) {
    const int64_t pixels = height * width;
    for (int64_t i = 0; i < pixels; ++i) depth[i] = -std::numeric_limits<double>::infinity(), winner[i] = -1;
    for (int64_t f = 0; f < num_faces; ++f) {
        const int64_t c0 = faces[3 * f], c1 = faces[3 * f + 1], c2 = faces[3 * f + 2];
        const double x0 = px[c0], x1 = px[c1], x2 = px[c2], y0 = py[c0], y1 = py[c1], y2 = py[c2];
        // candidate pixels: the integer pixels whose centres (i + 0.5) fall in the triangle's box
        const double lo_x = std::fmax(std::ceil(std::fmin(std::fmin(x0, x1), x2) - 0.5), 0.0);
        const double lo_y = std::fmax(std::ceil(std::fmin(std::fmin(y0, y1), y2) - 0.5), 0.0);
        const double hi_x = std::fmin(std::floor(std::fmax(std::fmax(x0, x1), x2) - 0.5), double(width - 1));
        const double hi_y = std::fmin(std::floor(std::fmax(std::fmax(y0, y1), y2) - 0.5), double(height - 1));
        if (!(hi_x - lo_x + 1 > 0) || !(hi_y - lo_y + 1 > 0)) continue;
        const double e1x = x1 - x0, e1y = y1 - y0, e2x = x2 - x0, e2y = y2 - y0;
        const double area = e1x * e2y - e1y * e2x;
        if (std::fabs(area) <= 1e-12) continue;  // degenerate triangles cover nothing
        const double z0 = pz[c0], dz1 = pz[c1] - z0, dz2 = pz[c2] - z0;
        // AMBIENT + DIFFUSE |n_z| / |n| for the normal n of the world edges (e_x / scale, -e_y / scale, dz)
        const double nx = (dz1 * e2y - e1y * dz2) / scale, ny = (dz1 * e2x - e1x * dz2) / scale;
        const double nz = area / (scale * scale);
        shade[f] = float(AMBIENT + DIFFUSE * std::fabs(nz) / std::fmax(std::sqrt(nx * nx + ny * ny + nz * nz), 1e-12));
        for (int64_t row = int64_t(lo_y); row <= int64_t(hi_y); ++row) {
            const double qy = (double(row) + 0.5) - y0;
            for (int64_t col = int64_t(lo_x); col <= int64_t(hi_x); ++col) {
                const double qx = (double(col) + 0.5) - x0;
                const double a = (qx * e2y - qy * e2x) / area;
                const double b = (e1x * qy - e1y * qx) / area;
                if (!(a >= 0 && b >= 0 && a + b <= 1)) continue;
                const double z = (z0 + a * dz1) + b * dz2;
                const int64_t p = row * width + col;
                if (z > depth[p]) depth[p] = z, winner[p] = f;
            }
        }
    }
    for (int64_t i = 0; i < pixels; ++i) image[i] = winner[i] >= 0 ? shade[winner[i]] : 0.0f;
}

}  // namespace

extern "C" {

// px, py, pz: [n, vertices] pixel coordinates (x right, y down) and depth; faces: [num_faces, 3]
// vertex indices; scale: pixels per world unit (for the normals); image: [n, height, width]
void vitae_rasterise_f64(const double* px, const double* py, const double* pz, int64_t n, int64_t vertices,
                         const int64_t* faces, int64_t num_faces, double scale, int64_t height, int64_t width,
                         float* image, int threads) {
#pragma omp parallel num_threads(threads)
    {
        std::vector<double> depth(height * width);
        std::vector<int64_t> winner(height * width);
        std::vector<float> shade(num_faces);
#pragma omp for schedule(dynamic)
        for (int64_t k = 0; k < n; ++k)
            render(px + k * vertices, py + k * vertices, pz + k * vertices, faces, num_faces, scale, height, width,
                   image + k * height * width, depth.data(), winner.data(), shade.data());
    }
}
}
