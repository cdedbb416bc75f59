// The classic TCP protocol: the session state machine driven in-process by a
// client written here from the protocol's description, then the listener on
// loopback against hostile peers, and the Python test client.
#include "classic_crypto.hpp"
#include "classic_listener.hpp"
#include "classic_protocol.hpp"
#include "protocol.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json/parse.hpp>

#include <catch2/catch.hpp>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

namespace classic = anweddol::server::classic;
namespace server = anweddol::server;
namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {

// RSA-4096 takes a second or more to generate, and CTest runs each test in
// a process of its own: one server key per process, of the reference's
// size, and a client key of 2048 bits (the client's choice; the protocol
// sizes each RSA block from the key it is encrypted to).
const classic::rsa_key& server_key() {
    static const classic::rsa_key key = classic::rsa_key::generate(4096);
    return key;
}
const classic::rsa_key& client_key() {
    static const classic::rsa_key key = classic::rsa_key::generate(2048);
    return key;
}

std::span<const std::uint8_t> bytes_of(std::string_view s) {
    return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}
std::string text_of(std::span<const std::uint8_t> b) {
    return {reinterpret_cast<const char*>(b.data()), b.size()};
}

// What carries the test client's bytes: the session in-process, or a socket.
struct wire {
    virtual ~wire() = default;
    virtual void send(std::string_view data) = 0;
    virtual std::string recv(std::size_t size) = 0; // exactly `size`, or fewer at the end
};

// A session fed directly; the server's replies queue up for recv.
struct in_process_wire : wire {
    explicit in_process_wire(classic::limits bounds = {})
        : session(server_key(), bounds) {}
    void send(std::string_view data) override {
        // As a driver does: feed until the session wants no more.
        auto rest = bytes_of(data);
        while (!rest.empty()) {
            const std::size_t taken = session.feed(rest);
            pending += session.take_output();
            if (taken == 0)
                break;
            rest = rest.subspan(taken);
        }
        unconsumed += rest.size();
    }
    std::string recv(std::size_t size) override {
        pending += session.take_output();
        const std::string out = pending.substr(0, size);
        pending.erase(0, out.size());
        return out;
    }
    classic::server_session session;
    std::string pending;
    std::size_t unconsumed = 0;
};

// The client's side of the protocol, written from its description.
struct test_client {
    explicit test_client(wire& w)
        : w(w) {}

    void expect_ack(std::string_view what) {
        INFO(what);
        REQUIRE(w.recv(1) == "1");
    }
    void send_key() {
        const std::string& pem = client_key().public_pem();
        w.send(classic::padded_length(pem.size()));
        expect_ack("client key length");
        w.send(pem);
        expect_ack("client key");
    }
    void receive_server_key() {
        const auto length = classic::parse_padded_length(w.recv(8));
        REQUIRE(length);
        w.send("1");
        server_pem = w.recv(*length);
        REQUIRE(server_pem == server_key().public_pem());
        w.send("1");
    }
    void send_aes_key() {
        classic::random_bytes(sent.key);
        classic::random_bytes(sent.iv);
        std::string key_and_iv = text_of(sent.key) + text_of(sent.iv);
        const auto peer = classic::rsa_key::from_public_pem(server_pem);
        w.send(text_of(peer.encrypt(bytes_of(key_and_iv))));
        expect_ack("AES key");
    }
    void receive_aes_key() {
        const std::string block = w.recv(client_key().modulus_bytes());
        const auto key_and_iv = client_key().decrypt(bytes_of(block));
        REQUIRE(key_and_iv.size() == 48);
        std::copy_n(key_and_iv.begin(), 32, current.key.begin());
        std::copy_n(key_and_iv.begin() + 32, 16, current.iv.begin());
        w.send("1");
    }
    void handshake() {
        send_key();
        receive_server_key();
        send_aes_key();
        receive_aes_key();
    }
    // Step 6, sender's side: the length block, the ack, cipher || new IV.
    void send_message(std::string_view json) {
        const auto cipher = classic::aes_encrypt(current, bytes_of(json));
        w.send(length_block(cipher.size() + 16));
        expect_ack("request length");
        send_body(text_of(cipher));
    }
    std::string length_block(std::size_t length) const {
        return text_of(classic::aes_encrypt(current, bytes_of(std::to_string(length))));
    }
    void send_body(const std::string& cipher) {
        classic::aes_key next = current;
        classic::random_bytes(next.iv);
        w.send(cipher + text_of(next.iv));
        current = next;
    }
    std::string receive_message() {
        const auto length_text = classic::aes_decrypt(current, bytes_of(w.recv(16)));
        const std::size_t length = std::stoul(text_of(length_text));
        w.send("1");
        const std::string body = w.recv(length);
        REQUIRE(body.size() == length);
        const auto plain =
            classic::aes_decrypt(current, bytes_of(std::string_view(body).substr(0, length - 16)));
        std::copy(body.end() - 16, body.end(), current.iv.begin());
        return text_of(plain);
    }

    wire& w;
    std::string server_pem;
    classic::aes_key sent;
    classic::aes_key current;
};

const std::string stat_request = R"({"verb": "STAT", "parameters": {}})";
const std::string stat_response =
    R"({"success":true,"message":"OK","data":{"version":"x","uptime":1}})";

void require_failed(const in_process_wire& w, std::string_view reason_part) {
    REQUIRE(w.session.current() == classic::server_session::phase::failed);
    INFO(w.session.failure());
    CHECK(w.session.failure().find(reason_part) != std::string::npos);
    CHECK(w.session.bytes_needed() == 0);
}

void require_rejected(const in_process_wire& w, std::string_view reason_part) {
    REQUIRE(w.session.current() == classic::server_session::phase::request_rejected);
    INFO(w.session.failure());
    CHECK(w.session.failure().find(reason_part) != std::string::npos);
}

// A PEM public key of another algorithm, and a small RSA one.
std::string public_pem_of(EVP_PKEY* pkey) {
    BIO* bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(bio, pkey);
    char* data = nullptr;
    const long size = BIO_get_mem_data(bio, &data);
    std::string pem(data, static_cast<std::size_t>(size));
    BIO_free(bio);
    EVP_PKEY_free(pkey);
    return pem;
}

} // namespace

