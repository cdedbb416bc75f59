// Containers against the sandbox's libvirtd and QEMU: several boot at once
// from one thread, each learns its address from dnsmasq, and every way of
// stopping them leaves no domain behind.
#include "../unit/libvirt_domains.hpp"
#include "../unit/test_context.hpp"
#include "endpoint_secret.hpp"
#include "sandbox_settings.hpp"

#include <anweddol/container_instance.hpp>
#include <anweddol/detail/libvirt/call.hpp>
#include <anweddol/endpoint_shell_instance.hpp>
#include <anweddol/virtualization_interface.hpp>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/this_coro.hpp>

#include <catch2/catch.hpp>

#include <cstdlib>
#include <set>
#include <string>

using anweddol::container_instance;
using anweddol::test::run_coroutine;
using anweddol::test::run_until;
using anweddol::test::test_context;
using boost::asio::awaitable;
using namespace boost::asio::experimental::awaitable_operators;
using namespace std::chrono_literals;

namespace {

const std::string system_uri = "qemu:///system";

// Every domain libvirt knows, running or not, by UUID.
std::set<std::string> all_domains() {
    return anweddol::test::domain_uuids(system_uri, false);
}

void prepare(container_instance& container) {
    container.set_memory(512);
    container.set_vcpus(1);
    auto options = container.get_options();
    options.domain_type = anweddol::test::test_domain_type();
    options.shutdown_timeout = 90s;
    container.set_options(options);
}

} // namespace

TEST_CASE("three containers boot at once from one thread, each on the address reserved for it, "
          "and none, nor its reservation, is left after they stop") {
    std::vector<std::string> uuids;
    std::vector<std::string> reservations;
    {
        anweddol::virtualization_interface interface(test_context().get_executor());
        const std::string iso = anweddol::test::test_iso();
        auto destroyed = interface.create_container(iso);
        auto shut_down = interface.create_container(iso);
        auto left_to_interface = interface.create_container(iso);
        for (auto* c : {destroyed.get(), shut_down.get(), left_to_interface.get()}) {
            prepare(*c);
            uuids.push_back(c->get_uuid());
        }
        // The third asks for a dynamic lease, which its filter learns.
        auto dynamic = left_to_interface->get_options();
        dynamic.reserve_address = false;
        left_to_interface->set_options(dynamic);

        run_coroutine(
            [&]() -> awaitable<bool> {
                co_await (destroyed->start_domain(true, 240, system_uri) &&
                          shut_down->start_domain(true, 240, system_uri) &&
                          left_to_interface->start_domain(true, 240, system_uri));
                co_return true;
            }(),
            6min);

        std::set<std::string> addresses;
        for (auto* c : {destroyed.get(), shut_down.get(), left_to_interface.get()}) {
            REQUIRE(c->is_domain_running());
            const auto ip = c->get_ip();
            REQUIRE(ip);
            INFO("container " << c->get_uuid() << " got " << *ip);
            CHECK(ip->starts_with("192.168.122."));
            addresses.insert(*ip);
        }
        CHECK(addresses.size() == 3);
        // Each address was reserved on the network before its guest ran,
        // and is the one dnsmasq gave it; but for the third's.
        const auto entries = anweddol::test::dhcp_host_entries(system_uri);
        for (auto* c : {destroyed.get(), shut_down.get()}) {
            reservations.push_back(c->get_mac().value());
            REQUIRE(c->get_reserved_address());
            CHECK(c->get_ip() == c->get_reserved_address());
            CHECK(anweddol::test::reserved_for(entries, *c->get_mac()) ==
                  c->get_reserved_address());
        }
        CHECK_FALSE(left_to_interface->get_reserved_address());
        CHECK_FALSE(anweddol::test::reserved_for(entries, left_to_interface->get_mac().value()));
        const auto known = all_domains();
        for (const auto& uuid : uuids)
            CHECK(known.contains(uuid));

        run_coroutine(
            [&]() -> awaitable<bool> {
                co_await (destroyed->stop_domain(true) && shut_down->stop_domain(false));
                co_return true;
            }(),
            3min);
        CHECK_FALSE(destroyed->is_domain_running());
        CHECK_FALSE(shut_down->is_domain_running());
        CHECK(left_to_interface->is_domain_running());
        const auto after_stops = all_domains();
        CHECK_FALSE(after_stops.contains(uuids[0]));
        CHECK_FALSE(after_stops.contains(uuids[1]));
    } // the interface destroys the third in the background

    CHECK(run_until(
        [&] {
            const auto known = all_domains();
            return std::none_of(uuids.begin(), uuids.end(),
                                [&](const std::string& u) { return known.contains(u); });
        },
        30s));
    CHECK(run_until(
        [&] {
            const auto entries = anweddol::test::dhcp_host_entries(system_uri);
            return std::none_of(reservations.begin(), reservations.end(),
                                [&](const std::string& mac) {
                                    return anweddol::test::reserved_for(entries, mac).has_value();
                                });
        },
        30s));
}

TEST_CASE("a container's endpoint shell hands it over to a client, and endpoint is locked out") {
    auto container = std::make_shared<container_instance>(test_context().get_executor(),
                                                          anweddol::test::test_iso());
    prepare(*container);
    run_coroutine(
        [&]() -> awaitable<bool> {
            co_await container->start_domain(true, 240, system_uri);
            const std::string endpoint_password =
                anweddol::test::console_endpoint_password(*container);
            auto endpoint =
                co_await container->create_endpoint_shell("endpoint", endpoint_password);
            CHECK_FALSE(endpoint->is_closed());
            CHECK((co_await endpoint->execute("id -un")).std_out == "endpoint\n");

            const auto [username, password] = endpoint->generate_client_ssh_credentials(120, true);
            endpoint->store_client_ssh_credentials(username, password, 2222);
            co_await endpoint->administrate_container();
            co_await endpoint->close_shell();

            // The client logs in on its port...
            anweddol::endpoint_shell_instance client(co_await boost::asio::this_coro::executor,
                                                     *container->get_ip(), username, password,
                                                     2222);
            co_await client.open_shell();
            const auto whoami = co_await client.execute("id -un");
            CHECK(whoami.std_out == username + "\n");
            CHECK(whoami.exit_status == 0);
            co_await client.close_shell();

            // ...and endpoint no longer can, on either port.
            anweddol::endpoint_shell_options quick;
            quick.ready_timeout = 5s;
            for (const std::uint16_t port : {std::uint16_t{2222}, std::uint16_t{22}}) {
                anweddol::endpoint_shell_instance locked_out(
                    co_await boost::asio::this_coro::executor, *container->get_ip(), "endpoint",
                    endpoint_password, port);
                locked_out.set_options(quick);
                boost::system::error_code refusal;
                try {
                    co_await locked_out.open_shell();
                } catch (const boost::system::system_error& e) {
                    INFO("port " << port << ": " << e.what());
                    refusal = e.code();
                }
                // The client's server refuses the password; nothing listens on 22.
                if (port == 2222)
                    CHECK(refusal == anweddol::errc::authentication_failed);
                else
                    CHECK(refusal);
            }
            co_await container->stop_domain();
            co_return true;
        }(),
        6min);
    CHECK_FALSE(container->is_domain_running());
}
