// ObjectCache: parsed ELF files shared by every process of one operation. Patching a thousand
// processes of one program reads its executable, libc and the patch once, not a thousand times.
// A file is known by device, inode, size and modification time, never by name.
#pragma once

#include <sys/types.h>

#include <ctime>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>

#include "../elf_file.h"
#include "patch_file.h"

namespace hotpatch {

class ObjectCache {
 public:
  // The parsed ELF file, or nullptr when the file is not ELF (a mapped data file); throws when it
  // cannot be read at all.
  std::shared_ptr<const ElfInfo> Elf(const std::string& path);
  // The same for a file already open (`name` is for messages): what is read is exactly that file,
  // even when its path now names another one.
  std::shared_ptr<const ElfInfo> Elf(int fd, const std::string& name);
  // The parsed patch (throws as ReadPatch does).
  std::shared_ptr<const PatchFile> Patch(const std::string& path);

 private:
  using Key = std::tuple<dev_t, ino_t, off_t, time_t, long>;
  static Key KeyOf(const std::string& path);
  static Key KeyOf(int fd, const std::string& name);

  std::mutex mu_;
  std::map<Key, std::shared_ptr<const ElfInfo>> elves_;
  std::map<Key, std::shared_ptr<const PatchFile>> patches_;
};

}  // namespace hotpatch
