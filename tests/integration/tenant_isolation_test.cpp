// Hostile tenants, attacked for real from inside guests of the sandbox:
// one guest cannot reach, ping, impersonate or route to another, unless
// isolation is turned off (then the same probes get through, so the probes
// do detect a way in); a container waiting in a warm pool cannot be logged
// in to as endpoint with the public password, even from a guest that can
// reach it; and during a hand-over no process of the endpoint user sees the
// client's password, none of them survives it, nor do their files.
//
// The guests probe with the test ISO's anweddol_net_probe.sh (root through
// its sudo), which a tenant with root in their own guest could do anyway.
// GCC 12 takes the co_spawn of a coroutine frame, which Asio allocates and
// frees with its own operators, for a mismatched new and delete: a false
// positive that examples/ and tools/ silence too.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

#include "../unit/test_context.hpp"
#include "endpoint_secret.hpp"
#include "sandbox_settings.hpp"

#include <anweddol/container_pool.hpp>
#include <anweddol/detail/libvirt/call.hpp>
#include <anweddol/detail/libvirt/handle.hpp>
#include <anweddol/endpoint_shell_instance.hpp>
#include <anweddol/provisioning.hpp>
#include <anweddol/snapshot_slot.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <catch2/catch.hpp>

#include <filesystem>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

using anweddol::command_result;
using anweddol::endpoint_shell_instance;
using anweddol::provisioned_container;
using anweddol::provisioning_options;
using anweddol::detail::booted_container;
using anweddol::test::run_coroutine;
using anweddol::test::run_until;
using anweddol::test::test_context;
using boost::asio::awaitable;
using namespace std::chrono_literals;

namespace {

const std::string system_uri = "qemu:///system";
// An address of the guests' subnet that no lease hands out in these tests.
const std::string spoofed_ip = "192.168.122.253";
const std::string spoofed_mac = "52:54:00:de:ad:01";

std::shared_ptr<anweddol::container_instance> new_container(bool isolated) {
    auto container = std::make_shared<anweddol::container_instance>(
        test_context().get_executor(), anweddol::test::test_iso(), "", 512, 1);
    auto options = container->get_options();
    options.domain_type = anweddol::test::test_domain_type();
    if (!isolated) {
        options.isolation.isolate_ports = false;
        options.isolation.traffic_filter = anweddol::isolation_requirement::off;
    }
    container->set_options(options);
    return container;
}

provisioning_options provisioning() {
    provisioning_options options;
    options.driver_uri = system_uri;
    options.domain_type = anweddol::test::test_domain_type();
    return options;
}

// Two containers booted at once, each with its endpoint logged in, not yet
// handed over: port 22 still serves the endpoint.
std::pair<booted_container, booted_container> boot_two(bool isolated,
                                                       const provisioning_options& options) {
    auto first = new_container(isolated);
    auto second = new_container(isolated);
    std::optional<booted_container> a, b;
    std::exception_ptr failure;
    int done = 0;
    const auto boot = [&](std::shared_ptr<anweddol::container_instance> c,
                          std::optional<booted_container>& out) {
        boost::asio::co_spawn(test_context(), anweddol::detail::boot_and_log_in(c, options),
                              [&, c](std::exception_ptr e, booted_container booted) {
                                  if (e)
                                      failure = e;
                                  else
                                      out.emplace(std::move(booted));
                                  ++done;
                              });
    };
    boot(first, a);
    boot(second, b);
    REQUIRE(run_until([&] { return done == 2; }, 5min));
    if (failure)
        std::rethrow_exception(failure);
    return {std::move(*a), std::move(*b)};
}

command_result run_in(endpoint_shell_instance& shell, std::string command) {
    return run_coroutine(shell.execute(std::move(command)), 2min);
}

// The probe's verdict, from the guest whose shell this is.
std::string probe(endpoint_shell_instance& shell, const std::string& arguments) {
    const auto result = run_in(shell, "sudo /bin/anweddol_net_probe.sh " + arguments);
    INFO("probe " << arguments << ": " << result.std_out << result.std_err);
    REQUIRE(result.exit_status == 0);
    if (result.std_out == "reached\n" || result.std_out == "blocked\n")
        return result.std_out.substr(0, result.std_out.size() - 1);
    return result.std_out;
}

// A TCP service of the host on the guests' bridge that greets whoever
// connects and remembers from which address: what reached the host, and as
// whom.
struct greeting_listener {
    boost::asio::ip::tcp::acceptor acceptor{test_context(),
                                            {boost::asio::ip::address_v4::any(), 0}};
    std::shared_ptr<std::vector<std::string>> peers = std::make_shared<std::vector<std::string>>();