TEST_CASE("classic session: a request and its response make the round trip, with the IV rotated") {
    in_process_wire w;
    test_client client(w);
    client.handshake();
    // Step 5: the server sends back the very key and IV the client sent.
    CHECK(client.current.key == client.sent.key);
    CHECK(client.current.iv == client.sent.iv);

    client.send_message(stat_request);
    REQUIRE(w.session.current() == classic::server_session::phase::request_ready);
    CHECK(w.session.request_json() == stat_request);
    CHECK(w.unconsumed == 0);

    w.session.respond(stat_response);
    // The response is decrypted under the IV the request's body ended with:
    // a server that did not rotate would fail the padding check here.
    CHECK(client.receive_message() == stat_response);
    CHECK(w.session.current() == classic::server_session::phase::finished);
    CHECK(w.pending.empty());
    CHECK(w.session.bytes_needed() == 0);
}

TEST_CASE("classic session: a bad key length is refused with \"0\", before any allocation") {
    for (const std::string& field :
         std::vector<std::string>{"abc=====", "12=3====", "0=======", "========", " 800====",
                                  "+800====", "8OO=====", std::string("8\0\0=====", 8)}) {
        in_process_wire w;
        w.send(field);
        CHECK(w.recv(8) == "0");
        require_failed(w, "not a positive decimal");
    }
    in_process_wire w;
    w.send("16385===");
    CHECK(w.recv(8) == "0");
    require_failed(w, "16385 bytes; at most 16384");
    CHECK(w.session.buffered_capacity() <= 8);
}

