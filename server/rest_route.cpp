#include "rest_route.hpp"

#include <boost/json/parse.hpp>

#include <string>

namespace anweddol::server {

namespace http = boost::beast::http;
namespace json = boost::json;

response bad_request(std::string_view reason) {
    return make_response(false, message::bad_request, {}, reason);
}

namespace {

int hex_value(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

// As Twisted's postpath (urllib's unquote): a %XX that is not two hex
// digits stays as it is.
std::string percent_decoded(std::string_view s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 &&
            hex_value(s[i + 2]) >= 0) {
            out += static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
            i += 2;
        } else {
            out += s[i];
        }
    }
    return out;
}

std::string upper_case(std::string s) {
    for (char& c : s)
        if (c >= 'a' && c <= 'z')
            c = static_cast<char>(c - 'a' + 'A');
    return s;
}

// A POST's body as the request's parameters: a JSON object. The reference
// answers an empty or malformed body "Internal error" (json.loads raises);
// it is the client's mistake, so it is "Bad request" here.
std::variant<json::value, response> parameters_of(std::string_view body) {
    if (body.empty())
        return bad_request("the body must be a JSON object of parameters, {} for none");
    boost::system::error_code ec;
    json::value parameters = json::parse(body, ec);
    if (ec)
        return bad_request("the body is not valid JSON");
    if (!parameters.is_object())
        return bad_request("the body must be a JSON object of parameters, {} for none");
    return parameters;
}

} // namespace

response home_page() {
    return make_response(
        true,
        "Hello and welcome to this Anweddol server HTTP REST API. This server provides "
        "temporary, SSH-controllable virtual machines to enhance anonymity online.",
        json::object{{"links", json::array{"https://the-anweddol-project.github.io/",
                                           "https://github.com/the-anweddol-project/",
                                           "https://anweddol-server.readthedocs.io/"}}});
}

rest_route route_rest_request(http::verb method, std::string_view target, std::string_view body,
                              bool serve_metrics) {
    const bool is_get = method == http::verb::get || method == http::verb::head;
    if (!is_get && method != http::verb::post)
        return bad_request("use POST /<verb> with a JSON object of parameters, or GET / or /stat");
    std::string_view path = target.substr(0, target.find('?'));
    if (!path.starts_with('/'))
        return bad_request("the request target must be a path such as /stat");
    path.remove_prefix(1);
    // The reference's `len(postpath) > 1`: /foo/stat and /stat/ are refused.
    if (path.find('/') != std::string_view::npos)
        return bad_request("the URL must have one path segment, the verb, as in /stat");
    if (serve_metrics && is_get && path == "metrics")
        return rest_metrics{};
    const std::string verb = upper_case(percent_decoded(path));

    json::value parameters = json::object{};
    if (!is_get) {
        auto parsed = parameters_of(body);
        if (auto* refused = std::get_if<response>(&parsed))
            return std::move(*refused);
        parameters = std::move(std::get<json::value>(parsed));
    }
    if (verb.empty())
        return rest_home{};
    // The reference calls CREATE's handler for a GET with no parameters: a
    // link, a crawler or a prefetch would boot a container. GET reads only.
    if (is_get && verb != server::verb::stat)
        return bad_request("GET serves / and /stat only; send other verbs with POST");
    auto validated =
        validate_request(json::object{{"verb", verb}, {"parameters", std::move(parameters)}});
    if (auto* refused = std::get_if<response>(&validated))
        return std::move(*refused);
    return std::move(std::get<request>(validated));
}

} // namespace anweddol::server