    greeting_listener() { boost::asio::co_spawn(test_context(), serve(), boost::asio::detached); }
    ~greeting_listener() {
        boost::system::error_code ignored;
        acceptor.close(ignored);
    }
    std::uint16_t port() const { return acceptor.local_endpoint().port(); }
    bool saw(const std::string& address) const {
        for (const auto& peer : *peers)
            if (peer == address)
                return true;
        return false;
    }

private:
    awaitable<void> serve() {
        auto seen = peers;
        for (;;) {
            auto [error, socket] =
                co_await acceptor.async_accept(boost::asio::as_tuple(boost::asio::use_awaitable));
            if (error == boost::asio::error::operation_aborted)
                co_return;
            if (error)
                continue;
            seen->push_back(socket.remote_endpoint().address().to_string());
            auto greeting = std::make_shared<boost::asio::ip::tcp::socket>(std::move(socket));
            boost::asio::async_write(*greeting, boost::asio::buffer("anweddol\n", 9),
                                     [greeting](auto, auto) {});
        }
    }
};

std::string gateway_of(endpoint_shell_instance& shell) {
    const auto route = run_in(shell, "ip route show default | awk '{ print $3; exit }'");
    REQUIRE(route.exit_status == 0);
    return route.std_out.substr(0, route.std_out.find('\n'));
}

void stop_all(std::vector<std::shared_ptr<anweddol::container_instance>> containers) {
    for (auto& c : containers)
        if (c && c->is_domain_running())
            run_coroutine(
                [](std::shared_ptr<anweddol::container_instance> c) -> awaitable<bool> {
                    co_await c->stop_domain();
                    co_return true;
                }(c),
                2min);
}

// Every probe of guest A against guest B and against the host.
struct probe_results {
    std::string own_path, b_ssh_endpoint, b_ssh_client, b_ping, b_via_gateway, spoofed_ip,
        spoofed_mac;
};

probe_results probe_all(booted_container& a, booted_container& b,
                        const provisioning_options& options, provisioned_container& b_handed_over,
                        greeting_listener& host) {
    auto& shell = *a.endpoint;
    const std::string gateway = gateway_of(shell);
    const std::string port = std::to_string(host.port());
    const std::string b_ip = b.partial.ip;
    probe_results r;
    r.own_path = probe(shell, "direct " + gateway + " " + port);
    r.b_ssh_endpoint = probe(shell, "direct " + b_ip + " 22");
    r.b_ping = probe(shell, "ping " + b_ip);
    // B handed over: its client's server listens on 2222.
    b_handed_over = run_coroutine(anweddol::detail::hand_over(std::move(b), options), 3min);
    r.b_ssh_client = probe(shell, "direct " + b_ip + " 2222");
    r.b_via_gateway = probe(shell, "gateway " + b_ip + " 2222");
    r.spoofed_ip = probe(shell, "ip " + spoofed_ip + " " + gateway + " " + port);
    r.spoofed_mac = probe(shell, "mac " + spoofed_mac + " " + gateway + " " + port);
    return r;
}

} // namespace

TEST_CASE(
    "tenants: an isolated guest cannot reach, ping, route to or impersonate another, and with "
    "isolation off the same probes get through") {
    greeting_listener host;
    const auto options = provisioning();

    SECTION("isolated (the default)") {
        auto [a, b] = boot_two(true, options);
        CHECK(a.partial.isolation.ports_isolated);
        CHECK(a.partial.isolation.traffic_filtered);
        CHECK(a.partial.isolation.downgrades.empty());
        auto a_container = a.partial.container;
        auto b_container = b.partial.container;
        provisioned_container b_client;
        const auto r = probe_all(a, b, options, b_client, host);
        stop_all({a_container, b_container});
        // The host's bridge address still serves the guest (DHCP, DNS, the
        // gateway), under the guest's own address.
        CHECK(r.own_path == "reached");
        CHECK(r.b_ssh_endpoint == "blocked");
        CHECK(r.b_ssh_client == "blocked");
        CHECK(r.b_ping == "blocked");
        CHECK(r.b_via_gateway == "blocked");
        CHECK(r.spoofed_ip == "blocked");
        CHECK(r.spoofed_mac == "blocked");
        CHECK_FALSE(host.saw(spoofed_ip));
    }
    SECTION("isolation off") {
        auto [a, b] = boot_two(false, options);
        CHECK_FALSE(a.partial.isolation.ports_isolated);
        CHECK_FALSE(a.partial.isolation.traffic_filtered);
        auto a_container = a.partial.container;
        auto b_container = b.partial.container;
        provisioned_container b_client;
        const auto r = probe_all(a, b, options, b_client, host);
        stop_all({a_container, b_container});
        CHECK(r.own_path == "reached");
        CHECK(r.b_ssh_endpoint == "reached");
        CHECK(r.b_ssh_client == "reached");
        CHECK(r.b_ping == "reached");
        CHECK(r.b_via_gateway == "reached");
        CHECK(r.spoofed_ip == "reached");
        CHECK(r.spoofed_mac == "reached");
        CHECK(host.saw(spoofed_ip));
    }
}

