// anweddol-server's configuration file: the reference's config.yaml loads with
// its values, and every refusal names the file, the key and the reason.
#include "configuration.hpp"
#include "ip_filter.hpp"

#include "../unit/scratch_directory.hpp"

#include <catch2/catch.hpp>

#include <fstream>
#include <optional>
#include <string>

namespace server = anweddol::server;
namespace ip = boost::asio::ip;

namespace {

// The reference's resources/config.yaml, key for key (its comments left
// out), with values changed where that shows they are read.
const std::string reference_file = R"(
container:
  container_iso_file_path: /srv/iso/anweddol_container.iso
  max_allowed_running_container_domains: 6
  container_memory: 1024
  container_vcpus: 2
  nat_interface_name: virbr0
  domain_type: kvm
  wait_max_tryout: 20
  endpoint_username: endpoint
  endpoint_password: endpoint
  endpoint_listen_port: 22
server:
  public_rsa_key_file_path: /etc/anweddol/rsa/public.pem
  private_rsa_key_file_path: /etc/anweddol/rsa/private.pem
  log_file_path: /var/log/anweddol/server.txt
  pid_file_path: /etc/anweddol/server_daemon.pid
  user: anweddol
  bind_address: 0.0.0.0
  listen_port: 6150
  timeout: 10
  enable_onetime_rsa_keys: False
web_server:
  log_file_path: /var/log/anweddol/web_server.txt
  pid_file_path: /etc/anweddol/web_server_daemon.pid
  user: anweddol
  listen_port: 8080
  enable_ssl: False
  ssl_pem_private_key_file_path: /etc/anweddol/ssl/private_key.pem
  ssl_pem_certificate_file_path: /etc/anweddol/ssl/certificate.pem
port_forwarding:
  port_range: [10000, 20000]
log_rotation:
  enabled: True
  log_archive_folder_path: /var/log/anweddol/archived
  max_log_lines_amount: 4000
  action: archive
ip_filter:
  enabled: False
  denied_ip_list: []
  allowed_ip_list:
    - any
access_token:
  enabled: False
  access_token_database_file_path: /etc/anweddol/credentials/access_token.db
)";

server::server_configuration parse(const std::string& yaml) {
    return server::parse_configuration(yaml, "/etc/anweddol/config.yaml");
}

// The error a refused file raises; fails the test when it is accepted.
server::configuration_error refused(const std::string& yaml) {
    try {
        parse(yaml);
    } catch (const server::configuration_error& e) {
        return e;
    }
    FAIL("accepted:\n" << yaml);
    throw std::logic_error("unreachable");
}

// Checks that the message names the file, the key and the reason.
void check_refusal(const std::string& yaml, const std::string& key, const std::string& reason) {
    const auto e = refused(yaml);
    INFO(e.what());
    CHECK(e.file() == "/etc/anweddol/config.yaml");
    CHECK(e.key() == key);
    CHECK_THAT(e.reason(), Catch::Contains(reason));
    const std::string message = e.what();
    CHECK_THAT(message, Catch::StartsWith("/etc/anweddol/config.yaml:"));
    CHECK_THAT(message, Catch::Contains(": " + key + ": "));
    CHECK_THAT(message, Catch::EndsWith(e.reason()));
}

// reference_file with `from` replaced by `to` (which must be there).
std::string edited(const std::string& from, const std::string& to) {
    std::string text = reference_file;
    const auto at = text.find(from);
    REQUIRE(at != std::string::npos);
    return text.replace(at, from.size(), to);
}

} // namespace

