// EngineError: the one exception type the native code throws. It carries a stable code that the
// TypeScript side maps onto a typed error class, so every failure reaches the operator with a code.
#pragma once

#include <stdexcept>
#include <string>

namespace hotpatch {

class EngineError : public std::runtime_error {
 public:
  EngineError(std::string code, const std::string& message)
      : std::runtime_error(message), code_(std::move(code)) {}
  const std::string& code() const { return code_; }

 private:
  std::string code_;
};

}  // namespace hotpatch
