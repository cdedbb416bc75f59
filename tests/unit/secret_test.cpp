#include <anweddol/secret.hpp>

#include <catch2/catch.hpp>

#include <cstddef>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

using anweddol::secret;

namespace {

// Short enough to live inside the std::string object (libstdc++ keeps up
// to 15 characters there), where a move copies it and leaves it behind.
constexpr std::string_view short_password = "hunter2!";

// The bytes of a live object's buffer, read through a pointer kept to it.
bool all_zero(const char* storage, std::size_t size) {
    for (std::size_t i = 0; i < size; ++i)
        if (storage[i] != '\0')
            return false;
    return true;
}

template <class T>
concept printable = requires(std::ostream& out, const T& value) {
    out << value;
};

} // namespace

TEST_CASE("secret: never printed, never converted to a string", "[secret]") {
    STATIC_REQUIRE_FALSE(printable<secret>);
    STATIC_REQUIRE_FALSE(std::is_convertible_v<secret, std::string>);
    STATIC_REQUIRE_FALSE(std::is_convertible_v<secret, std::string_view>);
    STATIC_REQUIRE_FALSE(std::is_convertible_v<secret, const char*>);
    // What a std::string field took before, a secret field takes too.
    STATIC_REQUIRE(std::is_convertible_v<const char*, secret>);
    STATIC_REQUIRE(std::is_convertible_v<const std::string&, secret>);
    STATIC_REQUIRE(std::is_convertible_v<std::string&&, secret>);
    STATIC_REQUIRE(std::is_convertible_v<std::string_view, secret>);
}

TEST_CASE("secret: built from a short std::string by move, it wipes what the move left in it",
          "[secret]") {
    std::string source(short_password);
    const char* storage = source.data();
    REQUIRE(source.capacity() >= short_password.size());
    const secret password(std::move(source));
    CHECK(password.reveal() == short_password);
    REQUIRE(source.data() == storage); // still the object's own buffer
    CHECK(source.empty());
    CHECK(all_zero(storage, short_password.size()));
}

TEST_CASE("secret: built from a long std::string by move, it takes the buffer over", "[secret]") {
    std::string source(100, 'x');
    const char* buffer = source.data();
    const secret password(std::move(source));
    CHECK(password.reveal().data() == buffer);
    CHECK(password.size() == 100);
    CHECK(source.empty());
}

TEST_CASE("secret: a copy from an lvalue leaves the source as it was", "[secret]") {
    const std::string source(short_password);
    secret password = source;
    CHECK(password.reveal() == short_password);
    CHECK(source == short_password);
    password = "other";
    CHECK(password.reveal() == "other");
    CHECK(source == short_password);
}

TEST_CASE("secret: moved from, a secret's own short buffer is wiped", "[secret]") {
    secret source(short_password);
    const char* storage = source.reveal().data();
    SECTION("by move construction") {
        const secret moved(std::move(source));
        CHECK(moved.reveal() == short_password);
    }
    SECTION("by move assignment") {
        secret moved("previous value");
        moved = std::move(source);
        CHECK(moved.reveal() == short_password);
    }
    REQUIRE(source.reveal().data() == storage);
    CHECK(source.empty());
    CHECK(all_zero(storage, short_password.size()));
}

TEST_CASE("secret: assigned over or cleared, the old value's buffer is wiped", "[secret]") {
    secret password(std::string(100, 'x'));
    const char* buffer = password.reveal().data();
    SECTION("assign() with a shorter value reuses the buffer, wiped past the new value") {
        password.assign("short");
        CHECK(password.reveal() == "short");
        REQUIRE(password.reveal().data() == buffer);
        CHECK(all_zero(buffer + 6, 94));
    }
    SECTION("copy assignment of a shorter value does the same") {
        const secret other("short");
        password = other;
        CHECK(password.reveal() == "short");
        REQUIRE(password.reveal().data() == buffer);
        CHECK(all_zero(buffer + 6, 94));
    }
    SECTION("clear()") {
        password.clear();
        CHECK(password.empty());
        REQUIRE(password.reveal().data() == buffer);
        CHECK(all_zero(buffer, 100));
    }
}

TEST_CASE("secret: equals() compares the whole value", "[secret]") {
    const secret token("0123456789abcdef");
    CHECK(token.equals("0123456789abcdef"));
    CHECK_FALSE(token.equals("0123456789abcdeF")); // last byte differs
    CHECK_FALSE(token.equals("X123456789abcdef")); // first byte differs
    CHECK_FALSE(token.equals("0123456789abcde"));  // a prefix
    CHECK_FALSE(token.equals("0123456789abcdef0"));
    CHECK_FALSE(token.equals(""));
    CHECK(secret().equals(""));
    CHECK_FALSE(secret().equals("x"));
    const secret same(std::string("0123456789abcdef"));
    CHECK(token.equals(same.reveal()));
}

TEST_CASE("wipe: a std::string is wiped up to its capacity, inside the object too", "[secret]") {
    SECTION("a short string, in the object's own buffer") {
        std::string s(short_password);
        const char* storage = s.data();
        anweddol::wipe(s);
        CHECK(s.empty());
        REQUIRE(s.data() == storage);
        CHECK(all_zero(storage, short_password.size()));
    }
    SECTION("bytes past the size, from an earlier longer value") {
        std::string s(100, 'x');
        s.resize(10);
        const char* buffer = s.data();
        anweddol::wipe(s);
        REQUIRE(s.data() == buffer);
        REQUIRE(s.capacity() >= 100);
        CHECK(all_zero(buffer, 100));
    }
    SECTION("a byte range") {
        char bytes[] = "sensitive";
        anweddol::wipe(std::as_writable_bytes(std::span(bytes)));
        CHECK(all_zero(bytes, sizeof bytes));
    }
}
