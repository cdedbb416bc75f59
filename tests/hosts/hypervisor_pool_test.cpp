// A hypervisor pool of the sandbox's two hosts, each a libvirtd of its own
// in a network namespace of its own, with the same 192.168.122.0/24 NAT
// network: guests are reached only through each host's sshd as an SSH jump.
// Containers are placed across both, handed over, and their client
// credentials checked by logging in through the jump; one host's libvirtd
// is killed mid-run and comes back; nothing is left on either host.
#include "../integration/sandbox_settings.hpp"
#include "../unit/libvirt_domains.hpp"
#include "../unit/test_context.hpp"
#include "two_hosts.hpp"

#include <anweddol/endpoint_shell_instance.hpp>
#include <anweddol/error.hpp>
#include <anweddol/hypervisor_pool.hpp>
#include <anweddol/provisioning.hpp>

#include <catch2/catch.hpp>

#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

using anweddol::container_instance;
using anweddol::errc;
using anweddol::hypervisor_host_state;
using anweddol::hypervisor_pool;
using anweddol::hypervisor_pool_event;
using anweddol::hypervisor_pool_event_type;
using anweddol::provisioned_container;
using anweddol::test::run_coroutine;
using anweddol::test::run_until;
using anweddol::test::test_context;
using boost::asio::awaitable;
using namespace std::chrono_literals;

namespace {

// One provision() through the pool, run in the background.
struct provisioning {
    std::shared_ptr<container_instance> container;
    bool done = false;
    std::optional<provisioned_container> result;
    boost::system::error_code error;
    std::string message;
    bool reached_boot = false; // its domain exists: it waits for its address
};

struct pool_under_test {
    pool_under_test() {
        anweddol::hypervisor_pool_options options;
        options.hosts = anweddol::test::sandbox_hosts();
        options.reconnect_interval = 500ms;
        options.on_event = [this](const hypervisor_pool_event& e) {
            UNSCOPED_INFO("pool event: " << anweddol::to_string(e.type) << " " << e.host << " "
                                         << e.uuid << " " << e.message);
            events.push_back(e);
        };
        for (const auto& h : options.hosts)
            uris[h.name] = h.uri;
        pool.emplace(test_context().get_executor(), std::move(options));
    }

    std::size_t count(hypervisor_pool_event_type type, const std::string& host = {}) const {
        std::size_t n = 0;
        for (const auto& e : events)
            n += e.type == type && (host.empty() || e.host == host);
        return n;
    }
    hypervisor_host_state state(const std::string& host) const {
        return pool->get_host(host)->state;
    }

    // Starts provisioning a fresh container through the pool.
    provisioning& provision() {
        auto& p = *started.emplace_back(std::make_unique<provisioning>());
        p.container = std::make_shared<container_instance>(test_context().get_executor(),
                                                           anweddol::test::test_iso(), "", 512, 1);
        anweddol::provisioning_options options;
        options.hypervisors = &*pool;
        options.domain_type = anweddol::test::test_domain_type();
        options.on_progress = [&p](const anweddol::provisioning_event& e) {
            if (e.phase == anweddol::provisioning_phase::waiting_for_address)
                p.reached_boot = true;
        };
        anweddol::provision(p.container, std::move(options), p_diag(p),
                            [&p](boost::system::error_code ec, provisioned_container result) {
                                p.done = true;
                                p.error = ec;
                                if (!ec)
                                    p.result = std::move(result);
                            });
        return p;
    }
    anweddol::diagnostics& p_diag(provisioning& p) { return diagnostics[&p]; }

    std::optional<hypervisor_pool> pool;
    std::map<std::string, std::string> uris;
    std::vector<hypervisor_pool_event> events;
    std::vector<std::unique_ptr<provisioning>> started;
    std::map<provisioning*, anweddol::diagnostics> diagnostics;
};

bool all_done(const std::vector<provisioning*>& ps, std::chrono::milliseconds within) {
    return run_until(
        [&] {
            for (const auto* p : ps)
                if (!p->done)
                    return false;
            return true;
        },
        within);
}

// Logs in as the client, through the container's jump, and asks who it is.
std::string client_login(const provisioned_container& c) {
    return run_coroutine([](provisioned_container c) -> awaitable<std::string> {
        anweddol::endpoint_shell_instance shell(test_context().get_executor(), c.ip, c.username,
                                                c.password, c.port);
        auto options = shell.get_options();
        options.jump = c.jump;
        options.host_keys = c.host_keys;
        options.host_key_fingerprints = c.host_key_fingerprints;
        shell.set_options(options);
        co_await shell.open_shell();
        const auto who = co_await shell.execute("id -un");
        co_await shell.close_shell();
        co_return who.std_out;
    }(c));
}

void sandbox(const std::string& arguments) {
    const std::string command = std::string(ANWEDDOL_SANDBOX_SCRIPT) + " " + arguments;
    REQUIRE(std::system(command.c_str()) == 0);
}

} // namespace

