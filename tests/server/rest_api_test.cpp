// The REST API over loopback, with raw HTTP requests: the reference's rules
// (verb from the one path segment, always HTTP 200 with the response JSON),
// GET that boots nothing, and the bounds a hostile client runs into.
#include "async_test.hpp"
#include "rest_api.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/json/parse.hpp>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <catch2/catch.hpp>

#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <unistd.h>
#include <vector>

namespace server = anweddol::server;
namespace http = boost::beast::http;
namespace json = boost::json;
namespace ssl = boost::asio::ssl;
using namespace server::test;
using namespace boost::asio::experimental::awaitable_operators;

namespace {

const std::string uuid = "0f8fad5b-d9cb-469f-a165-70867728950e";
const std::string token(255, 'a');

// The server around the API: records what reached the handler; STAT
// answers at once, WAIT (a handler still busy) only when `gate` opens.
struct rest_bed {
    explicit rest_bed(server::rest_api_options options = loopback(),
                      std::shared_ptr<ssl::context> tls = {})
        : api(
              io.get_executor(), std::move(options),
              [this](server::request r) { return handle(std::move(r)); }, std::move(tls)) {
        api.start();
    }

    static server::rest_api_options loopback() {
        server::rest_api_options options;
        options.endpoint = tcp::endpoint(asio::ip::address_v4::loopback(), 0);
        return options;
    }

    asio::awaitable<server::response> handle(server::request r) {
        seen.push_back(r);
        changed.cancel();
        if (r.verb == "WAIT") {
            auto waiting = gate.async_wait(asio::as_tuple(asio::use_awaitable));
            co_await std::move(waiting);
        }
        co_return server::make_response(true, server::message::ok,
                                        json::object{{"version", "1.0.0"}, {"uptime", 7}});
    }

    // Until `n` requests reached the handler.
    asio::awaitable<void> seen_at_least(std::size_t n) {
        while (seen.size() < n) {
            changed.expires_at(std::chrono::steady_clock::time_point::max());
            auto waiting = changed.async_wait(asio::as_tuple(asio::use_awaitable));
            co_await std::move(waiting);
        }
    }

    tcp::endpoint endpoint() const {
        return {asio::ip::address_v4::loopback(), api.local_endpoint().port()};
    }

    asio::io_context io;
    std::vector<server::request> seen;
    asio::steady_timer gate{io, std::chrono::steady_clock::time_point::max()};
    asio::steady_timer changed{io};
    server::rest_api api;
};

struct reply {
    unsigned status = 0;
    std::string content_type;
    json::value body;
    std::string text;
    bool keep_alive = false;
};

template <class Stream>
asio::awaitable<reply> exchange_on(Stream& stream, std::string raw) {
    auto writing = asio::async_write(stream, asio::buffer(raw), asio::use_awaitable);
    co_await std::move(writing);
    boost::beast::flat_buffer buffer;
    http::response<http::string_body> response;
    auto reading = http::async_read(stream, buffer, response, asio::use_awaitable);
    co_await std::move(reading);
    reply r;
    r.status = response.result_int();
    r.content_type = std::string(response[http::field::content_type]);
    r.text = response.body();
    r.keep_alive = response.keep_alive();
    boost::system::error_code ec;
    r.body = json::parse(r.text, ec);
    co_return r;
}

asio::awaitable<tcp::socket> connect_to(tcp::endpoint endpoint) {
    tcp::socket socket(co_await asio::this_coro::executor);
    auto connecting = socket.async_connect(endpoint, asio::use_awaitable);
    co_await std::move(connecting);
    co_return socket;
}

std::string http_request(std::string_view method, std::string_view target, std::string_view body,
                         bool close = true) {
    std::string raw = std::string(method) + " " + std::string(target) +
                      " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n";
    if (close)
        raw += "Connection: close\r\n";
    if (method != "GET")
        raw += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    return raw + "\r\n" + std::string(body);
}

asio::awaitable<reply> exchange(tcp::endpoint endpoint, std::string raw) {
    auto connecting = connect_to(endpoint);
    auto socket = co_await std::move(connecting);
    auto exchanging = exchange_on(socket, std::move(raw));
    co_return co_await std::move(exchanging);
}

std::string message_of(const reply& r) {
    return std::string(r.body.at("message").as_string());
}

// What the reference answers everything with: 200, JSON, the envelope.
void check_reference_answer(const reply& r) {
    CHECK(r.status == 200);
    CHECK(r.content_type == "application/json");
    REQUIRE(r.body.is_object());
    CHECK(r.body.at("success").is_bool());
    CHECK(r.body.at("message").is_string());
    CHECK(r.body.at("data").is_object());
}

bool is_bad_request(const reply& r) {
    check_reference_answer(r);
    return !r.body.at("success").as_bool() && message_of(r).starts_with("Bad request");
}

} // namespace

