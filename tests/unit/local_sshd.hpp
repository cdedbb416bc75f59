// A real OpenSSH sshd on 127.0.0.1 for the endpoint shell tests: its own
// config, host key, throwaway user and free port, started once per test run
// with Boost.Process v2 and stopped (and the user deleted) at exit.
//
// It needs root (useradd, sshd's privilege separation). Without root the
// tests that need it are skipped with a warning, unless CI=true, where that
// is a failure.
#ifndef ANWEDDOL_TESTS_UNIT_LOCAL_SSHD_HPP
#define ANWEDDOL_TESTS_UNIT_LOCAL_SSHD_HPP

#ifndef BOOST_PROCESS_USE_STD_FS
#define BOOST_PROCESS_USE_STD_FS 1 // Boost.Filesystem's library is not installed
#endif

#include <anweddol/detail/credentials.hpp>
#include <anweddol/detail/ssh/handle.hpp>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/readable_pipe.hpp>
#include <boost/asio/streambuf.hpp>
// Boost 1.81's Process v2 uses these without including them when
// BOOST_PROCESS_USE_STD_FS is set.
#include <boost/io/quoted.hpp>
#include <boost/optional.hpp>
#include <type_traits>

#include <boost/process/v2/process.hpp>
#include <boost/process/v2/stdio.hpp>

#include <libssh/libssh.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

namespace anweddol::test {

class local_sshd {
public:
    /// The running server, started on first use; nullptr when it cannot run
    /// here (see should_skip()).
    static local_sshd* get() {
        static std::unique_ptr<local_sshd> instance = [] {
            if (::geteuid() != 0)
                return std::unique_ptr<local_sshd>();
            return std::unique_ptr<local_sshd>(new local_sshd());
        }();
        return instance.get();
    }

    /// Why the sshd tests cannot run here, or empty.
    static std::string unavailable_reason() {
        if (::geteuid() != 0)
            return "the local sshd tests need root (useradd, sshd): skipped";
        return {};
    }
    static bool in_ci() {
        const char* ci = std::getenv("CI");
        return ci && std::string(ci) == "true";
    }

    std::uint16_t port() const noexcept { return port_; }
    /// The listening sshd's process id (its children serve the sessions).
    int pid() const { return server_->id(); }
    const std::string& user() const noexcept { return user_; }
    const std::string& password() const noexcept { return password_; }
    const std::filesystem::path& dir() const noexcept { return dir_; }
    /// The server's host key, "SHA256:<base64>".
    const std::string& fingerprint() const noexcept { return fingerprint_; }
    /// A key the server does not have: an impostor's, for changed-key tests.
    const std::string& other_fingerprint() const noexcept { return other_fingerprint_; }
    /// The impostor key's public line ("ssh-ed25519 AAAA..."), for known_hosts.
    const std::string& other_public_key() const noexcept { return other_public_key_; }

    local_sshd(const local_sshd&) = delete;
    local_sshd& operator=(const local_sshd&) = delete;

