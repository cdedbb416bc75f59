// anweddol-server: the Anweddol server, in place of anwdlserver, with its
// configuration file and both of its wire protocols.
//
//   anweddol-server [--config FILE]                 serve (default FILE: /etc/anweddol/config.yaml)
//   anweddol-server [--config FILE] --check-config  check FILE and the files it names, then exit
//   anweddol-server [--config FILE] access-token add|list|revoke ID|enable ID|disable ID
//
// SIGTERM or SIGINT stops it: the listeners close, the forwards end and the
// containers it handed out are destroyed; a second signal is noted and
// changes nothing, so that no domain is left half-destroyed.
#include "classic_listener.hpp"
#include "configuration.hpp"
#include "container_service.hpp"
#include "ip_filter.hpp"
#include "rest_api.hpp"
#include "server_log.hpp"
#include "server_metrics.hpp"
#include "state_database.hpp"
#include "tokens.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl/context.hpp>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace {

namespace asio = boost::asio;
namespace server = anweddol::server;

constexpr std::string_view usage =
    "usage: anweddol-server [--config FILE] [--check-config]\n"
    "       anweddol-server [--config FILE] access-token add|list|revoke ID|enable ID|disable ID\n"
    "FILE defaults to /etc/anweddol/config.yaml (the reference's config.yaml, plus an\n"
    "optional anweddol: section; see server/configuration.hpp).\n";

struct command_line {
    std::string config = "/etc/anweddol/config.yaml";
    bool check_only = false;
    std::vector<std::string> access_token; // the subcommand's words
};

std::optional<command_line> parse(int argc, char** argv) {
    command_line line;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg == "--help" || arg == "-h") {
            std::cout << usage;
            std::exit(0);
        } else if (arg == "--config" && i + 1 < argc) {
            line.config = argv[++i];
        } else if (arg == "--check-config") {
            line.check_only = true;
        } else if (arg == "access-token") {
            line.access_token.assign(argv + i + 1, argv + argc);
            if (line.access_token.empty()) {
                std::cerr << "anweddol-server: access-token needs add, list, revoke ID, enable ID "
                             "or disable ID\n";
                return std::nullopt;
            }
            break;
        } else {
            std::cerr << "anweddol-server: "
                      << (arg == "--config" ? "--config needs a file"
                                            : "unknown argument '" + std::string(arg) + "'")
                      << "\n"
                      << usage;
            return std::nullopt;
        }
    }
    return line;
}

// The reference's access-token tool, on the configured database.
int run_access_token(const server::server_configuration& config,
                     const std::vector<std::string>& words) {
    server::access_token_store store(config.access_token.access_token_database_file_path);
    const std::string& what = words[0];
    if (what == "add" && words.size() == 1) {
        auto added = store.add();
        std::cout << "access token " << added.info.id << ": " << added.token.reveal()
                  << "\n(shown once: only its SHA-256 is stored)\n";
        return 0;
    }
    if (what == "list" && words.size() == 1) {
        for (const auto& entry : store.list())
            std::cout << entry.id << "  " << server::log::utc_text(entry.created_at) << "  "
                      << (entry.enabled ? "enabled" : "disabled") << "\n";
        return 0;
    }
    if ((what == "revoke" || what == "enable" || what == "disable") && words.size() == 2) {
        std::int64_t id = 0;
        try {
            id = std::stoll(words[1]);
        } catch (const std::exception&) {
            std::cerr << "anweddol-server: access-token " << what << ": '" << words[1]
                      << "' is not a token ID (see access-token list)\n";
            return 2;
        }
        const bool done = what == "revoke"   ? store.revoke(id)
                          : what == "enable" ? store.enable(id)
                                             : store.disable(id);
        if (!done) {
            std::cerr << "anweddol-server: no access token " << id << " (see access-token list)\n";
            return 1;
        }
        std::cout << "access token " << id << ": " << what << "d\n";
        return 0;
    }
    std::cerr << "anweddol-server: access-token needs add, list, revoke ID, enable ID or "
                 "disable ID\n";
    return 2;
}

