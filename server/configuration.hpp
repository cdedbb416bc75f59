// anweddol-server's configuration: the reference's config.yaml (every section
// and key anwdlserver's config.py validates, with its ranges), plus our own
// keys in a section of their own, `anweddol:`.
//
// Compared with the reference:
// - a key the file leaves out takes the value the reference's shipped
//   config.yaml gives it (the reference itself refuses a missing key, so any
//   file it accepts means the same here);
// - an unknown key, in any section, is refused (the reference drops it
//   silently, so a misspelt key would be ignored); so are a key given twice,
//   a wrong type (a quoted "6150" for a port, 6150 for a path) and a value
//   out of range;
// - IPv6 addresses are accepted wherever the reference takes an IPv4 one;
// - port_forwarding.port_range is applied (the reference validates it and
//   then uses 10000-14999 whatever it says), both ends included.
//
// Our section, every key optional:
//
//   anweddol:
//     hypervisor_uri: qemu:///system        # or, for several hosts:
//     hypervisors:
//       - name: rack1
//         uri: qemu+ssh://anweddol@192.0.2.10/system
//         nat_interface_name: virbr0        # default: container.nat_interface_name
//         jump:                             # when its guests are not routable from here
//           host: 192.0.2.10
//           port: 22
//           username: anweddol
//           private_key_file: /etc/anweddol/ssh/id_ed25519   # or password: ...
//           known_hosts_file: /etc/anweddol/ssh/known_hosts
//     warm_pool_size: 0
//     max_container_lifetime: 0             # seconds; 0: none
//     state_database_file_path: /var/lib/anweddol/server.db
//     metrics: {enabled: true}              # or metrics: true
//     enable_classic_server: true
//     enable_web_server: true
//     forward_bind_address: 0.0.0.0         # default: server.bind_address
//     owner: anweddol-server                # tags this server's domains
//     require_console_host_keys: true       # false for ISOs that print none
#ifndef ANWEDDOL_SERVER_CONFIGURATION_HPP
#define ANWEDDOL_SERVER_CONFIGURATION_HPP

#include <anweddol/secret.hpp>

#include <boost/asio/ip/address.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace anweddol::server {

// `container:`
struct container_settings {
    std::string container_iso_file_path = "/etc/anweddol/iso/anweddol_container.iso";
    // At least 1; std::nullopt (the file's `null`): no limit.
    std::optional<std::uint32_t> max_allowed_running_container_domains = 6;
    std::uint32_t container_memory = 1024; // MB, at least 256 (the reference's minimum)
    std::uint32_t container_vcpus = 2;
    std::string nat_interface_name = "virbr0";
    std::string domain_type = "kvm";
    // Seconds to wait for a booting container's address; -1: no limit.
    std::int32_t wait_max_tryout = 20;
    std::string endpoint_username = "endpoint";
    secret endpoint_password = "endpoint";
    std::uint16_t endpoint_listen_port = 22;
};

// `server:`, the classic TCP protocol's listener.
struct classic_server_settings {
    std::string public_rsa_key_file_path = "/etc/anweddol/rsa/public.pem";
    std::string private_rsa_key_file_path = "/etc/anweddol/rsa/private.pem";
    std::string log_file_path = "/var/log/anweddol/server.txt";
    std::string pid_file_path = "/etc/anweddol/server_daemon.pid";
    std::string user = "anweddol";
    boost::asio::ip::address bind_address = boost::asio::ip::address_v4::any();
    std::uint16_t listen_port = 6150;
    // Per-connection timeout; std::nullopt (`null`): the reference then waits
    // forever; a transport facing hostile clients still needs a bound.
    std::optional<std::chrono::seconds> timeout = std::chrono::seconds(10);
    bool enable_onetime_rsa_keys = false;
};

// `web_server:`, the REST API's listener (on server.bind_address, as in the
// reference).
struct web_server_settings {
    std::string log_file_path = "/var/log/anweddol/web_server.txt";
    std::string pid_file_path = "/etc/anweddol/web_server_daemon.pid";
    std::string user = "anweddol";
    std::uint16_t listen_port = 8080;
    bool enable_ssl = false;
    std::string ssl_pem_private_key_file_path = "/etc/anweddol/ssl/private_key.pem";
    std::string ssl_pem_certificate_file_path = "/etc/anweddol/ssl/certificate.pem";
};

// `port_forwarding.port_range: [low, high]`: the host ports forwards take,
// both ends included.
struct port_range {
    std::uint16_t low = 10000;
    std::uint16_t high = 20000;
    std::size_t size() const noexcept { return std::size_t{high} - low + 1; }
    bool contains(std::uint16_t port) const noexcept { return port >= low && port <= high; }
};