TEST_CASE("rest api: POST /stat reaches the handler with the body's parameters, the peer's "
          "address and via=rest, and its response comes back as HTTP 200 JSON") {
    rest_bed bed;
    run(bed.io, [&]() -> asio::awaitable<void> {
        auto asking = exchange(bed.endpoint(), http_request("POST", "/stat", R"({"x":1})"));
        const auto r = co_await std::move(asking);
        check_reference_answer(r);
        CHECK(r.text == server::serialize(server::make_response(
                            true, "OK", json::object{{"version", "1.0.0"}, {"uptime", 7}})));
        REQUIRE(bed.seen.size() == 1);
        CHECK(bed.seen[0].verb == "STAT");
        CHECK(bed.seen[0].via == server::transport::rest);
        CHECK(bed.seen[0].peer == asio::ip::make_address("127.0.0.1"));
        CHECK(bed.seen[0].parameters.at("x").as_int64() == 1);
    }());
}

TEST_CASE(
    "rest api: the verb is the one path segment, percent-decoded and upper-cased, and a query "
    "is ignored") {
    rest_bed bed;
    run(bed.io, [&]() -> asio::awaitable<void> {
        for (std::string target : {"/stat", "/Stat", "/sTaT", "/%73tat", "/stat?x=1", "/destroy"}) {
            const std::string body =
                target == "/destroy"
                    ? R"({"container_uuid":")" + uuid + R"(","client_token":")" + token + R"("})"
                    : "{}";
            auto asking = exchange(bed.endpoint(), http_request("POST", target, body));
            const auto r = co_await std::move(asking);
            check_reference_answer(r);
            CHECK(r.body.at("success").as_bool());
        }
        REQUIRE(bed.seen.size() == 6);
        for (std::size_t i = 0; i < 5; ++i)
            CHECK(bed.seen[i].verb == "STAT");
        CHECK(bed.seen[5].verb == "DESTROY");
        CHECK(bed.seen[5].parameters.at("container_uuid").as_string() == uuid);
    }());
}

TEST_CASE("rest api: two path segments, a trailing slash or a verb that is not letters are Bad "
          "request, in HTTP 200, and reach no handler") {
    rest_bed bed;
    run(bed.io, [&]() -> asio::awaitable<void> {
        for (std::string target :
             {"/foo/stat", "/stat/", "//stat", "/st-at", "/st%2Fat", "/%C3%A9"}) {
            auto asking = exchange(bed.endpoint(), http_request("POST", target, "{}"));
            const auto r = co_await std::move(asking);
            CHECK(is_bad_request(r));
        }
        CHECK(bed.seen.empty());
    }());
}

TEST_CASE(
    "rest api: GET /create and GET /destroy are Bad request and boot nothing, while GET /stat "
    "and GET / are served") {
    rest_bed bed;
    run(bed.io, [&]() -> asio::awaitable<void> {
        for (std::string target : {"/create", "/CREATE", "/destroy", "/foo"}) {
            auto asking = exchange(bed.endpoint(), http_request("GET", target, ""));
            const auto r = co_await std::move(asking);
            CHECK(is_bad_request(r));
        }
        CHECK(bed.seen.empty());

        auto stat = exchange(bed.endpoint(), http_request("GET", "/stat", ""));
        const auto stat_reply = co_await std::move(stat);
        CHECK(stat_reply.body.at("success").as_bool());
        REQUIRE(bed.seen.size() == 1);
        CHECK(bed.seen[0].verb == "STAT");
        CHECK(bed.seen[0].parameters.empty());

        auto home = exchange(bed.endpoint(), http_request("GET", "/", ""));
        const auto home_reply = co_await std::move(home);
        check_reference_answer(home_reply);
        CHECK(home_reply.body.at("success").as_bool());
        CHECK(message_of(home_reply).starts_with("Hello and welcome to this Anweddol server"));
        CHECK(home_reply.body.at("data").at("links").as_array().size() == 3);
        CHECK(bed.seen.size() == 1);
    }());
}

