// What both of the Anweddol server's transports carry: a request envelope
// `{"verb", "parameters"}` and a response `{"success", "message", "data"}`,
// validated as the reference client and server validate them, and the
// reference's message strings. Transports (REST, classic) parse bytes into a
// `request`, hand it to one `request_handler`, and write its `response`.
#ifndef ANWEDDOL_SERVER_PROTOCOL_HPP
#define ANWEDDOL_SERVER_PROTOCOL_HPP

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <functional>
#include <string>
#include <string_view>
#include <variant>

namespace anweddol::server {

// The reference's response messages (core/server.py RESPONSE_MSG_*); a reason
// goes after them in parentheses.
namespace message {
inline constexpr std::string_view ok = "OK";
inline constexpr std::string_view bad_authentication = "Bad authentication";
inline constexpr std::string_view bad_request = "Bad request";
inline constexpr std::string_view refused_request = "Refused request";
inline constexpr std::string_view unavailable = "Unavailable";
inline constexpr std::string_view internal_error = "Internal error";
} // namespace message

// The verbs the reference serves; any other upper-case verb is answered
// "Bad request".
namespace verb {
inline constexpr std::string_view create = "CREATE";
inline constexpr std::string_view stat = "STAT";
inline constexpr std::string_view destroy = "DESTROY";
} // namespace verb

enum class transport { rest, classic };

// A request that passed the envelope's validation: `verb` matches
// ^[A-Z]+$ (or is empty: the REST home page), `parameters` is an object whose
// container_uuid / client_token, when present, have the reference's formats
// and come together. Unknown parameters are kept, as Cerberus'
// allow_unknown does.
struct request {
    std::string verb;
    boost::json::object parameters;
    boost::asio::ip::address peer;
    transport via = transport::rest;
};

struct response {
    bool success = false;
    std::string message; // one of `message::*`, maybe with " (reason)"
    boost::json::object data;
};

// Builds a response the way the reference's makeResponse does: the message,
// then " (reason)" when a reason is given.
response make_response(bool success, std::string_view message, boost::json::object data = {},
                       std::string_view reason = {});

// `{"success": ..., "message": ..., "data": {...}}`, compact, as json.dumps
// would write it (key order: success, message, data).
std::string serialize(const response& r);

// Validates a decoded JSON document as a request envelope (the classic
// transport's whole message; REST builds the envelope from the URL and the
// body). Returns the request, or the "Bad request (...)" response to send.
std::variant<request, response> validate_request(const boost::json::value& document);

// Parses and validates the classic transport's JSON message. Malformed JSON
// and a document that is not an object are "Bad request" too.
std::variant<request, response> parse_request(std::string_view json_text);

// The one place that serves requests: the server's lifecycle. Transports
// call it once per request; it never throws (failures are responses).
using request_handler = std::function<boost::asio::awaitable<response>(request)>;

} // namespace anweddol::server

#endif
