// A scratch directory for tests on libvirt's test:/// driver: a stand-in ISO
// (test:/// never reads it) and a lease directory of its own, removed
// afterwards.
#ifndef ANWEDDOL_TESTS_UNIT_SCRATCH_DIRECTORY_HPP
#define ANWEDDOL_TESTS_UNIT_SCRATCH_DIRECTORY_HPP

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>

#include <stdlib.h>

namespace anweddol::test {

struct scratch {
    std::filesystem::path root;
    std::filesystem::path iso;
    std::filesystem::path leases;

    /// The ISO holds "abc", whose SHA-256 the checksum tests know.
    scratch() {
        char pattern[] = "/tmp/anweddol-test-XXXXXX";
        REQUIRE(::mkdtemp(pattern) != nullptr);
        root = pattern;
        iso = root / "live.iso";
        leases = root / "leases";
        std::filesystem::create_directory(leases);
        std::ofstream(iso) << "abc";
    }
    scratch(const scratch&) = delete;
    scratch& operator=(const scratch&) = delete;
    ~scratch() {
        std::error_code ignored;
        std::filesystem::remove_all(root, ignored);
    }

    /// Writes `text` as `name` the way libvirt's lease helper does: a new
    /// file renamed over the old one.
    void replace_status_file(const std::string& name, const std::string& text) const {
        const auto temporary = leases / (name + ".new");
        std::ofstream(temporary) << text;
        std::filesystem::rename(temporary, leases / name);
    }
};

} // namespace anweddol::test

#endif