TEST_CASE("server configuration: the reference's config.yaml loads with its values") {
    const auto c = parse(reference_file);
    CHECK(c.file == "/etc/anweddol/config.yaml");
    CHECK(c.container.container_iso_file_path == "/srv/iso/anweddol_container.iso");
    CHECK(c.container.max_allowed_running_container_domains == 6u);
    CHECK(c.container.container_memory == 1024);
    CHECK(c.container.container_vcpus == 2);
    CHECK(c.container.nat_interface_name == "virbr0");
    CHECK(c.container.domain_type == "kvm");
    CHECK(c.container.wait_max_tryout == 20);
    CHECK(c.container.endpoint_username == "endpoint");
    CHECK(c.container.endpoint_password.reveal() == "endpoint");
    CHECK(c.container.endpoint_listen_port == 22);
    CHECK(c.server.public_rsa_key_file_path == "/etc/anweddol/rsa/public.pem");
    CHECK(c.server.private_rsa_key_file_path == "/etc/anweddol/rsa/private.pem");
    CHECK(c.server.bind_address == ip::make_address("0.0.0.0"));
    CHECK(c.server.listen_port == 6150);
    CHECK(c.server.timeout == std::chrono::seconds(10));
    CHECK_FALSE(c.server.enable_onetime_rsa_keys);
    CHECK(c.web_server.listen_port == 8080);
    CHECK_FALSE(c.web_server.enable_ssl);
    CHECK(c.web_server.ssl_pem_certificate_file_path == "/etc/anweddol/ssl/certificate.pem");
    CHECK(c.port_forwarding.low == 10000);
    CHECK(c.port_forwarding.high == 20000);
    CHECK(c.port_forwarding.size() == 10001);
    CHECK(c.log_rotation.enabled);
    CHECK(c.log_rotation.max_log_lines_amount == 4000);
    CHECK(c.log_rotation.action == server::log_rotation_settings::rotation_action::archive);
    CHECK_FALSE(c.ip_filter.enabled);
    CHECK_FALSE(c.ip_filter.denied_any);
    CHECK(c.ip_filter.allowed_any);
    CHECK(c.ip_filter.allowed_ips.empty());
    CHECK_FALSE(c.access_token.enabled);
    CHECK(c.access_token.access_token_database_file_path ==
          "/etc/anweddol/credentials/access_token.db");
    // Our section's defaults.
    REQUIRE(c.anweddol.hypervisors.size() == 1);
    CHECK(c.anweddol.hypervisors[0].name == "local");
    CHECK(c.anweddol.hypervisors[0].uri == "qemu:///system");
    CHECK(c.anweddol.hypervisors[0].nat_interface_name == "virbr0");
    CHECK_FALSE(c.anweddol.hypervisors[0].jump);
    CHECK(c.anweddol.warm_pool_size == 0);
    CHECK(c.anweddol.max_container_lifetime == std::chrono::seconds(0));
    CHECK(c.anweddol.state_database_file_path == "/var/lib/anweddol/server.db");
    CHECK(c.anweddol.metrics_enabled);
    CHECK(c.anweddol.enable_classic_server);
    CHECK(c.anweddol.enable_web_server);
    CHECK(c.anweddol.forward_bind_address == c.server.bind_address);
}

TEST_CASE("server configuration: keys left out take the reference's shipped values") {
    const auto c = parse("server:\n  listen_port: 7000\nweb_server:\n");
    CHECK(c.server.listen_port == 7000);
    CHECK(c.container.max_allowed_running_container_domains == 6u);
    CHECK(c.container.container_memory == 1024);
    CHECK(c.container.container_iso_file_path == "/etc/anweddol/iso/anweddol_container.iso");
    CHECK(c.web_server.listen_port == 8080);
    CHECK(c.port_forwarding.low == 10000);
    CHECK(c.port_forwarding.high == 20000);
    CHECK(c.ip_filter.allowed_any);
}

TEST_CASE("server configuration: nulls where the reference allows them mean no limit") {
    const auto c = parse(edited("max_allowed_running_container_domains: 6",
                                "max_allowed_running_container_domains: null") +
                         "anweddol:\n  warm_pool_size: 40\n");
    CHECK_FALSE(c.container.max_allowed_running_container_domains);
    CHECK(c.anweddol.warm_pool_size == 40);
    CHECK_FALSE(parse(edited("timeout: 10", "timeout: ~")).server.timeout);
    check_refusal(edited("container_memory: 1024", "container_memory: null"),
                  "container.container_memory", "must be an integer, not null");
}

TEST_CASE("server configuration: an unknown key is refused, in any section") {
    check_refusal(edited("container_memory: 1024", "container_memroy: 1024"),
                  "container.container_memroy", "unknown key (the keys here are: ");
    check_refusal(reference_file + "web_sever:\n  listen_port: 8080\n", "web_sever", "unknown key");
    check_refusal(reference_file + "anweddol:\n  warm_pool: 2\n", "anweddol.warm_pool",
                  "unknown key");
    check_refusal(reference_file + "anweddol:\n  hypervisors:\n    - name: a\n      uri: "
                                   "test:///default\n      colour: red\n",
                  "anweddol.hypervisors[0].colour", "unknown key");
    const auto e = refused(edited("container_memory: 1024", "container_memroy: 1024"));
    CHECK(e.line() == 5);
}

TEST_CASE("server configuration: a key given twice is refused") {
    check_refusal(edited("  container_vcpus: 2\n", "  container_vcpus: 2\n  container_vcpus: 4\n"),
                  "container.container_vcpus", "given twice (also on line 6)");
}

