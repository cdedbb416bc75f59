// A real guest's host keys learnt out of band: the test ISO prints their
// fingerprints on its serial console, the container keeps that console, and
// an endpoint shell pinned to them logs in; pinned to a tampered set, it is
// refused before the password is sent.
#include "../unit/test_context.hpp"
#include "endpoint_secret.hpp"
#include "sandbox_settings.hpp"

#include <anweddol/container_instance.hpp>
#include <anweddol/detail/console_announcement.hpp>
#include <anweddol/detail/ssh/console_scanner.hpp>
#include <anweddol/endpoint_shell_instance.hpp>
#include <anweddol/provisioning.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <string>

using anweddol::container_instance;
using anweddol::endpoint_shell_instance;
using anweddol::endpoint_shell_options;
using anweddol::host_key_policy;
using anweddol::test::run_coroutine;
using anweddol::test::test_context;
using boost::asio::awaitable;
using namespace std::chrono_literals;

TEST_CASE("a real guest's console fingerprints pin its SSH server: the guest is accepted, a "
          "tampered set refused") {
    auto container = std::make_shared<container_instance>(test_context().get_executor(),
                                                          anweddol::test::test_iso());
    container->set_memory(512);
    container->set_vcpus(1);
    auto container_options = container->get_options();
    container_options.domain_type = anweddol::test::test_domain_type();
    container->set_options(container_options);

    run_coroutine(
        [&]() -> awaitable<bool> {
            auto executor = co_await boost::asio::this_coro::executor;
            co_await container->start_domain(true, 240, "qemu:///system");
            // The guest prints the block before its network comes up; the
            // console's reader may lag a little behind the lease.
            auto waiting = anweddol::detail::await_console_announcement(*container, 10s, true);
            const auto scan = co_await std::move(waiting);
            INFO("the guest's console:\n" << container->get_console_log());
            REQUIRE(scan.host_keys_complete);
            CHECK_FALSE(scan.block_open);
            REQUIRE(scan.host_keys.size() == 2);
            std::set<std::string> types;
            for (const auto& key : scan.host_keys)
                types.insert(key.type);
            CHECK(types == std::set<std::string>{"ECDSA", "ED25519"});
            const auto fingerprints = anweddol::detail::fingerprints_of(scan.host_keys);
            // The log reads the same block, and never an endpoint password.
            CHECK(anweddol::detail::scan_console(container->get_console_log()).host_keys ==
                  scan.host_keys);
            if (scan.endpoint)
                CHECK(container->get_console_log().find(scan.endpoint->password) ==
                      std::string::npos);

            endpoint_shell_options pinned;
            pinned.host_keys = host_key_policy::pinned_fingerprints;
            pinned.host_key_fingerprints = fingerprints;
            endpoint_shell_instance endpoint(executor, *container->get_ip(), "endpoint",
                                             anweddol::test::console_endpoint_password(*container));
            endpoint.set_options(pinned);
            co_await endpoint.open_shell();
            CHECK(std::count(fingerprints.begin(), fingerprints.end(),
                             endpoint.get_host_key_fingerprint()) == 1);
            // The guest's own ssh-keygen agrees with its console, key by key.
            const auto listed = co_await endpoint.execute(
                "for key in /etc/ssh/ssh_host_*key.pub; do ssh-keygen -l -f \"$key\"; done");
            CHECK(listed.exit_status == 0);
            std::set<std::string> from_guest;
            std::istringstream lines(listed.std_out);
            for (std::string bits, fingerprint, rest; lines >> bits >> fingerprint;
                 std::getline(lines, rest))
                from_guest.insert(fingerprint);
            CHECK(from_guest == std::set<std::string>(fingerprints.begin(), fingerprints.end()));
            co_await endpoint.close_shell();

            // One character changed in each: the same guest is refused, at once.
            pinned.host_key_fingerprints = fingerprints;
            for (auto& fingerprint : pinned.host_key_fingerprints)
                fingerprint[20] = fingerprint[20] == 'A' ? 'B' : 'A';
            endpoint_shell_instance tampered(executor, *container->get_ip(), "endpoint",
                                             anweddol::test::console_endpoint_password(*container));
            tampered.set_options(pinned);
            boost::system::error_code refusal;
            std::string message;
            try {
                co_await tampered.open_shell();
            } catch (const boost::system::system_error& e) {
                refusal = e.code();
                message = e.what();
            }
            CHECK(refusal == anweddol::errc::host_key_mismatch);
            CHECK(message.find(endpoint.get_host_key_fingerprint()) != std::string::npos);
            CHECK(tampered.is_closed());

            co_await container->stop_domain();
            co_return true;
        }(),
        6min);
    CHECK_FALSE(container->is_domain_running());
}

