// The Node-API surface of the native engine. Each exported function checks its arguments and
// queues one PromiseWorker; nothing here blocks the event loop.
#include <napi.h>

#include "elf_file.h"
#include "loader/target_image.h"
#include "object/read_object.h"
#include "proc_maps.h"
#include "promise_worker.h"
#include "workers/patch_workers.h"

namespace hotpatch {
namespace {

class ReadElfWorker : public PromiseWorker {
 public:
  ReadElfWorker(Napi::Env env, std::string path) : PromiseWorker(env), path_(std::move(path)) {}

 protected:
  void Run() override { info_ = ReadElfFile(path_); }

  Napi::Value Result(Napi::Env env) override {
    Napi::Object out = Napi::Object::New(env);
    out.Set("path", path_);
    out.Set("type", info_.type);
    out.Set("machine", info_.machine);
    out.Set("elfClass", info_.elf_class);
    out.Set("entry", Big(env, info_.entry));
    out.Set("buildId", info_.build_id ? Napi::Value(Napi::String::New(env, *info_.build_id)) : env.Null());
    out.Set("debugLink", info_.debug_link ? Napi::Value(Napi::String::New(env, *info_.debug_link)) : env.Null());

    Napi::Array phdrs = Napi::Array::New(env, info_.program_headers.size());
    for (size_t i = 0; i < info_.program_headers.size(); ++i) {
      const auto& p = info_.program_headers[i];
      Napi::Object o = Napi::Object::New(env);
      o.Set("type", p.type);
      o.Set("flags", p.flags);
      o.Set("offset", Big(env, p.offset));
      o.Set("vaddr", Big(env, p.vaddr));
      o.Set("filesz", Big(env, p.filesz));
      o.Set("memsz", Big(env, p.memsz));
      o.Set("align", Big(env, p.align));
      phdrs[i] = o;
    }
    out.Set("programHeaders", phdrs);

    Napi::Array sections = Napi::Array::New(env, info_.sections.size());
    for (size_t i = 0; i < info_.sections.size(); ++i) {
      const auto& s = info_.sections[i];
      Napi::Object o = Napi::Object::New(env);
      o.Set("name", s.name);
      o.Set("type", s.type);
      o.Set("flags", Big(env, s.flags));
      o.Set("addr", Big(env, s.addr));
      o.Set("offset", Big(env, s.offset));
      o.Set("size", Big(env, s.size));
      sections[i] = o;
    }
    out.Set("sections", sections);

    Napi::Array symbols = Napi::Array::New(env, info_.symbols.size());
    for (size_t i = 0; i < info_.symbols.size(); ++i) {
      const auto& s = info_.symbols[i];
      Napi::Object o = Napi::Object::New(env);
      o.Set("name", s.name);
      o.Set("value", Big(env, s.value));
      o.Set("size", Big(env, s.size));
      o.Set("type", s.type);
      o.Set("bind", s.bind);
      o.Set("shndx", s.shndx);
      o.Set("table", s.table == SymbolTable::kSymtab ? "symtab" : "dynsym");
      if (!s.file.empty()) o.Set("file", s.file);
      symbols[i] = o;
    }
    out.Set("symbols", symbols);
    return out;
  }

 private:
  std::string path_;
  ElfInfo info_;
};

class ReadMapsWorker : public PromiseWorker {
 public:
  ReadMapsWorker(Napi::Env env, pid_t pid) : PromiseWorker(env), pid_(pid) {}

 protected:
  void Run() override { maps_ = ReadProcMaps(pid_); }

  Napi::Value Result(Napi::Env env) override {
    Napi::Array out = Napi::Array::New(env, maps_.size());
    for (size_t i = 0; i < maps_.size(); ++i) {
      const auto& m = maps_[i];
      Napi::Object o = Napi::Object::New(env);
      o.Set("start", Big(env, m.start));
      o.Set("end", Big(env, m.end));
      o.Set("perms", m.perms);
      o.Set("offset", Big(env, m.offset));
      o.Set("dev", m.dev);
      o.Set("inode", Napi::Number::New(env, static_cast<double>(m.inode)));
      o.Set("path", m.path);
      out[i] = o;
    }
    return out;
  }

 private:
  pid_t pid_;
  std::vector<Mapping> maps_;
};

// The ELF objects a process has mapped, as the engine reads them for symbol resolution.
class ReadTargetObjectsWorker : public PromiseWorker {
 public:
  ReadTargetObjectsWorker(Napi::Env env, pid_t pid) : PromiseWorker(env), pid_(pid) {}

