// The async core against the sandbox's real libvirtd: lifecycle events of a
// QEMU domain arrive on the io_context, and a libvirtd that dies mid-run gives
// clean errors and a working reconnect instead of a hang.
#include "../unit/test_context.hpp"
#include "blocking_container.hpp"
#include "sandbox_settings.hpp"

#include <anweddol/container_instance.hpp>
#include <anweddol/detail/async/blocking_call.hpp>
#include <anweddol/detail/domain_identity.hpp>
#include <anweddol/detail/libvirt/call.hpp>
#include <anweddol/hypervisor_connection.hpp>
#include <anweddol/runtime.hpp>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/system/system_error.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdlib>
#include <optional>
#include <string>
#include <thread>
#include <vector>

using anweddol::domain_lifecycle_event;
using anweddol::hypervisor_connection;
using anweddol::test::run_coroutine;
using boost::asio::awaitable;
using boost::asio::use_awaitable;
using namespace boost::asio::experimental::awaitable_operators;
using namespace std::chrono_literals;

namespace {

const std::string system_uri = "qemu:///system";

// Runs scripts/sandbox.sh with `arguments` on a worker, so that the io_context
// keeps dispatching libvirt's callbacks meanwhile.
awaitable<void> sandbox(std::string arguments) {
    auto& rt = anweddol::runtime::of(co_await boost::asio::this_coro::executor);
    auto running = anweddol::detail::run_blocking(
        rt.workers(), nullptr, [command = std::string(ANWEDDOL_SANDBOX_SCRIPT) + " " + arguments] {
            if (std::system(command.c_str()) != 0)
                throw std::runtime_error(command + " failed");
        });
    co_await std::move(running);
}

awaitable<void> sleep_for(std::chrono::milliseconds duration) {
    boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor, duration);
    co_await timer.async_wait(use_awaitable);
}

awaitable<unsigned long> library_version(std::shared_ptr<hypervisor_connection> connection) {
    co_return co_await connection->call([](virConnectPtr c) {
        unsigned long version = 0;
        if (virConnectGetLibVersion(c, &version) < 0)
            anweddol::detail::throw_last_libvirt_error("virConnectGetLibVersion");
        return version;
    });
}

} // namespace

TEST_CASE("a real domain's STARTED and STOPPED events arrive on the io_context thread") {
    anweddol::tools::domain_spec spec;
    spec.uuid = anweddol::detail::random_uuid();
    spec.name = "anweddol-it-events-" + spec.uuid.substr(0, 8);
    spec.iso_path = anweddol::test::test_iso();
    spec.type = anweddol::test::test_domain_type();
    const std::string xml = anweddol::tools::transient_domain_xml(spec);

    std::vector<domain_lifecycle_event> seen;
    std::vector<std::thread::id> delivered_on;
    run_coroutine([&]() -> awaitable<bool> {
        auto connection = co_await hypervisor_connection::open(system_uri);
        auto watching = connection->subscribe(
            co_await boost::asio::this_coro::executor, [&](const domain_lifecycle_event& event) {
                if (event.uuid != spec.uuid)
                    return;
                seen.push_back(event);
                delivered_on.push_back(std::this_thread::get_id());
            });

        // The waits start first: `&&` starts its operands in order, and each
        // subscribes before it suspends.
        auto create = connection->call([&](virConnectPtr c) {
            anweddol::detail::domain_handle domain(virDomainCreateXML(c, xml.c_str(), 0));
            if (!domain)
                anweddol::detail::throw_last_libvirt_error("virDomainCreateXML");
        });
        auto [started, created] =
            co_await (connection->wait_for_event(spec.uuid, VIR_DOMAIN_EVENT_STARTED, 2min) &&
                      std::move(create));
        CHECK(started.name == spec.name);
        CHECK(started.detail == VIR_DOMAIN_EVENT_STARTED_BOOTED);

        auto destroy = connection->call([&](virConnectPtr c) {
            anweddol::detail::domain_handle domain(
                virDomainLookupByUUIDString(c, spec.uuid.c_str()));
            if (!domain || virDomainDestroy(domain.get()) < 0)
                anweddol::detail::throw_last_libvirt_error("virDomainDestroy");
        });
        auto [stopped, destroyed] =
            co_await (connection->wait_for_event(spec.uuid, VIR_DOMAIN_EVENT_STOPPED, 1min) &&
                      std::move(destroy));
        CHECK(stopped.detail == VIR_DOMAIN_EVENT_STOPPED_DESTROYED);
        co_await sleep_for(200ms); // the subscriber's copy of the events
        co_return true;
    }());

    // QEMU also reports RESUMED as it lets the new vCPUs run.
    const auto position_of = [&](int event) {
        return std::find_if(seen.begin(), seen.end(),
                            [&](const domain_lifecycle_event& e) { return e.event == event; }) -
               seen.begin();
    };
    CHECK(position_of(VIR_DOMAIN_EVENT_STARTED) < position_of(VIR_DOMAIN_EVENT_STOPPED));
    REQUIRE_FALSE(seen.empty());
    CHECK(seen.back().event == VIR_DOMAIN_EVENT_STOPPED);
    for (const auto& id : delivered_on)
        CHECK(id == std::this_thread::get_id());
}

