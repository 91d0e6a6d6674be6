// "[2, 3]": a tensor's sizes as error messages across the engine print them.
#pragma once

#include <c10/util/ArrayRef.h>

#include <cstdint>
#include <sstream>
#include <string>

namespace torchfocal {

inline std::string shape_string(c10::ArrayRef<int64_t> sizes) {
  std::ostringstream out;
  out << '[';
  for (size_t i = 0; i < sizes.size(); ++i) out << (i ? ", " : "") << sizes[i];
  out << ']';
  return out.str();
}

}  // namespace torchfocal
