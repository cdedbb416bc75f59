#include "state_database.hpp"

#include "tokens.hpp"

#include <sqlite3.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>

namespace anweddol::server {

namespace fs = std::filesystem;

namespace detail {

// One SQLite connection and its prepared statements, prepared once each.
class sqlite_connection {
public:
    explicit sqlite_connection(const fs::path& file);
    ~sqlite_connection();
    sqlite_connection(const sqlite_connection&) = delete;
    sqlite_connection& operator=(const sqlite_connection&) = delete;

    const fs::path& file() const noexcept { return file_; }
    sqlite3* handle() const noexcept { return db_; }

    // Runs statements that return no rows we need (schema, pragmas).
    void exec(const char* sql);
    // The prepared statement for `sql`, a string literal.
    sqlite3_stmt* statement(const char* sql);

    [[noreturn]] void fail(const std::string& what) const {
        throw state_database_error(file_.string() + ": " + what +
                                   " (SQLite: " + sqlite3_errmsg(db_) + ")");
    }

private:
    fs::path file_;
    sqlite3* db_ = nullptr;
    std::map<const char*, sqlite3_stmt*> statements_;
};

} // namespace detail

namespace {

using detail::sqlite_connection;

[[noreturn]] void fail_file(const fs::path& file, const std::string& what, int error) {
    throw state_database_error(file.string() + ": " + what + " (" + std::strerror(error) + ")");
}

// Creates `file` with mode 0600 unless it exists, and narrows an existing
// file's (and its WAL's and shared memory's) mode to 0600; see the header.
void prepare_file(const fs::path& file) {
    const fs::path parent = file.has_parent_path() ? file.parent_path() : fs::path(".");
    std::error_code error;
    if (!fs::is_directory(parent, error))
        throw state_database_error(file.string() + ": the directory " + parent.string() +
                                   " does not exist: create it, owned by the server's user, "
                                   "with mode 0700");
    const int fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        fail_file(file, "cannot be opened or created", errno);
    struct stat status {};
    int failure = ::fstat(fd, &status) == 0 ? 0 : errno;
    if (failure == 0 && !S_ISREG(status.st_mode))
        failure = EINVAL;
    else if (failure == 0 && (status.st_mode & 077) != 0 && ::fchmod(fd, 0600) != 0)
        failure = errno;
    ::close(fd);
    if (failure == EINVAL)
        throw state_database_error(file.string() + ": is not a regular file");
    if (failure != 0)
        fail_file(file, "is readable by others and cannot be narrowed to mode 0600: chmod 600 it",
                  failure);
    for (const char* suffix : {"-wal", "-shm"}) {
        const fs::path companion = file.string() + suffix;
        struct stat companion_status {};
        if (::stat(companion.c_str(), &companion_status) == 0 &&
            (companion_status.st_mode & 077) != 0 && ::chmod(companion.c_str(), 0600) != 0)
            fail_file(companion, "cannot be narrowed to mode 0600: chmod 600 it", errno);
    }
}

// A prepared statement in use: bound, stepped, then reset (in its
// destructor) so that it is ready for the next call and holds no read lock.
class query {
public:
    query(sqlite_connection& db, const char* sql)
        : db_(db)
        , statement_(db.statement(sql)) {}
    ~query() {
        sqlite3_reset(statement_);
        sqlite3_clear_bindings(statement_);
    }
    query(const query&) = delete;
    query& operator=(const query&) = delete;

    query& bind(int index, std::string_view text) {
        check(sqlite3_bind_text(statement_, index, text.data(), static_cast<int>(text.size()),
                                SQLITE_TRANSIENT));
        return *this;
    }
    query& bind(int index, std::int64_t value) {
        check(sqlite3_bind_int64(statement_, index, value));
        return *this;
    }
    query& bind(int index, std::optional<std::int64_t> value) {
        check(value ? sqlite3_bind_int64(statement_, index, *value)
                    : sqlite3_bind_null(statement_, index));
        return *this;
    }

    // The raw result: SQLITE_ROW, SQLITE_DONE or an error the caller handles.
    int step_code() { return sqlite3_step(statement_); }
    // Whether a row came; throws on any error.
    bool step() {
        const int result = step_code();
        if (result != SQLITE_ROW && result != SQLITE_DONE)
            db_.fail("a query failed");
        return result == SQLITE_ROW;
    }
    void run() { step(); }