TEST_CASE("rest api: malformed JSON, an empty body, a body that is not an object and parameters "
          "of the wrong type are Bad request and reach no handler") {
    rest_bed bed;
    run(bed.io, [&]() -> asio::awaitable<void> {
        const std::vector<std::string> bodies = {
            "{",
            "",
            "[1]",
            "null",
            "\"stat\"",
            "{\"a\":1,}",
            R"({"container_uuid":12,"client_token":")" + token + R"("})",
            R"({"container_uuid":")" + uuid + R"("})",
            R"({"container_uuid":")" + uuid + R"(","client_token":["x"]})"};
        for (const auto& body : bodies) {
            auto asking = exchange(bed.endpoint(), http_request("POST", "/destroy", body));
            const auto r = co_await std::move(asking);
            CHECK(is_bad_request(r));
        }
        CHECK(bed.seen.empty());
    }());
}

TEST_CASE("rest api: a 10 MB body is refused from its Content-Length before it is sent, and a "
          "chunked one once it passes the limit") {
    rest_bed bed;
    run(bed.io, [&]() -> asio::awaitable<void> {
        // Only the headers: the answer must come without the body.
        auto asking =
            exchange(bed.endpoint(), "POST /create HTTP/1.1\r\nHost: x\r\nContent-Type: "
                                     "application/json\r\nContent-Length: 10485760\r\n\r\n{\"a\":");
        const auto r = co_await std::move(asking);
        CHECK(is_bad_request(r));
        CHECK(message_of(r) == "Bad request (the body may have 65536 bytes at most)");

        auto connecting = connect_to(bed.endpoint());
        auto socket = co_await std::move(connecting);
        std::string chunked =
            "POST /create HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
        const std::string chunk(32 * 1024, ' ');
        for (int i = 0; i < 3; ++i)
            chunked += "8000\r\n" + chunk + "\r\n";
        auto sending = exchange_on(socket, chunked);
        const auto chunked_reply = co_await std::move(sending);
        CHECK(is_bad_request(chunked_reply));
        CHECK_FALSE(chunked_reply.keep_alive);
        CHECK(bed.seen.empty());
    }());
}

TEST_CASE("rest api: a slowloris is dropped at the header deadline, a slow body at the request "
          "deadline, and neither reaches the handler") {
    auto options = rest_bed::loopback();
    options.header_timeout = 300ms;
    options.request_timeout = 700ms;
    rest_bed bed(options);
    // Sends `head` then a byte every 50 ms (for 5 s at most) until the
    // server closes; how long that took.
    auto drip = [&](std::string head) -> asio::awaitable<std::chrono::milliseconds> {
        auto connecting = connect_to(bed.endpoint());
        auto socket = co_await std::move(connecting);
        const auto began = std::chrono::steady_clock::now();
        auto writing = asio::async_write(socket, asio::buffer(head), asio::use_awaitable);
        co_await std::move(writing);
        auto dripping = [](tcp::socket& s) -> asio::awaitable<void> {
            for (int i = 0; i < 100; ++i) {
                auto pausing = pause(50ms);
                co_await std::move(pausing);
                auto one =
                    asio::async_write(s, asio::buffer("a", 1), asio::as_tuple(asio::use_awaitable));
                co_await std::move(one);
            }
        };
        auto racing = until_closed(socket) || dripping(socket);
        const auto ended = co_await std::move(racing);
        REQUIRE(ended.index() == 0);
        CHECK(is_closed_by_peer(std::get<0>(ended)));
        co_return std::chrono::duration_cast<std::chrono::milliseconds>(
            std::chrono::steady_clock::now() - began);
    };
    run(bed.io, [&]() -> asio::awaitable<void> {
        auto header_drip = drip("POST /stat HTTP/1.1\r\nHost: x\r\nX-Slow: ");
        const auto header_time = co_await std::move(header_drip);
        CHECK(header_time >= 250ms);
        CHECK(header_time < 2s);
        auto body_drip = drip("POST /stat HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n");
        const auto body_time = co_await std::move(body_drip);
        CHECK(body_time >= 650ms);
        CHECK(body_time < 3s);
        CHECK(bed.seen.empty());
    }());
}