// What the server needs from the files its configuration names, read
// and checked before anything listens: a missing ISO, key or certificate
// stops it at start, naming the key.
struct prepared_files {
    std::string iso_sha256;
    std::optional<server::classic::rsa_key> rsa;
    std::shared_ptr<asio::ssl::context> tls;
};

prepared_files prepare_files(const server::server_configuration& config) {
    prepared_files files;
    const auto fail = [&](std::string_view key, const std::string& path, const std::exception& e) {
        throw std::runtime_error(config.file.string() + ": " + std::string(key) + ": " + path +
                                 ": " + e.what());
    };
    const auto& iso = config.container.container_iso_file_path;
    try {
        // Once, at start: CREATE answers with it (the reference hashed the
        // ISO again for every CREATE).
        files.iso_sha256 = server::file_sha256_hex(iso);
    } catch (const std::exception& e) {
        fail("container.container_iso_file_path", iso, e);
    }
    if (config.anweddol.enable_classic_server) {
        const auto& key = config.server.private_rsa_key_file_path;
        try {
            files.rsa = config.server.enable_onetime_rsa_keys
                            ? server::classic::rsa_key::generate()
                            : server::classic::rsa_key::load_or_create(
                                  key, config.server.public_rsa_key_file_path);
        } catch (const std::exception& e) {
            fail("server.private_rsa_key_file_path", key, e);
        }
    }
    if (config.anweddol.enable_web_server && config.web_server.enable_ssl) {
        try {
            files.tls = server::make_tls_context(config.web_server.ssl_pem_private_key_file_path,
                                                 config.web_server.ssl_pem_certificate_file_path);
        } catch (const std::exception& e) {
            throw std::runtime_error(config.file.string() + ": web_server: " + e.what());
        }
    }
    return files;
}

std::function<bool(const asio::ip::address&)> ip_filter(const server::server_configuration& c) {
    if (!c.ip_filter.enabled)
        return {};
    return [&c](const asio::ip::address& peer) {
        return server::ip_allowed(c.ip_filter, peer);
    };
}

// The listeners and the service, from start to stop, on one io_context.
class server_process {
public:
    server_process(const server::server_configuration& config, prepared_files files,
                   server::state_database& database, server::access_token_store* tokens)
        : config_(config)
        , files_(std::move(files))
        , service_(io_.get_executor(), config, files_.iso_sha256, database, tokens, metrics_)
        , signals_(io_, SIGINT, SIGTERM) {}

    int run() {
        wait_for_signal();
        asio::co_spawn(io_, start(), [this](std::exception_ptr failure) {
            if (!failure)
                return;
            try {
                std::rethrow_exception(failure);
            } catch (const std::exception& e) {
                server::log::error("anweddol-server cannot start: ", e.what());
            }
            // Nothing is destroyed: the containers it adopted run on,
            // recorded, for the next start (a port in use, a host down a
            // moment, must not cost the clients their containers).
            exit_code_ = 1;
            stopping_ = true;
            close_listeners();
            signals_.cancel();
            io_.stop();
        });
        io_.run();
        return exit_code_;
    }

private:
    asio::awaitable<void> start() {
        auto starting = service_.start();
        co_await std::move(starting);
        if (stopping_) // a signal came while it started: nothing listens
            co_return;
        const auto handler = [this](server::request r) {
            return service_.handle(std::move(r));
        };
        if (config_.anweddol.enable_web_server) {
            server::rest_api_options o;
            o.endpoint = {config_.server.bind_address, config_.web_server.listen_port};
            o.allow = ip_filter(config_);
            if (config_.anweddol.metrics_enabled)
                o.metrics = [this] {
                    return metrics_.scrape(service_.gauges());
                };
            o.undelivered = [this](const server::response& r) {
                service_.discard(r);
            };
            rest_.emplace(io_.get_executor(), std::move(o), handler, files_.tls);
            rest_->start();
            server::log::info("REST API on ", files_.tls ? "https://" : "http://",
                              rest_->local_endpoint());
        }
        if (config_.anweddol.enable_classic_server) {
            server::classic::listener_options o;
            o.endpoint = {config_.server.bind_address, config_.server.listen_port};
            if (config_.server.timeout)
                o.timeout = *config_.server.timeout;
            o.allow = ip_filter(config_);
            o.log = [](const asio::ip::address& peer, std::string_view event) {
                server::log::info("classic: ", peer.to_string(), ": ", event);
            };
            o.undelivered = [this](const server::response& r) {
                service_.discard(r);
            };
            classic_.emplace(io_.get_executor(), std::move(*files_.rsa), handler, std::move(o));
            classic_->listen();
            server::log::info("classic protocol on ", classic_->local_endpoint());
            asio::co_spawn(io_, classic_->async_run(), asio::detached);
        }
    }