    std::string text(int column) const {
        const auto* bytes = sqlite3_column_text(statement_, column);
        return bytes
                   ? std::string(reinterpret_cast<const char*>(bytes),
                                 static_cast<std::size_t>(sqlite3_column_bytes(statement_, column)))
                   : std::string();
    }
    std::int64_t integer(int column) const { return sqlite3_column_int64(statement_, column); }
    bool is_null(int column) const {
        return sqlite3_column_type(statement_, column) == SQLITE_NULL;
    }

private:
    void check(int result) {
        if (result != SQLITE_OK)
            db_.fail("a query's parameter could not be bound");
    }

    sqlite_connection& db_;
    sqlite3_stmt* statement_;
};

std::int64_t seconds_of(stored_time t) {
    return t.time_since_epoch().count();
}
stored_time time_of(std::int64_t seconds) {
    return stored_time(std::chrono::seconds(seconds));
}
stored_time now() {
    return std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now());
}

} // namespace

namespace detail {

sqlite_connection::sqlite_connection(const fs::path& file)
    : file_(file) {
    prepare_file(file);
    const int opened = sqlite3_open_v2(file.c_str(), &db_, SQLITE_OPEN_READWRITE, nullptr);
    if (opened != SQLITE_OK) {
        const std::string message = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(opened);
        sqlite3_close_v2(db_);
        throw state_database_error(file.string() + ": cannot be opened (SQLite: " + message + ")");
    }
    sqlite3_extended_result_codes(db_, 1);
    // Another process (the access-token subcommand) may hold the write lock
    // for a moment.
    sqlite3_busy_timeout(db_, 5000);
    try {
        exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;");
    } catch (...) {
        sqlite3_close_v2(db_);
        throw;
    }
}

sqlite_connection::~sqlite_connection() {
    for (auto& [sql, statement] : statements_)
        sqlite3_finalize(statement);
    sqlite3_close_v2(db_);
}

void sqlite_connection::exec(const char* sql) {
    char* message = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &message) != SQLITE_OK) {
        const std::string text = message ? message : sqlite3_errmsg(db_);
        sqlite3_free(message);
        throw state_database_error(file_.string() + ": is not a usable database (SQLite: " + text +
                                   "); move it away to start with an empty one");
    }
}

sqlite3_stmt* sqlite_connection::statement(const char* sql) {
    auto& statement = statements_[sql];
    if (!statement && sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &statement,
                                         nullptr) != SQLITE_OK) {
        statements_.erase(sql);
        fail("a query could not be prepared");
    }
    return statement;
}

} // namespace detail

// ---- state_database ----

