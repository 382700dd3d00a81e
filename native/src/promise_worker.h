// PromiseWorker: the AsyncWorker shape every native operation takes (node-addon-examples,
// 5-async-work, Promise variant). Run() does plain C++ on a worker thread and may throw
// EngineError; Result() builds the JS value on the main thread; the Promise is settled in
// OnOK/OnError, and a rejection carries the error's stable `code`.
#pragma once

#include <napi.h>

#include <string>

#include "engine_error.h"

namespace hotpatch {

class PromiseWorker : public Napi::AsyncWorker {
 public:
  explicit PromiseWorker(Napi::Env env)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  virtual void Run() = 0;
  virtual Napi::Value Result(Napi::Env env) = 0;

 private:
  void Execute() final {
    try {
      Run();
    } catch (const EngineError& e) {
      code_ = e.code();
      SetError(e.what());
    } catch (const std::exception& e) {
      code_ = "EINTERNAL";
      SetError(e.what());
    }
  }

  void OnOK() final { deferred_.Resolve(Result(Env())); }

  void OnError(const Napi::Error& error) final {
    Napi::Object err = error.Value();
    err.Set("code", Napi::String::New(Env(), code_));
    deferred_.Reject(err);
  }

  Napi::Promise::Deferred deferred_;
  std::string code_ = "EINTERNAL";
};

// Argument checks at the boundary: a wrong call is a TypeError thrown synchronously.
inline std::string RequireString(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsString()) {
    throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a string");
  }
  return info[i].As<Napi::String>().Utf8Value();
}

inline int64_t RequirePositiveInt(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsNumber()) {
    throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a number");
  }
  const double v = info[i].As<Napi::Number>().DoubleValue();
  if (v < 1 || v != static_cast<double>(static_cast<int64_t>(v))) {
    throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a positive integer");
  }
  return static_cast<int64_t>(v);
}

inline Napi::BigInt Big(Napi::Env env, uint64_t v) { return Napi::BigInt::New(env, v); }

}  // namespace hotpatch
