// The request envelope, validated as the reference's Cerberus schema does.
#include "protocol.hpp"

#include <boost/json/parse.hpp>

#include <catch2/catch.hpp>

#include <string>

namespace server = anweddol::server;

namespace {

const std::string uuid = "0f8fad5b-d9cb-469f-a165-70867728950e";
const std::string token(255, 'a');

std::string bad_reason(std::string_view text) {
    auto parsed = server::parse_request(text);
    REQUIRE(std::holds_alternative<server::response>(parsed));
    const auto& r = std::get<server::response>(parsed);
    CHECK_FALSE(r.success);
    CHECK(r.message.rfind("Bad request", 0) == 0);
    return r.message;
}

} // namespace

TEST_CASE("server protocol: a well-formed envelope becomes a request, unknown parameters kept") {
    auto parsed =
        server::parse_request(R"({"verb":"DESTROY","parameters":{"container_uuid":")" + uuid +
                              R"(","client_token":")" + token + R"(","extra":1}})");
    REQUIRE(std::holds_alternative<server::request>(parsed));
    const auto& r = std::get<server::request>(parsed);
    CHECK(r.verb == "DESTROY");
    CHECK(r.parameters.at("container_uuid").as_string() == uuid);
    CHECK(r.parameters.at("extra").as_int64() == 1);
}

TEST_CASE("server protocol: malformed envelopes are Bad request, each with its reason") {
    CHECK(bad_reason("{") == "Bad request (the request is not valid JSON)");
    CHECK(bad_reason("[1]") == "Bad request (the request is not a JSON object)");
    bad_reason(R"({"parameters":{}})");
    bad_reason(R"({"verb":"create","parameters":{}})");
    bad_reason(R"({"verb":"CREATE"})");
    bad_reason(R"({"verb":"CREATE","parameters":[]})");
    bad_reason(R"({"verb":"DESTROY","parameters":{"container_uuid":")" + uuid + R"("}})");
    bad_reason(R"({"verb":"DESTROY","parameters":{"client_token":")" + token + R"("}})");
    bad_reason(R"({"verb":"DESTROY","parameters":{"container_uuid":")" + std::string(36, 'A') +
               R"(","client_token":")" + token + R"("}})");
    bad_reason(R"({"verb":"DESTROY","parameters":{"container_uuid":")" + uuid +
               R"(","client_token":")" + std::string(254, 'a') + R"("}})");
    bad_reason(R"({"verb":"DESTROY","parameters":{"container_uuid":")" + uuid +
               R"(","client_token":")" + std::string(255, '=') + R"("}})");
}

TEST_CASE("server protocol: a response serializes as the reference's, reason in parentheses") {
    auto r = server::make_response(false, server::message::unavailable, {}, "no capacity left");
    CHECK(server::serialize(r) ==
          R"j({"success":false,"message":"Unavailable (no capacity left)","data":{}})j");
    CHECK(server::serialize(server::make_response(true, server::message::ok)) ==
          R"({"success":true,"message":"OK","data":{}})");
}
