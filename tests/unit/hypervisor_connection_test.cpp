#include "test_context.hpp"

#include <anweddol/detail/libvirt/call.hpp>
#include <anweddol/detail/libvirt/connection_liveness.hpp>
#include <anweddol/hypervisor_connection.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>

#include <catch2/catch.hpp>

#include <libvirt/virterror.h>

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <string>
#include <thread>
#include <vector>

using anweddol::hypervisor_connection;
using anweddol::test::run_coroutine;
using anweddol::test::run_until;
using boost::asio::awaitable;
using boost::asio::use_awaitable;
using namespace std::chrono_literals;

namespace {

const std::string test_uri = "test:///default";

// A transient domain of the test driver, named `name`.
std::string domain_xml(const std::string& name) {
    return "<domain type='test'><name>" + name +
           "</name><memory>65536</memory><os><type>hvm</type></os></domain>";
}

std::string uuid_of(virDomainPtr domain) {
    char uuid[VIR_UUID_STRING_BUFLEN] = {};
    virDomainGetUUIDString(domain, uuid);
    return uuid;
}

template <class Work>
boost::system::system_error failure_of(Work work) {
    try {
        run_coroutine(work());
    } catch (const boost::system::system_error& e) {
        return e;
    }
    FAIL("no error");
    throw;
}

} // namespace

TEST_CASE("connection: one connection per URI, shared by every caller") {
    auto [first, second] =
        run_coroutine([]() -> awaitable<std::pair<std::shared_ptr<hypervisor_connection>,
                                                  std::shared_ptr<hypervisor_connection>>> {
            auto a = co_await hypervisor_connection::open(test_uri);
            auto b = co_await hypervisor_connection::open(test_uri);
            co_return std::pair{a, b};
        }());
    CHECK(first == second);
    CHECK(first->is_open());
    CHECK(first->open_count() == 1);
    CHECK(first->uri() == test_uri);
}

TEST_CASE("connection: a bad URI fails with libvirt's code and message") {
    const auto error = failure_of([]() -> awaitable<int> {
        co_await hypervisor_connection::open("nosuchdriver:///system");
        co_return 0;
    });
    CHECK(std::string(error.code().category().name()) == "libvirt");
    CHECK(error.code().value() != VIR_ERR_OK);
    CHECK(std::string(error.what()).find("cannot connect to nosuchdriver:///system: ") !=
          std::string::npos);
}

TEST_CASE("connection: an unknown domain's error carries VIR_ERR_NO_DOMAIN and libvirt's message") {
    const auto error = failure_of([]() -> awaitable<int> {
        auto connection = co_await hypervisor_connection::open(test_uri);
        co_await connection->call([](virConnectPtr c) {
            anweddol::detail::domain_handle domain(virDomainLookupByName(c, "no-such-domain"));
            if (!domain)
                anweddol::detail::throw_last_libvirt_error("looking up no-such-domain");
        });
        co_return 0;
    });
    CHECK(error.code() ==
          boost::system::error_code(VIR_ERR_NO_DOMAIN, anweddol::libvirt_category()));
    CHECK(std::string(error.what()).find("no-such-domain") != std::string::npos);
    CHECK(std::string(error.what()).find("looking up no-such-domain: ") != std::string::npos);
}

// libvirt writes its RPCs on the lanes: once libvirtd is gone, with write(),
// which raises SIGPIPE. The lanes keep it blocked; without that this test
// dies of it.
TEST_CASE("connection: a call's write to a dead peer on a lane fails with EPIPE, not SIGPIPE") {
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    ::close(fds[0]);
    const int write_errno = run_coroutine([&]() -> awaitable<int> {
        auto connection = co_await hypervisor_connection::open(test_uri);
        co_return co_await connection->call([&](virConnectPtr) {
            const char c = 'x';
            return ::write(fds[1], &c, 1) < 0 ? errno : 0;
        });
    }());
    ::close(fds[1]);
    CHECK(write_errno == EPIPE);
}