TEST_CASE("rest api: a keep-alive connection carries several requests") {
    rest_bed bed;
    run(bed.io, [&]() -> asio::awaitable<void> {
        auto connecting = connect_to(bed.endpoint());
        auto socket = co_await std::move(connecting);
        for (int i = 0; i < 3; ++i) {
            auto asking = exchange_on(socket, http_request("POST", "/stat", "{}", false));
            const auto r = co_await std::move(asking);
            check_reference_answer(r);
            CHECK(r.keep_alive);
        }
        CHECK(bed.seen.size() == 3);
        CHECK(bed.api.connection_count() == 1);
    }());
}

TEST_CASE("rest api: beyond max_connections a newcomer takes an idle connection's place, and is "
          "closed at once when every connection is busy") {
    auto options = rest_bed::loopback();
    options.max_connections = 2;
    rest_bed bed(options);
    run(bed.io, [&]() -> asio::awaitable<void> {
        // Two idle connections (no request yet): a third one is served,
        // and the oldest idle one closed.
        // Connections are admitted in the order they were accepted: these
        // two before the third.
        auto connecting_first = connect_to(bed.endpoint());
        auto first = co_await std::move(connecting_first);
        auto connecting_second = connect_to(bed.endpoint());
        auto second = co_await std::move(connecting_second);
        auto asking = exchange(bed.endpoint(), http_request("POST", "/stat", "{}"));
        const auto served = co_await std::move(asking);
        CHECK(served.body.at("success").as_bool());
        auto first_closed = until_closed(first);
        const auto first_closed_result = co_await std::move(first_closed);
        CHECK(is_closed_by_peer(first_closed_result));

        // Two busy connections (the second takes the idle one's place):
        // a third one is closed before any answer.
        std::vector<tcp::socket> busy;
        for (std::size_t n : {2u, 3u}) {
            auto connecting = connect_to(bed.endpoint());
            busy.push_back(co_await std::move(connecting));
            const std::string wait = http_request("POST", "/wait", "{}");
            auto sending = asio::async_write(busy.back(), asio::buffer(wait), asio::use_awaitable);
            co_await std::move(sending);
            auto handled = bed.seen_at_least(n);
            co_await std::move(handled);
        }
        auto second_closed = until_closed(second);
        const auto second_closed_result = co_await std::move(second_closed);
        CHECK(is_closed_by_peer(second_closed_result));
        auto connecting_third = connect_to(bed.endpoint());
        auto third = co_await std::move(connecting_third);
        auto third_closed = until_closed(third);
        const auto third_closed_result = co_await std::move(third_closed);
        CHECK(is_closed_by_peer(third_closed_result));
        CHECK(bed.seen.size() == 3);
        bed.gate.cancel();
        auto finishing = exchange_on(busy.front(), "");
        const auto finishing_result = co_await std::move(finishing);
        CHECK(finishing_result.body.at("success").as_bool());
    }());
}

TEST_CASE("rest api: an address the IP filter refuses is answered Refused request and closed, "
          "and reaches no handler") {
    auto options = rest_bed::loopback();
    options.allow = [](const asio::ip::address& a) {
        return a != asio::ip::make_address("127.0.0.1");
    };
    rest_bed bed(options);
    run(bed.io, [&]() -> asio::awaitable<void> {
        auto asking = exchange(bed.endpoint(), http_request("POST", "/stat", "{}", false));
        const auto r = co_await std::move(asking);
        check_reference_answer(r);
        CHECK(message_of(r) == "Refused request");
        CHECK_FALSE(r.keep_alive);
        CHECK(bed.seen.empty());
    }());
}

