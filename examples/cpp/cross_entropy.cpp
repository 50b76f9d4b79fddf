// Softmax cross-entropy over 50,257 classes with the C++ API (fusedloss::core): the loss and its
// gradient in one call, checked against a double-precision computation of the same formulas;
// then a NaN logit, which the op reports as fl::Error ERR_NON_FINITE. Exit status 0 when both
// hold.
#include <cmath>
#include <cstdio>
#include <vector>

#include "fusedloss/fusedloss.h"

int main() {
  const int64_t rows = 4, cols = 50257;
  std::vector<float> logits(size_t(rows * cols));
  uint32_t s = 12345;
  for (auto& v : logits) {
    s = s * 1664525u + 1013904223u;
    v = float(s >> 8) / float(1 << 24) * 8.f - 4.f;  // uniform in [−4, 4)
  }
  const std::vector<int32_t> labels = {7, 50000, 123, 31415};
  std::vector<float> grad(logits.size()), row_loss(static_cast<size_t>(rows));

  fl::Context ctx;
  fl::CrossEntropyArgs args{};
  args.scores = logits.data();
  args.dtype = fl::DType::Float32;
  args.rows = rows;
  args.cols = cols;
  args.labels = labels.data();
  args.ignore_index = -100;
  args.scale = 1.f;
  args.reduction = fl::Reduction::Mean;
  args.grad = grad.data();
  args.grad_dtype = fl::DType::Float32;
  args.row_loss = row_loss.data();
  const fl::LossResult r = fl::cross_entropy(ctx, args);

  // L = (1/B) Σ_i (lse_i − z_iy), dL/dz_ij = (softmax_ij − [j = y_i]) / B.
  double loss = 0, err2 = 0, ref2 = 0;
  for (int64_t i = 0; i < rows; ++i) {
    const float* z = logits.data() + i * cols;
    double m = -INFINITY, sum = 0;
    for (int64_t j = 0; j < cols; ++j) m = std::fmax(m, z[j]);
    for (int64_t j = 0; j < cols; ++j) sum += std::exp(z[j] - m);
    const double lse = m + std::log(sum);
    loss += (lse - z[labels[size_t(i)]]) / rows;
    for (int64_t j = 0; j < cols; ++j) {
      const double want = (std::exp(z[j] - lse) - (j == labels[size_t(i)] ? 1 : 0)) / rows;
      err2 += (grad[size_t(i * cols + j)] - want) * (grad[size_t(i * cols + j)] - want);
      ref2 += want * want;
    }
  }
  const double loss_err = std::fabs(r.loss - loss) / loss, grad_err = std::sqrt(err2 / ref2);
  std::printf("%s, %d threads: loss %.7f (double %.7f, rel err %.1e), gradient rel L2 err %.1e\n", fl::isa_name(ctx.isa),
              ctx.pool.threads(), r.loss, loss, loss_err, grad_err);
  bool ok = loss_err <= 1e-5 && grad_err <= 1e-5;

  logits[5] = NAN;
  try {
    fl::cross_entropy(ctx, args);
    std::printf("a NaN logit was not reported\n");
    ok = false;
  } catch (const fl::Error& e) {
    std::printf("a NaN logit: %s: %s\n", e.code.c_str(), e.what());
    ok = ok && e.code == "ERR_NON_FINITE";
  }
  return ok ? 0 : 1;
}