    // The first signal stops the server; later ones change nothing, so
    // that the containers being destroyed are not left half-destroyed.
    void wait_for_signal() {
        signals_.async_wait([this](boost::system::error_code ec, int number) {
            if (ec)
                return;
            if (stopping_)
                server::log::warning("signal ", number,
                                     " again: still destroying the containers, please wait");
            else
                server::log::info("signal ", number, ": stopping");
            begin_stop();
            wait_for_signal();
        });
    }

    void begin_stop() {
        if (stopping_)
            return;
        stopping_ = true;
        close_listeners();
        asio::co_spawn(io_, service_.stop(), [this](std::exception_ptr failure) {
            if (failure)
                exit_code_ = 1;
            server::log::info("stopped");
            signals_.cancel();
            io_.stop();
        });
    }

    void close_listeners() {
        if (rest_)
            rest_->stop();
        if (classic_)
            classic_->stop();
    }

    const server::server_configuration& config_;
    prepared_files files_;
    asio::io_context io_;
    server::server_metrics metrics_;
    server::container_service service_;
    asio::signal_set signals_;
    std::optional<server::rest_api> rest_;
    std::optional<server::classic::listener> classic_;
    bool stopping_ = false;
    int exit_code_ = 0;
};

// One server per state database: a second one would adopt the first's
// containers, fail to bind their ports and destroy them. The lock is the
// database's name plus ".lock", held (flock) until the process ends.
void lock_state_database(const server::server_configuration& config) {
    const std::string database = config.anweddol.state_database_file_path;
    const std::string lock = database + ".lock";
    const int fd = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        throw std::runtime_error(config.file.string() +
                                 ": anweddol.state_database_file_path: cannot open " + lock + ": " +
                                 std::strerror(errno));
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
        const int error = errno;
        ::close(fd);
        throw std::runtime_error(
            error == EWOULDBLOCK
                ? "another anweddol-server serves from " + database + " (it holds " + lock +
                      "): stop it first, or give this one a state_database_file_path and an "
                      "owner of its own in the anweddol: section"
                : "cannot lock " + lock + ": " + std::strerror(error));
    }
    // Left open on purpose: the lock lasts as long as the process.
}

int serve(const server::server_configuration& config, bool check_only) {
    if (!check_only)
        lock_state_database(config);
    prepared_files files = prepare_files(config);
    server::state_database database(config.anweddol.state_database_file_path);
    std::optional<server::access_token_store> tokens;
    if (config.access_token.enabled)
        tokens.emplace(config.access_token.access_token_database_file_path);
    if (check_only) {
        std::cout << config.file.string() << ": ready to serve\n";
        return 0;
    }
    server_process process(config, std::move(files), database, tokens ? &*tokens : nullptr);
    return process.run();
}

} // namespace

int main(int argc, char** argv) {
    const auto line = parse(argc, argv);
    if (!line)
        return 2;
    std::optional<server::server_configuration> loaded;
    try {
        loaded = server::load_configuration(line->config);
    } catch (const std::exception& e) {
        std::cerr << "anweddol-server: " << e.what() << "\n";
        return 2;
    }
    const server::server_configuration& config = *loaded;
    try {
        if (!line->access_token.empty())
            return run_access_token(config, line->access_token);
        return serve(config, line->check_only);
    } catch (const std::exception& e) {
        std::cerr << "anweddol-server: " << e.what() << "\n";
        return 2;
    }
}
