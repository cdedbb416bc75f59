// The container pool's bookkeeping on libvirt's test:///default driver,
// whose domains never get an address here (no lease is written, and libvirt
// is not asked): boots that fail and are retried with a growing delay, a
// take that gets its boot's failure, cancelled takes and a shutdown in the
// middle of boots, none of which may leave a domain behind; takes and
// shutdowns that outlive the pool object. The check a take makes before it
// hands a pooled container over runs here on a test:/// domain and the local
// sshd. Handing out real containers is the integration tests' part.
#include "libvirt_domains.hpp"
#include "local_sshd.hpp"
#include "scratch_directory.hpp"
#include "test_context.hpp"

#include <anweddol/container_pool.hpp>
#include <anweddol/endpoint_shell_instance.hpp>
#include <anweddol/error.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/post.hpp>

#include <catch2/catch.hpp>

#include <cstdlib>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

using anweddol::container_pool;
using anweddol::container_pool_event;
using anweddol::container_pool_event_type;
using anweddol::container_pool_options;
using anweddol::errc;
using anweddol::test::run_coroutine;
using anweddol::test::run_until;
using anweddol::test::scratch;
using anweddol::test::test_context;
using boost::asio::awaitable;
using namespace std::chrono_literals;

namespace {

const std::string test_uri = "test:///default";

// A pool on test:/// whose boots wait `address_timeout` for an address that
// never comes.
container_pool_options test_options(const scratch& s, std::size_t size,
                                    std::chrono::milliseconds address_timeout = 200ms) {
    container_pool_options options;
    options.size = size;
    options.iso_path = s.iso.string();
    options.container.lease_directory = s.leases;
    options.container.address_poll_interval = 0ms; // only the (empty) lease directory
    options.container.bypass_admission = true;
    options.provisioning.driver_uri = test_uri;
    options.provisioning.address_timeout = address_timeout;
    options.retry_delay = 100ms;
    options.retry_delay_max = 400ms;
    return options;
}

// Such a pool, recording its events.
struct test_pool {
    explicit test_pool(const scratch& s, std::size_t size,
                       std::chrono::milliseconds address_timeout = 200ms) {
        container_pool_options options = test_options(s, size, address_timeout);
        options.on_event = [this](const container_pool_event& e) {
            events.push_back(e);
            if (e.type == container_pool_event_type::boot_started)
                uuids.insert(e.uuid);
        };
        pool.emplace(test_context().get_executor(), std::move(options));
    }

    std::size_t count(container_pool_event_type type) const {
        std::size_t n = 0;
        for (const auto& e : events)
            n += e.type == type;
        return n;
    }

    std::vector<container_pool_event> events;
    std::set<std::string> uuids; // of every container it booted
    std::optional<container_pool> pool;
};

// The domains libvirt runs now, by UUID.
std::set<std::string> running_domains() {
    return anweddol::test::domain_uuids(test_uri);
}

// Whether none of `uuids` runs in libvirt any more (destroys run in the
// background, so this waits for them a little).
bool all_gone(const std::set<std::string>& uuids) {
    return run_until(
        [&] {
            for (const auto& name : running_domains())
                if (uuids.count(name))
                    return false;
            return true;
        },
        10s);
}

template <class Function>
boost::system::error_code construction_error(Function make) {
    try {
        make();
    } catch (const boost::system::system_error& e) {
        return e.code();
    }
    return {};
}

} // namespace

TEST_CASE("container pool: bad options are refused before anything boots") {
    scratch s;
    const auto before = running_domains();
    auto attempt = [&](auto change) {
        return construction_error([&] {
            container_pool_options options;
            options.iso_path = s.iso.string();
            change(options);
            container_pool pool(test_context().get_executor(), options);
        });
    };
    CHECK(attempt([](auto& o) { o.iso_path.clear(); }) == errc::iso_path_not_set);
    CHECK(attempt([](auto& o) { o.memory = 256; }) == errc::invalid_memory);
    CHECK(attempt([](auto& o) { o.vcpus = 0; }) == errc::invalid_vcpus);
    CHECK(attempt([](auto& o) { o.nat_interface_name = "br 0"; }) == errc::invalid_argument);
    CHECK(attempt([](auto& o) { o.retry_delay = 0s; }) == errc::invalid_argument);
    CHECK(attempt([](auto& o) { o.retry_delay_max = o.retry_delay / 2; }) ==
          errc::invalid_argument);
    CHECK(attempt([](auto& o) { o.max_idle = 0s; }) == errc::invalid_argument);
    run_until([] { return false; }, 100ms); // a pool that was made would start booting now
    CHECK(running_domains() == before);
}

