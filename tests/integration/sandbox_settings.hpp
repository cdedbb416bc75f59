// What the integration tests boot, as scripts/test.sh sets it up:
// ANWEDDOL_TEST_ISO overrides the ISO the build made, and
// ANWEDDOL_TEST_DOMAIN_TYPE the domain type (qemu: the sandbox assumes no KVM).
#ifndef ANWEDDOL_TESTS_INTEGRATION_SANDBOX_SETTINGS_HPP
#define ANWEDDOL_TESTS_INTEGRATION_SANDBOX_SETTINGS_HPP

#include <cstdlib>
#include <string>

namespace anweddol::test {

inline std::string environment_or(const char* name, std::string fallback) {
    const char* value = std::getenv(name);
    return value && *value ? value : fallback;
}

inline std::string test_iso() {
    return environment_or("ANWEDDOL_TEST_ISO", ANWEDDOL_TEST_ISO);
}

inline std::string test_domain_type() {
    return environment_or("ANWEDDOL_TEST_DOMAIN_TYPE", "qemu");
}

} // namespace anweddol::test

#endif