// `log_rotation:`, accepted and validated so that the reference's file
// loads, and otherwise unused: anweddol-server does not rotate or archive
// its logs itself; that is logrotate's or journald's job (the systemd unit
// logs to the journal).
struct log_rotation_settings {
    enum class rotation_action { delete_content, archive };
    bool enabled = true;
    std::string log_archive_folder_path = "/var/log/anweddol/archived";
    std::uint32_t max_log_lines_amount = 4000;
    rotation_action action = rotation_action::archive;
};

// `ip_filter:`; "any" in a list is the *_any flag. See ip_filter.hpp for
// how the lists combine.
struct ip_filter_settings {
    bool enabled = false;
    bool denied_any = false;
    std::vector<boost::asio::ip::address> denied_ips;
    bool allowed_any = true;
    std::vector<boost::asio::ip::address> allowed_ips;
};

// `access_token:`
struct access_token_settings {
    bool enabled = false;
    std::string access_token_database_file_path = "/etc/anweddol/credentials/access_token.db";
};

// An SSH jump host of a hypervisor (`anweddol.hypervisors[].jump`): the
// fields of the library's ssh_jump_options, checked here so that the server
// refuses them at start. Exactly one of password and private_key_file.
struct ssh_jump_settings {
    boost::asio::ip::address host;
    std::uint16_t port = 22;
    std::string username;
    secret password;
    std::string private_key_file;
    std::string known_hosts_file; // required: the jump host's key is checked
};

// One libvirt host (`anweddol.hypervisors[]`, or the single
// `anweddol.hypervisor_uri`, which becomes a host named "local").
struct hypervisor_settings {
    std::string name;
    std::string uri;
    std::string nat_interface_name; // default: container.nat_interface_name
    std::optional<ssh_jump_settings> jump;
};

// `anweddol:`, our own keys.
struct anweddol_settings {
    // Never empty: one host named "local" on qemu:///system by default.
    std::vector<hypervisor_settings> hypervisors;
    // Containers kept booted ahead of CREATEs, beyond the clients'
    // container.max_allowed_running_container_domains (which counts the
    // containers handed out, as STAT's `available` does); at most that many.
    std::uint32_t warm_pool_size = 0;
    // 0: a container lives until DESTROY.
    std::chrono::seconds max_container_lifetime{0};
    std::string state_database_file_path = "/var/lib/anweddol/server.db";
    bool metrics_enabled = true;
    bool enable_classic_server = true;
    bool enable_web_server = true;
    // Where forwarded ports listen; default: server.bind_address.
    boost::asio::ip::address forward_bind_address = boost::asio::ip::address_v4::any();
    // The tag in the domains' metadata by which a restarted server finds
    // its own containers (and destroys the unrecorded ones): two servers
    // on one libvirt host need two owners.
    std::string owner = "anweddol-server";
    // Hand a container over only when its guest printed its SSH host keys
    // on its serial console (pinned for every login); false: trust the
    // first key seen, as the reference does (for ISOs that print none).
    bool require_console_host_keys = true;
};

struct server_configuration {
    std::filesystem::path file; // where it was read from, for messages
    container_settings container;
    classic_server_settings server;
    web_server_settings web_server;
    port_range port_forwarding;
    log_rotation_settings log_rotation;
    ip_filter_settings ip_filter;
    access_token_settings access_token;
    anweddol_settings anweddol;
};

// A configuration the server refuses to start with. what() reads
// "FILE:LINE: KEY: REASON" (without LINE or KEY when there is none), e.g.
// "/etc/anweddol/config.yaml:23: container.container_memory: must be at
// least 256 (MB), not 0".
class configuration_error : public std::runtime_error {
public:
    configuration_error(std::filesystem::path file, std::string key, std::size_t line,
                        std::string reason);

    const std::filesystem::path& file() const noexcept { return file_; }
    // The key's path, such as "container.container_memory" or
    // "anweddol.hypervisors[1].uri"; empty for the file as a whole.
    const std::string& key() const noexcept { return key_; }
    std::size_t line() const noexcept { return line_; } // 1-based; 0: none
    const std::string& reason() const noexcept { return reason_; }

private:
    std::filesystem::path file_;
    std::string key_;
    std::size_t line_;
    std::string reason_;
};

// Reads and checks the configuration file. Throws configuration_error for a
// file that cannot be read, is not YAML, or holds anything refused (see the
// top of this header); the first problem found is reported.
server_configuration load_configuration(const std::filesystem::path& file);

// As load_configuration, on YAML text already read; `file` only names it in
// messages.
server_configuration parse_configuration(std::string_view yaml_text,
                                         const std::filesystem::path& file);

} // namespace anweddol::server

#endif