namespace {

constexpr int schema_version = 1;

constexpr const char* find_sql =
    "SELECT uuid, token_sha256, forwarded_port, host, guest_ip, guest_port, created_at, "
    "expires_at FROM containers WHERE uuid = ?1";
constexpr const char* list_sql =
    "SELECT uuid, token_sha256, forwarded_port, host, guest_ip, guest_port, created_at, "
    "expires_at FROM containers ORDER BY created_at, uuid";
constexpr const char* expired_sql =
    "SELECT uuid, token_sha256, forwarded_port, host, guest_ip, guest_port, created_at, "
    "expires_at FROM containers WHERE expires_at IS NOT NULL AND expires_at <= ?1 "
    "ORDER BY expires_at, uuid";
constexpr const char* insert_sql =
    "INSERT INTO containers (uuid, token_sha256, forwarded_port, host, guest_ip, guest_port, "
    "created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
constexpr const char* port_sql = "SELECT 1 FROM containers WHERE forwarded_port = ?1";
constexpr const char* erase_sql = "DELETE FROM containers WHERE uuid = ?1";

void create_schema(sqlite_connection& db) {
    std::int64_t version = 0;
    {
        query q(db, "PRAGMA user_version");
        if (q.step())
            version = q.integer(0);
    }
    if (version > schema_version)
        throw state_database_error(db.file().string() +
                                   ": was written by a newer anweddol-server "
                                   "(schema " +
                                   std::to_string(version) +
                                   "): run that version, or move the file away");
    // STRICT: a value of the wrong type is an error, not silently stored.
    db.exec("BEGIN IMMEDIATE;"
            "CREATE TABLE IF NOT EXISTS containers ("
            " uuid TEXT PRIMARY KEY NOT NULL,"
            " token_sha256 TEXT NOT NULL,"
            " forwarded_port INTEGER NOT NULL UNIQUE CHECK (forwarded_port BETWEEN 1 AND 65535),"
            " host TEXT NOT NULL,"
            " guest_ip TEXT NOT NULL,"
            " guest_port INTEGER NOT NULL CHECK (guest_port BETWEEN 1 AND 65535),"
            " created_at INTEGER NOT NULL,"
            " expires_at INTEGER) STRICT;"
            "CREATE INDEX IF NOT EXISTS containers_by_expiry ON containers (expires_at)"
            " WHERE expires_at IS NOT NULL;"
            "PRAGMA user_version = 1;"
            "COMMIT;");
}

container_record read_record(const query& q) {
    container_record r;
    r.uuid = q.text(0);
    r.token_sha256 = q.text(1);
    r.forwarded_port = static_cast<std::uint16_t>(q.integer(2));
    r.host = q.text(3);
    r.guest_ip = q.text(4);
    r.guest_port = static_cast<std::uint16_t>(q.integer(5));
    r.created_at = time_of(q.integer(6));
    if (!q.is_null(7))
        r.expires_at = time_of(q.integer(7));
    return r;
}

std::vector<container_record> read_records(query& q) {
    std::vector<container_record> records;
    while (q.step())
        records.push_back(read_record(q));
    return records;
}

void check_record(const container_record& r) {
    const bool hex = r.token_sha256.size() == 64 &&
                     std::all_of(r.token_sha256.begin(), r.token_sha256.end(), [](char c) {
                         return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
                     });
    if (r.uuid.empty() || r.host.empty() || r.guest_ip.empty())
        throw std::invalid_argument("a container record needs a UUID, a host and a guest address");
    if (!hex)
        throw std::invalid_argument("a container record's token_sha256 must be 64 lower-case hex "
                                    "digits (sha256_hex of the client token)");
    if (r.forwarded_port == 0 || r.guest_port == 0)
        throw std::invalid_argument("a container record's ports must not be 0");
}

} // namespace

state_database::state_database(const fs::path& file)
    : db_(std::make_unique<detail::sqlite_connection>(file)) {
    create_schema(*db_);
}

state_database::~state_database() = default;

const fs::path& state_database::file() const noexcept {
    return db_->file();
}

state_database::insert_result state_database::insert(const container_record& record) {
    check_record(record);
    std::lock_guard lock(mutex_);
    int result = 0;
    {
        query q(*db_, insert_sql);
        q.bind(1, record.uuid)
            .bind(2, record.token_sha256)
            .bind(3, std::int64_t{record.forwarded_port})
            .bind(4, record.host)
            .bind(5, record.guest_ip)
            .bind(6, std::int64_t{record.guest_port})
            .bind(7, seconds_of(record.created_at))
            .bind(8,
                  record.expires_at ? std::optional(seconds_of(*record.expires_at)) : std::nullopt);
        result = q.step_code();
    }
    if (result == SQLITE_DONE)
        return insert_result::inserted;
    if ((result & 0xff) != SQLITE_CONSTRAINT)
        db_->fail("cannot record container " + record.uuid);
    // Which constraint: the UUID's or the port's (the others are checked
    // above).
    if (query q(*db_, find_sql); q.bind(1, record.uuid).step())
        return insert_result::uuid_taken;
    if (query q(*db_, port_sql); q.bind(1, std::int64_t{record.forwarded_port}).step())
        return insert_result::port_taken;
    db_->fail("cannot record container " + record.uuid);
}

std::optional<container_record> state_database::find(std::string_view uuid) {
    std::lock_guard lock(mutex_);
    query q(*db_, find_sql);
    q.bind(1, uuid);
    if (!q.step())
        return std::nullopt;
    return read_record(q);
}

std::optional<container_record> state_database::authenticate(std::string_view uuid,
                                                             std::string_view client_token) {
    // Hashed before the lookup, so that an unknown UUID costs the same hash.
    const std::string presented = sha256_hex(client_token);
    auto record = find(uuid);
    if (!record || !constant_time_equal(presented, record->token_sha256))
        return std::nullopt;
    return record;
}

