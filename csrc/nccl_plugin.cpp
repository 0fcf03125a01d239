// uorch's NCCL plugin: a c10d ProcessGroupNCCL behind the same C interface as
// the Gloo shim, built as a separate shared library on hosts with CUDA and
// NCCL headers (scripts/build_nccl_plugin.sh) and loaded by uorch at run
// time. The collectives themselves are the shim's (c10d_shim.cpp), which
// call the Backend's virtual methods.
#include "uorch_c10d.h"

#include <c10/cuda/CUDACachingAllocator.h>
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

// The caching allocator's peak of allocated bytes on CUDA device `device`
// since the last reset (what torch.cuda.max_memory_allocated reports), and,
// with `reset`, a new peak from what is allocated now. A host-side read of
// the allocator's counters: no device synchronisation. -1 on failure.
int64_t uorch_cuda_max_allocated(int device, int reset) {
  try {
    const auto index = static_cast<c10::DeviceIndex>(device);
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(index);
    const auto aggregate = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
    const int64_t peak = stats.allocated_bytes[aggregate].peak;
    if (reset) c10::cuda::CUDACachingAllocator::resetPeakStats(index);
    return peak;
  } catch (const std::exception& e) {
    g_error = e.what();
  } catch (...) {
    g_error = "unknown C++ exception reading the CUDA allocator's statistics";
  }
  return -1;
}

// Version marker so uorch can check it loaded a compatible plugin.
int uorch_nccl_plugin_abi() { return 2; }

}  // extern "C"
