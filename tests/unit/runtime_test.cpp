// The per-io_context runtime on libvirt's test:///default driver: io_contexts
// one after another and at the same time, run() returning by itself, every
// kind of completion token, diagnostics beside error codes, event routing by
// UUID, boot admission places that survive a destroyed io_context, and the
// per-call start and stop options.
#include "scratch_directory.hpp"
#include "test_context.hpp"

#include <anweddol/boot_admission.hpp>
#include <anweddol/container_instance.hpp>
#include <anweddol/detail/diagnostics.hpp>
#include <anweddol/hypervisor_connection.hpp>
#include <anweddol/runtime.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>

#include <catch2/catch.hpp>

#include <libvirt/libvirt.h>

#include <array>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

using anweddol::container_instance;
using anweddol::container_phase;
using anweddol::container_progress;
using anweddol::diagnostics;
using anweddol::domain_lifecycle_event;
using anweddol::errc;
using anweddol::hypervisor_connection;
using anweddol::start_options;
using anweddol::stop_mode;
using anweddol::stop_options;
using anweddol::test::run_coroutine;
using anweddol::test::run_until;
using anweddol::test::scratch;
using anweddol::test::test_context;
using boost::asio::awaitable;
using boost::system::error_code;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

const std::string test_uri = "test:///default";

// A small container for test:///, outside any boot admission. Without
// `ask_libvirt`, nothing ever gives it an address (the status file is in
// the empty scratch lease directory).
std::shared_ptr<container_instance> make_container(boost::asio::any_io_executor executor,
                                                   const scratch& s, bool ask_libvirt = true) {
    auto container =
        std::make_shared<container_instance>(std::move(executor), s.iso.string(), "", 512, 1);
    auto options = container->get_options();
    options.lease_directory = s.leases;
    options.bypass_admission = true;
    if (!ask_libvirt)
        options.address_poll_interval = 0ms;
    container->set_options(options);
    return container;
}

start_options no_address_wait() {
    start_options opts;
    opts.wait_available = false;
    opts.driver_uri = test_uri;
    return opts;
}