TEST_CASE(
    "rest api: GET /metrics answers the hook's text as Prometheus 0.0.4, and without the hook "
    "it is a verb like any other") {
    auto options = rest_bed::loopback();
    options.metrics = [] {
        return std::string("anweddol_up 1\n");
    };
    rest_bed with_metrics(options);
    run(with_metrics.io, [&]() -> asio::awaitable<void> {
        auto asking = exchange(with_metrics.endpoint(), http_request("GET", "/metrics", ""));
        const auto r = co_await std::move(asking);
        CHECK(r.status == 200);
        CHECK(r.content_type == "text/plain; version=0.0.4");
        CHECK(r.text == "anweddol_up 1\n");
    }());
    rest_bed without;
    run(without.io, [&]() -> asio::awaitable<void> {
        auto asking = exchange(without.endpoint(), http_request("GET", "/metrics", ""));
        const auto asking_result = co_await std::move(asking);
        CHECK(is_bad_request(asking_result));
    }());
}

TEST_CASE("rest api: stop() closes the listener and every connection, a handler's late answer "
          "goes to undelivered, and no descriptor is left") {
    const auto before = open_descriptors();
    {
        auto options = rest_bed::loopback();
        std::vector<server::response> undelivered;
        options.undelivered = [&](const server::response& r) {
            undelivered.push_back(r);
        };
        rest_bed bed(options);
        const auto listening = open_descriptors(); // the io_context's and the listener
        run(bed.io, [&]() -> asio::awaitable<void> {
            auto connecting_idle = connect_to(bed.endpoint());
            auto idle = co_await std::move(connecting_idle);
            auto connecting_busy = connect_to(bed.endpoint());
            auto busy = co_await std::move(connecting_busy);
            const std::string wait = http_request("POST", "/wait", "{}");
            auto sending = asio::async_write(busy, asio::buffer(wait), asio::use_awaitable);
            co_await std::move(sending);
            auto handled = bed.seen_at_least(1);
            co_await std::move(handled);
            bed.api.stop();
            auto idle_closed = until_closed(idle);
            const auto idle_closed_result = co_await std::move(idle_closed);
            CHECK(is_closed_by_peer(idle_closed_result));
            auto busy_closed = until_closed(busy);
            const auto busy_closed_result = co_await std::move(busy_closed);
            CHECK(is_closed_by_peer(busy_closed_result));
            tcp::socket refused(bed.io);
            auto connecting =
                refused.async_connect(bed.endpoint(), asio::as_tuple(asio::use_awaitable));
            const auto connecting_result = co_await std::move(connecting);
            CHECK(std::get<0>(connecting_result) == asio::error::connection_refused);
            bed.gate.cancel();
        }());
        CHECK(run_until(
            bed.io, [&] { return bed.api.connection_count() == 0 && undelivered.size() == 1; }));
        CHECK(undelivered.at(0).success);
        CHECK(open_descriptors() == listening - 1);
    }
    CHECK(open_descriptors() == before);
}

namespace {

// A throwaway key and self-signed certificate for 127.0.0.1, in PEM files
// removed with it.
struct tls_files {
    tls_files() {
        dir = std::filesystem::temp_directory_path() /
              ("rest_api_test." + std::to_string(::getpid()) + "." + std::to_string(++count()));
        std::filesystem::create_directories(dir);
        key = (dir / "key.pem").string();
        certificate = (dir / "cert.pem").string();
        other_key = (dir / "other.pem").string();
        EVP_PKEY* pkey = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
        EVP_PKEY* other = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
        X509* x509 = X509_new();
        ASN1_INTEGER_set(X509_get_serialNumber(x509), 1);
        X509_gmtime_adj(X509_getm_notBefore(x509), 0);
        X509_gmtime_adj(X509_getm_notAfter(x509), 3600);
        X509_set_pubkey(x509, pkey);
        X509_NAME* name = X509_get_subject_name(x509);
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                   reinterpret_cast<const unsigned char*>("127.0.0.1"), -1, -1, 0);
        X509_set_issuer_name(x509, name);
        X509_sign(x509, pkey, EVP_sha256());
        write(key, [&](BIO* b) {
            return PEM_write_bio_PrivateKey(b, pkey, nullptr, nullptr, 0, nullptr, nullptr);
        });
        write(other_key, [&](BIO* b) {
            return PEM_write_bio_PrivateKey(b, other, nullptr, nullptr, 0, nullptr, nullptr);
        });
        write(certificate, [&](BIO* b) { return PEM_write_bio_X509(b, x509); });
        X509_free(x509);
        EVP_PKEY_free(pkey);
        EVP_PKEY_free(other);
        std::ifstream in(certificate);
        std::stringstream text;
        text << in.rdbuf();
        certificate_pem = text.str();
    }
    ~tls_files() { std::filesystem::remove_all(dir); }

