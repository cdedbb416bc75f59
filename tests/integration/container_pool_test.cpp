// A warm container pool against the sandbox's libvirtd, QEMU and the test
// ISO's sshd: containers handed out from the pool work, the pool refills,
// notices a container that died while it waited, recycles idle ones, never
// hands over a paused one, and a take cancelled in its hand-over, shutdown()
// and the destructor leave no domain behind; containers taken in a burst
// can all be stopped after the pool's shutdown.
#include "../unit/libvirt_domains.hpp"
#include "../unit/test_context.hpp"
#include "sandbox_settings.hpp"

#include <anweddol/container_pool.hpp>
#include <anweddol/detail/libvirt/call.hpp>
#include <anweddol/detail/libvirt/handle.hpp>
#include <anweddol/endpoint_shell_instance.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <unistd.h>

using anweddol::container_pool;
using anweddol::container_pool_event;
using anweddol::container_pool_event_type;
using anweddol::provisioned_container;
using anweddol::test::run_coroutine;
using anweddol::test::run_until;
using anweddol::test::test_context;
using boost::asio::awaitable;
using namespace std::chrono_literals;

namespace {

const std::string system_uri = "qemu:///system";

// The domains libvirt runs now, by UUID.
std::set<std::string> running_domains() {
    return anweddol::test::domain_uuids(system_uri);
}

bool none_runs(const std::set<std::string>& uuids, std::chrono::milliseconds within = 20s) {
    return run_until(
        [&] {
            for (const auto& uuid : running_domains())
                if (uuids.count(uuid))
                    return false;
            return true;
        },
        within);
}

// Does `act` to a domain behind the pool's back.
template <class Act>
bool act_from_outside(const std::string& uuid, Act act) {
    return run_coroutine([uuid, act]() -> awaitable<bool> {
        auto connection = co_await anweddol::hypervisor_connection::open(system_uri);
        // Built outside the co_await: GCC 12 destroys a capturing temporary
        // there twice.
        auto acting = connection->call([uuid, act](virConnectPtr c) {
            anweddol::detail::domain_handle domain(virDomainLookupByUUIDString(c, uuid.c_str()));
            return domain && act(domain.get()) == 0;
        });
        co_return co_await std::move(acting);
    }());
}

// Destroys a domain behind the pool's back, as a crash of QEMU would.
void destroy_from_outside(const std::string& uuid) {
    act_from_outside(uuid, &virDomainDestroy);
}

anweddol::container_pool_options pool_options(std::size_t size) {
    anweddol::container_pool_options options;
    options.size = size;
    options.iso_path = anweddol::test::test_iso();
    options.memory = 512;
    options.vcpus = 1;
    options.container.domain_type = anweddol::test::test_domain_type();
    options.provisioning.driver_uri = system_uri;
    options.provisioning.domain_type = anweddol::test::test_domain_type();
    return options;
}

// What a pool said, and the UUIDs of every container it booted.
struct event_log {
    std::vector<container_pool_event> events;
    std::set<std::string> booted;

    auto recorder() {
        return [this](const container_pool_event& e) {
            events.push_back(e);
            if (e.type == container_pool_event_type::boot_started)
                booted.insert(e.uuid);
        };
    }
    std::size_t count(container_pool_event_type type) const {
        std::size_t n = 0;
        for (const auto& e : events)
            n += e.type == type;
        return n;
    }
    std::string last_uuid(container_pool_event_type type) const {
        for (auto it = events.rbegin(); it != events.rend(); ++it)
            if (it->type == type)
                return it->uuid;
        return {};
    }
};

// Logs in with the credentials a take handed out, as the client would.
std::string client_whoami(const provisioned_container& c) {
    return run_coroutine([&]() -> awaitable<std::string> {
        anweddol::endpoint_shell_instance client(test_context().get_executor(), c.ip, c.username,
                                                 c.password, c.port);
        co_await client.open_shell();
        const auto result = co_await client.execute("id -un");
        co_await client.close_shell();
        co_return result.std_out;
    }());
}

void stop(const provisioned_container& c) {
    run_coroutine([&]() -> awaitable<bool> {
        co_await c.container->stop_domain();
        co_return true;
    }());
}

} // namespace

