#include "configuration.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <istream>
#include <iterator>
#include <limits>
#include <streambuf>
#include <utility>

namespace anweddol::server {

namespace {

namespace ip = boost::asio::ip;
using std::string_literals::operator""s;

std::string describe_position(const std::filesystem::path& file, const std::string& key,
                              std::size_t line, const std::string& reason) {
    std::string text = file.string();
    if (line != 0)
        text += ':' + std::to_string(line);
    if (!key.empty())
        text += ": " + key;
    return text + ": " + reason;
}

std::size_t line_of(const YAML::Node& node) {
    const int line = node.Mark().line;
    return line < 0 ? 0 : static_cast<std::size_t>(line) + 1;
}

// What a YAML scalar is, as PyYAML (the reference's loader, YAML 1.1) would
// resolve it, so that a value the reference refuses for its type is refused
// here too: `listen_port: "6150"` is a string, `user: 1000` an integer.
enum class value_kind { null, boolean, integer, number, string, list, mapping };

bool is_yaml11_bool(const std::string& s) {
    static const char* const words[] = {"true", "True", "TRUE", "false", "False", "FALSE",
                                        "yes",  "Yes",  "YES",  "no",    "No",    "NO",
                                        "on",   "On",   "ON",   "off",   "Off",   "OFF"};
    return std::find(std::begin(words), std::end(words), s) != std::end(words);
}

bool yaml11_bool_value(const std::string& s) {
    return s == "true" || s == "True" || s == "TRUE" || s == "yes" || s == "Yes" || s == "YES" ||
           s == "on" || s == "On" || s == "ON";
}

// [-+]?(0|[1-9][0-9]*): decimal only; PyYAML would read "010" as octal.
bool is_decimal_integer(const std::string& s) {
    std::size_t i = (!s.empty() && (s[0] == '-' || s[0] == '+')) ? 1 : 0;
    if (i == s.size() || (s[i] == '0' && s.size() > i + 1))
        return false;
    return std::all_of(s.begin() + static_cast<std::ptrdiff_t>(i), s.end(),
                       [](char c) { return c >= '0' && c <= '9'; });
}

// Floats, roughly as PyYAML's resolver: digits with one '.', or .inf/.nan.
bool is_yaml11_float(const std::string& s) {
    if (s == ".inf" || s == ".Inf" || s == "-.inf" || s == "+.inf" || s == ".nan" || s == ".NaN")
        return true;
    const std::size_t dot = s.find('.');
    if (dot == std::string::npos || s.find('.', dot + 1) != std::string::npos)
        return false;
    std::size_t digits = 0;
    for (std::size_t i = 0; i < s.size(); ++i) {
        const char c = s[i];
        if (c >= '0' && c <= '9')
            ++digits;
        else if (!(c == '.' || c == '_' || ((c == '-' || c == '+') && i == 0)))
            return false;
    }
    return digits > 0;
}

value_kind kind_of(const YAML::Node& node) {
    if (node.IsNull())
        return value_kind::null;
    if (node.IsSequence())
        return value_kind::list;
    if (node.IsMap())
        return value_kind::mapping;
    // "?" is a plain scalar, resolved from its text; "!" a quoted one and
    // "tag:yaml.org,2002:str" a !!str one: strings whatever they hold.
    if (node.Tag() != "?")
        return value_kind::string;
    const std::string& text = node.Scalar();
    if (is_yaml11_bool(text))
        return value_kind::boolean;
    if (is_decimal_integer(text))
        return value_kind::integer;
    if (is_yaml11_float(text))
        return value_kind::number;
    return value_kind::string;
}

const char* name_of(value_kind kind) {
    switch (kind) {
    case value_kind::null:
        return "null";
    case value_kind::boolean:
        return "a boolean";
    case value_kind::integer:
        return "an integer";
    case value_kind::number:
        return "a number";
    case value_kind::string:
        return "a string";
    case value_kind::list:
        return "a list";
    case value_kind::mapping:
        return "a mapping";
    }
    return "?";
}

// One mapping of the file (the root, a section, a list item), read key by
// key: each take() marks its key known, and finish() refuses the keys no
// one took. Duplicate keys are refused when it is built.
class mapping_reader {
public:
    mapping_reader(const std::filesystem::path& file, const YAML::Node& node, std::string path)
        : file_(file)
        , path_(std::move(path)) {
        if (!node.IsDefined() || node.IsNull())
            return; // a section with every key commented out: all defaults
        if (!node.IsMap())
            fail_at(path_, node, "must be a mapping of keys, not "s + name_of(kind_of(node)));
        for (auto it = node.begin(); it != node.end(); ++it) {
            if (!it->first.IsScalar())
                fail_at(path_, it->first, "keys must be plain names");
            const std::string& key = it->first.Scalar();
            for (const auto& seen : entries_)
                if (seen.key == key)
                    fail_at(key_path(key), it->first,
                            "given twice (also on line " + std::to_string(line_of(seen.name)) +
                                ")");
            entries_.push_back({key, it->first, it->second, false});
        }
    }

