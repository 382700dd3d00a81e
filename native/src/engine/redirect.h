// Encoding of the jump written over an old function's entry.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace hotpatch {

constexpr size_t kRel32JumpLength = 5;   // E9 rel32
constexpr size_t kAbsJumpLength = 14;    // FF 25 00000000 + 8-byte address (jmp *0(%rip))

// The shortest jump from `site` to `target`: E9 rel32 within ±2 GiB, else the 14-byte absolute form.
std::vector<uint8_t> EncodeJump(uint64_t site, uint64_t target);

// The 14-byte absolute jump to `target`, valid at any address.
std::vector<uint8_t> EncodeAbsoluteJump(uint64_t target);

// True when an E9 rel32 at `site` reaches `target`.
bool InRel32Reach(uint64_t site, uint64_t target);

// Bytes at a function's entry that the jump must not overwrite: 4 for an `endbr64`, so that indirect
// calls still land on an end-branch instruction under CET/IBT; 0 otherwise.
size_t EntryKeep(const uint8_t* entry, size_t len);

// Where a jump at `site` of `len` bytes goes, or 0 when the bytes are not a jump we write.
uint64_t DecodeJump(uint64_t site, const uint8_t* bytes, size_t len);

}  // namespace hotpatch
