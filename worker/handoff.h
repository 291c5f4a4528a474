// File: worker/handoff.h
//
// How image data travels from the vision ranks to the LLM ranks, and between vision ranks that encoded parts of one
// image: over `comm`'s Group::kWorld (peers by world rank), in buffers on the host (gpu < 0: the MPI comm) or on
// this rank's GPU (the NCCL comm, where every vision rank has a GPU of its own; parallel/nccl_device_comm.h). The
// buffers are model::Floats from model::NewFloats(count, gpu).
#pragma once

#include "parallel/device_comm.h"

namespace ixc::worker {

struct Handoff {
  parallel::DeviceComm* comm = nullptr;
  int gpu = -1;  // where the buffers live: -1 the host, else this CUDA device
};

}  // namespace ixc::worker