// The UUIDs of the domains the test driver runs now, asked through the test
// context with a connection of its own that does not subscribe to events
// (so that no event timer of the shared test driver lands on that loop).
std::set<std::string> active_domain_uuids() {
    return run_coroutine([]() -> awaitable<std::set<std::string>> {
        hypervisor_connection::options calls_only;
        calls_only.lifecycle_events = false;
        auto connection = co_await hypervisor_connection::open(test_uri, calls_only);
        co_return co_await connection->call([](virConnectPtr c) {
            virDomainPtr* domains = nullptr;
            const int count =
                virConnectListAllDomains(c, &domains, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
            std::set<std::string> uuids;
            for (int i = 0; i < count; ++i) {
                char uuid[VIR_UUID_STRING_BUFLEN] = {};
                virDomainGetUUIDString(domains[i], uuid);
                uuids.insert(uuid);
                virDomainFree(domains[i]);
            }
            std::free(domains);
            return uuids;
        });
    }());
}

bool domain_exists(const std::string& uuid) {
    return active_domain_uuids().contains(uuid);
}

// Runs `context.run()` on a thread of its own; true when it returned by
// itself within `limit`. Otherwise stops it (so that the test fails instead
// of hanging) and returns false.
bool run_returns_by_itself(boost::asio::io_context& context, std::chrono::seconds limit = 30s) {
    std::promise<void> returned;
    auto done = returned.get_future();
    std::thread runner([&] {
        context.run();
        returned.set_value();
    });
    const bool by_itself = done.wait_for(limit) == std::future_status::ready;
    if (!by_itself)
        context.stop();
    runner.join();
    return by_itself;
}

// What happened on one io_context, written only from its own thread.
struct context_record {
    std::vector<std::string> uuids;
    std::map<std::string, std::vector<int>> events;
    std::vector<std::string> errors;
    int finished = 0;
    std::size_t connections_after = 99;
};

// On the coroutine's io_context: starts a container without waiting for an
// address, records the lifecycle events of its UUID, stops it, and waits
// for the STOPPED event. Everything it holds is gone when it ends.
awaitable<void> start_watch_stop(const scratch& s, context_record& record) {
    using namespace boost::asio::experimental::awaitable_operators;
    auto executor = co_await boost::asio::this_coro::executor;
    auto container = make_container(executor, s);
    const std::string uuid = container->get_uuid();
    record.uuids.push_back(uuid);
    try {
        auto connection = co_await hypervisor_connection::open(test_uri);
        auto watching =
            connection->subscribe(uuid, executor, [&record, uuid](const domain_lifecycle_event& e) {
                if (e.uuid != uuid)
                    record.errors.push_back(uuid + " got an event of " + e.uuid);
                record.events[uuid].push_back(e.event);
            });
        co_await container->start_domain(false, 20, test_uri);
        if (!container->is_domain_running())
            record.errors.push_back(uuid + " is not running after its start");
        auto stopped = connection->wait_for_event(uuid, VIR_DOMAIN_EVENT_STOPPED, 10s);
        auto stopping = container->stop_domain();
        const auto event = co_await (std::move(stopped) && std::move(stopping));
        if (event.uuid != uuid)
            record.errors.push_back(uuid + " waited for the STOPPED of " + event.uuid);
        if (container->is_domain_running())
            record.errors.push_back(uuid + " still runs after its stop");
        ++record.finished;
    } catch (const std::exception& e) {
        record.errors.push_back(uuid + ": " + e.what());
    }
}

void check_record(const context_record& record, int containers) {
    INFO("errors: " << ::Catch::Detail::stringify(record.errors));
    CHECK(record.errors.empty());
    CHECK(record.finished == containers);
    REQUIRE(record.uuids.size() == static_cast<std::size_t>(containers));
    for (const auto& uuid : record.uuids) {
        INFO("container " << uuid);
        REQUIRE(record.events.contains(uuid));
        const auto& events = record.events.at(uuid);
        REQUIRE(events.size() >= 2);
        CHECK(events.front() == VIR_DOMAIN_EVENT_STARTED);
        CHECK(events.back() == VIR_DOMAIN_EVENT_STOPPED);
    }
    CHECK(record.connections_after == 0);
}

// Boots `containers` containers at once on a fresh io_context; run() must
// return by itself.
context_record boot_on_fresh_context(const scratch& s, int containers, bool& returned) {
    context_record record;
    boost::asio::io_context context;
    for (int i = 0; i < containers; ++i)
        boost::asio::co_spawn(context, start_watch_stop(s, record), boost::asio::detached);
    returned = run_returns_by_itself(context);
    record.connections_after = anweddol::runtime::of(context.get_executor()).connection_count();
    return record;
}

template <class Predicate>
void require_eventually(Predicate done, std::chrono::milliseconds limit = 10s) {
    REQUIRE(run_until(std::move(done), limit));
}

} // namespace

TEST_CASE("runtime: io_contexts one after another each boot, see events, and run() returns by "
          "itself") {
    scratch s;
    for (const char* name : {"A", "B"}) {
        INFO("io_context " << name);
        bool returned = false;
        const auto record = boot_on_fresh_context(s, 1, returned);
        CHECK(returned);
        check_record(record, 1);
        // The io_context is gone here: the next one starts from nothing.
    }
}

