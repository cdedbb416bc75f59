// The hypervisor pool's placement and bookkeeping on libvirt's test:///
// driver: each host is a test driver of its own (a node description file:
// test:///<file> gives every connection a private driver), whose domains
// never get an address here. Hosts going down and coming back, and real
// guests reached through a jump, are the integration tests' part (the
// two-host sandbox).
#include "libvirt_domains.hpp"
#include "scratch_directory.hpp"
#include "test_context.hpp"

#include <anweddol/detail/domain_identity.hpp>
#include <anweddol/detail/libvirt/call.hpp>
#include <anweddol/error.hpp>
#include <anweddol/hypervisor_pool.hpp>
#include <anweddol/impl/hypervisor_pool_state.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <condition_variable>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <variant>
#include <vector>

using anweddol::container_instance;
using anweddol::errc;
using anweddol::hypervisor_host_options;
using anweddol::hypervisor_host_state;
using anweddol::hypervisor_pool;
using anweddol::hypervisor_pool_event;
using anweddol::hypervisor_pool_event_type;
using anweddol::hypervisor_pool_options;
using anweddol::test::run_until;
using anweddol::test::scratch;
using anweddol::test::test_context;
using namespace std::chrono_literals;

// What the test driver cannot do: drop a host's connection. Fed to the pool
// as its close callback would.
struct anweddol::detail::hypervisor_pool_access {
    static void drop_connection(hypervisor_pool& pool, const std::string& name) {
        const auto host = pool.state_->find(name);
        REQUIRE(host);
        pool.state_->mark_down(host, "libvirt closed its connection to " + host->options.uri +
                                         " (the test dropped it)");
    }
};
using anweddol::detail::hypervisor_pool_access;

namespace {

// A host of the test driver: 4 CPUs, one active NAT network on virbr0.
std::string make_test_host(const scratch& s, const std::string& name) {
    const auto file = s.root / (name + ".xml");
    std::ofstream(file) << R"(<node>
  <cpu><mhz>2000</mhz><model>test</model><active>4</active><max>4</max>
       <nodes>1</nodes><sockets>1</sockets><cores>4</cores><threads>1</threads></cpu>
  <memory>8388608</memory>
  <network>
    <name>default</name>
    <bridge name='virbr0'/>
    <forward mode='nat'/>
    <ip address='192.168.122.1' netmask='255.255.255.0'>
      <dhcp><range start='192.168.122.2' end='192.168.122.254'/></dhcp>
    </ip>
  </network>
</node>
)";
    return "test://" + file.string();
}

hypervisor_host_options host(std::string name, std::string uri) {
    hypervisor_host_options h;
    h.name = std::move(name);
    h.uri = std::move(uri);
    h.check_memory = false; // the test driver reports no free memory
    return h;
}

// A pool on the test driver, recording its events.
struct test_pool {
    explicit test_pool(std::vector<hypervisor_host_options> hosts) {
        hypervisor_pool_options options;
        options.hosts = std::move(hosts);
        options.reconnect_interval = 100ms;
        options.on_event = [this](const hypervisor_pool_event& e) {
            events.push_back(e);
        };
        pool.emplace(test_context().get_executor(), std::move(options));
    }

    std::size_t count(hypervisor_pool_event_type type) const {
        std::size_t n = 0;
        for (const auto& e : events)
            n += e.type == type;
        return n;
    }
    bool all_up() const {
        for (const auto& h : pool->get_hosts())
            if (h.state != hypervisor_host_state::up) {
                UNSCOPED_INFO(h.name << " is " << anweddol::to_string(h.state) << ": "
                                     << h.last_error);
                return false;
            }
        return true;
    }

    std::vector<hypervisor_pool_event> events;
    std::optional<hypervisor_pool> pool;
};

// A container of the test driver whose start waits `address_timeout` for an
// address that never comes (no lease is written, libvirt is not asked).
std::shared_ptr<container_instance> test_container(const scratch& s) {
    auto c = std::make_shared<container_instance>(test_context().get_executor(), s.iso.string(), "",
                                                  512, 1);
    auto o = c->get_options();
    o.lease_directory = s.leases;
    o.address_poll_interval = 0ms;
    c->set_options(o);
    return c;
}

// The outcome of one start_container(), once it completed.
struct start_outcome {
    bool done = false;
    boost::system::error_code error;
    std::string host;
};