TEST_CASE("container pool: failed refills are reported and retried with a growing delay, and "
          "leave no domain") {
    scratch s;
    test_pool p(s, 1);
    REQUIRE(run_until([&] { return p.count(container_pool_event_type::boot_failed) >= 4; }, 20s));
    std::vector<std::chrono::steady_clock::duration> delays;
    for (const auto& e : p.events) {
        if (e.type != container_pool_event_type::boot_failed)
            continue;
        INFO(e.message);
        CHECK(e.error == std::errc::timed_out);
        CHECK_FALSE(e.message.empty());
        delays.push_back(e.retry_in);
    }
    CHECK(delays[0] == 100ms);
    CHECK(delays[1] == 200ms);
    CHECK(delays[2] == 400ms);
    CHECK(delays[3] == 400ms); // at most retry_delay_max
    const auto stats = p.pool->get_stats();
    CHECK(stats.target == 1);
    CHECK(stats.ready == 0);
    CHECK(stats.boots_failed >= 4);
    CHECK(stats.boots_started >= stats.boots_failed);
    CHECK(stats.booting <= 1); // one at a time: the delay holds the next
    run_coroutine([&]() -> awaitable<bool> {
        co_await p.pool->shutdown();
        co_return true;
    }());
    CHECK(p.pool->get_stats().booting == 0);
    CHECK(all_gone(p.uuids));
}

TEST_CASE("container pool: a take that waits gets its boot's failure, with its diagnostics") {
    scratch s;
    test_pool p(s, 0);
    anweddol::diagnostics diag;
    std::optional<boost::system::error_code> result;
    p.pool->take(diag, [&](boost::system::error_code ec, anweddol::provisioned_container c) {
        CHECK_FALSE(c.container);
        CHECK(c.password.empty());
        result = ec;
    });
    REQUIRE(run_until([&] { return result.has_value(); }, 20s));
    CHECK(*result == std::errc::timed_out);
    CHECK_FALSE(diag.client_message().empty());
    const auto stats = p.pool->get_stats();
    CHECK(stats.boots_started == 1); // a pool of 0 boots only for takes
    CHECK(stats.boots_failed == 1);
    CHECK(stats.waiting == 0);
    CHECK(all_gone(p.uuids));
}

TEST_CASE("container pool: a take cancelled while it waits cancels its boot, which leaves no "
          "domain") {
    scratch s;
    test_pool p(s, 0, 60s);
    boost::asio::cancellation_signal cancel;
    std::optional<boost::system::error_code> result;
    p.pool->take(boost::asio::bind_cancellation_slot(
        cancel.slot(),
        [&](boost::system::error_code ec, anweddol::provisioned_container) { result = ec; }));
    // Its boot has created a domain, which waits for an address.
    REQUIRE(run_until([&] {
        for (const auto& name : running_domains())
            if (p.uuids.count(name))
                return true;
        return false;
    }));
    CHECK(p.pool->get_stats().waiting == 1);
    cancel.emit(boost::asio::cancellation_type::terminal);
    REQUIRE(run_until([&] { return result.has_value(); }));
    CHECK(*result == boost::asio::error::operation_aborted);
    CHECK(all_gone(p.uuids));
    REQUIRE(run_until([&] { return p.pool->get_stats().booting == 0; }));
    const auto stats = p.pool->get_stats();
    CHECK(stats.waiting == 0);
    CHECK(stats.boots_failed == 0); // cancelled for want of a taker: no failure
    CHECK(p.count(container_pool_event_type::boot_failed) == 0);
}