TEST_CASE("server configuration: a wrong type is refused") {
    check_refusal(edited("listen_port: 6150", "listen_port: \"6150\""), "server.listen_port",
                  "must be an integer, not a string (write it without quotes)");
    check_refusal(edited("container_memory: 1024", "container_memory: lots"),
                  "container.container_memory", "must be an integer, not a string");
    check_refusal(edited("container_memory: 1024", "container_memory: 1024.5"),
                  "container.container_memory", "must be an integer, not a number");
    check_refusal(edited("enable_ssl: False", "enable_ssl: 1"), "web_server.enable_ssl",
                  "must be a boolean, not an integer");
    check_refusal(edited("user: anweddol\n  bind", "user: 1000\n  bind"), "server.user",
                  "must be a string, not an integer (put it in quotes)");
    check_refusal(edited("port_range: [10000, 20000]", "port_range: 10000"),
                  "port_forwarding.port_range", "must be a list, not an integer");
    check_refusal("container: [1]\n", "container", "must be a mapping of keys, not a list");
    check_refusal(reference_file + "anweddol:\n  metrics: maybe\n", "anweddol.metrics",
                  "must be a boolean or a mapping with 'enabled', not a string");
    // A quoted number is a string where a string is wanted.
    CHECK(parse(edited("user: anweddol\n  bind", "user: \"1000\"\n  bind")).server.user == "1000");
}

TEST_CASE("server configuration: a value out of range is refused") {
    check_refusal(edited("listen_port: 6150", "listen_port: 0"), "server.listen_port",
                  "must be between 1 and 65535, not 0");
    check_refusal(edited("listen_port: 8080", "listen_port: 65536"), "web_server.listen_port",
                  "must be between 1 and 65535, not 65536");
    check_refusal(edited("container_memory: 1024", "container_memory: 0"),
                  "container.container_memory", "must be between 256 and 16777216 (MB), not 0");
    check_refusal(edited("container_vcpus: 2", "container_vcpus: -1"), "container.container_vcpus",
                  "not -1");
    check_refusal(edited("max_allowed_running_container_domains: 6",
                         "max_allowed_running_container_domains: 0"),
                  "container.max_allowed_running_container_domains", "not 0");
    check_refusal(edited("wait_max_tryout: 20", "wait_max_tryout: -2"), "container.wait_max_tryout",
                  "not -2");
    check_refusal(edited("timeout: 10", "timeout: 0"), "server.timeout", "not 0");
    check_refusal(edited("listen_port: 6150", "listen_port: 99999999999999999999999"),
                  "server.listen_port", "not 99999999999999999999999");
    check_refusal(edited("action: archive", "action: compress"), "log_rotation.action",
                  "must be 'delete' or 'archive', not 'compress'");
    check_refusal(edited("bind_address: 0.0.0.0", "bind_address: 0.0.0.300"), "server.bind_address",
                  "'0.0.0.300' is not an IPv4 or IPv6 address");
    check_refusal(edited("nat_interface_name: virbr0", "nat_interface_name: a/b"),
                  "container.nat_interface_name", "is not a network interface name");
    check_refusal(edited("domain_type: kvm", "domain_type: \"kvm'/>\""), "container.domain_type",
                  "is not a libvirt domain type");
    check_refusal(edited("endpoint_username: endpoint", "endpoint_username: \"\""),
                  "container.endpoint_username", "must not be empty");
}

TEST_CASE("server configuration: the port range is checked and applied") {
    check_refusal(edited("[10000, 20000]", "[20000, 10000]"), "port_forwarding.port_range",
                  "its low end (20000) is above its high end (10000)");
    check_refusal(edited("[10000, 20000]", "[0, 10]"), "port_forwarding.port_range[0]",
                  "must be between 1 and 65535, not 0");
    check_refusal(edited("[10000, 20000]", "[10000, 70000]"), "port_forwarding.port_range[1]",
                  "not 70000");
    check_refusal(edited("[10000, 20000]", "[10000]"), "port_forwarding.port_range",
                  "must be a list of two ports, [low, high]");
    // Six containers need six ports: [10000, 10004] holds five.
    check_refusal(edited("[10000, 20000]", "[10000, 10004]"), "port_forwarding.port_range",
                  "holds 5 ports, fewer than container.max_allowed_running_container_domains (6)");
    const auto c = parse(edited("[10000, 20000]", "[10000, 10005]"));
    CHECK(c.port_forwarding.size() == 6);
    CHECK(c.port_forwarding.contains(10005));
    CHECK_FALSE(c.port_forwarding.contains(10006));
    check_refusal(edited("[10000, 20000]", "[6000, 7000]"), "port_forwarding.port_range",
                  "holds server.listen_port (6150), where the classic server listens");
    CHECK(parse(edited("[10000, 20000]", "[6000, 7000]") +
                "anweddol:\n  enable_classic_server: false\n")
              .port_forwarding.low == 6000);
}