void start_in_background(hypervisor_pool& pool, std::shared_ptr<container_instance> c,
                         std::chrono::milliseconds address_timeout, start_outcome& outcome,
                         boost::asio::cancellation_signal* cancel = nullptr) {
    anweddol::start_options opts;
    opts.address_timeout = address_timeout;
    auto done = [&outcome, c](boost::system::error_code ec, std::string host) {
        outcome = {true, ec, std::move(host)};
    };
    if (cancel)
        pool.start_container(c, opts, boost::asio::bind_cancellation_slot(cancel->slot(), done));
    else
        pool.start_container(c, opts, done);
}

anweddol::start_options no_wait() {
    anweddol::start_options opts;
    opts.wait_available = false;
    return opts;
}

// Starts a container through the pool, on the test context, without waiting
// for an address; returns the name of the host it went to.
std::string start_on(hypervisor_pool& pool, std::shared_ptr<container_instance> c) {
    return anweddol::test::run_coroutine(
        [](hypervisor_pool& pool,
           std::shared_ptr<container_instance> c) -> boost::asio::awaitable<std::string> {
            co_return co_await pool.start_container(c, no_wait());
        }(pool, std::move(c)));
}

// Stops a container, on the test context.
void stop(std::shared_ptr<container_instance> c) {
    anweddol::test::run_coroutine(
        [](std::shared_ptr<container_instance> c) -> boost::asio::awaitable<bool> {
            co_await c->stop_domain();
            co_return true;
        }(std::move(c)));
}

template <class Function>
std::pair<boost::system::error_code, std::string> error_of(Function f) {
    try {
        f();
    } catch (const boost::system::system_error& e) {
        return {e.code(), e.what()};
    }
    return {};
}

} // namespace

TEST_CASE("hypervisor pool: bad hosts are refused with a message that says what to fix") {
    scratch s;
    const std::string uri = make_test_host(s, "a");
    auto attempt = [&](auto change) {
        return error_of([&] {
            hypervisor_pool_options options;
            options.hosts = {host("a", uri)};
            change(options);
            hypervisor_pool pool(test_context().get_executor(), options);
        });
    };
    auto [no_name, no_name_message] = attempt([](auto& o) { o.hosts[0].name.clear(); });
    CHECK(no_name == errc::invalid_argument);
    CHECK_THAT(no_name_message, Catch::Contains("needs a name"));
    auto [no_uri, no_uri_message] = attempt([](auto& o) { o.hosts[0].uri.clear(); });
    CHECK(no_uri == errc::invalid_argument);
    CHECK_THAT(no_uri_message, Catch::Contains("'a' has no libvirt URI"));
    auto [twice, twice_message] = attempt([](auto& o) { o.hosts.push_back(o.hosts[0]); });
    CHECK(twice == errc::invalid_argument);
    CHECK_THAT(twice_message, Catch::Contains("already has a host named 'a'"));
    auto [same_uri, same_uri_message] =
        attempt([&](auto& o) { o.hosts.push_back(host("b", uri)); });
    CHECK(same_uri == errc::invalid_argument);
    CHECK_THAT(same_uri_message, Catch::Contains("hosts 'a' and 'b' have the same URI"));
    CHECK(attempt([](auto& o) { o.hosts[0].nat_interface_name = "br 0"; }).first ==
          errc::invalid_argument);
    CHECK(attempt([](auto& o) { o.reconnect_interval = 0s; }).first == errc::invalid_argument);
    CHECK(attempt([](auto& o) { o.read_timeout = 0s; }).first == errc::invalid_argument);

    test_pool p({host("a", uri)});
    CHECK(error_of([&] { p.pool->add_host(host("a", uri)); }).first == errc::invalid_argument);
    auto removing = anweddol::test::run_coroutine(
        [](hypervisor_pool& pool) -> boost::asio::awaitable<boost::system::error_code> {
            try {
                co_await pool.remove_host("nowhere");
            } catch (const boost::system::system_error& e) {
                co_return e.code();
            }
            co_return boost::system::error_code{};
        }(*p.pool));
    CHECK(removing == errc::invalid_argument);
    REQUIRE(p.pool->get_hosts().size() == 1);
}

