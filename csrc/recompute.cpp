// Activation checkpointing as an autograd function (tch has no way to define
// one in Rust): forward runs a Rust callback without keeping its activations;
// backward re-runs it with gradients on, from the saved inputs, with the
// random-number and autocast state of the forward pass, and backpropagates
// through the recomputation (parameter gradients accumulate as usual).
// Exceptions never cross into Rust: they are caught and their message kept
// for uorch_recompute_last_error().
#include <ATen/autocast_mode.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/autograd/autograd.h>

#include <mutex>
#include <string>

static thread_local std::string g_error;

// (data, hidden, user) -> new tensor owned by the caller.
typedef at::Tensor* (*uorch_segment_fn)(void* data, at::Tensor* hidden, at::Tensor* user);

namespace {

at::Tensor call(int64_t fn, int64_t data, at::Tensor h, at::Tensor u) {
  auto f = reinterpret_cast<uorch_segment_fn>(fn);
  at::Tensor* out = f(reinterpret_cast<void*>(data), &h, &u);
  if (out == nullptr) throw std::runtime_error("checkpointed segment failed");
  at::Tensor r = *out;
  delete out;
  return r;
}

struct Checkpoint : public torch::autograd::Function<Checkpoint> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, at::Tensor h, at::Tensor u, int64_t fn, int64_t data) {
    ctx->save_for_backward({h, u});
    ctx->saved_data["fn"] = fn;
    ctx->saved_data["data"] = data;
    auto gen = at::globalContext().defaultGenerator(h.device());
    {
      std::lock_guard<std::mutex> lock(gen.mutex());
      ctx->saved_data["rng"] = gen.get_state();
    }
    auto type = h.device().type();
    ctx->saved_data["autocast"] = at::autocast::is_autocast_enabled(type);
    ctx->saved_data["autocast_dtype"] = at::autocast::get_autocast_dtype(type);
    return call(fn, data, h, u);  // autograd runs forward with gradients off
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    at::Tensor h = saved[0].detach().requires_grad_(saved[0].requires_grad());
    at::Tensor u = saved[1].detach().requires_grad_(saved[1].requires_grad());
    auto type = h.device().type();
    auto gen = at::globalContext().defaultGenerator(h.device());
    // Replay the forward's random numbers, then put the stream back. The
    // generator's lock is held only around reading and setting its state: the
    // recomputation itself draws from it (dropout).
    auto swap_state = [&gen](const at::Tensor& to) {
      std::lock_guard<std::mutex> lock(gen.mutex());
      at::Tensor was = gen.get_state();
      gen.set_state(to);
      return was;
    };
    at::Tensor now = swap_state(ctx->saved_data["rng"].toTensor());
    bool was = at::autocast::is_autocast_enabled(type);
    at::ScalarType was_dtype = at::autocast::get_autocast_dtype(type);
    auto restore = [&]() {
      at::autocast::set_autocast_enabled(type, was);
      at::autocast::set_autocast_dtype(type, was_dtype);
      swap_state(now);
    };
    at::autocast::set_autocast_enabled(type, ctx->saved_data["autocast"].toBool());
    at::autocast::set_autocast_dtype(type, ctx->saved_data["autocast_dtype"].toScalarType());
    at::Tensor out;
    try {
      at::AutoGradMode enable(true);
      out = call(ctx->saved_data["fn"].toInt(), ctx->saved_data["data"].toInt(), h, u);
    } catch (...) {
      restore();
      throw;
    }
    restore();
    torch::autograd::backward({out}, {grads[0]});
    return {h.requires_grad() ? h.grad() : at::Tensor(), u.requires_grad() ? u.grad() : at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

extern "C" const char* uorch_recompute_last_error() { return g_error.c_str(); }

extern "C" at::Tensor* uorch_checkpoint(at::Tensor* h, at::Tensor* u, uorch_segment_fn fn, void* data) {
  try {
    return new at::Tensor(Checkpoint::apply(*h, *u, reinterpret_cast<int64_t>(fn), reinterpret_cast<int64_t>(data)));
  } catch (const std::exception& e) {
    g_error = e.what();
  } catch (...) {
    g_error = "unknown C++ exception";
  }
  return nullptr;
}
