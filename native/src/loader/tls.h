// TlsBlock: what the target's ld.so decided about an object's thread-local storage (its module id
// in the dtv, and its offset in the static TLS area), read from the object's struct link_map. Those
// fields are glibc's private ones, so they are found by content, not by a guessed offset: the run
// l_tls_initimage, l_tls_initimage_size, l_tls_blocksize, l_tls_align (known from the object's
// PT_TLS) is followed by l_tls_firstbyte_offset, l_tls_offset and l_tls_modid, as in every glibc
// since 2.3.
#pragma once

#include <cstdint>
#include <optional>

#include "../ptrace/target_memory.h"
#include "target_image.h"

namespace hotpatch {

struct TlsBlock {
  uint64_t modid;
  std::optional<int64_t> static_offset;  // nullopt: the block is allocated per thread on demand (dlopen'ed)
};

// The object's TLS block as ld.so set it up. Throws EUNSUPPORTED_PATCH when the object has no TLS,
// is not in ld.so's list, or its link_map does not hold the expected fields.
TlsBlock ReadTlsBlock(const TargetMemory& mem, const LoadedObject& obj);

}  // namespace hotpatch