TEST_CASE("hypervisor pool: containers go to the host with the fewest boots in flight, and a "
          "failed start leaves no domain and nothing counted") {
    scratch s;
    const std::string uri1 = make_test_host(s, "h1");
    const std::string uri2 = make_test_host(s, "h2");
    test_pool p({host("h1", uri1), host("h2", uri2)});
    REQUIRE(run_until([&] { return p.all_up(); }));
    CHECK(p.count(hypervisor_pool_event_type::host_up) == 2);
    CHECK(p.pool->get_host("h1")->cpu_heavy_limit == 4); // the host's CPUs

    std::vector<std::shared_ptr<container_instance>> containers;
    std::vector<start_outcome> outcomes(4);
    for (std::size_t i = 0; i < 4; ++i) {
        containers.push_back(test_container(s));
        start_in_background(*p.pool, containers.back(), 1500ms, outcomes[i]);
    }
    REQUIRE(run_until([&] { return p.count(hypervisor_pool_event_type::placed) == 4; }));
    const auto h1 = *p.pool->get_host("h1");
    const auto h2 = *p.pool->get_host("h2");
    CHECK(h1.boots_in_flight == 2);
    CHECK(h2.boots_in_flight == 2);
    CHECK(h1.containers == 2);
    CHECK(h1.placements == 2);
    for (const auto& c : containers)
        CHECK(p.pool->host_of(c->get_uuid()).has_value());
    REQUIRE(run_until([&] { return anweddol::test::domain_uuids(uri1).size() == 2; }));
    CHECK(anweddol::test::domain_uuids(uri2).size() == 2);

    // A container is placed once: the same UUID again is refused, and
    // changes nothing.
    auto twin = std::make_shared<container_instance>(test_context().get_executor(), s.iso.string(),
                                                     containers[0]->get_uuid(), 512, 1);
    start_outcome twin_outcome;
    start_in_background(*p.pool, twin, 1500ms, twin_outcome);
    REQUIRE(run_until([&] { return twin_outcome.done; }));
    CHECK(twin_outcome.error == errc::invalid_argument);
    CHECK(p.pool->get_host("h1")->boots_in_flight + p.pool->get_host("h2")->boots_in_flight == 4);
    CHECK(p.pool->host_of(containers[0]->get_uuid()).has_value());

    // No address comes: every start fails, destroys its domain, and the
    // hosts forget the containers.
    REQUIRE(run_until(
        [&] {
            for (const auto& o : outcomes)
                if (!o.done)
                    return false;
            return true;
        },
        20s));
    for (const auto& o : outcomes) {
        CHECK(o.error == errc::ip_wait_timeout);
        CHECK(o.host.empty());
    }
    for (const auto& status : p.pool->get_hosts()) {
        CHECK(status.boots_in_flight == 0);
        CHECK(status.booting_memory_mib == 0);
        CHECK(status.containers == 0);
    }
    CHECK(anweddol::test::domain_uuids(uri1).empty());
    CHECK(anweddol::test::domain_uuids(uri2).empty());
    // The container is back to its own boot admission, on the host's bridge.
    CHECK(containers[0]->get_options().admission == nullptr);
}

TEST_CASE("hypervisor pool: a started container counts on its host until its domain stops, and "
          "a host being removed takes no more containers and goes once drained") {
    scratch s;
    const std::string uri1 = make_test_host(s, "h1");
    const std::string uri2 = make_test_host(s, "h2");
    test_pool p({host("h1", uri1), host("h2", uri2)});
    REQUIRE(run_until([&] { return p.all_up(); }));

    auto first = test_container(s);
    const std::string first_host = start_on(*p.pool, first);
    CHECK(first_host == "h1");
    CHECK(p.pool->get_host("h1")->containers == 1);
    CHECK(p.pool->get_host("h1")->boots_in_flight == 0);

    bool removed = false;
    boost::system::error_code remove_error;
    p.pool->remove_host("h1", [&](boost::system::error_code ec) {
        removed = true;
        remove_error = ec;
    });
    REQUIRE(run_until(
        [&] { return p.pool->get_host("h1")->state == hypervisor_host_state::draining; }));
    run_until([] { return false; }, 200ms);
    CHECK_FALSE(removed); // its container still runs

    // While h1 drains, containers go to h2 even though h1 has fewer.
    auto second = test_container(s);
    auto third = test_container(s);
    for (auto& c : {second, third}) {
        const std::string placed_on = start_on(*p.pool, c);
        CHECK(placed_on == "h2");
    }

    stop(first);
    REQUIRE(run_until([&] { return removed; }));
    CHECK_FALSE(remove_error);
    CHECK_FALSE(p.pool->get_host("h1"));
    CHECK(p.count(hypervisor_pool_event_type::host_removed) == 1);
    REQUIRE(p.pool->get_hosts().size() == 1);
    CHECK(p.pool->get_host("h2")->containers == 2);

    // A host added at run time takes containers once it is up (the test
    // driver reports no memory: placement goes by boots in flight alone).
    const std::string uri3 = make_test_host(s, "h3");
    p.pool->add_host(host("h3", uri3));
    REQUIRE(run_until([&] { return p.all_up(); }));
    auto fourth = test_container(s);
    const std::string placed_on_new = start_on(*p.pool, fourth);
    CHECK(placed_on_new == "h2"); // a tie goes to the host added first...
    stop(fourth);
    // ...while a boot in flight on h2 sends the next one to h3.
    start_outcome slow_outcome;
    start_in_background(*p.pool, test_container(s), 1500ms, slow_outcome);
    REQUIRE(run_until([&] { return p.pool->get_host("h2")->boots_in_flight == 1; }));
    auto fifth = test_container(s);
    const std::string placed_beside = start_on(*p.pool, fifth);
    CHECK(placed_beside == "h3");
    stop(fifth);
    REQUIRE(run_until([&] { return slow_outcome.done; }, 10s));
    CHECK(anweddol::test::domain_uuids(uri3).empty());

    // Stopping the rest empties h2 too; nothing runs anywhere.
    for (auto& c : {second, third})
        stop(c);
    REQUIRE(run_until([&] { return p.pool->get_host("h2")->containers == 0; }));
    CHECK(anweddol::test::domain_uuids(uri2).empty());
}