bool state_database::erase(std::string_view uuid) {
    std::lock_guard lock(mutex_);
    query q(*db_, erase_sql);
    q.bind(1, uuid).run();
    return sqlite3_changes(db_->handle()) > 0;
}

std::vector<container_record> state_database::list() {
    std::lock_guard lock(mutex_);
    query q(*db_, list_sql);
    return read_records(q);
}

std::vector<container_record> state_database::list_expired(stored_time at) {
    std::lock_guard lock(mutex_);
    query q(*db_, expired_sql);
    q.bind(1, seconds_of(at));
    return read_records(q);
}

// ---- access_token_store ----

namespace {

constexpr const char* token_insert_sql =
    "INSERT INTO AnweddolServerAccessTokenTable (CreationTimestamp, AccessToken, Enabled) "
    "VALUES (?1, ?2, ?3)";
constexpr const char* token_list_sql =
    "SELECT EntryID, CreationTimestamp, Enabled FROM AnweddolServerAccessTokenTable "
    "ORDER BY EntryID";
constexpr const char* token_delete_sql =
    "DELETE FROM AnweddolServerAccessTokenTable WHERE EntryID = ?1";
constexpr const char* token_set_enabled_sql =
    "UPDATE AnweddolServerAccessTokenTable SET Enabled = ?2 WHERE EntryID = ?1";
constexpr const char* token_enabled_hashes_sql =
    "SELECT EntryID, AccessToken FROM AnweddolServerAccessTokenTable WHERE Enabled = 1";

} // namespace

access_token_store::access_token_store(const fs::path& file)
    : db_(std::make_unique<detail::sqlite_connection>(file)) {
    // The reference's table, column for column (tools/access_token.py).
    db_->exec("CREATE TABLE IF NOT EXISTS AnweddolServerAccessTokenTable ("
              " EntryID INTEGER NOT NULL PRIMARY KEY,"
              " CreationTimestamp INTEGER NOT NULL,"
              " AccessToken TEXT NOT NULL,"
              " Enabled INTEGER NOT NULL)");
}

access_token_store::~access_token_store() = default;

const fs::path& access_token_store::file() const noexcept {
    return db_->file();
}

access_token_store::new_token access_token_store::add(bool enabled) {
    new_token created{{0, now(), enabled}, generate_access_token()};
    const std::string hash = sha256_hex(created.token.reveal());
    std::lock_guard lock(mutex_);
    query q(*db_, token_insert_sql);
    q.bind(1, seconds_of(created.info.created_at))
        .bind(2, hash)
        .bind(3, std::int64_t{enabled ? 1 : 0})
        .run();
    created.info.id = sqlite3_last_insert_rowid(db_->handle());
    return created;
}

std::vector<access_token_store::entry> access_token_store::list() {
    std::lock_guard lock(mutex_);
    query q(*db_, token_list_sql);
    std::vector<entry> entries;
    while (q.step())
        entries.push_back({q.integer(0), time_of(q.integer(1)), q.integer(2) != 0});
    return entries;
}

bool access_token_store::revoke(std::int64_t id) {
    std::lock_guard lock(mutex_);
    query q(*db_, token_delete_sql);
    q.bind(1, id).run();
    return sqlite3_changes(db_->handle()) > 0;
}

bool access_token_store::enable(std::int64_t id) {
    return set_enabled(id, true);
}
bool access_token_store::disable(std::int64_t id) {
    return set_enabled(id, false);
}

bool access_token_store::set_enabled(std::int64_t id, bool enabled) {
    std::lock_guard lock(mutex_);
    query q(*db_, token_set_enabled_sql);
    q.bind(1, id).bind(2, std::int64_t{enabled ? 1 : 0}).run();
    return sqlite3_changes(db_->handle()) > 0;
}

std::optional<std::int64_t> access_token_store::verify(std::string_view token) {
    const std::string presented = sha256_hex(token);
    std::lock_guard lock(mutex_);
    query q(*db_, token_enabled_hashes_sql);
    std::optional<std::int64_t> match;
    while (q.step()) {
        // No early exit: every enabled entry is compared.
        if (constant_time_equal(presented, q.text(1)) && !match)
            match = q.integer(0);
    }
    return match;
}

} // namespace anweddol::server
