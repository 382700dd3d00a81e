#include "read_object.h"

#include "../promise_worker.h"
#include "object_file.h"

namespace hotpatch {
namespace {

// Offsets and sizes inside one object file fit a double exactly (objects are far below 2^53 bytes).
Napi::Number Num(Napi::Env env, uint64_t v) { return Napi::Number::New(env, static_cast<double>(v)); }

class ReadObjectWorker : public PromiseWorker {
 public:
  ReadObjectWorker(Napi::Env env, std::string path) : PromiseWorker(env), path_(std::move(path)) {}

 protected:
  void Run() override { object_ = ReadObjectFile(path_); }

  Napi::Value Result(Napi::Env env) override {
    Napi::Array sections = Napi::Array::New(env, object_.sections.size());
    for (size_t i = 0; i < object_.sections.size(); ++i) {
      const ObjectSection& s = object_.sections[i];
      Napi::Object o = Napi::Object::New(env);
      o.Set("name", s.name);
      o.Set("type", s.type);
      o.Set("flags", Num(env, s.flags));
      o.Set("size", Num(env, s.size));
      o.Set("align", Num(env, s.align));
      o.Set("entsize", Num(env, s.entsize));
      o.Set("link", s.link);
      o.Set("info", s.info);
      o.Set("bytes", Napi::Buffer<uint8_t>::Copy(env, s.bytes.data(), s.bytes.size()));
      sections[i] = o;
    }
    Napi::Array symbols = Napi::Array::New(env, object_.symbols.size());
    for (size_t i = 0; i < object_.symbols.size(); ++i) {
      const ObjectSymbol& s = object_.symbols[i];
      Napi::Object o = Napi::Object::New(env);
      o.Set("name", s.name);
      o.Set("value", Num(env, s.value));
      o.Set("size", Num(env, s.size));
      o.Set("type", s.type);
      o.Set("bind", s.bind);
      o.Set("visibility", s.visibility);
      o.Set("shndx", s.shndx);
      symbols[i] = o;
    }
    Napi::Array relocations = Napi::Array::New(env, object_.relocations.size());
    for (size_t i = 0; i < object_.relocations.size(); ++i) {
      const ObjectRelocation& r = object_.relocations[i];
      Napi::Object o = Napi::Object::New(env);
      o.Set("section", r.section);
      o.Set("offset", Num(env, r.offset));
      o.Set("type", r.type);
      o.Set("symbol", r.symbol);
      o.Set("addend", Napi::Number::New(env, static_cast<double>(r.addend)));
      relocations[i] = o;
    }
    Napi::Object out = Napi::Object::New(env);
    out.Set("path", path_);
    out.Set("sections", sections);
    out.Set("symbols", symbols);
    out.Set("relocations", relocations);
    return out;
  }

 private:
  std::string path_;
  ObjectFile object_;
};

}  // namespace

Napi::Value ReadObjectJs(const Napi::CallbackInfo& info) {
  auto* worker = new ReadObjectWorker(info.Env(), RequireString(info, 0, "path"));
  worker->Queue();
  return worker->Promise();
}

}  // namespace hotpatch