    const std::filesystem::path& file() const noexcept { return file_; }

    std::string key_path(std::string_view key) const {
        return path_.empty() ? std::string(key) : path_ + '.' + std::string(key);
    }

    // The value under `key`, or an undefined node when the file leaves it
    // out.
    YAML::Node take(std::string_view key) {
        known_.emplace_back(key);
        for (auto& entry : entries_)
            if (entry.key == key) {
                entry.taken = true;
                return entry.value;
            }
        return YAML::Node(YAML::NodeType::Undefined);
    }

    void finish() const {
        for (const auto& entry : entries_) {
            if (entry.taken)
                continue;
            std::string known;
            for (const auto& k : known_)
                known += (known.empty() ? "" : ", ") + k;
            fail_at(key_path(entry.key), entry.name,
                    "unknown key (the keys here are: " + known + ")");
        }
    }

    [[noreturn]] void fail_at(const std::string& key, const YAML::Node& at,
                              const std::string& reason) const {
        throw configuration_error(file_, key, line_of(at), reason);
    }

private:
    struct entry {
        std::string key;
        YAML::Node name;
        YAML::Node value;
        bool taken;
    };
    std::filesystem::path file_;
    std::string path_;
    std::vector<entry> entries_;
    std::vector<std::string> known_;
};

// A value of one key, checked for its type; nothing happens when the file
// leaves the key out, so that the field keeps its default.
struct value_reader {
    mapping_reader& map;
    std::string key;
    YAML::Node node;

    value_reader(mapping_reader& m, std::string_view k)
        : map(m)
        , key(m.key_path(k))
        , node(m.take(k)) {}
    // A list's item, `full_key` such as "ip_filter.denied_ip_list[2]".
    value_reader(mapping_reader& m, std::string full_key, YAML::Node n)
        : map(m)
        , key(std::move(full_key))
        , node(std::move(n)) {}

    value_reader item(std::size_t i) const {
        return value_reader(map, key + '[' + std::to_string(i) + ']', node[i]);
    }

    bool present() const { return node.IsDefined(); }
    bool null() const { return node.IsDefined() && node.IsNull(); }

    [[noreturn]] void fail(const std::string& reason) const { map.fail_at(key, node, reason); }

    void expect(value_kind wanted) const {
        const value_kind got = kind_of(node);
        if (got == wanted)
            return;
        std::string reason = "must be "s + name_of(wanted) + ", not " + name_of(got);
        if (wanted == value_kind::integer && got == value_kind::string && node.Tag() == "!")
            reason += " (write it without quotes)";
        if (wanted == value_kind::string && got != value_kind::null && got != value_kind::list &&
            got != value_kind::mapping)
            reason += " (put it in quotes)";
        fail(reason);
    }