TEST_CASE("libvirtd killed mid-run gives clean errors, and the connection reopens once it is "
          "back") {
    run_coroutine(
        [&]() -> awaitable<bool> {
            auto connection = co_await hypervisor_connection::open(system_uri);
            const unsigned opened_before = connection->open_count();
            CHECK(co_await library_version(connection) > 0);

            std::optional<int> close_reason;
            auto closing = connection->on_close(co_await boost::asio::this_coro::executor,
                                                [&](int reason) { close_reason = reason; });

            // Calls keep running until one fails: libvirtd dies under them.
            std::optional<boost::system::error_code> busy_failure;
            auto keep_calling = [&]() -> awaitable<void> {
                for (;;) {
                    try {
                        co_await library_version(connection);
                    } catch (const boost::system::system_error& e) {
                        busy_failure = e.code();
                        co_return;
                    }
                }
            };
            auto killing = [&]() -> awaitable<void> {
                co_await sleep_for(300ms);
                co_await sandbox("kill-libvirtd");
            };
            co_await (keep_calling() && killing());
            REQUIRE(busy_failure);
            CHECK(busy_failure->category() == anweddol::libvirt_category());

            for (int i = 0; i < 100 && !close_reason; ++i)
                co_await sleep_for(100ms);
            REQUIRE(close_reason);
            CHECK_FALSE(connection->is_open());

            // While libvirtd is down, a call fails at once with libvirt's reason.
            try {
                co_await library_version(connection);
                FAIL("a call succeeded while libvirtd was down");
            } catch (const boost::system::system_error& e) {
                INFO(e.what());
                CHECK(e.code().category() == anweddol::libvirt_category());
                CHECK(std::string(e.what()).find("cannot connect to qemu:///system") !=
                      std::string::npos);
            }

            co_await sandbox("up");
            CHECK(co_await library_version(connection) > 0);
            CHECK(connection->is_open());
            CHECK(connection->open_count() == opened_before + 1);
            co_return true;
        }(),
        3min);
}

TEST_CASE("a container's graceful stop works after libvirtd restarted under it") {
    run_coroutine(
        [&]() -> awaitable<bool> {
            auto executor = co_await boost::asio::this_coro::executor;
            anweddol::container_instance container(executor, anweddol::test::test_iso(), "", 512,
                                                   1);
            anweddol::start_options start;
            start.address_timeout = 4min;
            start.domain_type = anweddol::test::test_domain_type();
            co_await container.start_domain(start); // booted: its acpid answers the button

            // The connection the domain was created on dies with libvirtd; the
            // domain (QEMU) lives on, and libvirtd finds it again when it is back.
            co_await sandbox("kill-libvirtd");
            co_await sandbox("up");

            // Looked up by UUID on the reopened connection, not through the
            // dead connection's handle.
            co_await container.stop_domain(
                anweddol::stop_options{anweddol::stop_mode::graceful, 90s});
            CHECK_FALSE(container.is_domain_running());
            auto connection = co_await hypervisor_connection::open(system_uri);
            // Built outside the co_await expression: GCC 12 destroys
            // temporaries with captures inside one twice.
            auto looking = connection->call([uuid = container.get_uuid()](virConnectPtr c) {
                anweddol::detail::domain_handle domain(
                    virDomainLookupByUUIDString(c, uuid.c_str()));
                virResetLastError();
                return domain != nullptr;
            });
            const bool still_there = co_await std::move(looking);
            CHECK_FALSE(still_there);
            co_return true;
        }(),
        8min);
}