TEST_CASE("classic session: a client key that is not an RSA PEM of a sane size is refused") {
    const auto refused = [](const std::string& pem, std::string_view reason) {
        in_process_wire w;
        w.send(classic::padded_length(pem.size()));
        CHECK(w.recv(1) == "1");
        w.send(pem);
        CHECK(w.recv(1) == "0");
        require_failed(w, reason);
    };
    refused(std::string(800, 'A'), "not a SubjectPublicKeyInfo PEM");
    refused(public_pem_of(EVP_EC_gen("P-256")), "not an RSA key");
    refused(public_pem_of(EVP_RSA_gen(1024)), "RSA-1024");
}

TEST_CASE("classic session: an AES key block that does not decrypt to a key and an IV is refused") {
    const auto refused = [](std::string block, std::string_view reason) {
        in_process_wire w;
        test_client client(w);
        client.send_key();
        client.receive_server_key();
        w.send(block);
        CHECK(w.recv(1) == "0");
        require_failed(w, reason);
    };
    refused(std::string(512, 'x'), "AES key block is refused");
    // The right OAEP, a 32-byte payload: no IV.
    refused(text_of(server_key().encrypt(bytes_of(std::string(32, 'k')))), "holds 32 bytes");

    // OAEP with SHA-1 (another implementation's default) is not this protocol's.
    EVP_PKEY* pkey = nullptr;
    {
        BIO* bio = BIO_new_mem_buf(server_key().public_pem().data(),
                                   static_cast<int>(server_key().public_pem().size()));
        pkey = PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr);
        BIO_free(bio);
    }
    EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_from_pkey(nullptr, pkey, nullptr);
    REQUIRE(EVP_PKEY_encrypt_init(ctx) == 1);
    REQUIRE(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) == 1);
    const std::string payload(48, 'k');
    std::size_t size = 512;
    std::string block(size, '\0');
    REQUIRE(EVP_PKEY_encrypt(ctx, reinterpret_cast<unsigned char*>(block.data()), &size,
                             reinterpret_cast<const unsigned char*>(payload.data()),
                             payload.size()) == 1);
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(pkey);
    refused(block, "AES key block is refused");
}

TEST_CASE("classic session: a client that answers \"0\" to a step ends the exchange") {
    in_process_wire w;
    test_client client(w);
    client.send_key();
    REQUIRE(w.recv(8).size() == 8);
    w.send("0");
    require_failed(w, "refused the length of the server's key");
    CHECK(w.recv(100).empty());
}

TEST_CASE("classic session: an unreadable request is rejected with its reason, and answered") {
    using phase = classic::server_session::phase;
    const auto after_handshake = [](auto check) {
        in_process_wire w;
        test_client client(w);
        client.handshake();
        check(w, client);
    };
    // A length block under another key: the reference answers without a "0".
    after_handshake([](in_process_wire& w, test_client& client) {
        classic::aes_key other = client.current;
        other.key[0] ^= 1;
        w.send(text_of(classic::aes_encrypt(other, bytes_of("48"))));
        require_rejected(w, "length block does not decrypt");
        CHECK(w.recv(1).empty());
        // The answer is still readable by the client, under the unrotated IV.
        w.session.respond(server::serialize(
            server::make_response(false, "Bad request", {}, w.session.failure())));
        CHECK(client.receive_message().find("Bad request (the request") != std::string::npos);
        CHECK(w.session.current() == phase::finished);
    });
    for (const auto& [length, reason] :
         std::vector<std::pair<std::string, std::string>>{{"abc", "is not a decimal"},
                                                          {"-48", "is not a decimal"},
                                                          {" 48", "is not a decimal"}}) {
        after_handshake([&](in_process_wire& w, test_client& client) {
            w.send(text_of(classic::aes_encrypt(client.current, bytes_of(length))));
            require_rejected(w, reason);
        });
    }
    // 16 digits need two AES blocks: the first one alone has no valid padding.
    after_handshake([](in_process_wire& w, test_client& client) {
        w.send(text_of(classic::aes_encrypt(client.current, bytes_of("1234567890123456")))
                   .substr(0, 16));
        require_rejected(w, "length block does not decrypt");
    });
    for (const auto& [length, reason] :
         std::vector<std::pair<std::size_t, std::string>>{{0, "not whole AES blocks"},
                                                          {16, "not whole AES blocks"},
                                                          {33, "not whole AES blocks"},
                                                          {1024 * 1024 + 16, "at most 1048576"},
                                                          {999999999999984, "at most 1048576"}}) {
        after_handshake([&](in_process_wire& w, test_client& client) {
            w.send(client.length_block(length));
            CHECK(w.recv(1) == "0");
            require_rejected(w, reason);
            CHECK(w.session.buffered_capacity() <= 4096);
        });
    }
}