// Under software emulation a boot keeps a core busy: refills beside the
// boot a client waits for would slow that boot down. So while a take waits
// the pool boots only for the takes, and refills once none waits.
TEST_CASE("container pool: while a take waits the pool starts no refill of its own, and starts "
          "them once it is gone") {
    scratch s;
    test_pool p(s, 0, 60s);
    boost::asio::cancellation_signal cancel;
    std::optional<boost::system::error_code> result;
    p.pool->take(boost::asio::bind_cancellation_slot(
        cancel.slot(),
        [&](boost::system::error_code ec, anweddol::provisioned_container) { result = ec; }));
    REQUIRE(run_until([&] { return p.pool->get_stats().waiting == 1; }));
    CHECK(p.pool->get_stats().booting == 1);
    p.pool->resize(2); // a pool of 2 wanted: not while the take waits
    CHECK(p.pool->get_stats().booting == 1);
    CHECK(p.count(container_pool_event_type::boot_started) == 1);
    // The take goes; its boot now serves the pool, and one more refill starts.
    cancel.emit(boost::asio::cancellation_type::terminal);
    REQUIRE(run_until([&] { return result.has_value(); }));
    CHECK(*result == boost::asio::error::operation_aborted);
    CHECK(p.pool->get_stats().waiting == 0);
    CHECK(p.pool->get_stats().booting == 2);
    p.pool->resize(0);
    CHECK(all_gone(p.uuids));
}

TEST_CASE("container pool: shutdown fails waiting takes, cancels boots and leaves no domain") {
    scratch s;
    test_pool p(s, 2, 60s);
    std::optional<boost::system::error_code> waited;
    p.pool->take(
        [&](boost::system::error_code ec, anweddol::provisioned_container) { waited = ec; });
    // The two refills under way; the take waits for the first, and no
    // further boot starts while it waits.
    REQUIRE(run_until([&] { return p.pool->get_stats().waiting == 1; }));
    CHECK(p.pool->get_stats().booting == 2);
    std::optional<boost::system::error_code> shut;
    p.pool->shutdown([&](boost::system::error_code ec) { shut = ec; });
    REQUIRE(run_until([&] { return shut.has_value() && waited.has_value(); }, 20s));
    CHECK_FALSE(*shut);
    CHECK(*waited == errc::pool_closed);
    CHECK(p.pool->get_stats().booting == 0);
    CHECK(p.count(container_pool_event_type::boot_failed) == 0);
    CHECK(all_gone(p.uuids));

    std::optional<boost::system::error_code> late;
    p.pool->take([&](boost::system::error_code ec, anweddol::provisioned_container) { late = ec; });
    REQUIRE(run_until([&] { return late.has_value(); }));
    CHECK(*late == errc::pool_closed);
    p.pool->resize(3); // does nothing once shut down
    CHECK(p.pool->get_stats().booting == 0);
}

TEST_CASE("container pool: destroying it in the middle of boots leaves no domain") {
    scratch s;
    std::set<std::string> uuids;
    {
        test_pool p(s, 2, 60s);
        REQUIRE(run_until([&] { return p.uuids.size() == 2 && p.pool->get_stats().booting == 2; }));
        REQUIRE(run_until([&] { return running_domains().size() >= 2; }));
        uuids = p.uuids;
    }
    CHECK(all_gone(uuids));
}

TEST_CASE("container pool: resize starts and cancels refills") {
    scratch s;
    test_pool p(s, 1, 60s);
    REQUIRE(run_until([&] { return p.pool->get_stats().booting == 1; }));
    p.pool->resize(3);
    CHECK(p.pool->get_stats().booting == 3);
    CHECK(p.pool->get_stats().target == 3);
    p.pool->resize(0);
    CHECK(p.pool->get_stats().booting == 0);
    CHECK(all_gone(p.uuids));
    CHECK(p.count(container_pool_event_type::boot_failed) == 0);
}

