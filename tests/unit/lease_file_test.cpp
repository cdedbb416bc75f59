#include <anweddol/detail/libvirt/lease_file.hpp>
#include <anweddol/error.hpp>

#include <boost/system/system_error.hpp>

#include <catch2/catch.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

using anweddol::detail::find_lease;

namespace {

constexpr std::int64_t now = 1'800'000'000;

std::string entry(const std::string& mac, const std::string& ip, std::int64_t expiry) {
    return R"({"ip-address":")" + ip + R"(","mac-address":")" + mac +
           R"(","hostname":"guest","expiry-time":)" + std::to_string(expiry) + "}";
}

// The error code and message find_lease throws for `text`.
std::pair<boost::system::error_code, std::string> failure_of(const std::string& text) {
    try {
        find_lease(text, "52:54:00:00:00:01", now);
    } catch (const boost::system::system_error& e) {
        return {e.code(), e.what()};
    }
    return {};
}

struct temporary_directory {
    std::filesystem::path path;

    temporary_directory() {
        std::string pattern =
            (std::filesystem::temp_directory_path() / "anweddol-lease-XXXXXX").string();
        REQUIRE(mkdtemp(pattern.data()) != nullptr);
        path = pattern;
    }
    ~temporary_directory() { std::filesystem::remove_all(path); }
};

} // namespace

TEST_CASE("find_lease finds a MAC's lease in libvirt's status file, case-insensitively") {
    const std::string text = "[" + entry("52:54:00:aa:bb:01", "192.168.122.10", now + 3600) + "," +
                             entry("52:54:00:aa:bb:02", "192.168.122.11", now + 3600) + "]";
    auto lease = find_lease(text, "52:54:00:AA:BB:02", now);
    REQUIRE(lease);
    CHECK(lease->ip_address == "192.168.122.11");
    CHECK(lease->expiry_time == now + 3600);
    CHECK_FALSE(find_lease(text, "52:54:00:aa:bb:03", now));
}

TEST_CASE("find_lease ignores expired leases and prefers the one expiring last") {
    const std::string mac = "52:54:00:00:00:01";
    const std::string text = "[" + entry(mac, "192.168.122.2", now - 1) + "," +
                             entry(mac, "192.168.122.3", now + 100) + "," +
                             entry(mac, "192.168.122.4", now + 900) + "," +
                             entry(mac, "192.168.122.5", now + 50) + "]";
    CHECK(find_lease(text, mac, now)->ip_address == "192.168.122.4");
    CHECK_FALSE(find_lease("[" + entry(mac, "192.168.122.2", now - 1) + "]", mac, now));
}

TEST_CASE("find_lease treats expiry-time 0 as a lease that never expires") {
    const std::string mac = "52:54:00:00:00:01";
    const std::string text =
        "[" + entry(mac, "192.168.122.7", 0) + "," + entry(mac, "192.168.122.8", now + 10) + "]";
    CHECK(find_lease(text, mac, now)->ip_address == "192.168.122.7");
}

TEST_CASE("find_lease reads an empty or blank status file as no leases") {
    CHECK_FALSE(find_lease("", "52:54:00:00:00:01", now));
    CHECK_FALSE(find_lease(" \n", "52:54:00:00:00:01", now));
    CHECK_FALSE(find_lease("[]", "52:54:00:00:00:01", now));
}

TEST_CASE("find_lease rejects malformed and hostile status files with a specific error") {
    const auto [code, why] = GENERATE(table<std::string, std::string>({
        {"not json at all", "not JSON"},
        {"[{\"ip-address\": \"1.2.3.4\"", "not JSON"},
        {"{\"ip-address\": \"1.2.3.4\"}", "not a JSON array"},
        {"[42]", "lease 0 is not a JSON object"},
        {R"([{"ip-address": 1, "mac-address": "52:54:00:00:00:01", "expiry-time": 1}])",
         "lacks a string"},
        {R"([{"ip-address": "1.2.3.4", "mac-address": ["x"], "expiry-time": 1}])",
         "lacks a string"},
        {R"([{"ip-address": "1.2.3.4", "mac-address": "52:54:00:00:00:01"}])", "lacks a string"},
        {R"([{"ip-address": "1.2.3.4", "mac-address": "52:54:00:00:00:01", "expiry-time": "1"}])",
         "\"expiry-time\" is not an integer"},
        {R"([{"ip-address": "1.2.3.4", "mac-address": "52:54:00:00:00:01", "expiry-time": 1.5}])",
         "\"expiry-time\" is not an integer"},
        {R"([{"ip-address": "1.2.3.4", "mac-address": "x", "expiry-time": 18446744073709551615}])",
         "\"expiry-time\" is not an integer"},
    }));
    CAPTURE(code);
    const auto [ec, message] = failure_of(code);
    CHECK(ec == anweddol::errc::lease_file_malformed);
    CHECK(message.find(why) != std::string::npos);
}

TEST_CASE("find_lease refuses a status file larger than the limit before parsing it") {
    const std::string huge(anweddol::detail::max_lease_file_size + 1, ' ');
    const auto [ec, message] = failure_of(huge);
    CHECK(ec == anweddol::errc::lease_file_malformed);
    CHECK(message.find("larger than") != std::string::npos);
}

TEST_CASE("find_lease survives deeply nested JSON with an error, not a crash") {
    const std::string deep = std::string(100000, '[') + std::string(100000, ']');
    CHECK(failure_of(deep).first == anweddol::errc::lease_file_malformed);
}

TEST_CASE("read_lease_file returns nothing for a missing file and the text of a present one") {
    temporary_directory directory;
    const auto path = directory.path / "virbr0.status";
    CHECK_FALSE(anweddol::detail::read_lease_file(path));
    std::ofstream(path) << "[]\n";
    CHECK(anweddol::detail::read_lease_file(path) == std::optional<std::string>("[]\n"));
}

TEST_CASE("read_lease_file refuses a file larger than the limit") {
    temporary_directory directory;
    const auto path = directory.path / "virbr0.status";
    std::ofstream(path) << std::string(anweddol::detail::max_lease_file_size + 10, 'x');
    try {
        anweddol::detail::read_lease_file(path);
        FAIL("no error for an oversized status file");
    } catch (const boost::system::system_error& e) {
        CHECK(e.code() == anweddol::errc::lease_file_malformed);
    }
}

TEST_CASE("read_lease_file reports an unreadable path as a system error") {
    temporary_directory directory;
    // A directory cannot be read as a file.
    CHECK_THROWS_AS(anweddol::detail::read_lease_file(directory.path), boost::system::system_error);
}
