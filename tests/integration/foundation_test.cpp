// The foundation: the sandbox's libvirtd boots the test ISO as a transient
// domain, dnsmasq leases it an address, and the guest's setup script hands it
// over from `endpoint` to a client user.
#include "blocking_container.hpp"
#include "endpoint_secret.hpp"
#include "sandbox_settings.hpp"

#include <catch2/catch.hpp>

#include <cstdlib>

using namespace anweddol::tools;
using namespace std::chrono_literals;

namespace {

const std::string status_file = "/var/lib/libvirt/dnsmasq/virbr0.status";

} // namespace

TEST_CASE("a transient domain booted from the test ISO is handed over from endpoint to a client") {
    anweddol::detail::connect_handle connection(virConnectOpen("qemu:///system"));
    REQUIRE(connection);

    domain_spec spec;
    spec.name = "anweddol-it-foundation-" + spec.mac.substr(12, 2) + spec.mac.substr(15, 2);
    spec.iso_path = anweddol::test::test_iso();
    spec.type = anweddol::test::test_domain_type();
    spec.console_log = "/tmp/" + spec.name + ".console";
    {
        transient_domain domain(connection.get(), spec);
        CHECK(virDomainIsPersistent(domain.get()) == 0);

        const std::string ip = wait_for_lease(status_file, spec.mac, 3min);
        INFO("guest " << spec.name << " leased " << ip);
        // The endpoint's password of this boot, from the console.
        const std::string endpoint_password =
            anweddol::test::logged_endpoint_password(spec.console_log, 1min);
        auto endpoint = ssh_login::connect(ip, 22, "endpoint", endpoint_password, 1min);
        // The public one opens nothing.
        CHECK(ssh_login(ip, 22, "endpoint", "endpoint").failure() ==
              login_failure::refused_credentials);

        SECTION("the setup script refuses bad arguments loudly and changes nothing") {
            for (const std::string arguments :
                 {"", "only_a_name", "user_10001 password", "user_10001 password 0",
                  "user_10001 password 70000", "user_10001 password 22x",
                  "'x; reboot' password 2222", "root password 2222", "endpoint password 2222",
                  "user_10001 '' 2222", "user_10001 password 2222 extra"}) {
                INFO("arguments: " << arguments);
                const auto result =
                    endpoint.run("sudo /bin/anweddol_container_setup.sh " + arguments);
                CHECK(result.exit_status != 0);
                CHECK(result.std_err.find("anweddol_container_setup.sh: ") != std::string::npos);
            }
            CHECK(endpoint.run("id -u user_10001").exit_status != 0);
            CHECK(ssh_login(ip, 22, "endpoint", endpoint_password).failure() ==
                  login_failure::none);
        }

        SECTION("the client logs in on its port and endpoint is refused afterwards") {
            const std::string username = random_username();
            const std::string password = random_password(120);
            const auto setup =
                endpoint.run("sudo /bin/anweddol_container_setup.sh " + shell_quote(username) +
                             " " + shell_quote(password) + " 2222");
            CHECK(setup.std_out.empty());
            CHECK(setup.std_err.empty());
            REQUIRE(setup.exit_status == 0);

            auto client = ssh_login::connect(ip, 2222, username, password, 30s);
            const auto whoami = client.run("id -un; echo to-stderr >&2; exit 3");
            CHECK(whoami.std_out == username + "\n");
            CHECK(whoami.std_err == "to-stderr\n");
            CHECK(whoami.exit_status == 3);

            CHECK(ssh_login(ip, 2222, "endpoint", endpoint_password).failure() ==
                  login_failure::refused_credentials);
            CHECK(ssh_login(ip, 22, "endpoint", endpoint_password).failure() !=
                  login_failure::none);
            CHECK(ssh_login(ip, 2222, username, password + "x").failure() ==
                  login_failure::refused_credentials);

            // Only endpoint may run the setup script as root.
            const auto escalation = client.run("sudo /bin/anweddol_container_setup.sh a b 2223");
            CHECK(escalation.exit_status != 0);
            CHECK(client.run("sudo id").exit_status != 0);
        }
    }
    // Transient: destroying the domain removed it from libvirt altogether.
    anweddol::detail::domain_handle gone(
        virDomainLookupByName(connection.get(), spec.name.c_str()));
    CHECK_FALSE(gone);
}
