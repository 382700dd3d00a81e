#include "redirect.h"

#include <cstring>

namespace hotpatch {

bool InRel32Reach(uint64_t site, uint64_t target) {
  const int64_t rel = static_cast<int64_t>(target - (site + kRel32JumpLength));
  return rel >= INT32_MIN && rel <= INT32_MAX;
}

std::vector<uint8_t> EncodeJump(uint64_t site, uint64_t target) {
  if (InRel32Reach(site, target)) {
    const int32_t rel32 = static_cast<int32_t>(static_cast<int64_t>(target - (site + kRel32JumpLength)));
    std::vector<uint8_t> out{0xe9, 0, 0, 0, 0};
    std::memcpy(out.data() + 1, &rel32, 4);
    return out;
  }
  return EncodeAbsoluteJump(target);
}

std::vector<uint8_t> EncodeAbsoluteJump(uint64_t target) {
  std::vector<uint8_t> out{0xff, 0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  std::memcpy(out.data() + 6, &target, 8);
  return out;
}

size_t EntryKeep(const uint8_t* entry, size_t len) {
  static const uint8_t kEndbr64[] = {0xf3, 0x0f, 0x1e, 0xfa};
  return len >= 4 && std::memcmp(entry, kEndbr64, 4) == 0 ? 4 : 0;
}

uint64_t DecodeJump(uint64_t site, const uint8_t* bytes, size_t len) {
  if (len == kRel32JumpLength && bytes[0] == 0xe9) {
    int32_t rel32;
    std::memcpy(&rel32, bytes + 1, 4);
    return site + kRel32JumpLength + static_cast<int64_t>(rel32);
  }
  if (len == kAbsJumpLength && bytes[0] == 0xff && bytes[1] == 0x25) {
    uint64_t target;
    std::memcpy(&target, bytes + 6, 8);
    return target;
  }
  return 0;
}

}  // namespace hotpatch