TEST_CASE("a warm pool hands out working containers, refills, replaces one that died, and "
          "leaves no domain") {
    event_log log;
    // A take to cancel once its hand-over has begun.
    boost::asio::cancellation_signal cancel_hand_over;
    bool cancel_when_administering = false;
    std::string cancelled_uuid;
    auto options = pool_options(1);
    options.on_event = log.recorder();
    options.provisioning.on_progress = [&](const anweddol::provisioning_event& e) {
        if (cancel_when_administering && e.phase == anweddol::provisioning_phase::administering) {
            cancel_when_administering = false;
            cancelled_uuid = e.uuid;
            cancel_hand_over.emit(boost::asio::cancellation_type::terminal);
        }
    };
    std::optional<container_pool> pool;
    pool.emplace(test_context().get_executor(), options);
    auto wait_ready = [&] {
        REQUIRE(run_until([&] { return pool->get_stats().ready == 1; }, 5min));
    };

    // 1. Taken warm: only the hand-over remains, and the credentials work.
    wait_ready();
    const auto first = run_coroutine(pool->take(), 2min);
    CHECK(first.from_pool);
    CHECK(first.timings.pool_wait == 0s);
    CHECK(first.timings.boot_to_ip > 0s); // the boot's phases, from when it booted
    CHECK(first.timings.administration > 0s);
    CHECK(client_whoami(first) == first.username + "\n");
    CHECK(log.count(container_pool_event_type::ready) == 1);

    // 2. It refills; a container that dies in the pool is noticed, and the
    // take waits for a fresh one instead.
    wait_ready();
    CHECK(pool->get_stats().boots_started == 2);
    const std::string doomed = log.last_uuid(container_pool_event_type::ready);
    destroy_from_outside(doomed);
    run_until([] { return false; }, 2s); // its STOPPED event
    const auto second = run_coroutine(pool->take(), 5min);
    CHECK_FALSE(second.from_pool);
    CHECK(second.container->get_uuid() != doomed);
    CHECK(second.timings.pool_wait > 0s);
    CHECK(client_whoami(second) == second.username + "\n");
    CHECK(pool->get_stats().lost == 1);
    CHECK(log.count(container_pool_event_type::lost) == 1);

    // 3. A take cancelled in its hand-over destroys that container: none is
    // handed out half-administered.
    wait_ready();
    cancel_when_administering = true;
    std::optional<boost::system::error_code> cancelled;
    pool->take(boost::asio::bind_cancellation_slot(
        cancel_hand_over.slot(), [&](boost::system::error_code ec, provisioned_container c) {
            CHECK_FALSE(c.container);
            cancelled = ec;
        }));
    REQUIRE(run_until([&] { return cancelled.has_value(); }, 2min));
    CHECK(*cancelled == boost::asio::error::operation_aborted);
    REQUIRE_FALSE(cancelled_uuid.empty());
    CHECK(none_runs({cancelled_uuid}));

    // 4. shutdown() destroys what the pool holds and boots; what was taken
    // stays the takers'.
    wait_ready();
    run_coroutine([&]() -> awaitable<bool> {
        co_await pool->shutdown();
        co_return true;
    }());
    const auto stats = pool->get_stats();
    CHECK(stats.ready == 0);
    CHECK(stats.booting == 0);
    CHECK(stats.taken_warm == 1);
    CHECK(stats.taken_after_wait == 1);
    CHECK(stats.boots_failed == 0);
    std::set<std::string> pooled = log.booted;
    pooled.erase(first.container->get_uuid());
    pooled.erase(second.container->get_uuid());
    CHECK(none_runs(pooled));
    const auto running = running_domains();
    CHECK(running.count(first.container->get_uuid()) == 1);
    CHECK(running.count(second.container->get_uuid()) == 1);
    stop(first);
    stop(second);
    pool.reset();
    CHECK(none_runs(log.booted));
}