TEST_CASE("classic session: a request body with a wrong padding is rejected, the IV not rotated") {
    in_process_wire w;
    test_client client(w);
    client.handshake();
    const classic::aes_key before = client.current;
    w.send(client.length_block(48));
    client.expect_ack("length");
    // Two blocks whose plaintext ends in 0x00, which no PKCS#7 padding does.
    const auto three_blocks = classic::aes_encrypt(client.current, bytes_of(std::string(32, '\0')));
    client.send_body(text_of(three_blocks).substr(0, 32));
    require_rejected(w, "request does not decrypt");
    client.current = before; // the server still uses the IV it had
    w.session.respond(R"({"success":false,"message":"Bad request","data":{}})");
    CHECK(client.receive_message() == R"({"success":false,"message":"Bad request","data":{}})");
}

TEST_CASE("classic session: a lying length holds only what arrived, never the announced size") {
    in_process_wire w;
    test_client client(w);
    client.handshake();
    w.send(client.length_block(1024 * 1024));
    client.expect_ack("length");
    w.send(std::string(100, 'x'));
    CHECK(w.session.current() == classic::server_session::phase::need_input);
    CHECK(w.session.bytes_needed() == 1024 * 1024 - 100);
    CHECK(w.session.buffered_capacity() < 1024);
}

TEST_CASE("classic session: bytes past what a step needs are left to the caller") {
    in_process_wire w;
    w.send("800=====extra");
    CHECK(w.unconsumed == 0); // the PEM step takes them
    in_process_wire failed;
    failed.send("xyz=====extra");
    CHECK(failed.unconsumed == 5);
    CHECK(failed.session.feed(bytes_of("more")) == 0);
}

