#include "dlopen_api.h"

#include <dlfcn.h>

#include "../engine_error.h"

namespace hotpatch {
namespace {

// Functions that take the allocator's or the loader's locks. A stopped thread inside one of them
// (as PC or return address) could hold a lock our injected dlopen would then wait on forever.
constexpr const char* kLockTakers[] = {
    "malloc", "free", "calloc", "realloc", "reallocarray", "memalign", "posix_memalign", "aligned_alloc",
    "valloc", "pvalloc", "malloc_trim", "malloc_info", "mallinfo2", "dlopen", "dlclose", "dlsym", "dlvsym",
    "dlerror", "dladdr", "dladdr1", "dlinfo", "dl_iterate_phdr", "fork", "__libc_dlopen_mode",
};

std::string ReadCString(const TargetMemory& mem, uint64_t addr) {
  std::string out;
  uint8_t chunk[256];
  while (out.size() < 4096) {
    const size_t got = mem.ReadSome(addr + out.size(), chunk, sizeof chunk);
    for (size_t i = 0; i < got; ++i) {
      if (chunk[i] == 0) return out;
      out.push_back(static_cast<char>(chunk[i]));
    }
    if (got < sizeof chunk) break;
  }
  return out;
}

}  // namespace

DlopenApi FindDlopen(const TargetImage& image) {
  DlopenApi api{};
  try {
    api.dlopen = image.Resolve("dlopen").address;
    api.dlclose = image.Resolve("dlclose").address;
    api.dlerror = image.Resolve("dlerror").address;
  } catch (const EngineError& e) {
    if (e.code() != "ENOSYMBOL") throw;
    throw EngineError("EUNSUPPORTED_LOADER", "process " + std::to_string(image.pid()) +
                                                 " has no dlopen (a statically linked program?); use the mmap loader");
  }
  for (const char* name : kLockTakers) {
    try {
      const ResolvedSymbol s = image.Resolve(name);
      api.busy.push_back({s.address, s.address + std::max<uint64_t>(s.size, 1), name});
    } catch (const EngineError&) {
      // not in this process: nobody can be inside it
    }
  }
  // All of the dynamic loader's code: it holds its own lock in many internal functions.
  for (const Mapping& m : image.maps()) {
    const auto slash = m.path.rfind('/');
    if (m.perms.find('x') != std::string::npos && m.path.compare(slash + 1, 6, "ld-lin") == 0) {
      api.busy.push_back({m.start, m.end, "the dynamic loader (" + m.path + ")"});
    }
  }
  return api;
}

uint64_t CallDlopen(StoppedProcess& stopped, uint64_t stub, const DlopenApi& api, const std::string& path) {
  const uint64_t arg = stopped.Scratch(path.size() + 1);
  stopped.memory().Write(arg, path.c_str(), path.size() + 1);
  const uint64_t handle = stopped.InjectCall(stub, api.dlopen, arg, RTLD_NOW | RTLD_LOCAL);
  if (handle != 0) return handle;
  const uint64_t msg = stopped.InjectCall(stub, api.dlerror);
  throw EngineError("EDLOPEN", "the target's dynamic loader refused " + path + ": " +
                                   (msg != 0 ? ReadCString(stopped.memory(), msg) : std::string("(no reason given)")) +
                                   " (with the dlopen loader, every symbol the patch uses must be exported by the target; "
                                   "static functions and globals need the mmap loader)");
}

void CallDlclose(StoppedProcess& stopped, uint64_t stub, const DlopenApi& api, uint64_t handle) {
  if (stopped.InjectCall(stub, api.dlclose, handle) != 0) {
    const uint64_t msg = stopped.InjectCall(stub, api.dlerror);
    throw EngineError("EDLOPEN", "dlclose of the patch failed in the target: " +
                                     (msg != 0 ? ReadCString(stopped.memory(), msg) : std::string("(no reason given)")));
  }
}

}  // namespace hotpatch