TEST_CASE("server configuration: our anweddol section, with hypervisor hosts") {
    const auto c = parse(reference_file + R"(
anweddol:
  hypervisors:
    - name: rack1
      uri: qemu+ssh://anweddol@192.0.2.10/system
      nat_interface_name: br-guests
      jump:
        host: 192.0.2.10
        username: anweddol
        private_key_file: /etc/anweddol/ssh/id_ed25519
        known_hosts_file: /etc/anweddol/ssh/known_hosts
    - name: local
      uri: qemu:///system
  warm_pool_size: 2
  max_container_lifetime: 3600
  state_database_file_path: /srv/anweddol/state.db
  metrics: {enabled: false}
  enable_classic_server: false
  forward_bind_address: "::"
)");
    const auto& a = c.anweddol;
    REQUIRE(a.hypervisors.size() == 2);
    CHECK(a.hypervisors[0].name == "rack1");
    CHECK(a.hypervisors[0].nat_interface_name == "br-guests");
    REQUIRE(a.hypervisors[0].jump);
    CHECK(a.hypervisors[0].jump->host == ip::make_address("192.0.2.10"));
    CHECK(a.hypervisors[0].jump->port == 22);
    CHECK(a.hypervisors[0].jump->private_key_file == "/etc/anweddol/ssh/id_ed25519");
    CHECK(a.hypervisors[0].jump->password.empty());
    CHECK(a.hypervisors[1].nat_interface_name == "virbr0");
    CHECK_FALSE(a.hypervisors[1].jump);
    CHECK(a.warm_pool_size == 2);
    CHECK(a.max_container_lifetime == std::chrono::hours(1));
    CHECK(a.state_database_file_path == "/srv/anweddol/state.db");
    CHECK_FALSE(a.metrics_enabled);
    CHECK_FALSE(a.enable_classic_server);
    CHECK(a.enable_web_server);
    CHECK(a.forward_bind_address == ip::make_address("::"));
    CHECK_FALSE(parse(reference_file + "anweddol:\n  metrics: false\n").anweddol.metrics_enabled);
    CHECK(parse(reference_file + "anweddol:\n  hypervisor_uri: test:///default\n")
              .anweddol.hypervisors.at(0)
              .uri == "test:///default");
}

TEST_CASE("server configuration: our anweddol section's mistakes are refused") {
    const std::string head = reference_file + "anweddol:\n";
    check_refusal(head + "  hypervisor_uri: qemu:///system\n  hypervisors: []\n",
                  "anweddol.hypervisors", "give either");
    check_refusal(head + "  hypervisors: []\n", "anweddol.hypervisors", "at least one host");
    check_refusal(head + "  hypervisors:\n    - {name: a, uri: 'test:///default'}\n"
                         "    - {name: a, uri: 'qemu:///system'}\n",
                  "anweddol.hypervisors[1]", "the name 'a' is given to two hosts");
    check_refusal(head + "  hypervisors:\n    - {uri: 'test:///default'}\n",
                  "anweddol.hypervisors[0].name", "missing");
    check_refusal(head + "  hypervisors:\n    - {name: a, uri: nowhere}\n",
                  "anweddol.hypervisors[0].uri", "is not a libvirt URI");
    const std::string host = head +
                             "  hypervisors:\n    - name: a\n      uri: qemu+ssh://h/system\n"
                             "      jump:\n        host: 192.0.2.1\n        username: u\n";
    check_refusal(host + "        known_hosts_file: /k\n", "anweddol.hypervisors[0].jump",
                  "give exactly one of password and private_key_file");
    check_refusal(host + "        password: p\n        private_key_file: /key\n"
                         "        known_hosts_file: /k\n",
                  "anweddol.hypervisors[0].jump", "give exactly one of password");
    check_refusal(host + "        password: p\n", "anweddol.hypervisors[0].jump.known_hosts_file",
                  "missing");
    check_refusal(host + "        password: p\n        known_hosts_file: /k\n        port: 0\n",
                  "anweddol.hypervisors[0].jump.port", "not 0");
    check_refusal(head + "  warm_pool_size: 7\n", "anweddol.warm_pool_size",
                  "is more than container.max_allowed_running_container_domains (6)");
    check_refusal(head + "  max_container_lifetime: -1\n", "anweddol.max_container_lifetime",
                  "not -1");
    check_refusal(head + "  enable_classic_server: false\n  enable_web_server: false\n",
                  "anweddol.enable_web_server", "the classic server is off too");
    check_refusal(head + "  forward_bind_address: everywhere\n", "anweddol.forward_bind_address",
                  "is not an IPv4 or IPv6 address");
    check_refusal(edited("listen_port: 8080", "listen_port: 6150"), "web_server.listen_port",
                  "is server.listen_port too (6150)");
}