TEST_CASE("classic crypto: the persistent key is created 0600, reloaded, and checked against its "
          "public file") {
    const auto dir =
        std::filesystem::temp_directory_path() / ("anweddol-classic-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir);
    const auto private_path = dir / "rsa" / "private.pem";
    const auto public_path = dir / "rsa" / "public.pem";
    const auto created = classic::rsa_key::load_or_create(private_path, public_path, 2048);
    struct stat st {};
    REQUIRE(::stat(private_path.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
    const auto loaded = classic::rsa_key::load_or_create(private_path, public_path, 2048);
    CHECK(loaded.public_pem() == created.public_pem());
    CHECK(classic::fingerprint(loaded).size() == 64 + 15);

    // A public file of another key is an operator's mistake, named.
    const auto other = classic::rsa_key::generate(2048);
    {
        std::FILE* f = std::fopen(public_path.c_str(), "w");
        std::fputs(other.public_pem().c_str(), f);
        std::fclose(f);
    }
    try {
        classic::rsa_key::load_or_create(private_path, public_path, 2048);
        FAIL("a mismatched public key was accepted");
    } catch (const classic::crypto_error& e) {
        CHECK(std::string(e.what()).find("does not match the private key") != std::string::npos);
    }
    // A private key file that is not a key names the file.
    {
        std::FILE* f = std::fopen(private_path.c_str(), "w");
        std::fputs("not a key\n", f);
        std::fclose(f);
    }
    try {
        classic::rsa_key::load_private(private_path);
        FAIL("garbage was accepted as a key");
    } catch (const classic::crypto_error& e) {
        CHECK(std::string(e.what()).find(private_path.string()) != std::string::npos);
    }
    std::filesystem::remove_all(dir);
}

// ---- The listener on loopback -------------------------------------------

namespace {

// A listener served by an io_context on its own thread, with a trivial STAT
// handler that counts its calls and the events the listener logs.
struct running_listener {
    explicit running_listener(classic::listener_options options = {}) {
        // Keys first: generating one takes longer than the deadlines here.
        (void)client_key();
        options.endpoint = {asio::ip::make_address("127.0.0.1"), 0};
        if (options.timeout == classic::listener_options{}.timeout)
            options.timeout = 2s;
        options.log = [this](const asio::ip::address&, std::string_view event) {
            std::lock_guard lock(mutex);
            events.emplace_back(event);
        };
        auto handler = [this](server::request r) -> asio::awaitable<server::response> {
            handled.fetch_add(1);
            if (throw_in_handler)
                throw std::runtime_error("a handler bug");
            last_via_classic = r.via == server::transport::classic;
            last_peer = r.peer.to_string();
            co_return server::make_response(true, server::message::ok,
                                            {{"version", "x"}, {"uptime", 1}});
        };
        l.emplace(context.get_executor(), server_key(), handler, options);
        l->listen();
        port = l->local_endpoint().port();
        asio::co_spawn(context, l->async_run(),
                       [this](std::exception_ptr) { run_done.set_value(); });
        thread = std::thread([this] { context.run(); });
    }
    ~running_listener() { stop(); }
    void stop() {
        if (!thread.joinable())
            return;
        l->stop();
        const bool finished = run_future.wait_for(10s) == std::future_status::ready;
        if (!finished)
            context.stop();
        thread.join();
        CHECK(finished);
    }
    bool logged(std::string_view part) {
        std::lock_guard lock(mutex);
        for (const auto& e : events)
            if (e.find(part) != std::string::npos)
                return true;
        return false;
    }

    asio::io_context context;
    std::optional<classic::listener> l;
    std::promise<void> run_done;
    std::future<void> run_future = run_done.get_future();
    std::thread thread;
    std::uint16_t port = 0;
    std::atomic<int> handled{0};
    std::atomic<bool> throw_in_handler{false};
    std::atomic<bool> last_via_classic{false};
    std::string last_peer;
    std::mutex mutex;
    std::vector<std::string> events;
};

// A blocking loopback socket with a receive timeout, so that a broken test
// fails instead of hanging.
// `source`: the loopback address it connects from (127.0.0.1 by default;
// any of 127.0.0.0/8 is this host's), to stand for another peer.
struct socket_wire : wire {
    explicit socket_wire(std::uint16_t port, const char* source = nullptr) {
        fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        REQUIRE(fd >= 0);
        timeval tv{15, 0};
        ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        if (source) {
            sockaddr_in from{};
            from.sin_family = AF_INET;
            REQUIRE(::inet_pton(AF_INET, source, &from.sin_addr) == 1);
            REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof from) == 0);
        }
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(port);
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    }
    ~socket_wire() override { ::close(fd); }
    void send(std::string_view data) override {
        // A peer that the server closed may see EPIPE: the test checks the
        // close through recv.
        (void)::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    }
    std::string recv(std::size_t size) override {
        std::string out(size, '\0');
        std::size_t got = 0;
        while (got < size) {
            const ssize_t n = ::recv(fd, out.data() + got, size - got, 0);
            if (n <= 0)
                break;
            got += static_cast<std::size_t>(n);
        }
        out.resize(got);
        return out;
    }
    // Waits up to `limit` for the server to close; true if it did.
    bool closed_within(std::chrono::milliseconds limit) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(limit.count())) <= 0)
            return false;
        char c;
        return ::recv(fd, &c, 1, MSG_DONTWAIT) <= 0;
    }
    int fd = -1;
};