// The pool object may be gone by the time a take or shutdown first runs: a
// callback's coroutine starts at the next turn of the io_context, a
// deferred one when it is launched. Under ASan, reading the destroyed pool
// there is a heap-use-after-free.
TEST_CASE("container pool: a take or shutdown that first runs after the pool was destroyed "
          "completes with pool_closed") {
    scratch s;
    auto pool =
        std::make_unique<container_pool>(test_context().get_executor(), test_options(s, 1, 60s));
    std::optional<boost::system::error_code> posted_take, posted_shutdown, deferred_take;
    pool->take([&](boost::system::error_code ec, anweddol::provisioned_container c) {
        CHECK_FALSE(c.container);
        posted_take = ec;
    });
    pool->shutdown([&](boost::system::error_code ec) { posted_shutdown = ec; });
    auto take_later = pool->take(boost::asio::deferred);
    pool.reset(); // before the io_context ran any of them
    std::move(take_later)(
        [&](boost::system::error_code ec, anweddol::provisioned_container) { deferred_take = ec; });
    REQUIRE(run_until([&] { return posted_take && posted_shutdown && deferred_take; }));
    CHECK(*posted_take == errc::pool_closed);
    CHECK(*posted_shutdown == errc::pool_closed);
    CHECK(*deferred_take == errc::pool_closed);
}

namespace {

// A booted container as the pool keeps one: a test:/// domain, and an
// endpoint logged in to the local sshd.
anweddol::detail::booted_container booted_on_test_driver(const scratch& s,
                                                         const anweddol::test::local_sshd& sshd) {
    auto container = std::make_shared<anweddol::container_instance>(test_context().get_executor(),
                                                                    s.iso.string(), "", 512, 1);
    auto options = container->get_options();
    options.lease_directory = s.leases;
    options.bypass_admission = true;
    container->set_options(options);
    anweddol::detail::booted_container booted;
    booted.partial.container = container;
    booted.partial.ip = "127.0.0.1";
    booted.shell.attempt_timeout = 2s;
    booted.endpoint = std::make_shared<anweddol::endpoint_shell_instance>(
        test_context().get_executor(), "127.0.0.1", sshd.user(), sshd.password(), sshd.port());
    booted.endpoint->set_options(booted.shell);
    run_coroutine([&]() -> awaitable<bool> {
        co_await container->start_domain(false, 20, test_uri);
        co_await booted.endpoint->open_shell();
        co_return true;
    }());
    return booted;
}

anweddol::detail::pooled_fault check(const anweddol::detail::booted_container& booted) {
    anweddol::provisioning_options options;
    options.driver_uri = test_uri;
    return run_coroutine(anweddol::detail::check_pooled_container(booted, options), 20s);
}

} // namespace

TEST_CASE("container pool: the check before a hand-over passes a running container and refuses "
          "a paused or gone domain and an endpoint that cannot log in") {
    ANWEDDOL_REQUIRE_LOCAL_SSHD(sshd);
    scratch s;
    auto booted = booted_on_test_driver(s, *sshd);
    const auto& container = *booted.partial.container;
    {
        const auto fault = check(booted);
        INFO(fault.message);
        CHECK_FALSE(fault);
    }

    // Lost sessions are logged in again, as the hand-over would.
    run_coroutine([&]() -> awaitable<bool> {
        co_await booted.endpoint->close_shell();
        co_return true;
    }());
    CHECK_FALSE(check(booted));
    CHECK_FALSE(booted.endpoint->is_closed());

    // Paused (as virsh suspend does): refused at once, the endpoint untried.
    REQUIRE(virDomainSuspend(container.get_domain_descriptor()) == 0);
    {
        const auto fault = check(booted);
        CHECK(fault.error == errc::domain_paused);
        CHECK_THAT(fault.message, Catch::Contains("paused by a client of libvirt"));
        CHECK_THAT(fault.message, Catch::Contains(container.get_uuid()));
    }
    REQUIRE(virDomainResume(container.get_domain_descriptor()) == 0);
    CHECK_FALSE(check(booted));

    // An endpoint whose session was lost and that cannot log in again.
    booted.endpoint->set_endpoint_credentials(sshd->user(), "not the password", sshd->port());
    run_coroutine([&]() -> awaitable<bool> {
        co_await booted.endpoint->close_shell();
        co_return true;
    }());
    {
        const auto fault = check(booted);
        CHECK(fault.error == errc::authentication_failed);
        CHECK_THAT(fault.message, Catch::Contains("does not answer"));
    }

    // Gone behind the container's back.
    REQUIRE(virDomainDestroy(container.get_domain_descriptor()) == 0);
    CHECK(check(booted).error == errc::domain_not_running);
}

