//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
// The synchronous boot -> lease -> SSH path, written straight on libvirt's
// and libssh's C APIs. The integration tests use it to check the sandbox and
// the guest ISO without depending on the library's asynchronous parts (the
// first, blocking provisioning tool that it was written for is gone).
//
#ifndef ANWEDDOL_TESTS_INTEGRATION_BLOCKING_CONTAINER_HPP
#define ANWEDDOL_TESTS_INTEGRATION_BLOCKING_CONTAINER_HPP

#include <anweddol/detail/libvirt/handle.hpp>
#include <anweddol/detail/libvirt/lease_file.hpp>
#include <anweddol/detail/ssh/handle.hpp>

#include <libssh/libssh.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <openssl/rand.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

namespace anweddol::tools {

using namespace std::chrono_literals;

/// Set from a signal handler to abandon every wait below.
inline std::atomic<bool> interrupted{false};

inline void check_interrupted() {
    if (interrupted)
        throw std::runtime_error("interrupted");
}

[[noreturn]] inline void throw_libvirt_error(const std::string& what) {
    throw std::runtime_error(what + ": " + virGetLastErrorMessage());
}

/// `count` bytes from OpenSSL's CSPRNG.
inline std::string random_bytes(std::size_t count) {
    std::string bytes(count, '\0');
    if (RAND_bytes(reinterpret_cast<unsigned char*>(bytes.data()), static_cast<int>(count)) != 1)
        throw std::runtime_error("RAND_bytes failed");
    return bytes;
}

/// A locally administered MAC in QEMU's 52:54:00 range.
inline std::string random_mac() {
    const std::string tail = random_bytes(3);
    char mac[18];
    std::snprintf(mac, sizeof mac, "52:54:00:%02x:%02x:%02x", static_cast<unsigned char>(tail[0]),
                  static_cast<unsigned char>(tail[1]), static_cast<unsigned char>(tail[2]));
    return mac;
}

/// A string of `length` characters from [A-Za-z0-9], without modulo bias.
inline std::string random_password(std::size_t length) {
    static constexpr std::string_view alphabet =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    std::string password;
    while (password.size() < length)
        for (unsigned char byte : random_bytes(length)) // 248 = 4 * 62: keep bytes below it
            if (byte < 248 && password.size() < length)
                password += alphabet[byte % alphabet.size()];
    return password;
}

/// `user_NNNNN` with NNNNN uniform in 10000..90000.
inline std::string random_username() {
    constexpr std::uint32_t span = 80001;
    constexpr std::uint32_t limit = UINT32_MAX - UINT32_MAX % span; // rejection bound
    while (true) {
        const std::string bytes = random_bytes(4);
        std::uint32_t n = 0;
        for (unsigned char byte : bytes)
            n = n << 8 | byte;
        if (n < limit)
            return "user_" + std::to_string(10000 + n % span);
    }
}

/// What the test domains are made of; the library's own definition differs.
struct domain_spec {
    std::string name;
    std::string uuid; ///< empty: libvirt picks one
    std::string iso_path;
    std::string mac = random_mac();
    unsigned memory_mib = 256;
    unsigned vcpus = 1;
    std::string bridge = "virbr0";
    std::string type = "qemu";
    /// Where virtlogd writes the serial console; empty: no serial console.
    std::string console_log;
};

/// The spec's values are the caller's own (paths, generated names), so they
/// are only checked, not escaped.
inline std::string transient_domain_xml(const domain_spec& spec) {
    for (const std::string* value :
         {&spec.name, &spec.uuid, &spec.iso_path, &spec.bridge, &spec.type, &spec.console_log})
        if (value->find_first_of("<>&'\"") != std::string::npos)
            throw std::invalid_argument("domain spec value with XML metacharacters: " + *value);
    return "<domain type='" + spec.type +
           "'>\n"
           "  <name>" +
           spec.name + "</name>\n" +
           (spec.uuid.empty() ? "" : "  <uuid>" + spec.uuid + "</uuid>\n") +
           "  <memory unit='MiB'>" + std::to_string(spec.memory_mib) +
           "</memory>\n"
           "  <vcpu>" +
           std::to_string(spec.vcpus) +
           "</vcpu>\n"
           "  <os><type arch='x86_64'>hvm</type><boot dev='hd'/><boot dev='cdrom'/></os>\n"
           "  <features><acpi/><apic/><vmport state='off'/></features>\n"
           "  <on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>\n"
           "  <devices>\n"
           "    <disk type='file' device='cdrom'><driver name='qemu' type='raw'/>\n"
           "      <source file='" +
           spec.iso_path +
           "'/><target dev='hdc' bus='ide'/><readonly/>\n"
           "    </disk>\n"
           "    <interface type='bridge'><mac address='" +
           spec.mac +
           "'/>\n"
           "      <source bridge='" +
           spec.bridge +
           "'/><model type='virtio'/></interface>\n"
           "    <memballoon model='virtio'/>\n" +
           (spec.console_log.empty() ? std::string()
                                     : "    <serial type='pty'><log file='" + spec.console_log +
                                           "' append='off'/><target port='0'/></serial>\n") +
           "  </devices>\n"
           "</domain>\n";
}

/// A running transient domain, destroyed (and so gone from libvirt) when
/// this object is.
class transient_domain {
public:
    transient_domain(virConnectPtr connection, const domain_spec& spec)
        : domain_(virDomainCreateXML(connection, transient_domain_xml(spec).c_str(), 0)) {
        if (!domain_)
            throw_libvirt_error("cannot create domain " + spec.name);
    }
    transient_domain(const transient_domain&) = delete;
    transient_domain& operator=(const transient_domain&) = delete;
    ~transient_domain() {
        if (domain_)
            virDomainDestroy(domain_.get());
    }