TEST_CASE("a pool that hands over ahead gives out working credentials without running the "
          "hand-over in the take, and leaves no domain") {
    event_log log;
    auto options = pool_options(1);
    options.hand_over_ahead = true;
    options.on_event = log.recorder();
    bool taking = false;
    // The take's refill boots while the take runs, and reports through the
    // same callback: keep the events of the container taken only.
    std::vector<anweddol::provisioning_event> events_in_take;
    options.provisioning.on_progress = [&](const anweddol::provisioning_event& e) {
        if (taking)
            events_in_take.push_back(e);
    };
    std::optional<container_pool> pool;
    pool.emplace(test_context().get_executor(), options);
    REQUIRE(run_until([&] { return pool->get_stats().ready == 1; }, 5min));
    // The setup script and the client's login ran while it waited.
    REQUIRE(log.count(container_pool_event_type::ready) == 1);
    const auto ready = *std::find_if(log.events.begin(), log.events.end(), [](const auto& e) {
        return e.type == container_pool_event_type::ready;
    });
    CHECK(ready.timings.administration > 0s);
    CHECK(ready.timings.verification > 0s);

    taking = true;
    auto taken = run_coroutine(pool->take(), 2min);
    taking = false;
    CHECK(taken.from_pool);
    CHECK(taken.container->get_uuid() == ready.uuid);
    // Only its end: no setup script, no login in the take.
    std::vector<anweddol::provisioning_phase> phases_in_take;
    for (const auto& e : events_in_take)
        if (e.uuid == ready.uuid)
            phases_in_take.push_back(e.phase);
    CHECK(phases_in_take == std::vector{anweddol::provisioning_phase::ready});
    CHECK(taken.timings.administration == ready.timings.administration);
    CHECK(taken.timings.total < taken.timings.administration);
    CHECK(taken.username.rfind("user_", 0) == 0);
    CHECK(client_whoami(taken) == taken.username + "\n");

    // A take that waits for a boot gets it handed over ahead as well.
    const auto second = run_coroutine(pool->take(), 5min);
    CHECK_FALSE(second.from_pool);
    CHECK(second.timings.verification > 0s);
    CHECK(client_whoami(second) == second.username + "\n");
    CHECK(second.password != taken.password);

    stop(taken);
    stop(second);
    pool.reset();
    CHECK(none_runs(log.booted));
}

// A hand-over ahead that fails (here its setup script overruns its step
// deadline) has destroyed its container: the boot failed, and the take
// waiting for it gets that failure, never the dead container.
TEST_CASE("a pool whose hand-over ahead fails fails the waiting take with its error, counts a "
          "failed boot, and leaves no domain") {
    event_log log;
    auto options = pool_options(0);
    options.hand_over_ahead = true;
    options.on_event = log.recorder();
    options.provisioning.rotate_endpoint_password = false; // its step would overrun first
    options.provisioning.hand_over_step_timeout = 1ms;
    std::optional<container_pool> pool;
    pool.emplace(test_context().get_executor(), options);
    std::optional<boost::system::error_code> taken;
    pool->take([&](boost::system::error_code ec, provisioned_container c) {
        CHECK_FALSE(c.container);
        taken = ec;
    });
    REQUIRE(run_until([&] { return taken.has_value(); }, 5min));
    CHECK(*taken == boost::asio::error::timed_out);
    CHECK(pool->get_stats().boots_failed == 1);
    CHECK(log.count(container_pool_event_type::boot_failed) == 1);
    CHECK(log.count(container_pool_event_type::ready) == 0);
    CHECK(pool->get_stats().ready == 0);
    CHECK(none_runs(log.booted));
    run_coroutine([&]() -> awaitable<bool> {
        co_await pool->shutdown();
        co_return true;
    }());
    CHECK(none_runs(log.booted));
}

