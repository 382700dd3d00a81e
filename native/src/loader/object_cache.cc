#include "object_cache.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "../engine_error.h"
#include "../fd.h"
#include "../safe_open.h"

namespace hotpatch {

ObjectCache::Key ObjectCache::KeyOf(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    throw EngineError("EELF_OPEN", "cannot open " + path + ": " + std::strerror(errno));
  }
  return {st.st_dev, st.st_ino, st.st_size, st.st_mtim.tv_sec, st.st_mtim.tv_nsec};
}

ObjectCache::Key ObjectCache::KeyOf(int fd, const std::string& name) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw EngineError("EELF_OPEN", "cannot stat " + name + ": " + std::strerror(errno));
  return {st.st_dev, st.st_ino, st.st_size, st.st_mtim.tv_sec, st.st_mtim.tv_nsec};
}

std::shared_ptr<const ElfInfo> ObjectCache::Elf(const std::string& path) {
  const UniqueFd fd = OpenRegularFile(path);
  return Elf(fd.get(), path);
}

std::shared_ptr<const ElfInfo> ObjectCache::Elf(int fd, const std::string& name) {
  const Key key = KeyOf(fd, name);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = elves_.find(key); it != elves_.end()) return it->second;
  }
  // Parse outside the lock: two threads may parse the same file once each, which is harmless.
  std::shared_ptr<const ElfInfo> parsed;
  try {
    parsed = std::make_shared<const ElfInfo>(ReadElfFd(fd, name));
  } catch (const EngineError& e) {
    if (e.code() != "EBAD_ELF") throw;
  }
  std::lock_guard<std::mutex> lock(mu_);
  return elves_.emplace(key, parsed).first->second;
}

std::shared_ptr<const PatchFile> ObjectCache::Patch(const std::string& path) {
  const Key key = KeyOf(path);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = patches_.find(key); it != patches_.end()) return it->second;
  }
  auto parsed = std::make_shared<const PatchFile>(ReadPatch(path));
  std::lock_guard<std::mutex> lock(mu_);
  return patches_.emplace(key, parsed).first->second;
}

}  // namespace hotpatch