    ~local_sshd() {
        boost::system::error_code ignored;
        if (server_) {
            server_->request_exit(ignored); // SIGTERM
            server_->wait(ignored);         // reaped
        }
        run({"/usr/sbin/userdel", "-r", "-f", user_}, ignored);
        std::filesystem::remove_all(dir_, ignored);
    }

private:
    local_sshd() {
        user_ = "anwdltest" + std::to_string(::getpid() % 100000);
        password_ = detail::generate_password(24);
        char pattern[] = "/tmp/anweddol-sshd-XXXXXX";
        if (!::mkdtemp(pattern))
            throw std::runtime_error("mkdtemp failed");
        dir_ = pattern;
        std::filesystem::permissions(dir_, std::filesystem::perms::owner_all |
                                               std::filesystem::perms::group_exec |
                                               std::filesystem::perms::others_exec);
        std::filesystem::create_directories("/run/sshd"); // privilege separation

        const auto key = dir_ / "host_ed25519";
        const auto other = dir_ / "other_ed25519";
        for (const auto& path : {key, other})
            check({"/usr/bin/ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path.string()});
        fingerprint_ = fingerprint_of(key.string() + ".pub");
        other_fingerprint_ = fingerprint_of(other.string() + ".pub");
        std::ifstream other_line(other.string() + ".pub");
        std::string type, base64;
        other_line >> type >> base64;
        other_public_key_ = type + " " + base64;

        // A fake sudo first on the user's PATH: the tests check what
        // administrate_container() passes to the setup script.
        const auto bin = dir_ / "bin";
        std::filesystem::create_directories(bin);
        // It keeps its standard input too, and takes the username after
        // --password-stdin; a user named slow_user makes it hang, as a
        // guest that stopped answering would.
        std::ofstream(bin / "sudo") << "#!/bin/sh\n"
                                       "printf '%s\\n' \"$@\" > \"$HOME/sudo.args\"\n"
                                       "cat > \"$HOME/sudo.stdin\"\n"
                                       "user=$2\n"
                                       "[ \"$user\" = --password-stdin ] && user=$3\n"
                                       "case $user in\n"
                                       "  '' | *[!a-z0-9_-]* | [!a-z_]*)\n"
                                       "    echo \"invalid username '$user'\" >&2; exit 1 ;;\n"
                                       "  slow_user) exec sleep 600 ;;\n"
                                       "esac\n"
                                       "exit 0\n";
        std::filesystem::permissions(bin / "sudo", std::filesystem::perms(0755));

        boost::system::error_code ignored;
        run({"/usr/sbin/userdel", "-r", "-f", user_}, ignored); // a leftover of a crashed run
        const auto home = dir_ / "home";
        check({"/usr/sbin/useradd", "-m", "-d", home.string(), "-s", "/bin/sh", user_});
        // SHA-512, not Debian's default yescrypt: sshd's CPU per login is
        // what the benchmarks measure, and the container uses SHA-512 too.
        const std::string hash = output_of({"/usr/bin/openssl", "passwd", "-6", password_});
        check({"/usr/sbin/usermod", "-p", hash, user_});

        port_ = free_port();
        const auto config = dir_ / "sshd_config";
        std::ofstream(config) << "Port " << port_ << "\n"
                              << "ListenAddress 127.0.0.1\n"
                              << "HostKey " << key.string() << "\n"
                              << "PidFile " << (dir_ / "sshd.pid").string() << "\n"
                              << "UsePAM no\n"
                              << "PasswordAuthentication yes\n"
                              << "KbdInteractiveAuthentication no\n"
                              << "PubkeyAuthentication no\n"
                              << "PermitRootLogin no\n"
                              << "AllowUsers " << user_ << "\n"
                              << "MaxStartups 512\n"
                              << "MaxSessions 256\n"
                              << "MaxAuthTries 3\n"
                              << "LoginGraceTime 30\n"
                              << "UseDNS no\n"
                              << "PrintMotd no\n"
                              << "StrictModes no\n"
                              << "SetEnv PATH=" << bin.string() << ":/usr/bin:/bin\n"
                              << "LogLevel ERROR\n";
        const auto log = dir_ / "sshd.log";
        server_ = std::make_unique<boost::process::v2::process>(
            context_, "/usr/sbin/sshd", std::vector<std::string>{"-D", "-e", "-f", config.string()},
            boost::process::v2::process_stdio{nullptr, nullptr, log});
        wait_until_listening();
    }

    static std::string fingerprint_of(const std::string& public_key_file) {
        ssh_key raw = nullptr;
        if (ssh_pki_import_pubkey_file(public_key_file.c_str(), &raw) != SSH_OK)
            throw std::runtime_error("cannot read " + public_key_file);
        detail::ssh_key_handle key(raw);
        unsigned char* hash = nullptr;
        std::size_t length = 0;
        ssh_get_publickey_hash(key.get(), SSH_PUBLICKEY_HASH_SHA256, &hash, &length);
        char* text = ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash, length);
        std::string fingerprint = text;
        ssh_string_free_char(text);
        ssh_clean_pubkey_hash(&hash);
        return fingerprint;
    }

    int run(const std::vector<std::string>& argv, boost::system::error_code& ec) {
        boost::process::v2::process child(
            context_, argv[0], std::vector<std::string>(argv.begin() + 1, argv.end()),
            boost::process::v2::process_stdio{nullptr, nullptr, nullptr});
        return child.wait(ec);
    }

    void check(const std::vector<std::string>& argv) {
        boost::system::error_code ec;
        const int status = run(argv, ec);
        if (ec || status != 0)
            throw std::runtime_error(argv[0] + " failed with status " + std::to_string(status));
    }

    std::string output_of(const std::vector<std::string>& argv) {
        boost::asio::readable_pipe out(context_);
        boost::process::v2::process child(context_, argv[0],
                                          std::vector<std::string>(argv.begin() + 1, argv.end()),
                                          boost::process::v2::process_stdio{nullptr, out, nullptr});
        std::string text;
        boost::system::error_code ec;
        boost::asio::read(out, boost::asio::dynamic_buffer(text), ec);
        child.wait(ec);
        while (!text.empty() && (text.back() == '\n' || text.back() == '\r'))
            text.pop_back();
        return text;
    }

    static std::uint16_t free_port() {
        boost::asio::io_context context;
        boost::asio::ip::tcp::acceptor probe(context,
                                             {boost::asio::ip::make_address("127.0.0.1"), 0});
        return probe.local_endpoint().port();
    }

    void wait_until_listening() {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (std::chrono::steady_clock::now() < deadline) {
            boost::asio::ip::tcp::socket probe(context_);
            boost::system::error_code ec;
            probe.connect({boost::asio::ip::make_address("127.0.0.1"), port_}, ec);
            if (!ec)
                return;
            if (!server_->running(ec))
                break;
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        std::ifstream log(dir_ / "sshd.log");
        throw std::runtime_error("sshd did not listen on port " + std::to_string(port_) + ": " +
                                 std::string(std::istreambuf_iterator<char>(log), {}));
    }

    boost::asio::io_context context_;
    std::filesystem::path dir_;
    std::string user_;
    std::string password_;
    std::uint16_t port_ = 0;
    std::string fingerprint_;
    std::string other_fingerprint_;
    std::string other_public_key_;
    std::unique_ptr<boost::process::v2::process> server_;
};

} // namespace anweddol::test

/// Opens a test that needs the local sshd: skips it (with a warning) where
/// it cannot run, fails under CI=true.
#define ANWEDDOL_REQUIRE_LOCAL_SSHD(name)                                                          \
    auto* name = ::anweddol::test::local_sshd::get();                                              \
    if (!name) {                                                                                   \
        if (::anweddol::test::local_sshd::in_ci())                                                 \
            FAIL(::anweddol::test::local_sshd::unavailable_reason() << " (and CI=true)");          \
        WARN(::anweddol::test::local_sshd::unavailable_reason());                                  \
        return;                                                                                    \
    }

#endif
