// Node-API entry points of the patch operations (one PromiseWorker each).
#pragma once

#include <napi.h>

namespace hotpatch {

Napi::Value LoadPatchJs(const Napi::CallbackInfo& info);
Napi::Value ApplyBatchJs(const Napi::CallbackInfo& info);
Napi::Value ActivatePatchJs(const Napi::CallbackInfo& info);
Napi::Value DeactivatePatchJs(const Napi::CallbackInfo& info);
Napi::Value UnloadPatchJs(const Napi::CallbackInfo& info);
Napi::Value ListPatchesJs(const Napi::CallbackInfo& info);
Napi::Value StopResumeJs(const Napi::CallbackInfo& info);

}  // namespace hotpatch
