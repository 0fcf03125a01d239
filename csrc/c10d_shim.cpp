// C functions over c10d for Rust: a TCPStore (server or client) and process
// groups with in-place collectives on torch tensors, returning work handles
// that are waited on with a timeout. Exceptions never cross into Rust: each
// function catches them and reports through uorch_last_error().
#include "uorch_c10d.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <ATen/autocast_mode.h>
#include <c10/util/Logging.h>

#include <cstring>
#include <string>
#include <vector>

static thread_local std::string g_error;

template <typename F>
static auto guarded(F&& f, decltype(f()) on_error) -> decltype(f()) {
  try {
    return f();
  } catch (const std::exception& e) {
    g_error = e.what();
  } catch (...) {
    g_error = "unknown C++ exception";
  }
  return on_error;
}

static std::vector<at::Tensor> tensors_of(at::Tensor** ts, int n) {
  std::vector<at::Tensor> v;
  v.reserve(n);
  for (int i = 0; i < n; ++i) v.push_back(*ts[i]);
  return v;
}

static c10d::ReduceOp reduce_op(int op) {
  switch (op) {
    case 0: return c10d::ReduceOp::SUM;
    case 1: return c10d::ReduceOp::MAX;
    case 2: return c10d::ReduceOp::MIN;
    default: throw std::invalid_argument("unknown reduce op " + std::to_string(op));
  }
}

// The CPU "NCCL rules" mode: what ProcessGroupNCCL (libtorch 2.11) refuses,
// checked before Gloo runs, so a collective NCCL would reject fails on a
// machine without a GPU too. NCCL's own message comes first in each error.
static const char* nccl_dtype_name(at::ScalarType t) {
  switch (t) {
    case at::kChar: case at::kByte: case at::kBool: case at::kInt: case at::kLong:
    case at::kHalf: case at::kFloat: case at::kDouble: case at::kBFloat16:
    case at::kFloat8_e5m2: case at::kFloat8_e4m3fn: case at::kFloat8_e5m2fnuz: case at::kFloat8_e4m3fnuz:
      return nullptr;
    default:
      return c10::toString(t);
  }
}

// Where an error came from: the rules, the operation and the group's device.
static std::string nccl_where(const uorch_pg* pg, const char* op) {
  return std::string(" (NCCL rules, ") + op + " on the group bound to " + pg->device.str() + ")";
}

// The messages are built only on failure: this runs on every collective.
static void nccl_check(const uorch_pg* pg, const at::Tensor& t, const char* op) {
  if (!pg->nccl_rules) return;
  if (t.device() != pg->device || t.layout() != at::kStrided) {
    throw std::invalid_argument("Tensors must be CUDA and dense: found a " + t.device().str() + " " +
                                c10::str(t.layout()) + " tensor" + nccl_where(pg, op));
  }
  if (!t.is_contiguous(t.suggest_memory_format())) {
    throw std::invalid_argument("Tensors must be contiguous" + nccl_where(pg, op));
  }
  if (const char* bad = nccl_dtype_name(t.scalar_type())) {
    throw std::invalid_argument(std::string("Unsupported data type for NCCL process group: ") + bad +
                                nccl_where(pg, op));
  }
}

static void nccl_check_one(const uorch_pg* pg, const std::vector<at::Tensor>& v, const char* op) {
  if (!pg->nccl_rules) return;
  if (v.size() != 1) {
    throw std::invalid_argument("Expecting one tensor only but got multiple (" + std::to_string(v.size()) + ")" +
                                nccl_where(pg, op));
  }
  nccl_check(pg, v[0], op);
}

// allgather: output = size x input; reduce_scatter: input = size x output.
static void nccl_check_pair(const uorch_pg* pg, const at::Tensor& big, const at::Tensor& small, const char* op) {
  if (!pg->nccl_rules) return;
  nccl_check(pg, big, op);
  nccl_check(pg, small, op);
  if (big.scalar_type() != small.scalar_type()) {
    throw std::invalid_argument("output tensor must have the same type as input tensor" + nccl_where(pg, op));
  }
  if (big.numel() != small.numel() * pg->size) {
    throw std::invalid_argument("the larger tensor must hold world_size times the smaller one's elements" +
                                nccl_where(pg, op));
  }
}

extern "C" {

const char* uorch_last_error() { return g_error.c_str(); }

// c10's log level from TORCH_CPP_LOG_LEVEL, read again now that uorch set it.
void uorch_init_logging() { c10::initLogging(); }

// device_type 0: CPU, 1: CUDA (device_index then names it).
int uorch_pg_nccl_rules(uorch_pg* pg, int device_type, int device_index) {
  return guarded([&]() -> int {
    pg->nccl_rules = true;
    pg->device = device_type == 1 ? c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(device_index))
                                  : c10::Device(c10::kCPU);
    return 0;
  }, 1);
}

// A server with listen_fd >= 0 serves on that already bound and listening
// socket (TCPStore owns it then): it listens on the address the caller bound,
// not on every interface as TCPStore does by itself.
uorch_store* uorch_tcpstore_new(const char* host, int port, int world_size, int is_server, int64_t timeout_ms,
                                int listen_fd) {
  return guarded([&]() -> uorch_store* {
    c10d::TCPStoreOptions opts;
    if (listen_fd >= 0) opts.masterListenFd = listen_fd;
    opts.port = static_cast<std::uint16_t>(port);
    opts.isServer = is_server != 0;
    opts.numWorkers = world_size;
    opts.waitWorkers = false;
    opts.timeout = std::chrono::milliseconds(timeout_ms);
    auto s = c10::make_intrusive<c10d::TCPStore>(std::string(host), opts);
    return new uorch_store{s};
  }, nullptr);
}