    std::int64_t integer(std::int64_t min, std::int64_t max, std::string_view unit = {}) const {
        expect(value_kind::integer);
        const std::string& text = node.Scalar();
        const char* first = text.data() + (text[0] == '+' ? 1 : 0);
        std::int64_t value = 0;
        const auto [end, error] = std::from_chars(first, text.data() + text.size(), value);
        const std::string suffix = unit.empty() ? "" : " (" + std::string(unit) + ")";
        if (error != std::errc() || end != text.data() + text.size() || value < min ||
            value > max) {
            if (max == std::numeric_limits<std::int64_t>::max())
                fail("must be at least " + std::to_string(min) + suffix + ", not " + text);
            fail("must be between " + std::to_string(min) + " and " + std::to_string(max) + suffix +
                 ", not " + text);
        }
        return value;
    }
};

void read(value_reader v, std::string& out) {
    if (!v.present())
        return;
    v.expect(value_kind::string);
    if (v.node.Scalar().empty())
        v.fail("must not be empty");
    out = v.node.Scalar();
}

void read(value_reader v, secret& out) {
    if (!v.present())
        return;
    v.expect(value_kind::string);
    if (v.node.Scalar().empty())
        v.fail("must not be empty");
    out.assign(v.node.Scalar());
}

void read(value_reader v, bool& out) {
    if (!v.present())
        return;
    v.expect(value_kind::boolean);
    out = yaml11_bool_value(v.node.Scalar());
}

template <class Integer>
void read(value_reader v, Integer& out, std::int64_t min,
          std::int64_t max = std::numeric_limits<Integer>::max(), std::string_view unit = {}) {
    if (v.present())
        out = static_cast<Integer>(v.integer(min, max, unit));
}

void read_port(value_reader v, std::uint16_t& out) {
    read(std::move(v), out, 1, 65535);
}

ip::address parse_address(const value_reader& v, const std::string& text) {
    boost::system::error_code error;
    ip::address address = ip::make_address(text, error);
    if (error)
        v.fail("'" + text + "' is not an IPv4 or IPv6 address");
    // A dual-stack socket reports an IPv4 peer as ::ffff:a.b.c.d.
    if (address.is_v6() && address.to_v6().is_v4_mapped())
        address = ip::make_address_v4(ip::v4_mapped, address.to_v6());
    return address;
}

void read(value_reader v, ip::address& out) {
    if (!v.present())
        return;
    v.expect(value_kind::string);
    out = parse_address(v, v.node.Scalar());
}

// Linux interface names: 1 to 15 bytes, no '/', ':' or white space.
void read_interface_name(value_reader v, std::string& out) {
    if (!v.present())
        return;
    read(v, out);
    const bool valid =
        out.size() <= 15 && std::all_of(out.begin(), out.end(), [](char c) {
            return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
        });
    if (!valid)
        v.fail("'" + out +
               "' is not a network interface name (letters, digits, '-', '_', '.'; "
               "at most 15)");
}

void read_container(mapping_reader& root, container_settings& c) {
    mapping_reader m(root.file(), root.take("container"), "container");
    read(value_reader(m, "container_iso_file_path"), c.container_iso_file_path);
    if (value_reader v(m, "max_allowed_running_container_domains"); v.null())
        c.max_allowed_running_container_domains.reset();
    else if (v.present())
        c.max_allowed_running_container_domains = static_cast<std::uint32_t>(v.integer(1, 100000));
    read(value_reader(m, "container_memory"), c.container_memory, 256, 1 << 24, "MB");
    read(value_reader(m, "container_vcpus"), c.container_vcpus, 1, 4096);
    read_interface_name(value_reader(m, "nat_interface_name"), c.nat_interface_name);
    if (value_reader v(m, "domain_type"); v.present()) {
        read(v, c.domain_type);
        if (!std::all_of(c.domain_type.begin(), c.domain_type.end(),
                         [](char ch) { return ch >= 'a' && ch <= 'z'; }))
            v.fail("'" + c.domain_type + "' is not a libvirt domain type (such as kvm or qemu)");
    }
    read(value_reader(m, "wait_max_tryout"), c.wait_max_tryout, -1, 86400, "seconds; -1: no limit");
    read(value_reader(m, "endpoint_username"), c.endpoint_username);
    read(value_reader(m, "endpoint_password"), c.endpoint_password);
    if (value_reader v(m, "endpoint_listen_port"); v.present()) {
        read_port(v, c.endpoint_listen_port);
        // The library logs in to the endpoint on the guest's port 22, as the
        // reference's ISO serves it: another port would be ignored.
        if (c.endpoint_listen_port != 22)
            v.fail("must be 22: anweddol-server reaches the endpoint on the guest's port 22, "
                   "not " +
                   std::to_string(c.endpoint_listen_port));
    }
    m.finish();
}

void read_classic_server(mapping_reader& root, classic_server_settings& s) {
    mapping_reader m(root.file(), root.take("server"), "server");
    read(value_reader(m, "public_rsa_key_file_path"), s.public_rsa_key_file_path);
    read(value_reader(m, "private_rsa_key_file_path"), s.private_rsa_key_file_path);
    read(value_reader(m, "log_file_path"), s.log_file_path);
    read(value_reader(m, "pid_file_path"), s.pid_file_path);
    read(value_reader(m, "user"), s.user);
    read(value_reader(m, "bind_address"), s.bind_address);
    read_port(value_reader(m, "listen_port"), s.listen_port);
    if (value_reader v(m, "timeout"); v.null())
        s.timeout.reset();
    else if (v.present())
        s.timeout = std::chrono::seconds(v.integer(1, 86400, "seconds"));
    read(value_reader(m, "enable_onetime_rsa_keys"), s.enable_onetime_rsa_keys);
    m.finish();
}

void read_web_server(mapping_reader& m, const value_reader& port, web_server_settings& s) {
    read(value_reader(m, "log_file_path"), s.log_file_path);
    read(value_reader(m, "pid_file_path"), s.pid_file_path);
    read(value_reader(m, "user"), s.user);
    read_port(port, s.listen_port);
    read(value_reader(m, "enable_ssl"), s.enable_ssl);
    read(value_reader(m, "ssl_pem_private_key_file_path"), s.ssl_pem_private_key_file_path);
    read(value_reader(m, "ssl_pem_certificate_file_path"), s.ssl_pem_certificate_file_path);
    m.finish();
}

void read_log_rotation(mapping_reader& root, log_rotation_settings& s) {
    mapping_reader m(root.file(), root.take("log_rotation"), "log_rotation");
    read(value_reader(m, "enabled"), s.enabled);
    read(value_reader(m, "log_archive_folder_path"), s.log_archive_folder_path);
    read(value_reader(m, "max_log_lines_amount"), s.max_log_lines_amount, 1);
    if (value_reader v(m, "action"); v.present()) {
        std::string action;
        read(v, action);
        if (action == "delete")
            s.action = log_rotation_settings::rotation_action::delete_content;
        else if (action == "archive")
            s.action = log_rotation_settings::rotation_action::archive;
        else
            v.fail("must be 'delete' or 'archive', not '" + action + "'");
    }
    m.finish();
}

// A list of addresses and "any".
void read_ip_list(value_reader v, bool& any, std::vector<ip::address>& ips) {
    if (!v.present())
        return;
    v.expect(value_kind::list);
    any = false;
    ips.clear();
    for (std::size_t i = 0; i < v.node.size(); ++i) {
        const value_reader item = v.item(i);
        item.expect(value_kind::string);
        if (item.node.Scalar() == "any")
            any = true;
        else
            ips.push_back(parse_address(item, item.node.Scalar()));
    }
}

void read_ip_filter(mapping_reader& root, ip_filter_settings& s) {
    mapping_reader m(root.file(), root.take("ip_filter"), "ip_filter");
    read(value_reader(m, "enabled"), s.enabled);
    read_ip_list(value_reader(m, "denied_ip_list"), s.denied_any, s.denied_ips);
    read_ip_list(value_reader(m, "allowed_ip_list"), s.allowed_any, s.allowed_ips);
    m.finish();
}

void read_access_token(mapping_reader& root, access_token_settings& s) {
    mapping_reader m(root.file(), root.take("access_token"), "access_token");
    read(value_reader(m, "enabled"), s.enabled);
    read(value_reader(m, "access_token_database_file_path"), s.access_token_database_file_path);
    m.finish();
}

// A key a list item or jump must have.
value_reader required(mapping_reader& m, std::string_view key, const YAML::Node& owner,
                      std::string_view what) {
    value_reader v(m, key);
    if (!v.present())
        m.fail_at(v.key, owner, "missing: give " + std::string(what));
    return v;
}

std::optional<ssh_jump_settings> read_jump(mapping_reader& host) {
    value_reader v(host, "jump");
    if (!v.present())
        return std::nullopt;
    mapping_reader m(host.file(), v.node, v.key);
    ssh_jump_settings jump;
    read(required(m, "host", v.node, "the jump host's IP address"), jump.host);
    read_port(value_reader(m, "port"), jump.port);
    read(required(m, "username", v.node, "the user to log in to the jump host as"), jump.username);
    value_reader password(m, "password");
    value_reader key_file(m, "private_key_file");
    if (password.present() == key_file.present())
        m.fail_at(v.key, v.node, "give exactly one of password and private_key_file");
    read(password, jump.password);
    read(key_file, jump.private_key_file);
    read(required(m, "known_hosts_file", v.node,
                  "the known_hosts file that holds the jump host's key"),
         jump.known_hosts_file);
    m.finish();
    return jump;
}

bool is_name_char(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
}

hypervisor_settings read_hypervisor(const value_reader& item, const container_settings& c) {
    item.expect(value_kind::mapping);
    mapping_reader m(item.map.file(), item.node, item.key);
    hypervisor_settings host;
    host.nat_interface_name = c.nat_interface_name;
    value_reader name = required(m, "name", item.node,
                                 "a name for this host (letters, digits, "
                                 "'-', '_', '.')");
    read(name, host.name);
    if (!std::all_of(host.name.begin(), host.name.end(), is_name_char))
        name.fail("'" + host.name + "' may hold letters, digits, '-', '_' and '.' only");
    value_reader uri = required(m, "uri", item.node, "the host's libvirt URI");
    read(uri, host.uri);
    if (host.uri.find("://") == std::string::npos)
        uri.fail("'" + host.uri + "' is not a libvirt URI (such as qemu+ssh://host/system)");
    read_interface_name(value_reader(m, "nat_interface_name"), host.nat_interface_name);
    host.jump = read_jump(m);
    m.finish();
    return host;
}

void read_hypervisors(mapping_reader& m, const container_settings& c,
                      std::vector<hypervisor_settings>& out) {
    value_reader uri(m, "hypervisor_uri");
    value_reader list(m, "hypervisors");
    if (uri.present() && list.present())
        list.fail("give either anweddol.hypervisor_uri or anweddol.hypervisors, not both");
    if (!list.present()) {
        out = {hypervisor_settings{"local", "qemu:///system", c.nat_interface_name, {}}};
        read(uri, out.front().uri);
        if (out.front().uri.find("://") == std::string::npos)
            uri.fail("'" + out.front().uri + "' is not a libvirt URI (such as qemu:///system)");
        return;
    }
    list.expect(value_kind::list);
    if (list.node.size() == 0)
        list.fail("must list at least one host");
    out.clear();
    for (std::size_t i = 0; i < list.node.size(); ++i) {
        const value_reader item = list.item(i);
        hypervisor_settings host = read_hypervisor(item, c);
        for (const auto& other : out) {
            if (other.name == host.name)
                item.fail("the name '" + host.name + "' is given to two hosts");
            if (other.uri == host.uri)
                item.fail("the URI '" + host.uri + "' is given to two hosts");
        }
        out.push_back(std::move(host));
    }
}

// `metrics: true` or `metrics: {enabled: true}`.
void read_metrics(mapping_reader& parent, bool& enabled) {
    value_reader v(parent, "metrics");
    if (!v.present())
        return;
    if (kind_of(v.node) == value_kind::boolean)
        return read(v, enabled);
    if (kind_of(v.node) != value_kind::mapping)
        v.fail("must be a boolean or a mapping with 'enabled', not "s + name_of(kind_of(v.node)));
    mapping_reader m(parent.file(), v.node, v.key);
    read(value_reader(m, "enabled"), enabled);
    m.finish();
}

void read_anweddol(mapping_reader& root, const server_configuration& config, anweddol_settings& a) {
    mapping_reader m(root.file(), root.take("anweddol"), "anweddol");
    read_hypervisors(m, config.container, a.hypervisors);
    if (value_reader v(m, "warm_pool_size"); v.present()) {
        a.warm_pool_size = static_cast<std::uint32_t>(v.integer(0, 100000));
        const auto& cap = config.container.max_allowed_running_container_domains;
        if (cap && a.warm_pool_size > *cap)
            v.fail("is more than container.max_allowed_running_container_domains (" +
                   std::to_string(*cap) +
                   "): a pool larger than the clients' capacity "
                   "would boot containers no client can ever take");
    }
    if (value_reader v(m, "max_container_lifetime"); v.present())
        a.max_container_lifetime = std::chrono::seconds(
            v.integer(0, std::numeric_limits<std::int32_t>::max(), "seconds; 0: no limit"));
    read(value_reader(m, "state_database_file_path"), a.state_database_file_path);
    read_metrics(m, a.metrics_enabled);
    read(value_reader(m, "enable_classic_server"), a.enable_classic_server);
    value_reader web(m, "enable_web_server");
    read(web, a.enable_web_server);
    if (!a.enable_classic_server && !a.enable_web_server)
        m.fail_at(web.key, web.node,
                  "the classic server is off too: turn one of them on, or there is nothing to "
                  "serve");
    a.forward_bind_address = config.server.bind_address;
    read(value_reader(m, "forward_bind_address"), a.forward_bind_address);
    read(value_reader(m, "owner"), a.owner);
    read(value_reader(m, "require_console_host_keys"), a.require_console_host_keys);
    m.finish();
}

void check_web_port(const value_reader& v, const server_configuration& config) {
    if (config.anweddol.enable_classic_server && config.anweddol.enable_web_server &&
        config.web_server.listen_port == config.server.listen_port)
        v.fail("is server.listen_port too (" + std::to_string(config.server.listen_port) +
               "): the classic and the web server need a port each");
}

void read_port_range(const value_reader& v, port_range& range) {
    v.expect(value_kind::list);
    if (v.node.size() != 2)
        v.fail("must be a list of two ports, [low, high]");
    range.low = static_cast<std::uint16_t>(v.item(0).integer(1, 65535));
    range.high = static_cast<std::uint16_t>(v.item(1).integer(1, 65535));
    if (range.low > range.high)
        v.fail("its low end (" + std::to_string(range.low) + ") is above its high end (" +
               std::to_string(range.high) + ")");
}

void read_port_forwarding(mapping_reader& root, const server_configuration& config,
                          port_range& range) {
    mapping_reader m(root.file(), root.take("port_forwarding"), "port_forwarding");
    value_reader v(m, "port_range");
    if (v.present())
        read_port_range(v, range);
    const auto& cap = config.container.max_allowed_running_container_domains;
    if (cap && range.size() < *cap)
        v.fail("holds " + std::to_string(range.size()) +
               " ports, fewer than container.max_allowed_running_container_domains (" +
               std::to_string(*cap) + "): widen the range or lower the limit");
    const auto& a = config.anweddol;
    if (a.enable_classic_server && range.contains(config.server.listen_port))
        v.fail("holds server.listen_port (" + std::to_string(config.server.listen_port) +
               "), where the classic server listens");
    if (a.enable_web_server && range.contains(config.web_server.listen_port))
        v.fail("holds web_server.listen_port (" + std::to_string(config.web_server.listen_port) +
               "), where the web server listens");
    m.finish();
}

// An input stream over text it does not copy.
class view_buffer : public std::streambuf {
public:
    explicit view_buffer(std::string_view text) {
        char* begin = const_cast<char*>(text.data()); // only ever read
        setg(begin, begin, begin + text.size());
    }
};

} // namespace

configuration_error::configuration_error(std::filesystem::path file, std::string key,
                                         std::size_t line, std::string reason)
    : std::runtime_error(describe_position(file, key, line, reason))
    , file_(std::move(file))
    , key_(std::move(key))
    , line_(line)
    , reason_(std::move(reason)) {}

server_configuration parse_configuration(std::string_view yaml_text,
                                         const std::filesystem::path& file) {
    YAML::Node document;
    try {
        // Parsed in place: the text holds passwords, and a copy would be
        // freed without being wiped (yaml-cpp's own scalars are, alas).
        view_buffer buffer(yaml_text);
        std::istream stream(&buffer);
        document = YAML::Load(stream);
    } catch (const YAML::Exception& e) {
        const std::size_t line = e.mark.is_null() ? 0 : static_cast<std::size_t>(e.mark.line) + 1;
        throw configuration_error(file, "", line, "is not valid YAML: " + e.msg);
    }
    if (!document.IsMap())
        throw configuration_error(file, "", 0,
                                  "must be a YAML mapping of sections (container, server, ...); "
                                  "it is empty or holds "s +
                                      name_of(kind_of(document)));
    server_configuration config;
    config.file = file;
    mapping_reader root(file, document, "");
    read_container(root, config.container);
    read_classic_server(root, config.server);
    read_anweddol(root, config, config.anweddol);
    {
        mapping_reader m(file, root.take("web_server"), "web_server");
        value_reader port(m, "listen_port");
        read_web_server(m, port, config.web_server);
        check_web_port(port, config);
    }
    read_log_rotation(root, config.log_rotation);
    read_ip_filter(root, config.ip_filter);
    read_access_token(root, config.access_token);
    read_port_forwarding(root, config, config.port_forwarding);
    root.finish();
    return config;
}

server_configuration load_configuration(const std::filesystem::path& file) {
    std::error_code error;
    if (std::filesystem::is_directory(file, error))
        throw configuration_error(file, "", 0,
                                  "is a directory: give the configuration file with --config");
    std::ifstream in(file, std::ios::binary);
    if (!in)
        throw configuration_error(file, "", 0,
                                  "cannot be opened ("s + std::strerror(errno) +
                                      "): check the path given with --config");
    std::string text;
    const auto wipe_text = [&text] {
        anweddol::wipe(text);
    };
    try {
        text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
        if (in.bad())
            throw configuration_error(file, "", 0,
                                      "cannot be read ("s + std::strerror(errno) + ")");
        auto config = parse_configuration(text, file);
        wipe_text();
        return config;
    } catch (...) {
        wipe_text();
        throw;
    }
}

} // namespace anweddol::server
