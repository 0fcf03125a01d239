// uorch's C interface to PyTorch's c10d (TCPStore, process groups), shared by
// the always-built Gloo shim (c10d_shim.cpp) and the NCCL plugin
// (nccl_plugin.cpp, built on GPU hosts by scripts/build_nccl_plugin.sh).
#pragma once

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

struct uorch_store {
  c10::intrusive_ptr<c10d::Store> store;
};

struct uorch_pg {
  c10::intrusive_ptr<c10d::Backend> backend;
  int rank;
  int size;
  // "NCCL rules": check every collective's tensors as ProcessGroupNCCL
  // would, against `device` (see c10d_shim.cpp). Off unless enabled.
  bool nccl_rules = false;
  c10::Device device = c10::Device(c10::kCPU);
};

struct uorch_work {
  c10::intrusive_ptr<c10d::Work> work;
};