 protected:
  void Run() override {
    ObjectCache cache;
    const TargetImage image(pid_, {}, cache);
    objects_ = image.objects();
    order_ = image.search_order();
  }

  Napi::Value Result(Napi::Env env) override {
    Napi::Array objects = Napi::Array::New(env, objects_.size());
    for (size_t i = 0; i < objects_.size(); ++i) {
      const LoadedObject& obj = objects_[i];
      Napi::Object o = Napi::Object::New(env);
      o.Set("path", obj.path);
      o.Set("disk", obj.disk == OnDisk::kSame ? "same" : obj.disk == OnDisk::kReplaced ? "replaced" : "deleted");
      o.Set("source", obj.source);
      o.Set("buildId", obj.elf && obj.elf->build_id ? Napi::Value(Napi::String::New(env, *obj.elf->build_id)) : env.Null());
      o.Set("start", Big(env, obj.start));
      o.Set("end", Big(env, obj.end));
      o.Set("bias", Big(env, obj.bias));
      o.Set("executable", obj.is_executable);
      o.Set("linkMapIndex", obj.link_map_index ? Napi::Value(Napi::Number::New(env, static_cast<double>(*obj.link_map_index)))
                                               : env.Null());
      if (!obj.elf) o.Set("unreadable", obj.unreadable);
      objects[i] = o;
    }
    Napi::Object out = Napi::Object::New(env);
    out.Set("objects", objects);
    out.Set("linkMap", order_.link_map);
    out.Set("reason", order_.reason);
    return out;
  }

 private:
  pid_t pid_;
  std::vector<LoadedObject> objects_;
  SearchOrder order_;
};

class ReadBuildIdWorker : public PromiseWorker {
 public:
  ReadBuildIdWorker(Napi::Env env, std::string path) : PromiseWorker(env), path_(std::move(path)) {}

 protected:
  void Run() override { id_ = ReadBuildIdFile(path_); }
  Napi::Value Result(Napi::Env env) override {
    return id_ ? Napi::Value(Napi::String::New(env, *id_)) : env.Null();
  }

 private:
  std::string path_;
  std::optional<std::string> id_;
};

Napi::Value ReadBuildId(const Napi::CallbackInfo& info) {
  auto* worker = new ReadBuildIdWorker(info.Env(), RequireString(info, 0, "path"));
  worker->Queue();
  return worker->Promise();
}

Napi::Value ReadElf(const Napi::CallbackInfo& info) {
  auto* worker = new ReadElfWorker(info.Env(), RequireString(info, 0, "path"));
  worker->Queue();
  return worker->Promise();
}

Napi::Value ReadMaps(const Napi::CallbackInfo& info) {
  auto* worker = new ReadMapsWorker(info.Env(), static_cast<pid_t>(RequirePositiveInt(info, 0, "pid")));
  worker->Queue();
  return worker->Promise();
}

Napi::Value ReadTargetObjects(const Napi::CallbackInfo& info) {
  auto* worker = new ReadTargetObjectsWorker(info.Env(), static_cast<pid_t>(RequirePositiveInt(info, 0, "pid")));
  worker->Queue();
  return worker->Promise();
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("readElf", Napi::Function::New(env, ReadElf, "readElf"));
  exports.Set("readBuildId", Napi::Function::New(env, ReadBuildId, "readBuildId"));
  exports.Set("readObject", Napi::Function::New(env, ReadObjectJs, "readObject"));
  exports.Set("readMaps", Napi::Function::New(env, ReadMaps, "readMaps"));
  exports.Set("readTargetObjects", Napi::Function::New(env, ReadTargetObjects, "readTargetObjects"));
  exports.Set("loadPatch", Napi::Function::New(env, LoadPatchJs, "loadPatch"));
  exports.Set("applyBatch", Napi::Function::New(env, ApplyBatchJs, "applyBatch"));
  exports.Set("activatePatch", Napi::Function::New(env, ActivatePatchJs, "activatePatch"));
  exports.Set("deactivatePatch", Napi::Function::New(env, DeactivatePatchJs, "deactivatePatch"));
  exports.Set("unloadPatch", Napi::Function::New(env, UnloadPatchJs, "unloadPatch"));
  exports.Set("listPatches", Napi::Function::New(env, ListPatchesJs, "listPatches"));
  exports.Set("stopResume", Napi::Function::New(env, StopResumeJs, "stopResume"));
  return exports;
}

}  // namespace hotpatch

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return hotpatch::Init(env, exports); }

NODE_API_MODULE(hotpatch_native, InitModule)
