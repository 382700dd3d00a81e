// The Node-API face of ObjectFile: readObject(path) → Promise of sections, symbols, relocations.
#pragma once

#include <napi.h>

namespace hotpatch {

Napi::Value ReadObjectJs(const Napi::CallbackInfo& info);

}  // namespace hotpatch