TEST_CASE("hypervisor pool: a cancelled removal puts the host back in service") {
    scratch s;
    const std::string uri = make_test_host(s, "h1");
    test_pool p({host("h1", uri)});
    REQUIRE(run_until([&] { return p.all_up(); }));
    auto c = test_container(s);
    start_on(*p.pool, c);

    boost::asio::cancellation_signal cancel;
    std::optional<boost::system::error_code> outcome;
    p.pool->remove_host("h1",
                        boost::asio::bind_cancellation_slot(
                            cancel.slot(), [&](boost::system::error_code ec) { outcome = ec; }));
    REQUIRE(run_until(
        [&] { return p.pool->get_host("h1")->state == hypervisor_host_state::draining; }));
    cancel.emit(boost::asio::cancellation_type::terminal);
    REQUIRE(run_until([&] { return outcome.has_value(); }));
    CHECK(*outcome == boost::asio::error::operation_aborted);
    CHECK(p.pool->get_host("h1")->state == hypervisor_host_state::up);
    stop(c);
    CHECK(anweddol::test::domain_uuids(uri).empty());
}

TEST_CASE("hypervisor pool: a host that cannot be reached is down, says why, and is avoided") {
    scratch s;
    const std::string good = make_test_host(s, "good");
    const std::string missing = "test:///"; // refused: the test driver needs a node file
    test_pool p({host("gone", missing), host("good", good)});
    REQUIRE(run_until([&] {
        return p.pool->get_host("gone")->state == hypervisor_host_state::down &&
               p.pool->get_host("good")->state == hypervisor_host_state::up;
    }));
    const auto gone = *p.pool->get_host("gone");
    CHECK_FALSE(gone.last_error.empty());
    CHECK(p.count(hypervisor_pool_event_type::host_down) == 1); // once, not at every retry
    run_until([] { return false; }, 350ms);                     // a few retries
    CHECK(p.count(hypervisor_pool_event_type::host_down) == 1);

    auto c = test_container(s);
    const std::string placed_on = start_on(*p.pool, c);
    CHECK(placed_on == "good");
    stop(c);

    // Alone, it makes placement fail, saying which host is down and why.
    test_pool lonely({host("gone", missing)});
    REQUIRE(run_until(
        [&] { return lonely.pool->get_host("gone")->state == hypervisor_host_state::down; }));
    auto [code, message] = error_of([&] { start_on(*lonely.pool, test_container(s)); });
    CHECK(code == errc::no_host_available);
    CHECK(code == std::errc::resource_unavailable_try_again);
    CHECK_THAT(message, Catch::Contains("'gone' (" + missing + ") is down ("));
}

TEST_CASE("hypervisor pool: a host without room for the container is not chosen, and the error "
          "says how much room each has") {
    scratch s;
    // test:///default reports 3 MiB free: no room for 512 MiB.
    auto tiny = host("tiny", "test:///default");
    tiny.check_memory = true;
    tiny.reserved_memory_mib = 0;
    test_pool p({tiny});
    REQUIRE(run_until([&] { return p.all_up(); }));
    const auto before = anweddol::test::domain_uuids("test:///default");
    auto [code, message] = error_of([&] { start_on(*p.pool, test_container(s)); });
    CHECK(code == errc::no_host_available);
    CHECK_THAT(message, Catch::Contains("a container of 512 MiB"));
    CHECK_THAT(message, Catch::Contains("'tiny' (test:///default) has 3 MiB of room"));
    CHECK(anweddol::test::domain_uuids("test:///default") == before);
    CHECK(p.pool->get_host("tiny")->containers == 0);
}

