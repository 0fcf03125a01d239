// uorch's NCCL plugin: a c10d ProcessGroupNCCL behind the same C interface as
// the Gloo shim, built as a separate shared library on hosts with CUDA and
// NCCL headers (scripts/build_nccl_plugin.sh) and loaded by uorch at run
// time. The collectives themselves are the shim's (c10d_shim.cpp), which
// call the Backend's virtual methods.
#include "uorch_c10d.h"

#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

#include <string>

static thread_local std::string g_error;

extern "C" {

const char* uorch_nccl_last_error() { return g_error.c_str(); }

// A NCCL group of `size` ranks over `store`; this rank uses CUDA device `device`.
uorch_pg* uorch_pg_nccl_new(uorch_store* s, int rank, int size, int64_t timeout_ms, int device) {
  try {
    auto opts = c10d::ProcessGroupNCCL::Options::create();
    opts->timeout = std::chrono::milliseconds(timeout_ms);
    auto pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(s->store, rank, size, opts);
    pg->setBoundDeviceId(c10::Device(c10::DeviceType::CUDA, static_cast<c10::DeviceIndex>(device)));
    return new uorch_pg{pg, rank, size};
  } catch (const std::exception& e) {
    g_error = e.what();
  } catch (...) {
    g_error = "unknown C++ exception creating the NCCL group";
  }
  return nullptr;
}

// Version marker so uorch can check it loaded a compatible plugin.
int uorch_nccl_plugin_abi() { return 1; }

}  // extern "C"