TEST_CASE("provision() pins the host keys the guest printed and says so, and a tampered pin is "
          "refused and leaves no domain") {
    const auto make_container = [] {
        auto c = std::make_shared<container_instance>(test_context().get_executor(),
                                                      anweddol::test::test_iso(), "", 512, 1);
        auto options = c->get_options();
        options.domain_type = anweddol::test::test_domain_type();
        c->set_options(options);
        return c;
    };
    auto container = make_container();
    anweddol::provisioning_options options;
    options.address_timeout = 240s;
    options.require_console_host_keys = true;
    auto result = run_coroutine(anweddol::provision(container, options), 6min);
    CHECK(result.host_keys == host_key_policy::pinned_fingerprints);
    const auto printed = anweddol::detail::fingerprints_of(
        anweddol::detail::scan_console(container->get_console_log()).host_keys);
    CHECK(result.host_key_fingerprints == printed);
    CHECK(result.host_key_fingerprints.size() == 2); // ECDSA and ED25519
    run_coroutine(
        [&]() -> awaitable<bool> {
            co_await container->stop_domain();
            co_return true;
        }(),
        1min);

    // Pinned by the caller to keys the guest does not have: refused, and
    // the container is destroyed.
    auto refused = make_container();
    options.shell.host_keys = host_key_policy::pinned_fingerprints;
    options.shell.host_key_fingerprints = {"SHA256:" + std::string(43, 'A')};
    anweddol::diagnostics diag;
    const auto [error, ignored] =
        run_coroutine(anweddol::provision(refused, options, diag,
                                          boost::asio::as_tuple(boost::asio::use_awaitable)),
                      6min);
    INFO(diag.full_message());
    CHECK(error == anweddol::errc::host_key_mismatch);
    CHECK(diag.full_message().find("not sent") != std::string::npos);
    CHECK_FALSE(refused->is_domain_running());
}

// The test ISO's hook for a late block: a guest whose SMBIOS UUID (the
// domain's UUID) ends in 1a7e1a7e1a7e prints its host-key block only 8 s
// after its DHCP lease, as cloud-init does in its final stage (its endpoint
// block comes at the usual time). Not required, the block is waited for at
// most 5 s: the first key seen is trusted.
TEST_CASE("a guest that prints its host keys after its lease is pinned when they are required, "
          "and trusted on first use when not",
          "[late-host-keys]") {
    const auto late_printer = [] {
        std::random_device random;
        char uuid[40];
        std::snprintf(uuid, sizeof uuid, "%08x-%04x-4%03x-8%03x-1a7e1a7e1a7e", random(),
                      random() & 0xffff, random() & 0xfff, random() & 0xfff);
        auto c = std::make_shared<container_instance>(test_context().get_executor(),
                                                      anweddol::test::test_iso(), uuid, 512, 1);
        auto options = c->get_options();
        options.domain_type = anweddol::test::test_domain_type();
        c->set_options(options);
        return c;
    };
    anweddol::provisioning_options options;
    options.address_timeout = 240s;
    options.require_console_host_keys = true;
    auto container = late_printer();
    auto result = run_coroutine(anweddol::provision(container, options), 6min);
    const std::string log = container->get_console_log();
    INFO("the guest's console:\n" << log);
    // It was late: the lease is on the console before the block.
    REQUIRE(log.find("BEGIN SSH HOST KEY FINGERPRINTS") != std::string::npos);
    CHECK(log.find("udhcpc: lease of") < log.find("BEGIN SSH HOST KEY FINGERPRINTS"));
    CHECK(result.host_keys == host_key_policy::pinned_fingerprints);
    CHECK(result.host_key_fingerprints.size() == 2);
    CHECK(result.host_key_fingerprints ==
          anweddol::detail::fingerprints_of(anweddol::detail::scan_console(log).host_keys));
    run_coroutine(
        [&]() -> awaitable<bool> {
            co_await container->stop_domain();
            co_return true;
        }(),
        1min);

    // Not required: as before, the block is not waited for, and the first
    // key is trusted; the result says so.
    options.require_console_host_keys = false;
    auto trusting = late_printer();
    auto trusted = run_coroutine(anweddol::provision(trusting, options), 6min);
    CHECK(trusted.host_keys == host_key_policy::accept_new);
    CHECK(trusted.host_key_fingerprints.empty());
    run_coroutine(
        [&]() -> awaitable<bool> {
            co_await trusting->stop_domain();
            co_return true;
        }(),
        1min);
}