TEST_CASE("hypervisor pool: a placement dropped before its start (a cancelled provisioning) "
          "leaves nothing counted on its host") {
    scratch s;
    const std::string uri = make_test_host(s, "h1");
    test_pool p({host("h1", uri)});
    REQUIRE(run_until([&] { return p.all_up(); }));
    const bool placed =
        anweddol::test::run_coroutine([](hypervisor_pool& pool) -> boost::asio::awaitable<bool> {
            auto placement = co_await pool.place(anweddol::detail::random_uuid(), 512);
            const auto during = *pool.get_host("h1");
            co_return bool(placement) && during.boots_in_flight == 1 &&
                during.booting_memory_mib == 512 && during.containers == 1;
            // dropped here, as when the provisioning is cancelled before its start
        }(*p.pool));
    CHECK(placed);
    const auto after = *p.pool->get_host("h1");
    CHECK(after.boots_in_flight == 0);
    CHECK(after.booting_memory_mib == 0);
    CHECK(after.containers == 0);
    CHECK(after.placements == 1);
}

namespace {

// A transient domain of the test driver with the UUID `uuid`.
std::string domain_with_uuid(const std::string& uuid) {
    return "<domain type='test'><name>pool-" + uuid + "</name><uuid>" + uuid +
           "</uuid><memory>65536</memory><os><type>hvm</type></os></domain>";
}

// Runs `act` on `connection` (a libvirt call), then waits until the lifecycle
// event `event` of `uuid` has reached every subscriber of this thread's
// io_context: the pool's handler, posted with this test's, has run too.
boost::asio::awaitable<void>
act_and_see(std::shared_ptr<anweddol::hypervisor_connection> connection, std::string uuid,
            int event, std::function<void(virConnectPtr)> act) {
    auto executor = co_await boost::asio::this_coro::executor;
    auto seeing = connection->wait_for_event(uuid, event, 10s, boost::asio::deferred);
    auto acting = connection->call([act](virConnectPtr c) { act(c); }, boost::asio::deferred);
    auto both =
        boost::asio::experimental::make_parallel_group(std::move(seeing), std::move(acting))
            .async_wait(boost::asio::experimental::wait_for_all(), boost::asio::use_awaitable);
    auto [order, seen_error, seen, act_error, nothing] = co_await std::move(both);
    (void)order;
    (void)seen;
    (void)nothing;
    if (act_error)
        throw boost::system::system_error(act_error);
    if (seen_error)
        throw boost::system::system_error(seen_error);
    // Handlers posted in the same turn as this test's have run after one more.
    auto turn = boost::asio::post(executor, boost::asio::use_awaitable);
    co_await std::move(turn);
}

} // namespace