TEST_CASE("server configuration: files that are no configuration are refused") {
    auto e = refused("container: [unclosed\n");
    CHECK(e.key().empty());
    CHECK_THAT(e.reason(), Catch::StartsWith("is not valid YAML: "));
    CHECK(e.line() == 2);
    e = refused("");
    CHECK_THAT(e.what(), Catch::Equals("/etc/anweddol/config.yaml: must be a YAML mapping of "
                                       "sections (container, server, ...); it is empty or "
                                       "holds null"));
    e = refused("- a\n- b\n");
    CHECK_THAT(e.reason(), Catch::EndsWith("holds a list"));
    check_refusal(edited("denied_ip_list: []", "denied_ip_list: [any, 10.0.0.300]"),
                  "ip_filter.denied_ip_list[1]", "'10.0.0.300' is not an IPv4 or IPv6 address");
}

TEST_CASE("server configuration: load_configuration reads a file, and names a missing one") {
    anweddol::test::scratch dir;
    const auto file = dir.root / "config.yaml";
    std::ofstream(file) << edited("listen_port: 6150", "listen_port: 6151");
    CHECK(server::load_configuration(file).server.listen_port == 6151);
    try {
        server::load_configuration(dir.root / "missing.yaml");
        FAIL("a missing file was accepted");
    } catch (const server::configuration_error& e) {
        CHECK(e.file() == dir.root / "missing.yaml");
        CHECK_THAT(e.what(), Catch::Contains("missing.yaml: cannot be opened (No such file"));
    }
    CHECK_THROWS_WITH(
        server::load_configuration(dir.root),
        Catch::EndsWith(": is a directory: give the configuration file with --config"));
}

TEST_CASE("server ip filter: the reference's rules for denied, allowed and 'any'") {
    server::ip_filter_settings filter; // the reference's shipped lists, filter off
    const auto a = ip::make_address("192.0.2.1");
    const auto b = ip::make_address("192.0.2.2");
    CHECK(server::ip_allowed(filter, a));

    filter.enabled = true; // denied [], allowed [any]: everyone
    CHECK(server::ip_allowed(filter, a));

    filter.denied_ips = {a}; // an explicit denial
    CHECK_FALSE(server::ip_allowed(filter, a));
    CHECK(server::ip_allowed(filter, b));

    // The allowed list matters only when "any" is denied.
    filter.allowed_any = false;
    filter.allowed_ips = {b};
    filter.denied_ips.clear();
    CHECK(server::ip_allowed(filter, a));

    filter.denied_any = true; // denied [any], allowed [b]: b alone
    CHECK_FALSE(server::ip_allowed(filter, a));
    CHECK(server::ip_allowed(filter, b));

    filter.denied_ips = {b}; // denied beats allowed
    CHECK_FALSE(server::ip_allowed(filter, b));

    filter.denied_ips.clear(); // denied [any], allowed [any]: everyone
    filter.allowed_any = true;
    CHECK(server::ip_allowed(filter, a));
}

TEST_CASE("server ip filter: an IPv4 peer on a dual-stack socket matches its IPv4 entry") {
    const auto c =
        parse(edited("enabled: False\n  denied_ip_list: []",
                     "enabled: True\n  denied_ip_list: [\"::ffff:192.0.2.9\", \"2001:db8::1\"]"));
    CHECK(c.ip_filter.enabled);
    CHECK_FALSE(server::ip_allowed(c.ip_filter, ip::make_address("192.0.2.9")));
    CHECK_FALSE(server::ip_allowed(c.ip_filter, ip::make_address("::ffff:192.0.2.9")));
    CHECK_FALSE(server::ip_allowed(c.ip_filter, ip::make_address("2001:db8::1")));
    CHECK(server::ip_allowed(c.ip_filter, ip::make_address("192.0.2.10")));
}
