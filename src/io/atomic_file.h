// Files that appear whole or not at all: write to a temporary sibling, then rename.
#pragma once

#include <functional>
#include <string>

namespace torchfocal::io {

// Calls write(tmp_path), fsyncs it, then renames it over `path` (atomic on POSIX file systems).
// On any exception the temporary file is removed and the exception rethrown; `path` is untouched.
void write_atomically(const std::string& path,
                      const std::function<void(const std::string&)>& write);

}  // namespace torchfocal::io