TEST_CASE("hypervisor pool: a container booted again with its UUID during its start (the KVM "
          "pause fallback) stays on its host's books, and is destroyed as lost when the host "
          "drops") {
    scratch s;
    const std::string uri = make_test_host(s, "h1");
    test_pool p({host("h1", uri)});
    REQUIRE(run_until([&] { return p.all_up(); }));
    const std::string uuid = anweddol::detail::random_uuid();
    struct during_start {
        std::size_t after_first_domain_stopped = 0;
        std::size_t lost_when_host_dropped = 0;
    };
    const during_start seen =
        anweddol::test::run_coroutine([](hypervisor_pool& pool, std::string uri,
                                         std::string uuid) -> boost::asio::awaitable<during_start> {
            during_start seen;
            // What start_container() does on a host whose KVM guests pause:
            // placed, a first domain, destroyed once it paused (its STOPPED
            // event comes), and a second one with the same UUID under qemu.
            auto placing = pool.place(uuid, 512);
            auto placement = co_await std::move(placing);
            auto opening = anweddol::hypervisor_connection::open(uri);
            auto connection = co_await std::move(opening);
            const std::string xml = domain_with_uuid(uuid);
            const auto create = [xml](virConnectPtr c) {
                anweddol::detail::domain_handle d(virDomainCreateXML(c, xml.c_str(), 0));
                if (!d)
                    anweddol::detail::throw_last_libvirt_error("creating the test domain");
            };
            auto first = act_and_see(connection, uuid, VIR_DOMAIN_EVENT_STARTED, create);
            co_await std::move(first);
            auto destroying =
                act_and_see(connection, uuid, VIR_DOMAIN_EVENT_STOPPED, [uuid](virConnectPtr c) {
                    anweddol::detail::domain_handle d(virDomainLookupByUUIDString(c, uuid.c_str()));
                    if (!d || virDomainDestroy(d.get()) < 0)
                        anweddol::detail::throw_last_libvirt_error("destroying the test domain");
                });
            co_await std::move(destroying);
            seen.after_first_domain_stopped = pool.get_host("h1")->containers;
            auto second = act_and_see(connection, uuid, VIR_DOMAIN_EVENT_STARTED, create);
            co_await std::move(second);
            // The host drops during the second boot.
            hypervisor_pool_access::drop_connection(pool, "h1");
            seen.lost_when_host_dropped = pool.get_host("h1")->lost_containers;
            placement.end_boot(); // the start fails with host_down: nothing more of it
            co_return seen;
        }(*p.pool, uri, uuid));
    CHECK(seen.after_first_domain_stopped == 1);
    CHECK(seen.lost_when_host_dropped == 1);
    CHECK(p.count(hypervisor_pool_event_type::container_lost) == 1);
    // Back at once (the test driver's connection never dropped): the second
    // domain is destroyed as the lost container's, before new placements.
    REQUIRE(run_until([&] { return p.count(hypervisor_pool_event_type::orphans_destroyed) == 1; }));
    CHECK(p.pool->get_host("h1")->orphans_destroyed == 1);
    CHECK_FALSE(anweddol::test::domain_uuids(uri).contains(uuid));
}

TEST_CASE("hypervisor pool: a host added while shutdown() runs is refused, saying why, and "
          "shutdown() leaves no host connected") {
    scratch s;
    const std::string uri = make_test_host(s, "h1");
    const std::string late_uri = make_test_host(s, "late");
    test_pool p({host("h1", uri)});
    REQUIRE(run_until([&] { return p.all_up(); }));
    auto c = test_container(s);
    start_on(*p.pool, c);

    // The host's one lane is busy: shutdown()'s last try at the orphan
    // waits for it, as it would for a slow libvirtd.
    auto connection = anweddol::test::run_coroutine(anweddol::hypervisor_connection::open(uri));
    struct gate {
        std::mutex mutex;
        std::condition_variable cv;
        bool open = false;
        std::atomic<bool> entered{false};
    } lane;
    connection->call(
        [&lane](virConnectPtr) {
            lane.entered = true;
            std::unique_lock lock(lane.mutex);
            lane.cv.wait(lock, [&] { return lane.open; });
        },
        [](boost::system::error_code, std::monostate) {});
    REQUIRE(run_until([&] { return lane.entered.load(); }));
    hypervisor_pool_access::drop_connection(*p.pool, "h1"); // c is lost: an orphan

    std::optional<boost::system::error_code> shut_down;
    std::optional<std::pair<boost::system::error_code, std::string>> refused;
    anweddol::test::run_coroutine(
        [](hypervisor_pool& pool, std::string late_uri,
           std::optional<boost::system::error_code>& shut_down,
           std::optional<std::pair<boost::system::error_code, std::string>>& refused)
            -> boost::asio::awaitable<bool> {
            // Started from the pool's thread, shutdown() runs at once until
            // it waits for the lane.
            pool.shutdown([&shut_down](boost::system::error_code ec) { shut_down = ec; });
            try {
                pool.add_host(host("late", late_uri));
            } catch (const boost::system::system_error& e) {
                refused.emplace(e.code(), e.what());
            }
            co_return true;
        }(*p.pool, late_uri, shut_down, refused));
    CHECK_FALSE(shut_down);
    {
        std::lock_guard lock(lane.mutex);
        lane.open = true;
    }
    lane.cv.notify_all();
    REQUIRE(run_until([&] { return shut_down.has_value(); }));
    CHECK_FALSE(*shut_down);
    REQUIRE(refused);
    CHECK(refused->first == errc::invalid_argument);
    CHECK_THAT(refused->second, Catch::Contains("shut"));
    CHECK_THAT(refused->second, Catch::Contains("'late'"));
    CHECK_FALSE(p.pool->get_host("late"));
    for (const auto& h : p.pool->get_hosts())
        CHECK(h.state != hypervisor_host_state::up);
    connection.reset();
    c.reset();
}