// libvirt's test driver keeps one state per process, with one event timer,
// registered on the loop of whichever io_context subscribed first: the
// timer must follow the loop that re-arms it, or once that io_context's
// run() returned, the other one's events would wait behind a timer that
// nothing runs.
TEST_CASE("runtime: two io_contexts at once on two threads boot, see their events, and both "
          "run() return") {
    scratch s;
    // Keeps the test driver's shared state (and so its domains) alive for the
    // final check, without subscribing to events on the test context.
    hypervisor_connection::options calls_only;
    calls_only.lifecycle_events = false;
    auto keeper = run_coroutine(hypervisor_connection::open(test_uri, calls_only));
    const auto before = active_domain_uuids();

    // Several rounds: the races this guards against (an event reported on
    // the other io_context's thread overtaking an earlier one, the test
    // driver's timer freed while the loop it left still fires it, a
    // connection kept alive by the other thread) show up one round in many.
    for (int round = 1; round <= 8; ++round) {
        INFO("round " << round);
        context_record a;
        context_record b;
        bool a_returned = false;
        bool b_returned = false;
        std::thread first([&] { a = boot_on_fresh_context(s, 3, a_returned); });
        std::thread second([&] { b = boot_on_fresh_context(s, 3, b_returned); });
        first.join();
        second.join();

        CHECK(a_returned);
        CHECK(b_returned);
        check_record(a, 3);
        check_record(b, 3);
        const auto after = active_domain_uuids();
        CHECK(after == before);
        for (const auto& record : {a, b})
            for (const auto& uuid : record.uuids)
                CHECK_FALSE(after.contains(uuid));
    }
}

