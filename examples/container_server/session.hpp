// One client connection: its place among --max-connections, its requests
// read within --header-timeout, and their answers.
#ifndef CONTAINER_SERVER_SESSION_HPP
#define CONTAINER_SERVER_SESSION_HPP

#include "server.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

#include <array>
#include <chrono>
#include <iostream>
#include <optional>
#include <string>

namespace example {

// A connection's entry in the server's connection table, for its life.
class connection_slot {
public:
    connection_slot(connection_table& table, connection_table::handle handle)
        : table_(table)
        , handle_(handle) {}
    connection_slot(const connection_slot&) = delete;
    connection_slot& operator=(const connection_slot&) = delete;
    ~connection_slot() { table_.remove(handle_); }
    void idle() { table_.set_idle(handle_); }
    void busy() { table_.set_busy(handle_); }

private:
    connection_table& table_;
    connection_table::handle handle_;
};

inline void close_socket(tcp::socket& socket) {
    boost::system::error_code ignored;
    socket.shutdown(tcp::socket::shutdown_both, ignored);
    socket.close(ignored);
}

// Beyond --max-connections with every connection busy: a 503 written at
// once, without waiting (a fresh socket's send buffer takes it), and the
// connection closed. Nothing of it waits: a flood of connections costs one
// accept and one write each.
inline void refuse_at_once(tcp::socket& socket, const server_settings& settings) {
    const std::string body = R"({"error":"too many connections: )" +
                             std::to_string(settings.max_connections) +
                             R"( at most, all busy; retry later"})";
    const std::string response =
        "HTTP/1.1 503 Service Unavailable\r\n"
        "Content-Type: application/json\r\n"
        "Retry-After: " +
        std::to_string(settings.retry_after.count()) +
        "\r\nConnection: close\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" +
        body;
    boost::system::error_code ignored;
    socket.non_blocking(true, ignored);
    socket.write_some(boost::asio::buffer(response), ignored);
    close_socket(socket);
}

// Completes when the client hangs up (or its socket is closed) while its
// request is handled. What it sends meanwhile, a pipelined request, stays in
// `buffer` for later; one that sends more than `limit` bytes while it waits
// counts as gone.
inline asio::awaitable<void> watch_hangup(tcp::socket& socket, buffer_type& buffer,
                                          std::size_t limit,
                                          std::chrono::steady_clock::time_point& ended) {
    while (buffer.size() < limit) {
        auto reading = socket.async_read_some(buffer.prepare(limit - buffer.size()),
                                              asio::as_tuple(asio::use_awaitable));
        auto [ec, bytes] = co_await std::move(reading);
        if (ec)
            break; // EOF, reset, or cancelled because the request is done
        buffer.commit(bytes);
    }
    ended = std::chrono::steady_clock::now();
}

// POST /containers, raced with the client's hang-up: whichever ends first
// cancels the other (a cancelled provisioning destroys its domain before it
// completes).
struct raced_outcome {
    bool hung_up = false;
    outcome result;
    // From the hang-up to the end of the cancelled provisioning.
    std::chrono::steady_clock::duration cancelling{};
};

inline asio::awaitable<raced_outcome>
create_unless_hung_up(container_server& server, tcp::socket& socket, buffer_type& buffer,
                      const request_type& request, std::string principal) {
    auto executor = co_await asio::this_coro::executor;
    auto creating =
        asio::co_spawn(executor, server.create(request, std::move(principal)), asio::deferred);
    std::chrono::steady_clock::time_point watch_ended;
    auto watching = asio::co_spawn(
        executor,
        watch_hangup(socket, buffer, server.settings().max_body_bytes + 8 * 1024, watch_ended),
        asio::deferred);
    auto racing = asio::experimental::make_parallel_group(std::move(creating), std::move(watching))
                      .async_wait(asio::experimental::wait_for_one(), asio::use_awaitable);
    auto [order, create_error, result, watch_error] = co_await std::move(racing);
    if (create_error)
        std::rethrow_exception(create_error);
    const bool hung_up = order[0] == 1;
    // The group completes once the cancelled provisioning has: the hang-up
    // was seen when the watcher finished, which it does at once.
    co_return raced_outcome{hung_up, std::move(result),
                            hung_up ? std::chrono::steady_clock::now() - watch_ended
                                    : std::chrono::steady_clock::duration{}};
}

// Answers a request that ends the connection, then closes it gently: the
// rest of what the client sent (an oversized body) is read and dropped for a
// moment first, or the kernel would reset the connection, and the client
// might lose the answer.
inline asio::awaitable<void> write_and_close(beast::tcp_stream& stream, response_type response) {
    response.keep_alive(false);
    stream.expires_after(std::chrono::seconds(5));
    auto writing = http::async_write(stream, response, asio::as_tuple(asio::use_awaitable));
    auto [written, size] = co_await std::move(writing);
    if (written)
        co_return;
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream.expires_after(std::chrono::seconds(2));
    std::array<char, 4096> sink;
    for (std::size_t drained = 0; drained < 64 * 1024;) {
        auto reading =
            stream.async_read_some(asio::buffer(sink), asio::as_tuple(asio::use_awaitable));
        auto [ec, bytes] = co_await std::move(reading);
        if (ec)
            break;
        drained += bytes;
    }
}

