#include "patch_workers.h"

#include <cstring>
#include <functional>

#include "../engine/batch.h"
#include "../engine/patch_ops.h"
#include "../promise_worker.h"

namespace hotpatch {
namespace {

const char* StateName(uint32_t state) {
  switch (static_cast<PatchState>(state)) {
    case PatchState::kLoaded: return "loaded";
    case PatchState::kActive: return "active";
    case PatchState::kInactive: return "inactive";
  }
  return "unknown";
}

std::string Hex(const uint8_t* bytes, size_t len) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < len; ++i) {
    out.push_back(kDigits[bytes[i] >> 4]);
    out.push_back(kDigits[bytes[i] & 0xf]);
  }
  return out;
}

Napi::Object PatchToJs(Napi::Env env, const DescPatch& p) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", std::string(p.id, strnlen(p.id, sizeof p.id)));
  o.Set("state", StateName(p.state));
  o.Set("soPath", std::string(p.so_path, strnlen(p.so_path, sizeof p.so_path)));
  o.Set("base", Big(env, p.base));
  o.Set("span", Big(env, p.span));
  o.Set("order", Napi::Number::New(env, static_cast<double>(p.order)));
  o.Set("loader", p.loader == static_cast<uint32_t>(Loader::kDlopen) ? "dlopen" : "mmap");
  Napi::Array fns = Napi::Array::New(env, p.function_count);
  for (uint32_t i = 0; i < p.function_count; ++i) {
    const DescFunction& f = p.functions[i];
    Napi::Object fo = Napi::Object::New(env);
    fo.Set("symbol", std::string(f.symbol, strnlen(f.symbol, sizeof f.symbol)));
    fo.Set("address", Big(env, f.address));
    fo.Set("size", Big(env, f.size));
    fo.Set("replacement", Big(env, f.replacement));
    fo.Set("site", Big(env, f.address + f.keep));
    fo.Set("jump", f.length == 5 ? (f.trampoline != 0 ? "trampoline" : "rel32") : "abs64");
    fo.Set("trampoline", f.trampoline != 0 ? Napi::Value(Big(env, f.trampoline)) : env.Null());
    fo.Set("consistency", f.consistency == static_cast<uint8_t>(Consistency::kEntry) ? "entry" : "strict");
    fo.Set("originalBytes", Hex(f.original, f.length));
    fo.Set("jumpBytes", Hex(f.jump, f.length));
    fns[i] = fo;
  }
  o.Set("functions", fns);
  return o;
}

// Options shared by every operation: {safetyTimeoutMs, placement, debugDirs, cancel: Int32Array on a SharedArrayBuffer}.
struct JsOptions {
  OpOptions ops;
  Napi::ObjectReference keep_alive;  // the cancel flag's buffer must outlive the worker
};

void ReadOptions(const Napi::CallbackInfo& info, size_t i, JsOptions& out) {
  if (info.Length() <= i || info[i].IsUndefined()) return;
  if (!info[i].IsObject()) throw Napi::TypeError::New(info.Env(), "options must be an object");
  Napi::Object o = info[i].As<Napi::Object>();
  if (o.Has("safetyTimeoutMs")) {
    const double ms = o.Get("safetyTimeoutMs").As<Napi::Number>().DoubleValue();
    if (!(ms >= 0 && ms <= 3'600'000)) throw Napi::RangeError::New(info.Env(), "safetyTimeoutMs must be 0..3600000");
    out.ops.safety_timeout = std::chrono::milliseconds(static_cast<int64_t>(ms));
  }
  if (o.Has("placement")) {
    const std::string p = o.Get("placement").As<Napi::String>().Utf8Value();
    if (p != "near" && p != "far") throw Napi::TypeError::New(info.Env(), "placement must be 'near' or 'far'");
    out.ops.far = p == "far";
  }
  if (o.Has("debugDirs")) {
    Napi::Array dirs = o.Get("debugDirs").As<Napi::Array>();
    for (uint32_t k = 0; k < dirs.Length(); ++k) out.ops.debug_dirs.push_back(dirs.Get(k).As<Napi::String>().Utf8Value());
  }
  if (o.Has("cancel")) {
    Napi::Value c = o.Get("cancel");
    if (!c.IsTypedArray() || c.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
      throw Napi::TypeError::New(info.Env(), "cancel must be an Int32Array");
    }
    Napi::Int32Array flag = c.As<Napi::Int32Array>();
    out.keep_alive = Napi::Persistent(flag.As<Napi::Object>());
    out.ops.cancelled = reinterpret_cast<const std::atomic<int32_t>*>(flag.Data());
  }
}

