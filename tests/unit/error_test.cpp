#include <anweddol/error.hpp>

#include <boost/system/system_error.hpp>

#include <catch2/catch.hpp>

#include <set>
#include <string>

TEST_CASE("errc values convert to error codes in the anweddol category") {
    const boost::system::error_code ec = anweddol::errc::ip_wait_timeout;
    CHECK(ec == anweddol::errc::ip_wait_timeout);
    CHECK(ec != anweddol::errc::invalid_memory);
    CHECK(std::string(ec.category().name()) == "anweddol");
    CHECK(ec.message().find("IP address") != std::string::npos);
}

TEST_CASE("every errc has a message of its own that says what to do") {
    std::set<std::string> messages;
    for (int value = static_cast<int>(anweddol::errc::domain_not_created);
         value <= static_cast<int>(anweddol::errc::lease_file_malformed); ++value) {
        const std::string message = anweddol::make_error_code(anweddol::errc(value)).message();
        CHECK(message.find("unknown") == std::string::npos);
        CHECK(messages.insert(message).second);
    }
    CHECK(messages.size() == 15);
}

TEST_CASE("a system_error built from an errc carries its context and its code") {
    const boost::system::system_error error(anweddol::errc::invalid_vcpus, "set_vcpus(0)");
    CHECK(error.code() == anweddol::errc::invalid_vcpus);
    CHECK(std::string(error.what()).find("set_vcpus(0)") != std::string::npos);
}

TEST_CASE("errc::console_host_keys_missing says what to do, and is no timeout") {
    const boost::system::error_code ec = anweddol::errc::console_host_keys_missing;
    CHECK(ec.message().find("require_console_host_keys") != std::string::npos);
    CHECK(ec.message().find("unknown") == std::string::npos);
    CHECK(ec != std::errc::timed_out);
}
