// The active policy generation: compiled once, published by an atomic pointer swap. Readers take
// a reference-counted snapshot and keep it for the decision they are making.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string_view>
#include <vector>

#include "openshell/policy/diagnostic.hpp"
#include "openshell/policy/engine.hpp"

namespace openshell::proxy {

struct PushResult {
  bool ok = false;
  uint64_t generation = 0;  // the new generation, or the unchanged current one on failure
  std::vector<policy::Diagnostic> diagnostics;  // errors (on failure) and warnings
};

class PolicyStore {
 public:
  PolicyStore();  // generation 0: deny-all

  std::shared_ptr<const policy::CompiledPolicy> current() const { return current_.load(); }
  uint64_t generation() const { return current()->generation(); }

  // Parse, validate, compile and swap. A failed push changes nothing and returns every error.
  PushResult push_text(std::string_view document_text);
  // Swap in an already validated document.
  uint64_t push_document(policy::PolicyDocument document);

 private:
  std::mutex push_mutex_;  // serialises generation numbering, never held by readers
  std::atomic<std::shared_ptr<const policy::CompiledPolicy>> current_;
};

}  // namespace openshell::proxy