namespace {

// The address libvirt's DHCP leased to domain `uuid`: its interface's MAC,
// looked up in the leases of the network that owns the sandbox's bridge (a
// domain on a bridge interface has no network of its own to ask).
std::string leased_address(const std::string& uuid) {
    return run_coroutine(
        [](std::string uuid) -> awaitable<std::string> {
            auto connection = co_await anweddol::hypervisor_connection::open(system_uri);
            auto asking = connection->call([uuid](virConnectPtr c) {
                anweddol::detail::domain_handle domain(
                    virDomainLookupByUUIDString(c, uuid.c_str()));
                if (!domain)
                    anweddol::detail::throw_last_libvirt_error("looking up " + uuid);
                char* xml = virDomainGetXMLDesc(domain.get(), 0);
                const std::string description = xml ? xml : "";
                std::free(xml);
                const auto at = description.find("<mac address='");
                if (at == std::string::npos)
                    return std::string();
                const std::string mac = description.substr(at + 14, 17);
                virNetworkPtr network = virNetworkLookupByName(c, "default");
                if (!network)
                    anweddol::detail::throw_last_libvirt_error("looking up network default");
                virNetworkDHCPLeasePtr* leases = nullptr;
                const int count = virNetworkGetDHCPLeases(network, mac.c_str(), &leases, 0);
                std::string address;
                for (int i = 0; i < count; ++i) {
                    if (address.empty() && leases[i]->ipaddr)
                        address = leases[i]->ipaddr;
                    virNetworkDHCPLeaseFree(leases[i]);
                }
                std::free(leases);
                virNetworkFree(network);
                return address;
            });
            co_return co_await std::move(asking);
        }(uuid),
        1min);
}

std::unique_ptr<endpoint_shell_instance> client_shell(const provisioned_container& c) {
    return std::make_unique<endpoint_shell_instance>(test_context().get_executor(), c.ip,
                                                     c.username, c.password, c.port);
}

} // namespace

TEST_CASE("tenants: a container waiting in a pool refuses the public endpoint login, even from a "
          "guest that reaches it") {
    // Isolation off on purpose: the attacker's guest reaches the pooled
    // one's port 22, and only its credentials stand in the way.
    auto pool_options = anweddol::container_pool_options{};
    pool_options.size = 1;
    pool_options.iso_path = anweddol::test::test_iso();
    pool_options.memory = 512;
    pool_options.vcpus = 1;
    pool_options.container.domain_type = anweddol::test::test_domain_type();
    pool_options.container.isolation.isolate_ports = false;
    pool_options.container.isolation.traffic_filter = anweddol::isolation_requirement::off;
    pool_options.provisioning.driver_uri = system_uri;
    pool_options.provisioning.domain_type = anweddol::test::test_domain_type();
    std::string pooled_uuid;
    pool_options.on_event = [&](const anweddol::container_pool_event& e) {
        if (e.type == anweddol::container_pool_event_type::ready)
            pooled_uuid = e.uuid;
    };
    anweddol::container_pool pool(test_context().get_executor(), pool_options);

    auto attacker_container = new_container(false);
    auto attacker = run_coroutine(anweddol::provision(attacker_container, provisioning()), 5min);
    REQUIRE(run_until([&] { return !pooled_uuid.empty(); }, 5min));
    const std::string target = leased_address(pooled_uuid);
    REQUIRE_FALSE(target.empty());

    auto shell_owner = client_shell(attacker);
    auto& shell = *shell_owner;
    anweddol::test::run(shell.open_shell(), 2min);
    // It reaches the pooled guest's SSH server...
    const auto banner = run_in(shell, "nc -w 3 " + target + " 22 </dev/null | head -c 8");
    CHECK(banner.std_out == "SSH-2.0-");
    // ...whose endpoint account takes neither the public password nor an
    // empty one. OpenSSH's client reads the password from SSH_ASKPASS.
    const auto login = run_in(
        shell, "printf '#!/bin/sh\\necho endpoint\\n' >/tmp/askpass && chmod 700 /tmp/askpass && "
               "SSH_ASKPASS=/tmp/askpass SSH_ASKPASS_REQUIRE=force DISPLAY=none "
               "ssh -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
               "-o PreferredAuthentications=password -o NumberOfPasswordPrompts=1 "
               "-o ConnectTimeout=10 endpoint@" +
                   target + " echo logged-in </dev/null");
    INFO(login.std_out << login.std_err);
    CHECK(login.std_out.find("logged-in") == std::string::npos);
    CHECK(login.exit_status != 0);
    CHECK(login.std_err.find("Permission denied") != std::string::npos);
    anweddol::test::run(shell.close_shell(), 1min);

    // The pooled container still hands over as usual, with what protected it.
    auto taken = run_coroutine(pool.take(), 3min);
    CHECK(taken.endpoint_password == anweddol::endpoint_password_source::console);
    CHECK(taken.endpoint_password_rotated);
    CHECK(taken.client_password_delivery == anweddol::password_delivery::standard_input);
    anweddol::test::run(pool.shutdown(), 2min);
    stop_all({attacker_container, taken.container});
}

