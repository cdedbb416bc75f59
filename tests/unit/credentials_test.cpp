#include <anweddol/detail/credentials.hpp>
#include <anweddol/detail/domain_identity.hpp>
#include <anweddol/detail/random.hpp>
#include <anweddol/detail/ssh/shell_quote.hpp>
#include <anweddol/endpoint_shell_instance.hpp>
#include <anweddol/error.hpp>

#include <boost/asio/io_context.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>

using namespace anweddol;

namespace {

constexpr std::string_view short_password = "hunter2!";

bool all_zero(const char* bytes, std::size_t size) {
    return std::all_of(bytes, bytes + size, [](char c) { return c == '\0'; });
}

} // namespace

TEST_CASE("credentials: usernames are user_NNNNN with NNNNN in 10000-90000", "[credentials]") {
    std::set<std::string> seen;
    for (int i = 0; i < 2000; ++i) {
        const std::string name = detail::generate_username();
        REQUIRE(name.size() == 10);
        REQUIRE(name.rfind("user_", 0) == 0);
        const int n = std::stoi(name.substr(5));
        CHECK(n >= 10000);
        CHECK(n <= 90000);
        seen.insert(name);
    }
    CHECK(seen.size() > 1900); // 80001 values: few repeats in 2000 draws
}

TEST_CASE("credentials: passwords have the asked length, from [A-Za-z0-9], evenly",
          "[credentials]") {
    for (std::size_t length : {1u, 7u, 120u, 4096u}) {
        const std::string password = detail::generate_password(length);
        CHECK(password.size() == length);
        CHECK(std::all_of(password.begin(), password.end(), [](char c) {
            return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        }));
    }
    // 62 symbols over 620000 draws: about 10000 each; a modulo bias (256 % 62
    // = 8 symbols drawn 5/4 as often) would put some near 12300.
    std::array<int, 128> counts{};
    for (int i = 0; i < 620000 / 4096 + 1; ++i)
        for (char c : detail::generate_password(4096))
            ++counts[static_cast<unsigned char>(c)];
    for (char c : std::string("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")) {
        CHECK(counts[static_cast<unsigned char>(c)] > 9000);
        CHECK(counts[static_cast<unsigned char>(c)] < 11200);
    }
}

TEST_CASE("credentials: a password length of 0 or over 4096 is refused", "[credentials]") {
    for (std::size_t length : {std::size_t{0}, std::size_t{4097}, std::size_t{1} << 40}) {
        try {
            detail::generate_password(length);
            FAIL("accepted length " << length);
        } catch (const boost::system::system_error& e) {
            CHECK(e.code() == errc::invalid_argument);
        }
    }
}

TEST_CASE("credentials: a password is generated in the string it stays in, the old one wiped",
          "[credentials]") {
    std::string password(100, 'x');
    const char* buffer = password.data();
    detail::generate_password(password, 8);
    CHECK(password.size() == 8);
    REQUIRE(password.data() == buffer); // no reallocation left a copy elsewhere
    CHECK(all_zero(buffer + 9, 91));

    std::string kept = "kept";
    CHECK_THROWS_AS(detail::generate_password(kept, 0), boost::system::system_error);
    CHECK(kept == "kept"); // refused: changed nothing
}

// A password short enough to live inside the std::string object, which a
// move copies and leaves behind in the moved-from string: the shell must
// wipe what it moves from. The moved-from string is alive and read through
// a pointer to its own buffer.
TEST_CASE("credentials: a short password moved into an endpoint shell is wiped in the caller's "
          "string",
          "[credentials]") {
    boost::asio::io_context context;
    std::string password(short_password);
    const char* storage = password.data();
    std::optional<endpoint_shell_instance> shell;
    SECTION("through the constructor") {
        shell.emplace(context.get_executor(), "127.0.0.1", "endpoint", std::move(password), 22);
        CHECK(std::get<1>(shell->get_endpoint_credentials()) == short_password);
    }
    SECTION("through set_endpoint_credentials()") {
        shell.emplace(context.get_executor());
        shell->set_endpoint_credentials("endpoint", std::move(password), 22);
        CHECK(std::get<1>(shell->get_endpoint_credentials()) == short_password);
    }
    SECTION("through store_client_ssh_credentials()") {
        shell.emplace(context.get_executor());
        shell->store_client_ssh_credentials("user_10001", std::move(password), 2222);
        CHECK(std::get<1>(*shell->get_stored_client_ssh_credentials()) == short_password);
    }
    REQUIRE(password.data() == storage);
    CHECK(all_zero(storage, short_password.size()));
}

TEST_CASE("credentials: an endpoint shell copies a password passed by lvalue, leaving it as it was",
          "[credentials]") {
    boost::asio::io_context context;
    const std::string password(short_password);
    endpoint_shell_instance shell(context.get_executor(), "127.0.0.1", "endpoint", password);
    shell.store_client_ssh_credentials("user_10001", password);
    CHECK(password == short_password);
    CHECK(std::get<1>(shell.get_endpoint_credentials()) == short_password);
    CHECK(std::get<1>(*shell.get_stored_client_ssh_credentials()) == short_password);
}

TEST_CASE("shell quoting: every value is one word the shell passes as it is", "[credentials]") {
    CHECK(detail::shell_quote("plain") == "'plain'");
    CHECK(detail::shell_quote("") == "''");
    CHECK(detail::shell_quote("x; reboot") == "'x; reboot'");
    CHECK(detail::shell_quote("it's") == "'it'\\''s'");
    CHECK(detail::shell_quote("$(id) `id` \"q\" \\ \n") == "'$(id) `id` \"q\" \\ \n'");
}

TEST_CASE("random: hex is lower-case, two digits a byte, and draws differ", "[credentials]") {
    const unsigned char bytes[] = {0x00, 0x0f, 0xa5, 0xff};
    CHECK(detail::to_hex(bytes, sizeof bytes) == "000fa5ff");
    CHECK(detail::random_array<16>() != detail::random_array<16>());
    const std::string uuid = detail::random_uuid();
    CHECK(detail::is_canonical_uuid(uuid));
    CHECK(uuid[14] == '4');
    CHECK(detail::random_mac().rfind("52:54:00:", 0) == 0);
}
