// ATen's fused AdamW kernel (aten::_fused_adamw_, what torch.optim.AdamW
// runs with fused=True), which tch does not bind: one pass over each
// parameter updates both moments and the parameter, where the step written
// out in Rust takes a kernel per operation. The caller counts the steps.
#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <string>
#include <vector>

static thread_local std::string g_error;

extern "C" {

const char* uorch_fused_adamw_last_error() { return g_error.c_str(); }

// One AdamW step of the n parameters params[i] with gradients grads[i] and
// moments exp_avgs[i], exp_avg_sqs[i] (all f32, one device), after `step`
// steps counting this one; decoupled weight decay `weight_decay`. Returns 0,
// or -1 with the message kept for uorch_fused_adamw_last_error().
int uorch_fused_adamw(at::Tensor** params, at::Tensor** grads, at::Tensor** exp_avgs, at::Tensor** exp_avg_sqs,
                      int64_t n, int64_t step, double lr, double beta1, double beta2, double weight_decay,
                      double eps) {
  try {
    std::vector<at::Tensor> p, g, m, v, steps;
    p.reserve(n);
    g.reserve(n);
    m.reserve(n);
    v.reserve(n);
    steps.reserve(n);
    for (int64_t i = 0; i < n; ++i) {
      p.push_back(*params[i]);
      g.push_back(*grads[i]);
      m.push_back(*exp_avgs[i]);
      v.push_back(*exp_avg_sqs[i]);
    }
    if (n > 0) {
      // The kernel reads each parameter's step count; one tensor serves all.
      const auto count = at::full({}, static_cast<double>(step), p[0].options().dtype(at::kFloat));
      steps.assign(n, count);
    }
    c10::NoGradGuard no_grad;
    at::_fused_adamw_(p, g, m, v, {}, steps, lr, beta1, beta2, weight_decay, eps, /*amsgrad=*/false,
                      /*maximize=*/false);
    return 0;
  } catch (const std::exception& e) {
    g_error = e.what();
    return -1;
  }
}

}  // extern "C"
