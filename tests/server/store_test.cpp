// The server's durable state (containers handed out, access tokens) and the
// tokens it hands out: formats, constant-time checks, persistence.
#include "state_database.hpp"
#include "tokens.hpp"

#include "../unit/scratch_directory.hpp"

#include <catch2/catch.hpp>

#include <sqlite3.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <regex>
#include <set>
#include <string>

namespace server = anweddol::server;
using namespace std::chrono_literals;

namespace {

const std::string uuid_a = "0f8fad5b-d9cb-469f-a165-70867728950e";
const std::string uuid_b = "7c9e6679-7425-40de-944b-e07fc1f90ae7";

server::stored_time at(std::int64_t seconds) {
    return server::stored_time(std::chrono::seconds(seconds));
}

server::container_record record(const std::string& uuid, const std::string& token,
                                std::uint16_t port) {
    server::container_record r;
    r.uuid = uuid;
    r.token_sha256 = server::sha256_hex(token);
    r.forwarded_port = port;
    r.host = "local";
    r.guest_ip = "192.168.122.17";
    r.guest_port = 22;
    r.created_at = at(1700000000);
    return r;
}

std::string token_of(char c) {
    return std::string(255, c);
}

unsigned mode_of(const std::filesystem::path& file) {
    struct stat status {};
    REQUIRE(::stat(file.c_str(), &status) == 0);
    return status.st_mode & 0777;
}

} // namespace

TEST_CASE("server tokens: a client token is 255 base64url characters, as the reference's") {
    static const std::regex format("^[0-9a-zA-Z_-]{255}$");
    std::set<std::string> seen;
    for (int i = 0; i < 50; ++i) {
        const auto token = server::generate_client_token();
        CHECK(std::regex_match(std::string(token.reveal()), format));
        seen.insert(std::string(token.reveal()));
    }
    CHECK(seen.size() == 50);
}

TEST_CASE("server tokens: an access token is 124 base64url characters (token_urlsafe(93))") {
    static const std::regex format("^[0-9a-zA-Z_-]{124}$");
    CHECK(std::regex_match(std::string(server::generate_access_token().reveal()), format));
}

TEST_CASE("server tokens: container credentials match the client's validator") {
    static const std::regex username("^user_[0-9]{5}$");
    static const std::regex password("^[a-zA-Z0-9]{120}$");
    std::set<char> characters;
    for (int i = 0; i < 200; ++i) {
        const auto name = server::generate_container_username();
        CHECK(std::regex_match(name, username));
        CHECK(std::stoi(name.substr(5)) >= 10000);
        const auto secret = server::generate_container_password();
        CHECK(std::regex_match(std::string(secret.reveal()), password));
        characters.insert(secret.reveal().begin(), secret.reveal().end());
    }
    // 24000 draws over 62 characters reach every one of them.
    CHECK(characters.size() == 62);
}

