// Post-accumulate-grad hooks on leaf tensors (tch has no way to register
// one): after autograd has accumulated a parameter's gradient for this
// backward pass, it calls a Rust callback with the parameter's index, so the
// sharded optimizer can reduce-scatter a bucket as soon as its last gradient
// lands and free the full gradients (ZeRO-2). The callback never fails: the
// Rust side keeps its own errors and reports them after backward.
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <memory>
#include <string>

static thread_local std::string g_error;

typedef void (*uorch_grad_ready_fn)(void* data, int64_t index);

namespace {

struct Ready : public torch::autograd::PostAccumulateGradHook {
  uorch_grad_ready_fn fn;
  void* data;
  int64_t index;
  Ready(uorch_grad_ready_fn f, void* d, int64_t i) : fn(f), data(d), index(i) {}
  void operator()(const torch::autograd::Variable&) override { fn(data, index); }
};

}  // namespace

extern "C" {

const char* uorch_grad_hooks_last_error() { return g_error.c_str(); }

// Call fn(data, index) each time `t`'s gradient has been accumulated; a null
// fn removes the hook. Returns 0, or -1 with the message kept for
// uorch_grad_hooks_last_error().
int uorch_grad_hook_set(at::Tensor* t, uorch_grad_ready_fn fn, void* data, int64_t index) {
  try {
    std::unique_ptr<torch::autograd::PostAccumulateGradHook> hook;
    if (fn != nullptr) hook = std::make_unique<Ready>(fn, data, index);
    torch::autograd::impl::set_post_acc_grad_hooks(*t, std::move(hook));
    return 0;
  } catch (const std::exception& e) {
    g_error = e.what();
    return -1;
  }
}

// Drop `t`'s gradient (its memory goes back to the allocator); the next
// backward pass allocates a new one. Returns 0, or -1 as above.
int uorch_grad_reset(at::Tensor* t) {
  try {
    t->mutable_grad().reset();
    return 0;
  } catch (const std::exception& e) {
    g_error = e.what();
    return -1;
  }
}

}  // extern "C"