TEST_CASE("runtime: container operations complete through callbacks, futures, as_tuple, deferred "
          "parallel groups, and cancellation slots") {
    scratch s;
    auto executor = test_context().get_executor();

    SECTION("a plain callback gets the error_code, for start and stop") {
        auto container = make_container(executor, s);
        std::optional<error_code> started;
        container->start_domain(false, 20, test_uri, [&](error_code ec) { started = ec; });
        require_eventually([&] { return started.has_value(); });
        CHECK_FALSE(*started);
        CHECK(container->is_domain_running());
        CHECK(domain_exists(container->get_uuid()));

        std::optional<error_code> again;
        container->start_domain(no_address_wait(), [&](error_code ec) { again = ec; });
        require_eventually([&] { return again.has_value(); });
        CHECK(*again == errc::domain_already_running);

        std::optional<error_code> stopped;
        container->stop_domain([&](error_code ec) { stopped = ec; });
        require_eventually([&] { return stopped.has_value(); });
        CHECK_FALSE(*stopped);
        CHECK_FALSE(container->is_domain_running());
        CHECK_FALSE(domain_exists(container->get_uuid()));
    }

    SECTION("use_future gives a future that is ready once the loop ran the operation") {
        auto container = make_container(executor, s);
        auto started = container->start_domain(no_address_wait(), boost::asio::use_future);
        require_eventually([&] { return started.wait_for(0s) == std::future_status::ready; });
        CHECK_NOTHROW(started.get());
        CHECK(domain_exists(container->get_uuid()));

        auto checksum = container->make_iso_file_checksum(boost::asio::use_future);
        require_eventually([&] { return checksum.wait_for(0s) == std::future_status::ready; });
        CHECK(checksum.get() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

        auto stopped = container->stop_domain(true, boost::asio::use_future);
        require_eventually([&] { return stopped.wait_for(0s) == std::future_status::ready; });
        CHECK_NOTHROW(stopped.get());
        // An error arrives as the future's exception.
        auto again = container->stop_domain(true, boost::asio::use_future);
        require_eventually([&] { return again.wait_for(0s) == std::future_status::ready; });
        try {
            again.get();
            FAIL("stopping a stopped container succeeded");
        } catch (const boost::system::system_error& e) {
            CHECK(e.code() == errc::domain_not_running);
        }
    }

    SECTION("as_tuple(use_awaitable) returns errors instead of throwing") {
        auto container = make_container(executor, s);
        const auto codes = run_coroutine([&]() -> awaitable<std::vector<error_code>> {
            using boost::asio::as_tuple;
            using boost::asio::use_awaitable;
            std::vector<error_code> codes;
            auto [started] =
                co_await container->start_domain(no_address_wait(), as_tuple(use_awaitable));
            codes.push_back(started);
            auto [twice] =
                co_await container->start_domain(no_address_wait(), as_tuple(use_awaitable));
            codes.push_back(twice);
            auto [hashed, sum] =
                co_await container->make_iso_file_checksum(as_tuple(use_awaitable));
            codes.push_back(hashed);
            CHECK(sum.size() == 64);
            auto [stopped] = co_await container->stop_domain(true, as_tuple(use_awaitable));
            codes.push_back(stopped);
            auto [not_running] = co_await container->stop_domain(true, as_tuple(use_awaitable));
            codes.push_back(not_running);
            co_return codes;
        }());
        REQUIRE(codes.size() == 5);
        CHECK_FALSE(codes[0]);
        CHECK(codes[1] == errc::domain_already_running);
        CHECK_FALSE(codes[2]);
        CHECK_FALSE(codes[3]);
        CHECK(codes[4] == errc::domain_not_running);
        CHECK_FALSE(domain_exists(container->get_uuid()));
    }

    SECTION("deferred operations start two containers at once in a parallel group") {
        using boost::asio::experimental::make_parallel_group;
        using boost::asio::experimental::wait_for_all;
        auto first = make_container(executor, s);
        auto second = make_container(executor, s);
        std::optional<std::array<error_code, 2>> started;
        make_parallel_group(first->start_domain(no_address_wait(), boost::asio::deferred),
                            second->start_domain(no_address_wait(), boost::asio::deferred))
            .async_wait(wait_for_all(),
                        [&](std::array<std::size_t, 2>, error_code a, error_code b) {
                            started = {a, b};
                        });
        require_eventually([&] { return started.has_value(); });
        CHECK_FALSE((*started)[0]);
        CHECK_FALSE((*started)[1]);
        const auto running = active_domain_uuids();
        CHECK(running.contains(first->get_uuid()));
        CHECK(running.contains(second->get_uuid()));

        std::optional<std::array<error_code, 2>> stopped;
        make_parallel_group(first->stop_domain(true, boost::asio::deferred),
                            second->stop_domain(true, boost::asio::deferred))
            .async_wait(wait_for_all(),
                        [&](std::array<std::size_t, 2>, error_code a, error_code b) {
                            stopped = {a, b};
                        });
        require_eventually([&] { return stopped.has_value(); });
        CHECK_FALSE((*stopped)[0]);
        CHECK_FALSE((*stopped)[1]);
        const auto after = active_domain_uuids();
        CHECK_FALSE(after.contains(first->get_uuid()));
        CHECK_FALSE(after.contains(second->get_uuid()));
    }

    SECTION("a bound cancellation slot aborts a start waiting for an address, leaving no "
            "domain") {
        auto container = make_container(executor, s, false);
        start_options forever;
        forever.driver_uri = test_uri;
        forever.address_timeout.reset();
        boost::asio::cancellation_signal cancel;
        std::optional<error_code> result;
        container->start_domain(forever, boost::asio::bind_cancellation_slot(
                                             cancel.slot(), [&](error_code ec) { result = ec; }));
        require_eventually([&] { return container->is_domain_running(); });
        REQUIRE(domain_exists(container->get_uuid()));
        run_until([] { return false; }, 20ms);
        CHECK_FALSE(result.has_value()); // still waiting for the address
        cancel.emit(boost::asio::cancellation_type::terminal);
        require_eventually([&] { return result.has_value(); });
        CHECK(*result == boost::asio::error::operation_aborted);
        CHECK_FALSE(container->is_domain_running());
        CHECK_FALSE(domain_exists(container->get_uuid()));
    }

    SECTION("make_iso_file_checksum hands the hex SHA-256 to a callback") {
        auto container = make_container(executor, s);
        std::optional<std::pair<error_code, std::string>> result;
        container->make_iso_file_checksum(
            [&](error_code ec, std::string sum) { result.emplace(ec, std::move(sum)); });
        require_eventually([&] { return result.has_value(); });
        CHECK_FALSE(result->first);
        CHECK(result->second == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

        container->set_iso_file_path("");
        result.reset();
        container->make_iso_file_checksum(
            [&](error_code ec, std::string sum) { result.emplace(ec, std::move(sum)); });
        require_eventually([&] { return result.has_value(); });
        CHECK(result->first == errc::iso_path_not_set);
        CHECK(result->second.empty());
    }
}

TEST_CASE("runtime: libvirt's failures arrive as libvirt codes with libvirt's message in the "
          "diagnostics, thrown or not") {
    scratch s;
    auto executor = test_context().get_executor();

    SECTION("opening a connection to a driver that does not exist") {
        std::optional<error_code> failed;
        bool got_connection = true;
        hypervisor_connection::async_open(
            executor, "nosuchdriver:///system", {},
            [&](error_code ec, std::shared_ptr<hypervisor_connection> connection) {
                failed = ec;
                got_connection = connection != nullptr;
            });
        require_eventually([&] { return failed.has_value(); });
        CHECK(failed->category() == anweddol::libvirt_category());
        CHECK(*failed != error_code());
        CHECK_FALSE(got_connection);

        // In coroutine mode: the same code, thrown with libvirt's message.
        const auto thrown = run_coroutine([&]() -> awaitable<std::optional<diagnostics>> {
            try {
                co_await hypervisor_connection::async_open(executor, "nosuchdriver:///system", {});
            } catch (const anweddol::error_with_diagnostics& e) {
                CHECK(e.code() == *failed);
                co_return e.get_diagnostics();
            }
            co_return std::nullopt;
        }());
        REQUIRE(thrown.has_value());
        CHECK_FALSE(thrown->server_message().empty());
        CHECK(thrown->client_message().find("nosuchdriver:///system") != std::string::npos);
    }

    SECTION("a start on a bad URI fills the diagnostics, and coroutine mode throws the same") {
        auto container = make_container(executor, s);
        start_options bad = no_address_wait();
        bad.driver_uri = "nosuchdriver:///system";
        diagnostics diag("stale", "stale");
        std::optional<error_code> failed;
        container->start_domain(bad, diag, [&](error_code ec) { failed = ec; });
        require_eventually([&] { return failed.has_value(); });
        CHECK(failed->category() == anweddol::libvirt_category());
        CHECK_FALSE(diag.server_message().empty());
        CHECK(diag.server_message() != "stale");
        // anweddol's own account of what it was doing.
        CHECK(diag.client_message().find("cannot connect to nosuchdriver:///system") !=
              std::string::npos);
        CHECK_FALSE(container->is_domain_running());

        const auto thrown =
            run_coroutine([&]() -> awaitable<std::optional<std::pair<error_code, diagnostics>>> {
                try {
                    co_await container->start_domain(bad);
                } catch (const anweddol::error_with_diagnostics& e) {
                    co_return std::pair{e.code(), e.get_diagnostics()};
                }
                co_return std::nullopt;
            }());
        REQUIRE(thrown.has_value());
        CHECK(thrown->first == *failed);
        CHECK(thrown->second == diag);

        // A success clears what an earlier failure left.
        std::optional<error_code> started;
        container->start_domain(no_address_wait(), diag, [&](error_code ec) { started = ec; });
        require_eventually([&] { return started.has_value(); });
        CHECK_FALSE(*started);
        CHECK(diag == diagnostics());
        std::optional<error_code> stopped;
        container->stop_domain(stop_options{}, diag, [&](error_code ec) { stopped = ec; });
        require_eventually([&] { return stopped.has_value(); });
        CHECK_FALSE(*stopped);
    }

    SECTION("no address in time is ip_wait_timeout, equal to std::errc::timed_out") {
        auto container = make_container(executor, s, false);
        start_options brief;
        brief.driver_uri = test_uri;
        brief.address_timeout = 300ms;
        diagnostics diag;
        std::optional<error_code> failed;
        container->start_domain(brief, diag, [&](error_code ec) { failed = ec; });
        require_eventually([&] { return failed.has_value(); });
        CHECK(*failed == errc::ip_wait_timeout);
        CHECK(*failed == std::errc::timed_out);
        CHECK_FALSE(diag.client_message().empty());
        CHECK_FALSE(container->is_domain_running());
        CHECK_FALSE(domain_exists(container->get_uuid()));
    }
}

TEST_CASE("runtime: events reach only their own domain's subscribers, and dropped subscriptions "
          "are never called") {
    scratch s;
    auto executor = test_context().get_executor();
    auto connection = run_coroutine(hypervisor_connection::open(test_uri));
    auto a = make_container(executor, s);
    auto b = make_container(executor, s);
    const std::size_t base = connection->subscriber_count();

    std::vector<domain_lifecycle_event> seen_by_a;
    std::vector<domain_lifecycle_event> seen_by_b;
    std::vector<domain_lifecycle_event> seen_by_late;
    std::vector<domain_lifecycle_event> seen_by_dropped;

    // A second io_context that does not run until we say so: events posted to
    // it wait there.
    boost::asio::io_context elsewhere;
    auto watch_a = connection->subscribe(a->get_uuid(), executor,
                                         [&](const auto& e) { seen_by_a.push_back(e); });
    auto watch_b = connection->subscribe(b->get_uuid(), executor,
                                         [&](const auto& e) { seen_by_b.push_back(e); });
    auto late = connection->subscribe(a->get_uuid(), elsewhere.get_executor(),
                                      [&](const auto& e) { seen_by_late.push_back(e); });
    auto dropped = connection->subscribe(a->get_uuid(), elsewhere.get_executor(),
                                         [&](const auto& e) { seen_by_dropped.push_back(e); });
    CHECK(connection->subscriber_count() == base + 4);

    run_coroutine([&]() -> awaitable<bool> {
        co_await a->start_domain(no_address_wait());
        co_await b->start_domain(no_address_wait());
        co_await a->stop_domain();
        co_await b->stop_domain();
        co_return true;
    }());
    require_eventually([&] {
        return !seen_by_a.empty() && seen_by_a.back().event == VIR_DOMAIN_EVENT_STOPPED &&
               !seen_by_b.empty() && seen_by_b.back().event == VIR_DOMAIN_EVENT_STOPPED;
    });
    for (const auto& e : seen_by_a)
        CHECK(e.uuid == a->get_uuid());
    for (const auto& e : seen_by_b)
        CHECK(e.uuid == b->get_uuid());
    CHECK(seen_by_a.front().event == VIR_DOMAIN_EVENT_STARTED);
    CHECK(seen_by_b.front().event == VIR_DOMAIN_EVENT_STARTED);

    // A's events are queued on `elsewhere` for both of its subscribers there;
    // one subscription goes before they are delivered.
    dropped.reset();
    CHECK(connection->subscriber_count() == base + 3);
    const std::size_t delivered = elsewhere.poll();
    CHECK(delivered >= 2 * seen_by_a.size());
    CHECK(seen_by_late.size() == seen_by_a.size());
    CHECK(seen_by_dropped.empty());

    {
        auto moved = std::move(watch_a);
        CHECK(connection->subscriber_count() == base + 3); // moving does not unsubscribe
    }
    CHECK(connection->subscriber_count() == base + 2);
    watch_b.reset();
    late = {};
    CHECK(connection->subscriber_count() == base);
}

TEST_CASE("runtime: a boot admission place granted to a completion that never runs comes back") {
    anweddol::boot_admission admission; // outlives the io_contexts below
    admission.set_limit(1);

    SECTION("granted, then its io_context is destroyed unrun") {
        std::optional<anweddol::boot_admission::ticket> first;
        bool second_ran = false;
        {
            boost::asio::io_context context;
            admission.async_admit(
                "qemu",
                boost::asio::bind_executor(context.get_executor(), [&](error_code ec, auto ticket) {
                    CHECK_FALSE(ec);
                    first = std::move(ticket);
                }));
            context.poll();
            REQUIRE(first.has_value());
            REQUIRE(static_cast<bool>(*first));
            CHECK(admission.booting() == 1);

            admission.async_admit(
                "qemu", boost::asio::bind_executor(context.get_executor(),
                                                   [&](error_code, auto) { second_ran = true; }));
            CHECK(admission.waiting() == 1);
            first->reset(); // the place goes to the second, in a posted completion
            CHECK(admission.waiting() == 0);
            CHECK(admission.booting() == 1);
        }
        CHECK_FALSE(second_ran);
        CHECK(admission.booting() == 0);
        CHECK(admission.waiting() == 0);
    }

    SECTION("cancelled while queued, or cancelled after the grant, and never run") {
        for (bool cancel_after_grant : {false, true}) {
            INFO("cancelled " << (cancel_after_grant ? "after" : "before") << " the grant");
            anweddol::boot_admission::ticket first;
            bool second_ran = false;
            boost::asio::cancellation_signal cancel;
            {
                boost::asio::io_context context;
                admission.async_admit("qemu",
                                      boost::asio::bind_executor(context.get_executor(),
                                                                 [&](error_code, auto ticket) {
                                                                     first = std::move(ticket);
                                                                 }));
                context.poll();
                REQUIRE(static_cast<bool>(first));
                admission.async_admit(
                    "qemu", boost::asio::bind_executor(
                                context.get_executor(),
                                boost::asio::bind_cancellation_slot(
                                    cancel.slot(), [&](error_code, auto) { second_ran = true; })));
                CHECK(admission.waiting() == 1);
                if (cancel_after_grant) {
                    first.reset();
                    CHECK(admission.booting() == 1);
                    cancel.emit(boost::asio::cancellation_type::terminal);
                    CHECK(admission.booting() == 1); // the grant is on its way
                } else {
                    cancel.emit(boost::asio::cancellation_type::terminal);
                    CHECK(admission.waiting() == 0);
                    CHECK(admission.booting() == 1); // the first still holds it
                    first.reset();
                }
            }
            CHECK_FALSE(second_ran);
            CHECK(admission.booting() == 0);
            CHECK(admission.waiting() == 0);
        }
    }
}

TEST_CASE("runtime: start_options' progress hook replaces the container's for that call, and a "
          "graceful stop_options works") {
    scratch s;
    anweddol::boot_admission admission;
    auto container = make_container(test_context().get_executor(), s);
    std::vector<container_progress> container_saw;
    auto options = container->get_options();
    options.bypass_admission = false; // so that the admission phase is reported too
    options.admission = &admission;
    options.on_progress = [&](const container_progress& p) {
        container_saw.push_back(p);
    };
    container->set_options(options);

    std::vector<container_progress> call_saw;
    start_options opts;
    opts.driver_uri = test_uri; // waits for the address, which test:/// makes up
    opts.on_progress = [&](const container_progress& p) {
        call_saw.push_back(p);
    };

    run_coroutine([&]() -> awaitable<bool> {
        co_await container->start_domain(opts);
        co_return true;
    }());
    CHECK(container->get_ip().has_value());
    CHECK(container_saw.empty());
    std::vector<container_phase> phases;
    for (const auto& p : call_saw) {
        phases.push_back(p.phase);
        CHECK(p.uuid == container->get_uuid());
    }
    CHECK(phases == std::vector<container_phase>{
                        container_phase::waiting_for_boot_slot, container_phase::creating_domain,
                        container_phase::waiting_for_address, container_phase::address_known});
    for (std::size_t i = 1; i < call_saw.size(); ++i)
        CHECK(call_saw[i - 1].at <= call_saw[i].at);

    run_coroutine(
        [&]() -> awaitable<bool> {
            co_await container->stop_domain(stop_options{stop_mode::graceful, 1s});
            co_return true;
        }(),
        10s);
    CHECK_FALSE(container->is_domain_running());
    CHECK_FALSE(domain_exists(container->get_uuid()));

    // Without a hook of its own, the call reports to the container's.
    call_saw.clear();
    run_coroutine([&]() -> awaitable<bool> {
        co_await container->start_domain(no_address_wait());
        co_await container->stop_domain(stop_options{stop_mode::graceful, 1s});
        co_return true;
    }());
    CHECK(call_saw.empty());
    CHECK(container_saw.size() == 2); // waiting for a place, creating the domain
    CHECK_FALSE(domain_exists(container->get_uuid()));
    CHECK(admission.booting() == 0);
}