TEST_CASE("two hosts: containers are spread over both and reached through their jumps, a host "
          "whose libvirtd dies fails its containers cleanly, is avoided, is used again once "
          "back, and no domain is left on either") {
    pool_under_test t;
    REQUIRE(run_until(
        [&] {
            return t.state("h1") == hypervisor_host_state::up &&
                   t.state("h2") == hypervisor_host_state::up;
        },
        60s));
    const auto before_h1 = anweddol::test::domain_uuids(t.uris["h1"]);
    const auto before_h2 = anweddol::test::domain_uuids(t.uris["h2"]);

    // Four at once: two on each host, each handed over and logged in to as
    // its client through its host's jump.
    std::vector<provisioning*> first;
    for (int i = 0; i < 4; ++i)
        first.push_back(&t.provision());
    REQUIRE(all_done(first, 600s));
    std::map<std::string, std::vector<provisioning*>> on;
    for (auto* p : first) {
        INFO(p->error.message() << ": " << t.p_diag(*p).client_message());
        REQUIRE_FALSE(p->error);
        REQUIRE(p->result->jump);
        on[p->result->host].push_back(p);
        CHECK(client_login(*p->result) == p->result->username + "\n");
    }
    CHECK(on["h1"].size() == 2);
    CHECK(on["h2"].size() == 2);
    // Both hosts' guests are on 192.168.122.0/24: only the jump tells them apart.
    CHECK(t.pool->get_host("h1")->containers == 2);

    // Two more; once both boot, h1's libvirtd dies.
    auto& booting_a = t.provision();
    auto& booting_b = t.provision();
    REQUIRE(run_until([&] { return booting_a.reached_boot && booting_b.reached_boot; }, 120s));
    REQUIRE(t.pool->host_of(booting_a.container->get_uuid()) !=
            t.pool->host_of(booting_b.container->get_uuid()));
    auto& booting_on_h1 =
        *t.pool->host_of(booting_a.container->get_uuid()) == "h1" ? booting_a : booting_b;
    auto& booting_on_h2 = &booting_on_h1 == &booting_a ? booting_b : booting_a;
    sandbox("kill-libvirtd --host 1");

    // h1's boot fails with host_down naming it; its two running containers
    // are reported lost; h1 is down.
    REQUIRE(run_until([&] { return booting_on_h1.done; }, 60s));
    CHECK(booting_on_h1.error == errc::host_down);
    CHECK_THAT(t.p_diag(booting_on_h1).client_message(), Catch::Contains("'h1'"));
    CHECK(t.state("h1") == hypervisor_host_state::down);
    CHECK(t.count(hypervisor_pool_event_type::host_down, "h1") == 1);
    CHECK(t.count(hypervisor_pool_event_type::container_lost, "h1") == 3);
    CHECK(t.count(hypervisor_pool_event_type::container_lost, "h2") == 0);

    // h2 is untouched: its boot ends well, and its containers still answer.
    REQUIRE(all_done({&booting_on_h2}, 300s));
    CHECK_FALSE(booting_on_h2.error);
    for (auto* p : on["h2"])
        CHECK(client_login(*p->result) == p->result->username + "\n");

    // While h1 is down, a new container goes to h2.
    auto& while_down = t.provision();
    REQUIRE(all_done({&while_down}, 300s));
    REQUIRE_FALSE(while_down.error);
    CHECK(while_down.result->host == "h2");

    // h1 comes back: the domains of its lost containers are destroyed
    // before it takes new ones, and it is used again.
    sandbox("up --hosts 2");
    REQUIRE(run_until([&] { return t.state("h1") == hypervisor_host_state::up; }, 120s));
    CHECK(t.count(hypervisor_pool_event_type::orphans_destroyed, "h1") == 1);
    CHECK(t.pool->get_host("h1")->orphans_destroyed == 3);
    CHECK(anweddol::test::domain_uuids(t.uris["h1"]) == before_h1);
    auto& back = t.provision();
    REQUIRE(all_done({&back}, 300s));
    REQUIRE_FALSE(back.error);
    CHECK(back.result->host == "h1"); // it has the most room, and no boot in flight
    CHECK(client_login(*back.result) == back.result->username + "\n");

    // Stopping everything leaves no domain on either host.
    for (const auto& p : t.started)
        if (p->container->is_domain_running() && t.pool->host_of(p->container->get_uuid()))
            run_coroutine([](std::shared_ptr<container_instance> c) -> awaitable<bool> {
                co_await c->stop_domain();
                co_return true;
            }(p->container));
    t.started.clear();
    run_coroutine([](hypervisor_pool& pool) -> awaitable<bool> {
        co_await pool.shutdown();
        co_return true;
    }(*t.pool));
    CHECK(run_until(
        [&] {
            return anweddol::test::domain_uuids(t.uris["h1"]) == before_h1 &&
                   anweddol::test::domain_uuids(t.uris["h2"]) == before_h2;
        },
        30s));
}
