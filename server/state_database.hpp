// The server's durable state, in SQLite files: the containers it handed out
// (state_database), so that a restart adopts them, and the access tokens
// (access_token_store), in the reference's own table so that an operator's
// existing access_token.db keeps working. Only SHA-256 hashes of tokens are
// stored; a presented token is checked against them in constant time.
//
// Files: created with mode 0600 (SQLite gives its -wal and -shm files the
// database file's mode); an existing file readable by others is narrowed to
// 0600, and refused when that fails. A missing parent directory is refused,
// not created: a mistyped path should not silently start an empty state
// next to the real one (systemd's StateDirectory= creates /var/lib/anweddol).
//
// Durability: WAL journal with synchronous=FULL, so that a write has reached
// the disk when the call returns, before the CREATE answer that it records
// leaves, even across a power cut of this host: its containers may run on
// another hypervisor and outlive it, and a lost record would orphan one (the
// fsync costs a few ms against a CREATE of seconds).
//
// Thread-safety: each object serialises its calls with a mutex. Every call
// blocks on disk I/O: run it on a worker thread where the io_context's
// latency matters. Errors of SQLite or of the file throw
// state_database_error, naming the file and saying what failed.
#ifndef ANWEDDOL_SERVER_STATE_DATABASE_HPP
#define ANWEDDOL_SERVER_STATE_DATABASE_HPP

#include <anweddol/secret.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace anweddol::server {

namespace detail {
class sqlite_connection;
}

class state_database_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Times are stored in whole seconds since the epoch.
using stored_time = std::chrono::sys_seconds;

// A container handed out to a client.
struct container_record {
    std::string uuid;                 // lower-case, as the client sends it back
    std::string token_sha256;         // sha256_hex(client token): 64 lower-case hex digits
    std::uint16_t forwarded_port = 0; // the host port relaying to the guest
    std::string host;                 // the hypervisor's name (anweddol.hypervisors[].name)
    std::string guest_ip;
    std::uint16_t guest_port = 22;
    stored_time created_at{};
    std::optional<stored_time> expires_at; // std::nullopt: no maximum lifetime
};

class state_database {
public:
    enum class insert_result { inserted, uuid_taken, port_taken };

    // Opens the database at `file`, creating it (and its table) when
    // missing. Throws state_database_error (missing directory, unreadable
    // file, not a database, one written by a newer anweddol-server).
    explicit state_database(const std::filesystem::path& file);
    ~state_database();
    state_database(const state_database&) = delete;
    state_database& operator=(const state_database&) = delete;

    // Records `record`, durably, unless its UUID or forwarded port is
    // recorded already (then nothing changes). Throws std::invalid_argument
    // for a record with an empty UUID, host or guest address, a token hash
    // that is not 64 lower-case hex digits, or a port 0.
    insert_result insert(const container_record& record);

    std::optional<container_record> find(std::string_view uuid);

    // The record of `uuid` when `client_token` is the one handed out with
    // it: its SHA-256 is compared with the stored hash in constant time.
    // std::nullopt for an unknown UUID or a wrong token alike.
    std::optional<container_record> authenticate(std::string_view uuid,
                                                 std::string_view client_token);

    // Whether there was a record to erase.
    bool erase(std::string_view uuid);

    std::vector<container_record> list();

    // The records whose expires_at is at or before `now`, soonest first.
    std::vector<container_record> list_expired(stored_time now);

    const std::filesystem::path& file() const noexcept;

private:
    std::mutex mutex_;
    std::unique_ptr<detail::sqlite_connection> db_;
};

// The access tokens clients present as the `access_token` parameter when
// access_token.enabled is on. The table is the reference's
// AnweddolServerAccessTokenTable (EntryID, CreationTimestamp, AccessToken =
// SHA-256 hex, Enabled), so that a file either server wrote works with the
// other. Re-read at every call: tokens added by `anweddol-server
// access-token add` while the server runs count at once.
class access_token_store {
public:
    struct entry {
        std::int64_t id = 0;
        stored_time created_at{};
        bool enabled = true;
    };
    // What add() returns: the token itself, shown once to the operator and
    // never stored.
    struct new_token {
        entry info;
        secret token;
    };

    explicit access_token_store(const std::filesystem::path& file);
    ~access_token_store();
    access_token_store(const access_token_store&) = delete;
    access_token_store& operator=(const access_token_store&) = delete;

    // A new token (124 characters, see generate_access_token()), enabled or
    // not.
    new_token add(bool enabled = true);
    std::vector<entry> list();
    // Each returns whether entry `id` exists. revoke() deletes it.
    bool revoke(std::int64_t id);
    bool enable(std::int64_t id);
    bool disable(std::int64_t id);

    // The id of the enabled entry whose hash is `token`'s, if any. Every
    // enabled entry's hash is compared, each in constant time, whichever
    // matches, so that the time taken tells nothing about the stored tokens.
    std::optional<std::int64_t> verify(std::string_view token);

    const std::filesystem::path& file() const noexcept;

private:
    bool set_enabled(std::int64_t id, bool enabled);

    std::mutex mutex_;
    std::unique_ptr<detail::sqlite_connection> db_;
};

} // namespace anweddol::server

#endif