    template <class Writer>
    static void write(const std::string& path, Writer writer) {
        BIO* bio = BIO_new_file(path.c_str(), "w");
        REQUIRE(bio);
        REQUIRE(writer(bio) == 1);
        BIO_free(bio);
    }
    static int& count() {
        static int n = 0;
        return n;
    }

    std::filesystem::path dir;
    std::string key, certificate, other_key, certificate_pem;
};

} // namespace

TEST_CASE("rest api: over TLS with the configured PEM files, a client that trusts the "
          "certificate gets its answer") {
    tls_files files;
    rest_bed bed(rest_bed::loopback(), server::make_tls_context(files.key, files.certificate));
    run(bed.io, [&]() -> asio::awaitable<void> {
        ssl::context client(ssl::context::tls_client);
        client.add_certificate_authority(asio::buffer(files.certificate_pem));
        client.set_verify_mode(ssl::verify_peer);
        auto connecting = connect_to(bed.endpoint());
        ssl::stream<tcp::socket> stream(co_await std::move(connecting), client);
        auto handshaking = stream.async_handshake(ssl::stream_base::client, asio::use_awaitable);
        co_await std::move(handshaking);
        auto asking = exchange_on(stream, http_request("POST", "/stat", "{}"));
        const auto r = co_await std::move(asking);
        check_reference_answer(r);
        CHECK(r.body.at("success").as_bool());
        CHECK(bed.seen.size() == 1);
    }());
}

TEST_CASE("rest api: a missing or non-PEM key or certificate, or a key of another certificate, "
          "is refused with the file's name") {
    tls_files files;
    const auto refusal = [](const std::string& key, const std::string& certificate) {
        try {
            server::make_tls_context(key, certificate);
        } catch (const std::runtime_error& e) {
            return std::string(e.what());
        }
        return std::string("accepted");
    };
    const std::string missing = (files.dir / "missing.pem").string();
    CHECK_THAT(refusal(missing, files.certificate),
               Catch::Contains(missing) && Catch::Contains("cannot be opened"));
    CHECK_THAT(refusal(files.key, missing),
               Catch::Contains(missing) && Catch::Contains("cannot be opened"));
    // The certificate given as the key, and the key as the certificate.
    CHECK_THAT(refusal(files.certificate, files.certificate),
               Catch::Contains(files.certificate) &&
                   Catch::Contains("not a usable PEM private key"));
    CHECK_THAT(refusal(files.key, files.key),
               Catch::Contains(files.key) && Catch::Contains("not a usable PEM certificate"));
    CHECK_THAT(refusal(files.other_key, files.certificate),
               Catch::Contains(files.other_key) && Catch::Contains("does not belong"));
    CHECK(refusal(files.key, files.certificate) == "accepted");
}

TEST_CASE("rest api: routing without I/O: HEAD is GET, other methods and absolute targets are Bad "
          "request, POST / is the home page") {
    using http::verb;
    CHECK(std::holds_alternative<server::rest_home>(
        server::route_rest_request(verb::post, "/", "{}", false)));
    CHECK(std::holds_alternative<server::rest_home>(
        server::route_rest_request(verb::head, "/", "", false)));
    CHECK(std::holds_alternative<server::response>(
        server::route_rest_request(verb::head, "/create", "", false)));
    CHECK(std::holds_alternative<server::response>(
        server::route_rest_request(verb::put, "/stat", "{}", false)));
    CHECK(std::holds_alternative<server::response>(
        server::route_rest_request(verb::delete_, "/destroy", "{}", false)));
    CHECK(std::holds_alternative<server::response>(
        server::route_rest_request(verb::post, "http://x/stat", "{}", false)));
    CHECK(std::holds_alternative<server::rest_metrics>(
        server::route_rest_request(verb::get, "/metrics", "", true)));
    CHECK(std::holds_alternative<server::request>(
        server::route_rest_request(verb::post, "/metrics", "{}", true)));
}
