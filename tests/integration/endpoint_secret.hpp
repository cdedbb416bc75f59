// The test ISO's endpoint password is a secret of each boot, which the
// guest prints on its serial console only (an ANWEDDOL ENDPOINT block): the
// tests that log in as endpoint themselves, instead of through provision(),
// read it from there as provision() does.
#ifndef ANWEDDOL_TESTS_INTEGRATION_ENDPOINT_SECRET_HPP
#define ANWEDDOL_TESTS_INTEGRATION_ENDPOINT_SECRET_HPP

#include <anweddol/container_instance.hpp>
#include <anweddol/detail/console_announcement.hpp>
#include <anweddol/detail/ssh/console_scanner.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>

namespace anweddol::test {

/// The endpoint password a started container's guest announced. The guest
/// prints it before its network comes up, so it is there once the address
/// is known.
inline std::string console_endpoint_password(const container_instance& container) {
    const auto ring = detail::console_access::ring(container);
    REQUIRE(ring);
    const auto announced = ring->announcement();
    REQUIRE(announced.endpoint);
    return announced.endpoint->password;
}

/// The same, from a serial console logged to `log` (a domain made by the
/// tests themselves), waiting for it up to `timeout`.
inline std::string logged_endpoint_password(const std::filesystem::path& log,
                                            std::chrono::steady_clock::duration timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        std::ifstream in(log, std::ios::binary);
        const std::string text{std::istreambuf_iterator<char>(in), {}};
        if (auto announced = detail::scan_console(text); announced.endpoint)
            return announced.endpoint->password;
        if (std::chrono::steady_clock::now() > deadline)
            FAIL("no ANWEDDOL ENDPOINT block in " << log.string());
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
}

} // namespace anweddol::test

#endif
