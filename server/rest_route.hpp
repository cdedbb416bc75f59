// How the REST API reads an HTTP request, decided from its method, target
// and body alone, without I/O (rest_api.hpp does the I/O): the reference's
// routing of web/server.py, with GET limited to what reads only.
#ifndef ANWEDDOL_SERVER_REST_ROUTE_HPP
#define ANWEDDOL_SERVER_REST_ROUTE_HPP

#include "protocol.hpp"

#include <boost/beast/http/verb.hpp>

#include <string_view>
#include <variant>

namespace anweddol::server {

/// The welcome of `GET /`, with the reference's text and `data.links`.
response home_page();

/// What one HTTP request asks, decided from its method, target and body
/// alone (no I/O): a request for the handler, an answer to send as is
/// (a "Bad request"), the home page, or the metrics.
struct rest_home {};
struct rest_metrics {};
using rest_route = std::variant<request, response, rest_home, rest_metrics>;

/// The reference's rules: the target's one path segment, percent-decoded and
/// upper-cased, is the verb (none: the home page; two or more: "Bad
/// request"); a POST's body is the parameters, a JSON object; a GET (or
/// HEAD) has none, and is served for STAT and the home page only, so that
/// `GET /create` boots nothing. `serve_metrics`: `GET /metrics` is the
/// metrics. The request's `peer` is left for the caller to fill.
rest_route route_rest_request(boost::beast::http::verb method, std::string_view target,
                              std::string_view body, bool serve_metrics);

/// A "Bad request (reason)" response.
response bad_request(std::string_view reason);

} // namespace anweddol::server

#endif