uorch_store* uorch_prefixstore_new(const char* prefix, uorch_store* base) {
  return guarded([&]() -> uorch_store* {
    return new uorch_store{c10::make_intrusive<c10d::PrefixStore>(std::string(prefix), base->store)};
  }, nullptr);
}

void uorch_store_free(uorch_store* s) { delete s; }

int uorch_store_set(uorch_store* s, const char* key, const uint8_t* data, size_t len) {
  return guarded([&]() -> int {
    s->store->set(std::string(key), std::vector<uint8_t>(data, data + len));
    return 0;
  }, 1);
}

// On success *out is malloc'd (free with uorch_free).
int uorch_store_get(uorch_store* s, const char* key, uint8_t** out, size_t* len) {
  return guarded([&]() -> int {
    auto v = s->store->get(std::string(key));
    *len = v.size();
    *out = static_cast<uint8_t*>(malloc(v.size() > 0 ? v.size() : 1));
    if (!v.empty()) std::memcpy(*out, v.data(), v.size());
    return 0;
  }, 1);
}

int uorch_store_add(uorch_store* s, const char* key, int64_t delta, int64_t* out) {
  return guarded([&]() -> int {
    *out = s->store->add(std::string(key), delta);
    return 0;
  }, 1);
}

// *present: 1 when every key is set, else 0 (answers at once).
int uorch_store_check(uorch_store* s, const char** keys, int n, int* present) {
  return guarded([&]() -> int {
    std::vector<std::string> ks(keys, keys + n);
    *present = s->store->check(ks) ? 1 : 0;
    return 0;
  }, 1);
}

int uorch_store_wait(uorch_store* s, const char** keys, int n, int64_t timeout_ms) {
  return guarded([&]() -> int {
    std::vector<std::string> ks(keys, keys + n);
    s->store->wait(ks, std::chrono::milliseconds(timeout_ms));
    return 0;
  }, 1);
}

void uorch_free(void* p) { free(p); }

// `interfaces`: comma-separated network interfaces (GLOO_SOCKET_IFNAME, as
// PyTorch reads it), one Gloo device each; empty: the device for `hostname`.
uorch_pg* uorch_pg_gloo_new(uorch_store* s, int rank, int size, int64_t timeout_ms, const char* hostname,
                            const char* interfaces) {
  return guarded([&]() -> uorch_pg* {
    auto opts = c10d::ProcessGroupGloo::Options::create(std::chrono::milliseconds(timeout_ms));
    std::string list(interfaces);
    size_t start = 0;
    while (start < list.size()) {
      size_t end = list.find(',', start);
      if (end == std::string::npos) end = list.size();
      if (end > start) {
        opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(list.substr(start, end - start)));
      }
      start = end + 1;
    }
    if (opts->devices.empty()) {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(std::string(hostname)));
    }
    auto pg = c10::make_intrusive<c10d::ProcessGroupGloo>(s->store, rank, size, opts);
    return new uorch_pg{pg, rank, size};
  }, nullptr);
}

void uorch_pg_free(uorch_pg* pg) { delete pg; }

uorch_work* uorch_pg_allreduce(uorch_pg* pg, at::Tensor** ts, int n, int op) {
  return guarded([&]() -> uorch_work* {
    auto v = tensors_of(ts, n);
    nccl_check_one(pg, v, "all_reduce");
    c10d::AllreduceOptions o;
    o.reduceOp = reduce_op(op);
    return new uorch_work{pg->backend->allreduce(v, o)};
  }, nullptr);
}

uorch_work* uorch_pg_broadcast(uorch_pg* pg, at::Tensor** ts, int n, int root) {
  return guarded([&]() -> uorch_work* {
    auto v = tensors_of(ts, n);
    nccl_check_one(pg, v, "broadcast");
    c10d::BroadcastOptions o;
    o.rootRank = root;
    return new uorch_work{pg->backend->broadcast(v, o)};
  }, nullptr);
}

// output: world_size x input's numel, flat.
uorch_work* uorch_pg_allgather(uorch_pg* pg, at::Tensor* output, at::Tensor* input) {
  return guarded([&]() -> uorch_work* {
    nccl_check_pair(pg, *output, *input, "all_gather");
    return new uorch_work{pg->backend->_allgather_base(*output, *input)};
  }, nullptr);
}

// input: world_size x output's numel, flat; each rank receives its reduced chunk.
uorch_work* uorch_pg_reduce_scatter(uorch_pg* pg, at::Tensor* output, at::Tensor* input, int op) {
  return guarded([&]() -> uorch_work* {
    nccl_check_pair(pg, *input, *output, "reduce_scatter");
    c10d::ReduceScatterOptions o;
    o.reduceOp = reduce_op(op);
    return new uorch_work{pg->backend->_reduce_scatter_base(*output, *input, o)};
  }, nullptr);
}

uorch_work* uorch_pg_barrier(uorch_pg* pg) {
  return guarded([&]() -> uorch_work* { return new uorch_work{pg->backend->barrier()}; }, nullptr);
}

// 0: completed; 1: failed (message in uorch_last_error()); 2: timed out.
int uorch_work_wait(uorch_work* w, int64_t timeout_ms) {
  return guarded([&]() -> int {
    if (!w->work->wait(std::chrono::milliseconds(timeout_ms))) {
      g_error = "timed out";
      return 2;
    }
    return 0;
  }, 1);
}

void uorch_work_free(uorch_work* w) { delete w; }

// The dtype CUDA autocast casts to: bf16 (tch has no binding; torch's default is fp16).
int uorch_autocast_cuda_bf16() {
  return guarded([&]() -> int {
    at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
    return 0;
  }, 1);
}

}  // extern "C"
