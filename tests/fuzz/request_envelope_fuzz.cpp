// Fuzzes the request envelope both transports share, and the REST
// routing in front of it, with arbitrary clients' bytes.
//
// The first input byte picks the input's use: even, the whole of a
// classic message's JSON (parse_request); odd, an HTTP request's method
// (the byte's other bits), target and body, split at the first 0xFF
// (route_rest_request). Properties: nothing throws; a request that passes
// has an upper-case verb (or none, for the home page) and an object of
// parameters whose container_uuid and client_token have the reference's
// formats and come together; a refusal is "Bad request (...)" and
// serializes to JSON that parses back.
#include "fuzz_support.hpp"
#include "protocol.hpp"
#include "rest_api.hpp"

#include <boost/json/parse.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

namespace server = anweddol::server;
namespace http = boost::beast::http;

namespace {

bool token_char(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' ||
           c == '_';
}

void check_request(const server::request& r) {
    for (char c : r.verb)
        if (c < 'A' || c > 'Z')
            anweddol::fuzz::fail("a verb passed that is not upper-case letters", r.verb);
    const auto* uuid = r.parameters.if_contains("container_uuid");
    const auto* token = r.parameters.if_contains("client_token");
    if (bool(uuid) != bool(token))
        anweddol::fuzz::fail("container_uuid and client_token passed apart");
    if (uuid && (!uuid->is_string() || uuid->get_string().size() != 36))
        anweddol::fuzz::fail("a container_uuid passed that is no UUID");
    if (token) {
        if (!token->is_string() || token->get_string().size() != 255)
            anweddol::fuzz::fail("a client_token passed that is not 255 characters");
        for (char c : token->get_string())
            if (!token_char(c))
                anweddol::fuzz::fail(
                    "a client_token passed with a character outside [0-9a-zA-Z_-]");
    }
}

void check_refusal(const server::response& r) {
    if (r.success)
        anweddol::fuzz::fail("a refusal that says success", r.message);
    const std::string text = server::serialize(r);
    boost::json::error_code ec;
    (void)boost::json::parse(text, ec);
    if (ec)
        anweddol::fuzz::fail("a response that is not JSON", text);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1)
        return 0;
    const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
    if (data[0] % 2 == 0) {
        auto parsed = server::parse_request(rest);
        if (const auto* r = std::get_if<server::request>(&parsed)) {
            if (r->verb.empty())
                anweddol::fuzz::fail("a classic request without a verb passed");
            check_request(*r);
        } else {
            const auto& refusal = std::get<server::response>(parsed);
            if (refusal.message.rfind("Bad request", 0) != 0)
                anweddol::fuzz::fail("a malformed message refused otherwise than Bad request",
                                     refusal.message);
            check_refusal(refusal);
        }
        return 0;
    }
    static constexpr http::verb methods[] = {http::verb::get, http::verb::post, http::verb::head,
                                             http::verb::put, http::verb::delete_};
    const http::verb method = methods[(data[0] >> 1) % std::size(methods)];
    const auto split = rest.find('\xff');
    const std::string_view target = rest.substr(0, split);
    const std::string_view body =
        split == std::string_view::npos ? std::string_view() : rest.substr(split + 1);
    const auto route = server::route_rest_request(method, target, body, (data[0] & 0x40) != 0);
    if (const auto* r = std::get_if<server::request>(&route))
        check_request(*r);
    else if (const auto* refusal = std::get_if<server::response>(&route))
        check_refusal(*refusal);
    return 0;
}
