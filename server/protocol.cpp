#include "protocol.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

namespace anweddol::server {

namespace json = boost::json;

response make_response(bool success, std::string_view message, json::object data,
                       std::string_view reason) {
    response r;
    r.success = success;
    r.message = std::string(message);
    if (!reason.empty()) {
        r.message += " (";
        r.message += reason;
        r.message += ')';
    }
    r.data = std::move(data);
    return r;
}

std::string serialize(const response& r) {
    // json::object keeps insertion order, which is the reference's.
    json::object o;
    o["success"] = r.success;
    o["message"] = r.message;
    o["data"] = r.data;
    return json::serialize(o);
}

namespace {

bool all_of(std::string_view s, bool (*accept)(char)) {
    for (char c : s)
        if (!accept(c))
            return false;
    return true;
}

bool is_upper(char c) {
    return c >= 'A' && c <= 'Z';
}
bool is_lower_hex(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}
bool is_token_char(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' ||
           c == '_';
}

// ^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$
bool is_lowercase_uuid(std::string_view s) {
    if (s.size() != 36)
        return false;
    for (std::size_t i = 0; i < s.size(); ++i) {
        const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !is_lower_hex(s[i]))
            return false;
    }
    return true;
}

response bad_request(std::string_view reason) {
    return make_response(false, message::bad_request, {}, reason);
}

} // namespace

std::variant<request, response> validate_request(const json::value& document) {
    const auto* envelope = document.if_object();
    if (!envelope)
        return bad_request("the request is not a JSON object");
    const auto* verb_value = envelope->if_contains("verb");
    if (!verb_value || !verb_value->is_string())
        return bad_request("'verb' is missing or not a string");
    const std::string_view verb_text = verb_value->get_string();
    if (verb_text.empty() || !all_of(verb_text, is_upper))
        return bad_request("'verb' must be upper-case letters");
    const auto* parameters = envelope->if_contains("parameters");
    if (!parameters || !parameters->is_object())
        return bad_request("'parameters' is missing or not an object");

    request r;
    r.verb = std::string(verb_text);
    r.parameters = parameters->get_object();
    const auto* uuid = r.parameters.if_contains("container_uuid");
    const auto* token = r.parameters.if_contains("client_token");
    if (uuid && (!uuid->is_string() || !is_lowercase_uuid(uuid->get_string())))
        return bad_request("'container_uuid' must be a lower-case UUID");
    if (token && (!token->is_string() || token->get_string().size() != 255 ||
                  !all_of(token->get_string(), is_token_char)))
        return bad_request("'client_token' must be 255 characters of [0-9a-zA-Z_-]");
    if (bool(uuid) != bool(token))
        return bad_request("'container_uuid' and 'client_token' go together");
    return r;
}

std::variant<request, response> parse_request(std::string_view json_text) {
    json::error_code ec;
    auto document = json::parse(json_text, ec);
    if (ec)
        return bad_request("the request is not valid JSON");
    return validate_request(document);
}

} // namespace anweddol::server