// The next request, read whole within --header-timeout from when the
// connection went idle (its accept, or its last answer); nullopt when the
// connection is over (closed, timed out, evicted, or refused here).
inline asio::awaitable<std::optional<request_type>>
read_request(beast::tcp_stream& stream, buffer_type& buffer, container_server& server) {
    const auto& settings = server.settings();
    http::request_parser<http::string_body, wiping_allocator<char>> parser;
    parser.header_limit(8 * 1024);
    parser.body_limit(settings.max_body_bytes);
    stream.expires_after(settings.header_timeout);
    auto reading = http::async_read(stream, buffer, parser, asio::as_tuple(asio::use_awaitable));
    auto [ec, bytes] = co_await std::move(reading);
    if (ec == http::error::body_limit) {
        server.metrics().failed("payload_too_large");
        co_await write_and_close(stream, error(11, false, http::status::payload_too_large,
                                               "the body may have " +
                                                   std::to_string(settings.max_body_bytes) +
                                                   " bytes at most"));
        co_return std::nullopt;
    }
    if (ec == http::error::header_limit) {
        server.metrics().failed("header_too_large");
        co_await write_and_close(stream,
                                 error(11, false, http::status::request_header_fields_too_large,
                                       "the request's headers may have 8 KiB at most"));
        co_return std::nullopt;
    }
    if (ec && ec.category() == http::make_error_code(http::error::bad_target).category() &&
        ec != http::error::end_of_stream && ec != http::error::partial_message) {
        server.metrics().failed("malformed_request");
        co_await write_and_close(stream, error(11, false, http::status::bad_request,
                                               "malformed HTTP request: " + ec.message()));
        co_return std::nullopt;
    }
    if (ec)
        co_return std::nullopt; // closed, timed out (the stream closed the socket), or reset
    stream.expires_never();     // provisioning takes its own time
    co_return parser.release();
}

// POST /containers; nullopt: the client hung up, and nothing is left.
inline asio::awaitable<std::optional<outcome>> post(beast::tcp_stream& stream, buffer_type& buffer,
                                                    container_server& server,
                                                    const request_type& request,
                                                    std::string principal) {
    const auto began = std::chrono::steady_clock::now();
    auto raced = co_await create_unless_hung_up(server, stream.socket(), buffer, request,
                                                std::move(principal));
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
    if (raced.hung_up) {
        server.metrics().failed("client_hung_up");
        std::cout << "POST /containers: the client hung up after " << seconds
                  << " s; its provisioning was cancelled in "
                  << std::chrono::duration<double>(raced.cancelling).count() << " s" << std::endl;
        // Provisioning may have finished before the cancellation reached
        // it: nobody will see those credentials.
        if (!raced.result.created_uuid.empty())
            co_await server.discard(raced.result.created_uuid);
        co_return std::nullopt;
    }
    std::cout << "POST /containers: " << raced.result.response.result_int()
              << (raced.result.created_uuid.empty() ? "" : " " + raced.result.created_uuid)
              << " in " << seconds << " s" << std::endl;
    co_return std::move(raced.result);
}

// Answers one request; whether the connection stays open for the next.
inline asio::awaitable<bool> answer(beast::tcp_stream& stream, buffer_type& buffer,
                                    container_server& server, const request_type& request) {
    auto admitted = server.admit(request);
    std::optional<outcome> result;
    if (auto* refused = std::get_if<response_type>(&admitted)) {
        result.emplace(std::move(*refused));
    } else if (request.target() == "/containers" && request.method() == http::verb::post) {
        auto posting = post(stream, buffer, server, request, std::get<std::string>(admitted));
        result = co_await std::move(posting);
        if (!result)
            co_return false;
    } else {
        auto handling = server.handle(request, std::get<std::string>(admitted));
        result.emplace(co_await std::move(handling));
    }
    stream.expires_after(std::chrono::seconds(30));
    auto writing = http::async_write(stream, result->response, asio::as_tuple(asio::use_awaitable));
    auto [written, size] = co_await std::move(writing);
    if (written && !result->created_uuid.empty()) {
        server.metrics().failed("undeliverable");
        std::cout << "POST /containers: the 201 of " << result->created_uuid
                  << " could not be delivered (" << written.message() << "); destroying it"
                  << std::endl;
        co_await server.discard(result->created_uuid);
    }
    co_return !written && result->response.keep_alive();
}

// A connection, from its accept: its place in the connection table (which
// may close the oldest idle connection, or refuse this one), then its
// requests one after the other.
inline asio::awaitable<void> serve(tcp::socket socket, container_server& server) {
    beast::tcp_stream stream(std::move(socket));
    const auto admission = server.connections().admit(stream.socket());
    if (admission.evicted) {
        close_socket(*admission.evicted);
        server.metrics().connection_evicted();
    }
    if (!admission.admitted) {
        server.metrics().failed("too_many_connections");
        refuse_at_once(stream.socket(), server.settings());
        co_return;
    }
    connection_slot slot(server.connections(), *admission.admitted);
    buffer_type buffer;
    for (;;) {
        slot.idle();
        auto reading = read_request(stream, buffer, server);
        const auto request = co_await std::move(reading);
        if (!request)
            co_return;
        slot.busy();
        auto answering = answer(stream, buffer, server, *request);
        if (!co_await std::move(answering))
            co_return;
    }
}

} // namespace example

#endif