TEST_CASE("tenants: during a hand-over no endpoint process sees the client's password, and none "
          "of them, nor their files, outlive it") {
    auto options = provisioning();
    auto container = new_container(true);
    auto booted = run_coroutine(anweddol::detail::boot_and_log_in(container, options), 5min);
    // An intruder who got in as endpoint before the hand-over: it samples
    // every command line and environment it can read, every 10 ms, into
    // its home (the hand-over clears /tmp), and leaves a file in /tmp.
    const auto planted = run_in(
        *booted.endpoint,
        "touch /tmp/left-by-endpoint && "
        "setsid sh -c 'echo $$ >/home/endpoint/sampler.pid; "
        "while :; do cat /proc/[0-9]*/cmdline /proc/[0-9]*/environ 2>/dev/null | tr \"\\000\" \" "
        "\"; "
        "echo; ls /home; usleep 10000; done >/home/endpoint/samples' </dev/null >/dev/null 2>&1 & "
        "sleep 1; chmod 755 /home/endpoint; chmod 644 /home/endpoint/samples "
        "/home/endpoint/sampler.pid; cat /home/endpoint/sampler.pid");
    REQUIRE(planted.exit_status == 0);
    const std::string sampler_pid = planted.std_out.substr(0, planted.std_out.find('\n'));
    REQUIRE_FALSE(sampler_pid.empty());

    auto handed_over = run_coroutine(anweddol::detail::hand_over(std::move(booted), options), 3min);
    auto client_owner = client_shell(handed_over);
    auto& client = *client_owner;
    anweddol::test::run(client.open_shell(), 2min);
    const auto samples = run_in(client, "cat /home/endpoint/samples");
    const auto sampler = run_in(client, "kill -0 " + sampler_pid + " 2>&1; ls /tmp");
    anweddol::test::run(client.close_shell(), 1min);
    stop_all({container});

    // The sampler ran while the setup script did: it saw the client's home
    // appear, which the script makes before it ends endpoint's processes.
    // Without hidepid and with the password as an argument, it would have
    // read the password in the script's command line then.
    INFO(samples.std_err << " (" << samples.std_out.size() << " bytes sampled)");
    CHECK(samples.std_out.find(handed_over.username) != std::string::npos);
    CHECK(samples.std_out.find(handed_over.password) == std::string::npos);
    CHECK(handed_over.client_password_delivery == anweddol::password_delivery::standard_input);
    // It is gone (not merely hidden: that would be "Operation not
    // permitted"), and so is its file in /tmp.
    CHECK(sampler.std_out.find("No such process") != std::string::npos);
    CHECK(sampler.std_out.find("left-by-endpoint") == std::string::npos);
}