std::size_t open_fds() {
    std::size_t n = 0;
    for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/fd"))
        ++n;
    return n;
}

} // namespace

TEST_CASE("classic listener: a client's STAT is served by the handler over a real socket") {
    running_listener server;
    socket_wire w(server.port);
    test_client client(w);
    client.handshake();
    client.send_message(R"({"verb": "STAT", "parameters": {}})");
    const auto reply = boost::json::parse(client.receive_message());
    CHECK(reply.at("success").as_bool());
    CHECK(reply.at("data").at("version").as_string() == "x");
    CHECK(server.handled == 1);
    CHECK(server.last_via_classic);
    CHECK(w.closed_within(5s));
    server.stop();
    CHECK(server.last_peer == "127.0.0.1");
}

TEST_CASE("classic listener: a handler that throws anyway gets the peer an Internal error") {
    running_listener server;
    server.throw_in_handler = true;
    socket_wire w(server.port);
    test_client client(w);
    client.handshake();
    client.send_message(R"({"verb": "STAT", "parameters": {}})");
    const auto reply = boost::json::parse(client.receive_message());
    CHECK(reply.at("message").as_string() == "Internal error");
    server.stop();
    CHECK(server.logged("a handler bug"));
}

TEST_CASE("classic listener: a malformed envelope is answered Bad request without the handler") {
    running_listener server;
    socket_wire w(server.port);
    test_client client(w);
    client.handshake();
    client.send_message(R"({"verb": "stat", "parameters": {}})");
    const auto reply = boost::json::parse(client.receive_message());
    CHECK_FALSE(reply.at("success").as_bool());
    CHECK(reply.at("message").as_string().starts_with("Bad request"));
    CHECK(server.handled == 0);
}

TEST_CASE("classic listener: a slowloris sending a byte a second is dropped at the deadline") {
    running_listener server; // 2 s deadline
    socket_wire w(server.port);
    const auto start = std::chrono::steady_clock::now();
    int sent = 0;
    bool closed = false;
    // The attack's own pace: one byte of a valid length field per second.
    while (sent < 8 && !closed) {
        w.send(std::string(1, "800====="[sent]));
        ++sent;
        closed = w.closed_within(1s);
    }
    const auto elapsed = std::chrono::steady_clock::now() - start;
    CHECK(closed);
    CHECK(sent < 8);
    CHECK(elapsed >= 1500ms);
    CHECK(elapsed < 5s);
    server.stop();
    CHECK(server.logged("past its deadline"));
    CHECK(server.handled == 0);
}

TEST_CASE("classic listener: a lying request length is dropped at the deadline") {
    running_listener server;
    socket_wire w(server.port);
    test_client client(w);
    client.handshake();
    w.send(client.length_block(4096));
    client.expect_ack("length");
    w.send(std::string(32, 'x')); // and never the rest
    CHECK(w.closed_within(5s));
    server.stop();
    CHECK(server.logged("past its deadline"));
    CHECK(server.handled == 0);
}

TEST_CASE("classic listener: garbage gets a \"0\" and the connection closed") {
    running_listener server;
    socket_wire w(server.port);
    w.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(w.recv(1) == "0");
    CHECK(w.closed_within(5s));
    server.stop();
    CHECK(server.logged("not a positive decimal"));
    CHECK(server.handled == 0);
}

TEST_CASE("classic listener: a peer refused by the IP filter is closed before a byte is read") {
    classic::listener_options options;
    options.allow = [](const asio::ip::address& a) {
        return !a.is_loopback();
    };
    running_listener server(options);
    socket_wire w(server.port);
    w.send("800=====");
    CHECK(w.recv(1).empty());
    server.stop();
    CHECK(server.logged("refused by the IP filter"));
    CHECK(server.handled == 0);
}