class OpWorker : public PromiseWorker {
 public:
  using Op = std::function<OpResult(const OpOptions&)>;
  OpWorker(Napi::Env env, Op op, JsOptions opts) : PromiseWorker(env), op_(std::move(op)), opts_(std::move(opts)) {}

 protected:
  void Run() override { result_ = op_(opts_.ops); }
  Napi::Value Result(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    o.Set("patch", PatchToJs(env, result_.record));
    o.Set("pauseUs", Napi::Number::New(env, static_cast<double>(result_.pause_us)));
    o.Set("attempts", result_.attempts);
    return o;
  }

 private:
  Op op_;
  JsOptions opts_;
  OpResult result_;
};

Consistency ParseConsistency(Napi::Env env, Napi::Value v) {
  if (v.IsUndefined()) return Consistency::kStrict;
  const std::string s = v.As<Napi::String>().Utf8Value();
  if (s == "strict") return Consistency::kStrict;
  if (s == "entry") return Consistency::kEntry;
  throw Napi::TypeError::New(env, "consistency must be 'strict' or 'entry'");
}

template <typename Fn>
Napi::Value QueueById(const Napi::CallbackInfo& info, Fn fn) {
  const pid_t pid = static_cast<pid_t>(RequirePositiveInt(info, 0, "pid"));
  const std::string id = RequireString(info, 1, "patch id");
  JsOptions opts;
  ReadOptions(info, 2, opts);
  auto* w = new OpWorker(info.Env(), [=](const OpOptions& o) { return fn(pid, id, o); }, std::move(opts));
  w->Queue();
  return w->Promise();
}

class ListWorker : public PromiseWorker {
 public:
  ListWorker(Napi::Env env, pid_t pid) : PromiseWorker(env), pid_(pid) {}

 protected:
  void Run() override { desc_ = ListPatches(pid_); }
  Napi::Value Result(Napi::Env env) override {
    Napi::Array out = Napi::Array::New(env, desc_.patches.size());
    for (size_t i = 0; i < desc_.patches.size(); ++i) out[i] = PatchToJs(env, desc_.patches[i]);
    return out;
  }

 private:
  pid_t pid_;
  Descriptor desc_;
};

class StopResumeWorker : public PromiseWorker {
 public:
  StopResumeWorker(Napi::Env env, pid_t pid) : PromiseWorker(env), pid_(pid) {}

 protected:
  void Run() override { pause_us_ = StopResume(pid_); }
  Napi::Value Result(Napi::Env env) override { return Napi::Number::New(env, static_cast<double>(pause_us_)); }

 private:
  pid_t pid_;
  uint64_t pause_us_ = 0;
};

}  // namespace

namespace {

PatchSpec ReadSpec(const Napi::CallbackInfo& info, size_t i) {
  Napi::Env env = info.Env();
  if (info.Length() <= i || !info[i].IsObject()) throw Napi::TypeError::New(env, "spec must be an object");
  Napi::Object s = info[i].As<Napi::Object>();
  PatchSpec spec;
  spec.id = s.Get("id").As<Napi::String>().Utf8Value();
  spec.so_path = s.Get("soPath").As<Napi::String>().Utf8Value();
  if (!s.Get("functions").IsArray()) throw Napi::TypeError::New(env, "spec.functions must be an array");
  Napi::Array fns = s.Get("functions").As<Napi::Array>();
  for (uint32_t i = 0; i < fns.Length(); ++i) {
    Napi::Object f = fns.Get(i).As<Napi::Object>();
    spec.functions.push_back({f.Get("symbol").As<Napi::String>().Utf8Value(),
                              f.Get("replacement").As<Napi::String>().Utf8Value(),
                              ParseConsistency(env, f.Get("consistency"))});
  }
  if (s.Has("loader") && !s.Get("loader").IsUndefined()) {
    const std::string loader = s.Get("loader").As<Napi::String>().Utf8Value();
    if (loader != "mmap" && loader != "dlopen") throw Napi::TypeError::New(env, "spec.loader must be 'mmap' or 'dlopen'");
    spec.loader = loader == "dlopen" ? Loader::kDlopen : Loader::kMmap;
  }
  return spec;
}

class BatchWorker : public PromiseWorker {
 public:
  BatchWorker(Napi::Env env, std::vector<pid_t> pids, PatchSpec spec, JsOptions opts, unsigned parallel)
      : PromiseWorker(env), pids_(std::move(pids)), spec_(std::move(spec)), opts_(std::move(opts)), parallel_(parallel) {}