// Two tenants, one after the other, of containers restored from one
// snapshot slot: the saved guest stopped before anything secret existed,
// so each restore must make its own host keys, endpoint secret and client
// credentials, reseed its RNG (the image holds one RNG state for every
// restore), and start from the image, not from what the first tenant left.
TEST_CASE("tenants: two containers restored from one snapshot slot share no host keys, RNG "
          "output, credentials or files") {
    auto slot = std::make_shared<anweddol::snapshot_slot>(test_context().get_executor());
    const auto options = provisioning();
    struct tenant_view {
        bool restored = false;
        std::vector<std::string> host_keys;
        std::string endpoint_password, username, client_password, random, leftovers, ip;
    };
    const auto serve_tenant = [&](bool plant) {
        auto container = std::make_shared<anweddol::container_instance>(
            test_context().get_executor(), anweddol::test::test_iso(), slot->get_uuid(), 512, 1);
        auto container_options = container->get_options();
        container_options.domain_type = anweddol::test::test_domain_type();
        container_options.slot = slot;
        container->set_options(container_options);
        tenant_view view;
        auto booted = run_coroutine(anweddol::detail::boot_and_log_in(container, options), 8min);
        view.restored = container->was_restored();
        view.endpoint_password = anweddol::test::console_endpoint_password(*container);
        for (const auto& key :
             anweddol::detail::console_access::ring(*container)->announcement().host_keys)
            view.host_keys.push_back(key.fingerprint);
        CHECK(slot->is_in_use());
        if (plant) {
            // One container at a time: a second start is refused, and
            // leaves the first alone.
            auto other = std::make_shared<anweddol::container_instance>(
                test_context().get_executor(), anweddol::test::test_iso(), slot->get_uuid(), 512,
                1);
            other->set_options(container_options);
            const auto refused = run_coroutine(
                [](std::shared_ptr<anweddol::container_instance> c) -> awaitable<int> {
                    // Built outside the co_await: GCC 12 destroys its
                    // temporaries twice.
                    auto starting =
                        c->start_domain(anweddol::start_options{},
                                        boost::asio::as_tuple(boost::asio::use_awaitable));
                    auto [error] = co_await std::move(starting);
                    co_return error == anweddol::errc::snapshot_slot_busy ? 1 : 0;
                }(other),
                1min);
            CHECK(refused == 1);
            CHECK(container->is_domain_running());
        }
        auto handed_over =
            run_coroutine(anweddol::detail::hand_over(std::move(booted), options), 3min);
        view.username = handed_over.username;
        view.client_password = handed_over.password;
        view.ip = handed_over.ip;
        auto client = client_shell(handed_over);
        anweddol::test::run(client->open_shell(), 2min);
        // Right after the hand-over, as a tenant's first command would.
        const auto random = run_in(*client, "head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'");
        REQUIRE(random.exit_status == 0);
        view.random = random.std_out;
        const auto leftovers =
            run_in(*client, "ls -a /tmp /home /home/* 2>/dev/null; cat /tmp/planted 2>&1");
        view.leftovers = leftovers.std_out;
        if (plant)
            REQUIRE(run_in(*client, "echo first-tenant >/tmp/planted && "
                                    "echo first-tenant >$HOME/planted")
                        .exit_status == 0);
        anweddol::test::run(client->close_shell(), 1min);
        stop_all({container});
        CHECK_FALSE(slot->is_in_use());
        return view;
    };
    const auto first = serve_tenant(true);
    const auto second = serve_tenant(false);

    CHECK(first.restored);
    CHECK(second.restored);
    CHECK(slot->is_saved());
    // The slot's address, for both: the restored MAC is the saved one's.
    REQUIRE(slot->get_reserved_address());
    CHECK(first.ip == *slot->get_reserved_address());
    CHECK(second.ip == first.ip);
    REQUIRE_FALSE(first.host_keys.empty());
    REQUIRE_FALSE(second.host_keys.empty());
    for (const auto& key : first.host_keys)
        for (const auto& other : second.host_keys)
            CHECK(key != other);
    CHECK(first.endpoint_password != second.endpoint_password);
    CHECK(first.client_password != second.client_password);
    CHECK(first.random.size() == 64);
    CHECK(first.random != second.random);
    INFO("what the second tenant found: " << second.leftovers);
    CHECK(second.leftovers.find("first-tenant") == std::string::npos);
    CHECK(second.leftovers.find(first.username) == std::string::npos);

    // The image goes with the slot.
    const auto image = slot->get_image_path();
    CHECK(std::filesystem::exists(image));
    slot.reset();
    CHECK(run_until([&] { return !std::filesystem::exists(image); }, 30s));
}
