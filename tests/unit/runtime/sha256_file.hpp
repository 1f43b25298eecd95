// Test helper: a file's SHA-256 computed here with OpenSSL, independently of the code under test.
#pragma once

#include <openssl/evp.h>

#include <array>
#include <catch2/catch.hpp>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

namespace openshell::test {

inline std::array<uint8_t, 32> sha256_of_file(const std::string& path) {
  // Chunked: a char-by-char read of a debug test binary takes most of a second.
  std::ifstream file(path, std::ios::binary);
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> context(EVP_MD_CTX_new(),
                                                                  &EVP_MD_CTX_free);
  REQUIRE(EVP_DigestInit_ex(context.get(), EVP_sha256(), nullptr) == 1);
  std::vector<char> buffer(1 << 16);
  bool updated = true;
  while (file.read(buffer.data(), static_cast<std::streamsize>(buffer.size())) ||
         file.gcount() > 0) {
    updated = updated && EVP_DigestUpdate(context.get(), buffer.data(),
                                          static_cast<std::size_t>(file.gcount())) == 1;
  }
  REQUIRE(updated);
  std::array<uint8_t, 32> digest{};
  unsigned int size = 0;
  REQUIRE(EVP_DigestFinal_ex(context.get(), digest.data(), &size) == 1);
  return digest;
}

}  // namespace openshell::test