 protected:
  void Run() override { results_ = ApplyBatch(pids_, spec_, opts_.ops, parallel_); }
  Napi::Value Result(Napi::Env env) override {
    Napi::Array out = Napi::Array::New(env, results_.size());
    for (size_t i = 0; i < results_.size(); ++i) {
      const BatchResult& r = results_[i];
      Napi::Object o = Napi::Object::New(env);
      o.Set("pid", r.pid);
      switch (r.outcome) {
        case BatchResult::Outcome::kDone: o.Set("outcome", "done"); break;
        case BatchResult::Outcome::kAlready: o.Set("outcome", "already"); break;
        case BatchResult::Outcome::kFailed: o.Set("outcome", "failed"); break;
      }
      if (r.outcome == BatchResult::Outcome::kFailed) {
        o.Set("code", r.code);
        o.Set("message", r.message);
      } else {
        o.Set("patch", PatchToJs(env, r.result.record));
        o.Set("pauseUs", Napi::Number::New(env, static_cast<double>(r.result.pause_us)));
        o.Set("attempts", r.result.attempts);
      }
      out[i] = o;
    }
    return out;
  }

 private:
  std::vector<pid_t> pids_;
  PatchSpec spec_;
  JsOptions opts_;
  unsigned parallel_;
  std::vector<BatchResult> results_;
};

}  // namespace

Napi::Value ApplyBatchJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArray()) throw Napi::TypeError::New(env, "pids must be an array");
  Napi::Array arr = info[0].As<Napi::Array>();
  std::vector<pid_t> pids;
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    const double v = arr.Get(i).As<Napi::Number>().DoubleValue();
    if (!(v >= 1 && v <= 4194304)) throw Napi::RangeError::New(env, "pids must be positive integers");
    pids.push_back(static_cast<pid_t>(v));
  }
  PatchSpec spec = ReadSpec(info, 1);
  JsOptions opts;
  ReadOptions(info, 2, opts);
  unsigned parallel = 4;
  if (info.Length() > 2 && info[2].IsObject() && info[2].As<Napi::Object>().Has("parallel")) {
    const double p = info[2].As<Napi::Object>().Get("parallel").As<Napi::Number>().DoubleValue();
    if (!(p >= 1 && p <= 64)) throw Napi::RangeError::New(env, "parallel must be 1..64");
    parallel = static_cast<unsigned>(p);
  }
  auto* w = new BatchWorker(env, std::move(pids), std::move(spec), std::move(opts), parallel);
  w->Queue();
  return w->Promise();
}

Napi::Value LoadPatchJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const pid_t pid = static_cast<pid_t>(RequirePositiveInt(info, 0, "pid"));
  PatchSpec spec = ReadSpec(info, 1);
  JsOptions opts;
  ReadOptions(info, 2, opts);
  auto* w = new OpWorker(env, [pid, spec](const OpOptions& o) { return LoadPatch(pid, spec, o); }, std::move(opts));
  w->Queue();
  return w->Promise();
}

Napi::Value ActivatePatchJs(const Napi::CallbackInfo& info) {
  return QueueById(info, static_cast<OpResult (*)(pid_t, const std::string&, const OpOptions&)>(ActivatePatch));
}
Napi::Value DeactivatePatchJs(const Napi::CallbackInfo& info) { return QueueById(info, DeactivatePatch); }
Napi::Value UnloadPatchJs(const Napi::CallbackInfo& info) { return QueueById(info, UnloadPatch); }

Napi::Value ListPatchesJs(const Napi::CallbackInfo& info) {
  auto* w = new ListWorker(info.Env(), static_cast<pid_t>(RequirePositiveInt(info, 0, "pid")));
  w->Queue();
  return w->Promise();
}

Napi::Value StopResumeJs(const Napi::CallbackInfo& info) {
  auto* w = new StopResumeWorker(info.Env(), static_cast<pid_t>(RequirePositiveInt(info, 0, "pid")));
  w->Queue();
  return w->Promise();
}

}  // namespace hotpatch