TEST_CASE("a warm pool recycles a container that waited too long, and its destructor destroys "
          "what it holds") {
    event_log log;
    auto options = pool_options(1);
    options.max_idle = 3s;
    options.on_event = log.recorder();
    {
        container_pool pool(test_context().get_executor(), options);
        REQUIRE(run_until(
            [&] {
                return log.count(container_pool_event_type::recycled) >= 1 &&
                       pool.get_stats().ready == 1;
            },
            6min));
        const std::string recycled = log.last_uuid(container_pool_event_type::recycled);
        CHECK(none_runs({recycled}));
        CHECK(pool.get_stats().recycled >= 1);
    }
    CHECK(none_runs(log.booted));
}

TEST_CASE("a warm pool never hands over a paused container: the take destroys it and gets a "
          "working one") {
    event_log log;
    auto options = pool_options(1);
    options.on_event = log.recorder();
    std::optional<container_pool> pool;
    pool.emplace(test_context().get_executor(), options);
    REQUIRE(run_until([&] { return pool->get_stats().ready == 1; }, 5min));
    const std::string paused = log.last_uuid(container_pool_event_type::ready);
    REQUIRE(act_from_outside(paused, &virDomainSuspend)); // as virsh suspend does

    // Promptly: the boot of a fresh one, not the ~15 minutes a hand-over to
    // a paused guest hangs.
    const auto taken = run_coroutine(pool->take(), 4min);
    CHECK(taken.container->get_uuid() != paused);
    CHECK_FALSE(taken.from_pool);
    CHECK(client_whoami(taken) == taken.username + "\n");
    CHECK(pool->get_stats().lost == 1);
    REQUIRE(log.count(container_pool_event_type::lost) == 1);
    for (const auto& e : log.events)
        if (e.type == container_pool_event_type::lost) {
            CHECK(e.uuid == paused);
            CHECK(e.error == anweddol::errc::domain_paused);
            CHECK_THAT(e.message, Catch::Contains("paused by a client of libvirt"));
        }
    CHECK(none_runs({paused}));

    run_coroutine([&]() -> awaitable<bool> {
        co_await pool->shutdown();
        co_return true;
    }());
    stop(taken);
    pool.reset();
    CHECK(none_runs(log.booted));
}

// What a new user does: a pool of 1, a burst of 5 takes at once, shutdown(),
// then stop_domain() of each taken container. Each stop must work, and
// libvirt's connection must stay up throughout (its closes are recorded).
TEST_CASE("containers taken in a burst from a pool of 1 can all be stopped after its shutdown") {
    event_log log;
    auto options = pool_options(1);
    options.on_event = log.recorder();
    auto connection = run_coroutine(anweddol::hypervisor_connection::open(system_uri));
    std::vector<int> close_reasons;
    auto watching_closes = connection->on_close(
        test_context().get_executor(), [&](int reason) { close_reasons.push_back(reason); });
    const unsigned opens_before = connection->open_count();
    std::optional<container_pool> pool;
    pool.emplace(test_context().get_executor(), options);
    REQUIRE(run_until([&] { return pool->get_stats().ready == 1; }, 5min));

    constexpr std::size_t burst = 5;
    std::vector<std::optional<boost::system::error_code>> results(burst);
    std::vector<provisioned_container> taken(burst);
    for (std::size_t i = 0; i < burst; ++i)
        pool->take([&, i](boost::system::error_code ec, provisioned_container c) {
            results[i] = ec;
            taken[i] = std::move(c);
        });
    REQUIRE(run_until(
        [&] {
            return std::all_of(results.begin(), results.end(),
                               [](auto& r) { return r.has_value(); });
        },
        12min));
    for (std::size_t i = 0; i < burst; ++i) {
        INFO("take " << i << ": " << results[i]->message());
        REQUIRE_FALSE(*results[i]);
    }
    run_coroutine([&]() -> awaitable<bool> {
        co_await pool->shutdown();
        co_return true;
    }());
    for (auto& c : taken) {
        anweddol::diagnostics diag;
        std::optional<boost::system::error_code> stopped;
        c.container->stop_domain(anweddol::stop_options{}, diag,
                                 [&](boost::system::error_code ec) { stopped = ec; });
        REQUIRE(run_until([&] { return stopped.has_value(); }, 2min));
        INFO("stopping " << c.container->get_uuid() << ": " << diag.full_message());
        CHECK_FALSE(*stopped);
    }
    INFO("libvirt closed the connection " << close_reasons.size() << " times");
    CHECK(close_reasons.empty());
    CHECK(connection->open_count() == opens_before);
    pool.reset();
    CHECK(none_runs(log.booted));
}