    virDomainPtr get() const noexcept { return domain_.get(); }

    /// Leaves the domain running when this object goes.
    void keep_running() noexcept { domain_.reset(); }

private:
    detail::domain_handle domain_;
};

/// Polls the dnsmasq status file (every 100 ms) until `mac` has a lease.
inline std::string wait_for_lease(const std::filesystem::path& status_file, std::string_view mac,
                                  std::chrono::steady_clock::duration timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
        check_interrupted();
        const auto now = std::chrono::system_clock::now().time_since_epoch();
        if (auto text = detail::read_lease_file(status_file))
            if (auto lease = detail::find_lease(
                    *text, mac, std::chrono::duration_cast<std::chrono::seconds>(now).count()))
                return lease->ip_address;
        if (std::chrono::steady_clock::now() > deadline)
            throw std::runtime_error("no lease for " + std::string(mac) + " in " +
                                     status_file.string());
        std::this_thread::sleep_for(100ms);
    }
}

/// Output and exit status of one remote command.
struct command_output {
    std::string std_out;
    std::string std_err;
    int exit_status = -1;
};

/// Why an SSH login did not happen.
enum class login_failure { none, unreachable, refused_credentials };

/// One blocking SSH session authenticated by password. Host keys are not
/// checked: the guests make new ones at every boot.
class ssh_login {
public:
    ssh_login() = default;

    /// One attempt; `failure()` says how it went.
    ssh_login(const std::string& host, std::uint16_t port, const std::string& user,
              const std::string& password)
        : session_(ssh_new()) {
        const long timeout_seconds = 5;
        const int no = 0;
        ssh_options_set(session_.get(), SSH_OPTIONS_HOST, host.c_str());
        ssh_options_set(session_.get(), SSH_OPTIONS_PORT, &port);
        ssh_options_set(session_.get(), SSH_OPTIONS_USER, user.c_str());
        ssh_options_set(session_.get(), SSH_OPTIONS_TIMEOUT, &timeout_seconds);
        ssh_options_set(session_.get(), SSH_OPTIONS_PROCESS_CONFIG, &no);
        ssh_options_set(session_.get(), SSH_OPTIONS_KNOWNHOSTS, "/dev/null");
        if (ssh_connect(session_.get()) != SSH_OK) {
            failure_ = login_failure::unreachable;
            error_ = ssh_get_error(session_.get());
            return;
        }
        const int auth = ssh_userauth_password(session_.get(), nullptr, password.c_str());
        if (auth != SSH_AUTH_SUCCESS) {
            failure_ = auth == SSH_AUTH_DENIED ? login_failure::refused_credentials
                                               : login_failure::unreachable;
            error_ = ssh_get_error(session_.get());
        }
    }

    /// Retries while the server is unreachable (a booting guest), until
    /// `timeout`; throws if it never answers or refuses the credentials.
    static ssh_login connect(const std::string& host, std::uint16_t port, const std::string& user,
                             const std::string& password,
                             std::chrono::steady_clock::duration timeout) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        auto pause = 100ms;
        while (true) {
            check_interrupted();
            ssh_login login(host, port, user, password);
            if (login.failure() == login_failure::none)
                return login;
            if (login.failure() == login_failure::refused_credentials ||
                std::chrono::steady_clock::now() + pause > deadline)
                throw std::runtime_error("SSH login as " + user + " to " + host + ":" +
                                         std::to_string(port) + " failed: " + login.error());
            std::this_thread::sleep_for(pause);
            pause = std::min<std::chrono::milliseconds>(pause * 2, 1s);
        }
    }

    login_failure failure() const noexcept { return failure_; }
    const std::string& error() const noexcept { return error_; }

    command_output run(const std::string& command) {
        detail::channel_handle channel(ssh_channel_new(session_.get()));
        if (!channel || ssh_channel_open_session(channel.get()) != SSH_OK ||
            ssh_channel_request_exec(channel.get(), command.c_str()) != SSH_OK)
            throw std::runtime_error(std::string("cannot run a command: ") +
                                     ssh_get_error(session_.get()));
        command_output output;
        char buffer[4096];
        while (true) {
            check_interrupted();
            const int out = ssh_channel_read_timeout(channel.get(), buffer, sizeof buffer, 0, 100);
            if (out > 0)
                output.std_out.append(buffer, static_cast<std::size_t>(out));
            const int err = ssh_channel_read_nonblocking(channel.get(), buffer, sizeof buffer, 1);
            if (err > 0)
                output.std_err.append(buffer, static_cast<std::size_t>(err));
            if (out == SSH_ERROR || err == SSH_ERROR)
                throw std::runtime_error(std::string("reading a command's output failed: ") +
                                         ssh_get_error(session_.get()));
            // Both streams end with the channel's EOF (reads then return 0
            // or SSH_EOF), once libssh's buffers are drained.
            const bool drained = out <= 0 && err <= 0;
            if (drained && (out == SSH_EOF || err == SSH_EOF || ssh_channel_is_eof(channel.get())))
                break;
        }
        output.exit_status = ssh_channel_get_exit_status(channel.get());
        ssh_channel_close(channel.get());
        return output;
    }

    ~ssh_login() {
        if (session_ && ssh_is_connected(session_.get()))
            ssh_disconnect(session_.get());
    }
    ssh_login(ssh_login&&) = default;
    ssh_login& operator=(ssh_login&&) = default;

private:
    detail::session_handle session_;
    login_failure failure_ = login_failure::none;
    std::string error_;
};

/// `value` as one single-quoted POSIX shell word.
inline std::string shell_quote(std::string_view value) {
    std::string quoted = "'";
    for (char c : value)
        quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return quoted + "'";
}

} // namespace anweddol::tools

#endif