TEST_CASE("connection: 10,000 concurrent calls stay within the in-flight cap, off the io thread") {
    const auto io_thread = std::this_thread::get_id();
    std::atomic<int> on_io_thread{0};
    std::atomic<int> finished{0};
    hypervisor_connection::options five_lanes;
    five_lanes.max_calls_in_flight = 5; // test:/// gets 1 by default
    auto connection = run_coroutine(hypervisor_connection::open(test_uri, five_lanes));
    CHECK(connection->max_calls_in_flight() == 5);
    for (int i = 0; i < 10'000; ++i)
        boost::asio::co_spawn(
            anweddol::test::test_context(),
            [&, connection]() -> awaitable<void> {
                const int version = (co_await connection->call([&](virConnectPtr c) {
                    if (std::this_thread::get_id() == io_thread)
                        ++on_io_thread;
                    // Long enough for calls to overlap, so that the cap matters.
                    std::this_thread::sleep_for(50us);
                    unsigned long version = 0;
                    if (virConnectGetLibVersion(c, &version) < 0)
                        anweddol::detail::throw_last_libvirt_error("virConnectGetLibVersion");
                    return static_cast<int>(version);
                }));
                if (version >= 9'000'000)
                    ++finished;
            },
            boost::asio::detached);
    REQUIRE(run_until([&] { return finished == 10'000; }, 60s));
    CHECK(on_io_thread == 0);
    CHECK(connection->peak_calls_in_flight() >= 2);
    CHECK(connection->peak_calls_in_flight() <= connection->max_calls_in_flight());
}

TEST_CASE("connection: cancelling a queued call completes it with operation_aborted, unrun") {
    auto connection = run_coroutine(hypervisor_connection::open(test_uri));
    std::atomic<bool> release{false};
    std::atomic<int> started{0};
    // Fill every in-flight slot with a call that waits for `release`.
    for (std::size_t i = 0; i < connection->max_calls_in_flight(); ++i)
        boost::asio::co_spawn(anweddol::test::test_context(), connection->call([&](virConnectPtr) {
            ++started;
            while (!release)
                std::this_thread::sleep_for(1ms);
        }),
                              boost::asio::detached);
    REQUIRE(
        run_until([&] { return started == static_cast<int>(connection->max_calls_in_flight()); }));

    boost::asio::cancellation_signal cancel;
    bool ran = false;
    std::exception_ptr error;
    bool done = false;
    boost::asio::co_spawn(anweddol::test::test_context(),
                          connection->call([&](virConnectPtr) { ran = true; }),
                          boost::asio::bind_cancellation_slot(
                              cancel.slot(), [&](std::exception_ptr e, std::monostate) {
                                  error = e;
                                  done = true;
                              }));
    run_until([] { return false; }, 20ms);
    CHECK_FALSE(done);
    cancel.emit(boost::asio::cancellation_type::terminal);
    REQUIRE(run_until([&] { return done; }));
    REQUIRE(error);
    try {
        std::rethrow_exception(error);
    } catch (const boost::system::system_error& e) {
        CHECK(e.code() == boost::asio::error::operation_aborted);
    }
    release = true;
    run_until([] { return false; }, 50ms);
    CHECK_FALSE(ran);
}

TEST_CASE("connection: lifecycle events arrive on the io_context thread, awaitable by UUID") {
    using namespace boost::asio::experimental::awaitable_operators;
    const auto io_thread = std::this_thread::get_id();
    std::vector<int> events;
    std::thread::id event_thread;
    const auto started = run_coroutine([&]() -> awaitable<anweddol::domain_lifecycle_event> {
        auto connection = co_await hypervisor_connection::open(test_uri);
        auto all = connection->subscribe(co_await boost::asio::this_coro::executor,
                                         [&](const anweddol::domain_lifecycle_event& e) {
                                             if (e.name == "anweddol-events") {
                                                 events.push_back(e.event);
                                                 event_thread = std::this_thread::get_id();
                                             }
                                         });
        auto domain = co_await connection->call([](virConnectPtr c) {
            anweddol::detail::domain_handle domain(
                virDomainCreateXML(c, domain_xml("anweddol-events").c_str(), 0));
            if (!domain)
                anweddol::detail::throw_last_libvirt_error("virDomainCreateXML");
            return std::shared_ptr<virDomain>(domain.release(), virDomainFree);
        });
        const std::string uuid = uuid_of(domain.get());
        // Subscribed before the destroy: the STOPPED event cannot be missed.
        auto stopped = connection->wait_for_event(uuid, VIR_DOMAIN_EVENT_STOPPED, 5s);
        auto destroy = connection->call([domain](virConnectPtr) {
            if (virDomainDestroy(domain.get()) < 0)
                anweddol::detail::throw_last_libvirt_error("virDomainDestroy");
        });
        auto both = co_await (std::move(stopped) && std::move(destroy));
        co_return std::get<0>(both);
    }());
    CHECK(started.event == VIR_DOMAIN_EVENT_STOPPED);
    CHECK(started.name == "anweddol-events");
    REQUIRE(run_until([&] { return events.size() >= 2; }));
    CHECK(events.front() == VIR_DOMAIN_EVENT_STARTED);
    CHECK(events.back() == VIR_DOMAIN_EVENT_STOPPED);
    CHECK(event_thread == io_thread);
}

TEST_CASE("connection: waiting for an event that never comes times out, and can be cancelled") {
    using namespace boost::asio::experimental::awaitable_operators;
    const auto timeout = failure_of([]() -> awaitable<int> {
        auto connection = co_await hypervisor_connection::open(test_uri);
        co_await connection->wait_for_event("00000000-0000-0000-0000-000000000000",
                                            VIR_DOMAIN_EVENT_STARTED, 50ms);
        co_return 0;
    });
    CHECK(timeout.code() == boost::asio::error::timed_out);

    // Losing a race to a timer cancels the wait.
    const auto winner = run_coroutine([]() -> awaitable<int> {
        auto connection = co_await hypervisor_connection::open(test_uri);
        boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor, 20ms);
        auto result = co_await (connection->wait_for_event("00000000-0000-0000-0000-000000000000",
                                                           VIR_DOMAIN_EVENT_STARTED, 60s) ||
                                timer.async_wait(use_awaitable));
        co_return static_cast<int>(result.index());
    }());
    CHECK(winner == 1);
}

TEST_CASE("connection: opened for calls alone, it gains events when an opener asks for them") {
    const auto seen = run_coroutine([&]() -> awaitable<std::vector<int>> {
        hypervisor_connection::options calls_only;
        calls_only.lifecycle_events = false;
        auto first = co_await hypervisor_connection::open(test_uri, calls_only);
        CHECK_FALSE(first->lifecycle_events());
        auto second = co_await hypervisor_connection::open(test_uri);
        CHECK(first == second); // shared per URI
        CHECK(second->lifecycle_events());

        std::vector<int> events;
        auto all = second->subscribe(co_await boost::asio::this_coro::executor,
                                     [&](const anweddol::domain_lifecycle_event& e) {
                                         if (e.name == "anweddol-late-events")
                                             events.push_back(e.event);
                                     });
        co_await first->call([](virConnectPtr c) {
            anweddol::detail::domain_handle domain(
                virDomainCreateXML(c, domain_xml("anweddol-late-events").c_str(), 0));
            if (!domain || virDomainDestroy(domain.get()) < 0)
                anweddol::detail::throw_last_libvirt_error("create and destroy");
        });
        boost::asio::steady_timer settle(co_await boost::asio::this_coro::executor, 100ms);
        co_await settle.async_wait(use_awaitable);
        co_return events;
    }());
    CHECK(seen == std::vector<int>{VIR_DOMAIN_EVENT_STARTED, VIR_DOMAIN_EVENT_STOPPED});
}

TEST_CASE("connection: coroutines that open one URI at the same time share one connection") {
    std::vector<std::shared_ptr<hypervisor_connection>> opened;
    for (int i = 0; i < 20; ++i)
        boost::asio::co_spawn(
            anweddol::test::test_context(),
            [&]() -> awaitable<void> {
                opened.push_back(co_await hypervisor_connection::open("test:///default"));
            },
            boost::asio::detached);
    REQUIRE(run_until([&] { return opened.size() == 20; }));
    for (const auto& connection : opened)
        CHECK(connection == opened.front());
    CHECK(opened.front()->open_count() == 1);
}

TEST_CASE("connection: a subscription assigned over another unsubscribes the old one") {
    int old_calls = 0;
    int new_calls = 0;
    run_coroutine([&]() -> awaitable<bool> {
        auto connection = co_await hypervisor_connection::open(test_uri);
        auto executor = co_await boost::asio::this_coro::executor;
        auto watching = connection->subscribe(
            executor, [&](const anweddol::domain_lifecycle_event&) { ++old_calls; });
        watching = connection->subscribe(
            executor, [&](const anweddol::domain_lifecycle_event&) { ++new_calls; });
        auto churn = connection->call([](virConnectPtr c) {
            anweddol::detail::domain_handle domain(
                virDomainCreateXML(c, domain_xml("anweddol-resubscribed").c_str(), 0));
            if (!domain || virDomainDestroy(domain.get()) < 0)
                anweddol::detail::throw_last_libvirt_error("create and destroy");
        });
        co_await std::move(churn);
        boost::asio::steady_timer settle(executor, 100ms);
        co_await settle.async_wait(use_awaitable);
        co_return true;
    }());
    CHECK(new_calls >= 2);
    CHECK(old_calls == 0);
}

TEST_CASE("connection: a close libvirt reports before the reopened connection is the current one "
          "still counts, once, and a replaced connection's close changes nothing") {
    // What reopening does: a watch per libvirt connection, armed before its
    // close callback is registered, and the connection made current after.
    anweddol::detail::connection_liveness liveness;
    CHECK_FALSE(liveness.is_open());

    // libvirt reports the close between the registration and the switch
    // (keepalive timed out at once, libvirtd restarted).
    auto first = liveness.arm();
    const bool reported_by_callback = liveness.closed(*first, VIR_CONNECT_CLOSE_REASON_EOF);
    const auto reported_when_current = liveness.opened(first);
    CHECK_FALSE(liveness.is_open()); // so the next call reopens it
    CHECK(int(reported_by_callback) + int(reported_when_current.has_value()) == 1);
    if (reported_when_current)
        CHECK(*reported_when_current == VIR_CONNECT_CLOSE_REASON_EOF);

    // Reopened; the first connection's callback firing again late is stale.
    auto second = liveness.arm();
    CHECK_FALSE(liveness.opened(second));
    CHECK(liveness.is_open());
    CHECK_FALSE(liveness.closed(*first, VIR_CONNECT_CLOSE_REASON_KEEPALIVE));
    CHECK(liveness.is_open());

    // The current connection's close: closed, reported once.
    CHECK(liveness.closed(*second, VIR_CONNECT_CLOSE_REASON_KEEPALIVE));
    CHECK_FALSE(liveness.is_open());
    CHECK_FALSE(liveness.closed(*second, VIR_CONNECT_CLOSE_REASON_KEEPALIVE));
}

TEST_CASE("connection: closes racing the switch to a reopened connection from another thread "
          "never leave it open") {
    // libvirt calls the close callback on its event loop's thread while a
    // lane reopens: whatever the interleaving, a closed current connection
    // is not open.
    for (int round = 0; round < 200; ++round) {
        anweddol::detail::connection_liveness liveness;
        auto watch = liveness.arm();
        std::atomic<int> reports{0};
        std::thread callback(
            [&] { reports += liveness.closed(*watch, VIR_CONNECT_CLOSE_REASON_EOF) ? 1 : 0; });
        reports += liveness.opened(watch) ? 1 : 0;
        callback.join();
        CHECK_FALSE(liveness.is_open());
        CHECK(reports == 1);
    }
}