namespace {

// The output of a shell command.
std::string output_of(const std::string& command) {
    std::string output;
    if (FILE* pipe = ::popen(command.c_str(), "r")) {
        char buffer[256];
        while (std::fgets(buffer, sizeof buffer, pipe))
            output += buffer;
        ::pclose(pipe);
    }
    return output;
}

// Makes libvirtd drop this process's connection, as its restart (or a
// keepalive timeout) would, through its admin interface (virt-admin).
void drop_own_connection() {
    const std::string admin = "virt-admin -q -c libvirtd:///system ";
    const std::string ids =
        output_of(admin + "srv-clients-list libvirtd | awk '$1 ~ /^[0-9]+$/ {print $1}'");
    std::size_t dropped = 0;
    std::size_t at = 0;
    while (at < ids.size()) {
        const std::size_t end = ids.find('\n', at);
        const std::string id = ids.substr(at, end - at);
        at = end == std::string::npos ? ids.size() : end + 1;
        const std::string pid = output_of(admin + "client-info libvirtd " + id +
                                          " | awk '/unix_process_id/ {print $NF}'");
        if (std::atoi(pid.c_str()) != ::getpid())
            continue;
        REQUIRE(std::system((admin + "client-disconnect libvirtd " + id + " >/dev/null").c_str()) ==
                0);
        ++dropped;
    }
    REQUIRE(dropped > 0);
}

} // namespace

// The stop's own libvirt call is the first to meet the dropped connection:
// it used to fail with libvirt's internal error ("cannot look up domain
// <uuid>: internal error: client socket is closed", or "An error occurred,
// but the cause is unknown" when caught in flight), and the domain was left
// to the container's destructor.
TEST_CASE("a container stops when libvirtd has just dropped its connection") {
    // With autodestroy, libvirtd destroys the domain as it drops the
    // connection; without, the domain still runs, and the stop must reach it.
    for (const bool autodestroy : {true, false}) {
        INFO("autodestroy: " << autodestroy);
        auto container = std::make_shared<anweddol::container_instance>(
            test_context().get_executor(), anweddol::test::test_iso(), "", 512, 1);
        auto options = container->get_options();
        options.domain_type = anweddol::test::test_domain_type();
        options.bypass_admission = true;
        options.autodestroy = autodestroy;
        container->set_options(options);
        run_coroutine([&]() -> awaitable<bool> {
            co_await container->start_domain(false, 20, system_uri);
            co_return true;
        }());
        drop_own_connection();
        anweddol::diagnostics diag;
        std::optional<boost::system::error_code> stopped;
        container->stop_domain(anweddol::stop_options{}, diag,
                               [&](boost::system::error_code ec) { stopped = ec; });
        REQUIRE(run_until([&] { return stopped.has_value(); }, 1min));
        INFO(diag.full_message());
        CHECK_FALSE(*stopped);
        CHECK_FALSE(container->is_domain_running());
        CHECK(none_runs({container->get_uuid()}));
    }
}