// A take of a container handed over ahead only closes the client's
// session; cancelled meanwhile, it must still destroy the container, as
// any take cancelled in its hand-over does, and never return it.
TEST_CASE("container pool: a take cancelled while it closes the session of a container handed "
          "over ahead destroys that container") {
    ANWEDDOL_REQUIRE_LOCAL_SSHD(sshd);
    scratch s;
    auto booted = booted_on_test_driver(s, *sshd);
    auto container = booted.partial.container;
    booted.handed_over_ahead = true;
    booted.partial.username = sshd->user();
    booted.partial.password = "the client's password";
    anweddol::provisioning_options options;
    options.driver_uri = test_uri;
    boost::asio::cancellation_signal cancel;
    std::optional<std::exception_ptr> outcome;
    std::optional<anweddol::provisioned_container> handed;
    boost::asio::co_spawn(
        test_context().get_executor(),
        [&]() -> awaitable<void> {
            auto handing_over = anweddol::detail::hand_over(std::move(booted), options);
            handed = co_await std::move(handing_over);
        },
        boost::asio::bind_cancellation_slot(cancel.slot(),
                                            [&](std::exception_ptr e) { outcome = e; }));
    // Runs once the coroutine waits for the session to close.
    boost::asio::post(test_context().get_executor(),
                      [&] { cancel.emit(boost::asio::cancellation_type::terminal); });
    REQUIRE(run_until([&] { return outcome.has_value(); }, 20s));
    CHECK_FALSE(handed);
    REQUIRE(*outcome);
    try {
        std::rethrow_exception(*outcome);
    } catch (const boost::system::system_error& e) {
        CHECK(e.code() == boost::asio::error::operation_aborted);
    }
    CHECK_FALSE(container->is_domain_running());
    CHECK(all_gone({container->get_uuid()}));
}

// A new user's sequence, as far as test:/// goes (its domains never get an
// address, so takes wait for boots instead of being handed containers):
// containers of the user's own share the pool's libvirt connection, a burst
// of takes waits, shutdown() fails them and cancels their boots, then each
// of the user's containers is stopped. The pool must neither close nor
// reopen the connection they share, and every stop must work, every time.
TEST_CASE("container pool: its shutdown leaves the libvirt connection that other containers "
          "share alone, 200 times over") {
    scratch s;
    auto connection = run_coroutine(anweddol::hypervisor_connection::open(test_uri));
    const unsigned opens = connection->open_count();
    std::size_t closes = 0;
    auto watching_closes =
        connection->on_close(test_context().get_executor(), [&](int) { ++closes; });
    std::set<std::string> uuids;
    for (int round = 0; round < 200; ++round) {
        INFO("round " << round);
        std::vector<std::shared_ptr<anweddol::container_instance>> own;
        for (int i = 0; i < 5; ++i) {
            auto container = std::make_shared<anweddol::container_instance>(
                test_context().get_executor(), s.iso.string(), "", 512, 1);
            auto options = container->get_options();
            options.bypass_admission = true;
            container->set_options(options);
            own.push_back(container);
        }
        test_pool p(s, 1, 60s);
        std::size_t failed_takes = 0;
        for (int i = 0; i < 5; ++i)
            p.pool->take([&](boost::system::error_code ec, anweddol::provisioned_container) {
                CHECK(ec == errc::pool_closed);
                ++failed_takes;
            });
        run_coroutine([&]() -> awaitable<bool> {
            for (auto& container : own)
                co_await container->start_domain(false, 20, test_uri);
            co_return true;
        }());
        // One boot per waiting take (the pool's refill serves the first).
        REQUIRE(run_until([&] { return p.pool->get_stats().booting == 5; }));
        run_coroutine([&]() -> awaitable<bool> {
            co_await p.pool->shutdown();
            for (auto& container : own)
                co_await container->stop_domain();
            co_return true;
        }());
        CHECK(failed_takes == 5);
        for (const auto& container : own) {
            CHECK_FALSE(container->is_domain_running());
            uuids.insert(container->get_uuid());
        }
        uuids.insert(p.uuids.begin(), p.uuids.end());
        REQUIRE(closes == 0);
        REQUIRE(connection->open_count() == opens);
    }
    CHECK(all_gone(uuids));
}