TEST_CASE("classic listener: over max_connections, a peer waits until a connection ends") {
    classic::listener_options options;
    options.max_connections = 1;
    options.timeout = 10s;
    running_listener server(options);
    auto first = std::make_unique<socket_wire>(server.port);
    first->send("8"); // holds its slot
    socket_wire second(server.port);
    second.send("garbage!");
    // Not accepted yet: no answer while the first holds the only slot.
    pollfd p{second.fd, POLLIN, 0};
    CHECK(::poll(&p, 1, 500) == 0);
    first.reset(); // the first ends; the second is served
    CHECK(second.recv(1) == "0");
}

TEST_CASE("classic listener: one address holds at most max_connections_per_address, the rest are "
          "served") {
    classic::listener_options options;
    options.max_connections = 8;
    options.max_connections_per_address = 2;
    options.timeout = 10s;
    running_listener server(options);
    socket_wire first(server.port);
    first.send("8"); // each holds a slot, trickling
    socket_wire second(server.port);
    second.send("8");
    socket_wire third(server.port);
    CHECK(third.closed_within(5s)); // closed at once, not queued
    // Another address still gets a slot, and is served.
    socket_wire other(server.port, "127.0.0.2");
    other.send("garbage!");
    CHECK(other.recv(1) == "0");
}

TEST_CASE("classic listener: stop() closes the acceptor and live connections, leaving no fd") {
    const std::size_t before = open_fds();
    {
        classic::listener_options options;
        options.timeout = 60s;
        running_listener server(options);
        socket_wire stalled(server.port);
        stalled.send("80");
        server.stop();
        CHECK(stalled.closed_within(5s));
        CHECK(server.l->live_connections() == 0);
    }
    CHECK(open_fds() == before);
}

TEST_CASE("classic listener: the Python test client gets the handler's answer") {
    running_listener server;
    const std::string command =
        "/usr/bin/python3 " ANWEDDOL_SERVER_TESTS_DIR "/classic_client.py 127.0.0.1 " +
        std::to_string(server.port) + " '{\"verb\":\"STAT\",\"parameters\":{}}'";
    std::FILE* pipe = ::popen(command.c_str(), "r");
    REQUIRE(pipe);
    std::string out;
    char buffer[4096];
    while (const std::size_t n = std::fread(buffer, 1, sizeof buffer, pipe))
        out.append(buffer, n);
    CHECK(::pclose(pipe) == 0);
    INFO(out);
    const auto reply = boost::json::parse(out);
    CHECK(reply.at("success").as_bool());
    CHECK(reply.at("data").at("uptime").as_int64() == 1);
    CHECK(server.handled == 1);
}

TEST_CASE("classic listener: cancelling async_run stops it as stop() does") {
    asio::io_context context;
    classic::listener_options options;
    options.endpoint = {asio::ip::make_address("127.0.0.1"), 0};
    options.timeout = 60s;
    auto handler = [](server::request) -> asio::awaitable<server::response> {
        co_return server::make_response(true, server::message::ok);
    };
    classic::listener l(context.get_executor(), server_key(), handler, options);
    l.listen();
    asio::cancellation_signal cancel;
    bool finished = false;
    asio::co_spawn(
        context, l.async_run(),
        asio::bind_cancellation_slot(cancel.slot(), [&](std::exception_ptr) { finished = true; }));
    std::thread peer([port = l.local_endpoint().port()] {
        socket_wire stalled(port);
        stalled.send("80");
        CHECK(stalled.closed_within(10s));
    });
    // Cancels once the stalled peer is being served.
    asio::steady_timer poll_timer(context);
    std::function<void()> cancel_when_served = [&] {
        if (l.live_connections() == 1)
            return cancel.emit(asio::cancellation_type::terminal);
        poll_timer.expires_after(10ms);
        poll_timer.async_wait([&](boost::system::error_code) { cancel_when_served(); });
    };
    cancel_when_served();
    context.run_for(20s);
    peer.join();
    CHECK(finished);
    CHECK(l.live_connections() == 0);
}
