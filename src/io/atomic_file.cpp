#include "src/io/atomic_file.h"

#include <unistd.h>

#include <filesystem>
#include <system_error>

namespace torchfocal::io {

void write_atomically(const std::string& path,
                      const std::function<void(const std::string&)>& write) {
  // The pid keeps two processes writing the same checkpoint from sharing a temporary file.
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  try {
    write(tmp);
    std::filesystem::rename(tmp, path);
  } catch (...) {
    std::error_code ignored;
    std::filesystem::remove(tmp, ignored);
    throw;
  }
}

}  // namespace torchfocal::io
