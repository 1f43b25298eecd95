// Policy generations: compile outside any lock readers take, then publish atomically.
#include "openshell/proxy/policy_store.hpp"

#include "openshell/policy/loader.hpp"

namespace openshell::proxy {

PolicyStore::PolicyStore() : current_(policy::deny_all_policy(0)) {}

PushResult PolicyStore::push_text(std::string_view document_text) {
  policy::LoadResult loaded = policy::load_policy(document_text);
  PushResult result;
  result.diagnostics = std::move(loaded.diagnostics);
  if (!loaded.ok()) {
    result.generation = generation();
    return result;
  }
  result.ok = true;
  result.generation = push_document(std::move(*loaded.document));
  return result;
}

uint64_t PolicyStore::push_document(policy::PolicyDocument document) {
  const std::lock_guard lock(push_mutex_);
  const uint64_t next = generation() + 1;
  current_.store(policy::compile_policy(std::move(document), next));
  return next;
}

}  // namespace openshell::proxy