TEST_CASE("server tokens: SHA-256 as hashlib's hexdigest, of strings and of files") {
    CHECK(server::sha256_hex("abc") ==
          "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(server::sha256_hex("") ==
          "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    anweddol::test::scratch dir; // its ISO holds "abc"
    CHECK(server::file_sha256_hex(dir.iso) == server::sha256_hex("abc"));
    // Larger than one read block.
    const std::string big(3 * (1 << 20) + 17, 'x');
    std::ofstream(dir.root / "big.iso", std::ios::binary) << big;
    CHECK(server::file_sha256_hex(dir.root / "big.iso") == server::sha256_hex(big));
    CHECK_THROWS_WITH(server::file_sha256_hex(dir.root / "none.iso"),
                      Catch::Contains("none.iso to hash it"));
    CHECK_THROWS_WITH(server::file_sha256_hex(dir.leases), Catch::Contains("cannot read"));
}

TEST_CASE("server tokens: constant_time_equal compares contents and lengths") {
    CHECK(server::constant_time_equal("abc", "abc"));
    CHECK_FALSE(server::constant_time_equal("abc", "abd"));
    CHECK_FALSE(server::constant_time_equal("abc", "abcd"));
    CHECK(server::constant_time_equal("", ""));
}

TEST_CASE("server state database: authenticate needs the UUID and its own token together") {
    anweddol::test::scratch dir;
    server::state_database db(dir.root / "server.db");
    REQUIRE(db.insert(record(uuid_a, token_of('a'), 10001)) ==
            server::state_database::insert_result::inserted);
    REQUIRE(db.insert(record(uuid_b, token_of('b'), 10002)) ==
            server::state_database::insert_result::inserted);

    const auto found = db.authenticate(uuid_a, token_of('a'));
    REQUIRE(found);
    CHECK(found->uuid == uuid_a);
    CHECK(found->forwarded_port == 10001);
    // The reference's DESTROY filters on the UUID alone: any token passes.
    CHECK_FALSE(db.authenticate(uuid_a, token_of('b')));
    CHECK_FALSE(db.authenticate(uuid_a, token_of('a').substr(1)));
    CHECK_FALSE(db.authenticate("00000000-0000-4000-8000-000000000000", token_of('a')));
    // The stored hash itself is no token.
    CHECK_FALSE(db.authenticate(uuid_a, server::sha256_hex(token_of('a'))));
}

TEST_CASE("server state database: a taken UUID or port is refused and changes nothing") {
    anweddol::test::scratch dir;
    server::state_database db(dir.root / "server.db");
    REQUIRE(db.insert(record(uuid_a, token_of('a'), 10001)) ==
            server::state_database::insert_result::inserted);
    CHECK(db.insert(record(uuid_b, token_of('b'), 10001)) ==
          server::state_database::insert_result::port_taken);
    CHECK(db.insert(record(uuid_a, token_of('b'), 10002)) ==
          server::state_database::insert_result::uuid_taken);
    const auto all = db.list();
    REQUIRE(all.size() == 1);
    CHECK(all[0].token_sha256 == server::sha256_hex(token_of('a')));
    CHECK_FALSE(db.find(uuid_b));
    // After the port's container goes, its port can be taken again.
    CHECK(db.erase(uuid_a));
    CHECK_FALSE(db.erase(uuid_a));
    CHECK(db.insert(record(uuid_b, token_of('b'), 10001)) ==
          server::state_database::insert_result::inserted);
}

TEST_CASE("server state database: malformed records are refused before they are stored") {
    anweddol::test::scratch dir;
    server::state_database db(dir.root / "server.db");
    auto bad = record(uuid_a, token_of('a'), 10001);
    bad.token_sha256 = token_of('a'); // a token, not its hash
    CHECK_THROWS_AS(db.insert(bad), std::invalid_argument);
    bad = record(uuid_a, token_of('a'), 0);
    CHECK_THROWS_AS(db.insert(bad), std::invalid_argument);
    bad = record("", token_of('a'), 10001);
    CHECK_THROWS_AS(db.insert(bad), std::invalid_argument);
    CHECK(db.list().empty());
}

TEST_CASE("server state database: records survive closing and reopening, field for field") {
    anweddol::test::scratch dir;
    const auto file = dir.root / "server.db";
    auto original = record(uuid_a, token_of('a'), 10001);
    original.host = "rack1";
    original.guest_ip = "fd00::17";
    original.guest_port = 2222;
    original.expires_at = at(1700003600);
    {
        server::state_database db(file);
        REQUIRE(db.insert(original) == server::state_database::insert_result::inserted);
        REQUIRE(db.insert(record(uuid_b, token_of('b'), 10002)) ==
                server::state_database::insert_result::inserted);
    }
    server::state_database db(file);
    const auto again = db.find(uuid_a);
    REQUIRE(again);
    CHECK(again->uuid == original.uuid);
    CHECK(again->token_sha256 == original.token_sha256);
    CHECK(again->forwarded_port == 10001);
    CHECK(again->host == "rack1");
    CHECK(again->guest_ip == "fd00::17");
    CHECK(again->guest_port == 2222);
    CHECK(again->created_at == original.created_at);
    CHECK(again->expires_at == original.expires_at);
    CHECK_FALSE(db.find(uuid_b)->expires_at);
    CHECK(db.authenticate(uuid_b, token_of('b')));
    CHECK(db.list().size() == 2);
}

TEST_CASE("server state database: list_expired gives the records due at a time, soonest first") {
    anweddol::test::scratch dir;
    server::state_database db(dir.root / "server.db");
    auto late = record(uuid_a, token_of('a'), 10001);
    late.expires_at = at(2000);
    auto early = record(uuid_b, token_of('b'), 10002);
    early.expires_at = at(1000);
    auto never = record("3b241101-e2bb-4255-8caf-4136c566a962", token_of('c'), 10003);
    db.insert(late);
    db.insert(early);
    db.insert(never);
    CHECK(db.list_expired(at(999)).empty());
    auto due = db.list_expired(at(1000));
    REQUIRE(due.size() == 1);
    CHECK(due[0].uuid == uuid_b);
    due = db.list_expired(at(5000));
    REQUIRE(due.size() == 2);
    CHECK(due[0].uuid == uuid_b);
    CHECK(due[1].uuid == uuid_a);
}

TEST_CASE("server state database: its file is private and in WAL mode with full sync") {
    anweddol::test::scratch dir;
    const auto file = dir.root / "server.db";
    {
        server::state_database db(file);
        db.insert(record(uuid_a, token_of('a'), 10001));
        CHECK(mode_of(file) == 0600);
        CHECK(mode_of(file.string() + "-wal") == 0600);
    }
    sqlite3* raw = nullptr;
    REQUIRE(sqlite3_open_v2(file.c_str(), &raw, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
    sqlite3_stmt* statement = nullptr;
    REQUIRE(sqlite3_prepare_v2(raw, "PRAGMA journal_mode", -1, &statement, nullptr) == SQLITE_OK);
    REQUIRE(sqlite3_step(statement) == SQLITE_ROW);
    CHECK(std::string(reinterpret_cast<const char*>(sqlite3_column_text(statement, 0))) == "wal");
    sqlite3_finalize(statement);
    sqlite3_close(raw);

    // A file others can read is narrowed.
    REQUIRE(::chmod(file.c_str(), 0644) == 0);
    server::state_database reopened(file);
    CHECK(mode_of(file) == 0600);
}

TEST_CASE("server state database: a missing directory or a file that is no database is refused") {
    anweddol::test::scratch dir;
    CHECK_THROWS_WITH(server::state_database(dir.root / "absent" / "server.db"),
                      Catch::Contains("absent does not exist: create it"));
    CHECK_FALSE(std::filesystem::exists(dir.root / "absent"));
    std::ofstream(dir.root / "garbage.db") << std::string(4096, 'g');
    CHECK_THROWS_WITH(server::state_database(dir.root / "garbage.db"),
                      Catch::Contains("garbage.db: is not a usable database"));
    CHECK_THROWS_WITH(server::state_database(dir.leases), Catch::Contains("leases"));
}

TEST_CASE("server access tokens: add, verify, disable, enable, revoke") {
    anweddol::test::scratch dir;
    server::access_token_store store(dir.root / "access_token.db");
    auto first = store.add();
    auto second = store.add(false);
    CHECK(first.token.size() == 124);
    CHECK(first.info.id != second.info.id);
    CHECK(first.info.enabled);
    CHECK_FALSE(second.info.enabled);

    CHECK(store.verify(first.token.reveal()) == first.info.id);
    CHECK_FALSE(store.verify(second.token.reveal())); // added disabled
    CHECK_FALSE(store.verify(std::string(124, 'x')));
    CHECK_FALSE(store.verify(""));

    CHECK(store.enable(second.info.id));
    CHECK(store.verify(second.token.reveal()) == second.info.id);
    CHECK(store.disable(first.info.id));
    CHECK_FALSE(store.verify(first.token.reveal()));

    const auto entries = store.list();
    REQUIRE(entries.size() == 2);
    CHECK(entries[0].id == first.info.id);
    CHECK_FALSE(entries[0].enabled);
    CHECK(entries[1].enabled);
    CHECK(entries[0].created_at == first.info.created_at);

    CHECK(store.revoke(second.info.id));
    CHECK_FALSE(store.verify(second.token.reveal()));
    CHECK_FALSE(store.revoke(second.info.id));
    CHECK_FALSE(store.enable(second.info.id));
    CHECK(store.list().size() == 1);
}

TEST_CASE("server access tokens: only hashes are stored, in the reference's table") {
    anweddol::test::scratch dir;
    const auto file = dir.root / "access_token.db";
    std::string token;
    {
        server::access_token_store store(file);
        token = std::string(store.add().token.reveal());
    }
    // Read as the reference's tools/access_token.py does: its table, the
    // hex SHA-256 of the token in AccessToken.
    sqlite3* raw = nullptr;
    REQUIRE(sqlite3_open_v2(file.c_str(), &raw, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
    sqlite3_stmt* statement = nullptr;
    REQUIRE(sqlite3_prepare_v2(raw,
                               "SELECT EntryID, CreationTimestamp, AccessToken, Enabled FROM "
                               "AnweddolServerAccessTokenTable",
                               -1, &statement, nullptr) == SQLITE_OK);
    REQUIRE(sqlite3_step(statement) == SQLITE_ROW);
    CHECK(std::string(reinterpret_cast<const char*>(sqlite3_column_text(statement, 2))) ==
          server::sha256_hex(token));
    CHECK(sqlite3_column_int(statement, 3) == 1);
    sqlite3_finalize(statement);
    sqlite3_close(raw);

    // Tokens persist.
    server::access_token_store store(file);
    CHECK(store.verify(token));
    CHECK(mode_of(file) == 0600);
}

TEST_CASE("server access tokens: a file the reference's tool wrote, and tokens added meanwhile") {
    anweddol::test::scratch dir;
    const auto file = dir.root / "access_token.db";
    // As the reference's AccessTokenManager leaves it: its table, one row.
    sqlite3* raw = nullptr;
    REQUIRE(sqlite3_open(file.c_str(), &raw) == SQLITE_OK);
    const std::string insert =
        "CREATE TABLE AnweddolServerAccessTokenTable (EntryID INTEGER NOT NULL PRIMARY KEY, "
        "CreationTimestamp INTEGER NOT NULL, AccessToken TEXT NOT NULL, Enabled INTEGER NOT NULL);"
        "INSERT INTO AnweddolServerAccessTokenTable VALUES (1, 1690000000, '" +
        server::sha256_hex("token-of-the-reference") + "', 1);";
    REQUIRE(sqlite3_exec(raw, insert.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(raw);
    REQUIRE(::chmod(file.c_str(), 0644) == 0);

    server::access_token_store server_side(file);
    CHECK(server_side.verify("token-of-the-reference") == 1);
    CHECK(server_side.list().at(0).created_at == at(1690000000));
    CHECK(mode_of(file) == 0600);
    // The access-token subcommand adds a token while the server runs.
    server::access_token_store subcommand(file);
    const auto added = subcommand.add();
    CHECK(added.info.id == 2);
    CHECK(server_side.verify(added.token.reveal()) == 2);
    CHECK(subcommand.revoke(1));
    CHECK_FALSE(server_side.verify("token-of-the-reference"));
}
