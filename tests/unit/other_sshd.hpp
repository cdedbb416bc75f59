// A second real OpenSSH sshd on 127.0.0.1 for the host key tests: the same
// user and password as local_sshd's, but host keys of its own (ed25519 and
// ECDSA, as a guest has), and a log of every authentication request
// (LogLevel DEBUG1). Pinned to the wrong keys, a client must not reach
// that log; pinned to the right ones, it logs in as with the first server.
// It also serves as a jump host: it forwards TCP connections, and takes a
// key of its own (client_key_file()) for the same user.
#ifndef ANWEDDOL_TESTS_UNIT_OTHER_SSHD_HPP
#define ANWEDDOL_TESTS_UNIT_OTHER_SSHD_HPP

#include "local_sshd.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/readable_pipe.hpp>

#include <boost/process/v2/process.hpp>
#include <boost/process/v2/stdio.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace anweddol::test {

class other_sshd {
public:
    /// Starts it for `first`'s user; stopped and removed with the object.
    explicit other_sshd(const local_sshd& first) {
        char pattern[] = "/tmp/anweddol-sshd2-XXXXXX";
        if (!::mkdtemp(pattern))
            throw std::runtime_error("mkdtemp failed");
        dir_ = pattern;
        std::filesystem::permissions(dir_, std::filesystem::perms::owner_all |
                                               std::filesystem::perms::group_exec |
                                               std::filesystem::perms::others_exec);
        const auto ed25519 = dir_ / "ssh_host_ed25519_key";
        const auto ecdsa = dir_ / "ssh_host_ecdsa_key";
        run({"/usr/bin/ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", ed25519.string()});
        run({"/usr/bin/ssh-keygen", "-q", "-t", "ecdsa", "-N", "", "-f", ecdsa.string()});
        // From ssh-keygen itself, not from libssh: the check under test
        // computes its side with libssh.
        ed25519_fingerprint_ = keygen_fingerprint(ed25519.string() + ".pub");
        ecdsa_fingerprint_ = keygen_fingerprint(ecdsa.string() + ".pub");
        run({"/usr/bin/ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
             client_key_file().string()});
        std::filesystem::copy_file(client_key_file().string() + ".pub", dir_ / "authorized_keys");
        std::filesystem::permissions(dir_ / "authorized_keys", std::filesystem::perms(0644));

        port_ = free_port();
        const auto config = dir_ / "sshd_config";
        std::ofstream(config) << "Port " << port_ << "\n"
                              << "ListenAddress 127.0.0.1\n"
                              << "HostKey " << ed25519.string() << "\n"
                              << "HostKey " << ecdsa.string() << "\n"
                              << "PidFile " << (dir_ / "sshd.pid").string() << "\n"
                              << "UsePAM no\n"
                              << "PasswordAuthentication yes\n"
                              << "KbdInteractiveAuthentication no\n"
                              << "PubkeyAuthentication yes\n"
                              << "AuthorizedKeysFile " << (dir_ / "authorized_keys").string()
                              << "\n"
                              << "AllowTcpForwarding yes\n"
                              << "PermitRootLogin no\n"
                              << "AllowUsers " << first.user() << "\n"
                              << "UseDNS no\n"
                              << "PrintMotd no\n"
                              << "StrictModes no\n"
                              << "LogLevel DEBUG1\n";
        server_ = std::make_unique<boost::process::v2::process>(
            context_, "/usr/sbin/sshd", std::vector<std::string>{"-D", "-e", "-f", config.string()},
            boost::process::v2::process_stdio{nullptr, nullptr, log_file()});
        wait_until_listening();
    }

    other_sshd(const other_sshd&) = delete;
    other_sshd& operator=(const other_sshd&) = delete;

    ~other_sshd() {
        boost::system::error_code ignored;
        server_->request_exit(ignored);
        server_->wait(ignored);
        std::filesystem::remove_all(dir_, ignored);
    }

    std::uint16_t port() const noexcept { return port_; }
    /// The listening sshd's process id (its children serve the sessions).
    int pid() const { return server_->id(); }
    /// An unencrypted ed25519 key that logs in as the first server's user.
    std::filesystem::path client_key_file() const { return dir_ / "client_ed25519"; }
    /// Its host keys' fingerprints as `ssh-keygen -l` prints them.
    const std::string& ed25519_fingerprint() const noexcept { return ed25519_fingerprint_; }
    const std::string& ecdsa_fingerprint() const noexcept { return ecdsa_fingerprint_; }
    std::filesystem::path log_file() const { return dir_ / "sshd.log"; }
    /// What it logged so far (sshd and its per-connection children).
    std::string log() const {
        std::ifstream in(log_file());
        return {std::istreambuf_iterator<char>(in), {}};
    }

private:
    void run(const std::vector<std::string>& argv) {
        boost::process::v2::process child(
            context_, argv[0], std::vector<std::string>(argv.begin() + 1, argv.end()),
            boost::process::v2::process_stdio{nullptr, nullptr, nullptr});
        boost::system::error_code ec;
        if (child.wait(ec) != 0 || ec)
            throw std::runtime_error(argv[0] + " failed");
    }

    /// "SHA256:..." from `ssh-keygen -l -f FILE`: "256 SHA256:... comment (TYPE)".
    std::string keygen_fingerprint(const std::string& public_key_file) {
        boost::asio::readable_pipe out(context_);
        boost::process::v2::process child(context_, "/usr/bin/ssh-keygen",
                                          std::vector<std::string>{"-l", "-f", public_key_file},
                                          boost::process::v2::process_stdio{nullptr, out, nullptr});
        std::string text;
        boost::system::error_code ec;
        boost::asio::read(out, boost::asio::dynamic_buffer(text), ec);
        child.wait(ec);
        const auto start = text.find("SHA256:");
        if (start == std::string::npos)
            throw std::runtime_error("ssh-keygen -l printed no SHA256 fingerprint: " + text);
        return text.substr(start, text.find(' ', start) - start);
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
            if (!ec) {
                // The probe itself shows in the log: wait until sshd has
                // seen it go, so that tests start from a settled log.
                probe.close();
                std::this_thread::sleep_for(std::chrono::milliseconds(100));
                return;
            }
            if (!server_->running(ec))
                break;
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        throw std::runtime_error("the second sshd did not listen on port " + std::to_string(port_) +
                                 ": " + log());
    }

    boost::asio::io_context context_;
    std::filesystem::path dir_;
    std::uint16_t port_ = 0;
    std::string ed25519_fingerprint_;
    std::string ecdsa_fingerprint_;
    std::unique_ptr<boost::process::v2::process> server_;
};

} // namespace anweddol::test

#endif
