// The server's side of one Anweddol classic-protocol connection, as a state
// machine without I/O: it is fed the peer's bytes, says how many it needs
// next, and hands out the bytes to send. The exchange is the reference
// server's (core/client.py ClientInstance), byte for byte:
//
//   peer -> "NNN=====" (its PEM's length)        <- "1"
//   peer -> its PEM                                <- "1"
//   <- "NNN=====" our PEM's length   peer -> "1"   <- our PEM   peer -> "1"
//   peer -> RSA-OAEP(key || iv) under our key      <- "1"
//   <- RSA-OAEP(key || iv) under the peer's key (the very key and iv it sent)
//   peer -> "1"
//   peer -> AES(str(len(cipher) + 16))             <- "1"
//   peer -> cipher || new_iv      (request; iv := new_iv)
//   <- AES(str(len(cipher) + 16)) peer -> "1"
//   <- cipher || new_iv           (response; iv := new_iv)
//
// Every input is bounded before anything is allocated for it; a malformed
// one ends the connection with a reason. Where the reference answers a "0"
// (a refused length, key or AES block), so does this machine. Once the AES
// channel is up, a request that cannot be read (a bad length block, a body
// that does not decrypt) is still answered, as the reference answers it with
// a response message: the machine enters `phase::request_rejected` and the
// driver sends an error response through `respond`.
#ifndef ANWEDDOL_SERVER_CLASSIC_PROTOCOL_HPP
#define ANWEDDOL_SERVER_CLASSIC_PROTOCOL_HPP

#include "classic_crypto.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace anweddol::server::classic {

struct limits {
    // The peer's PEM public key (RSA-16384 is about 2.8 KiB).
    std::size_t max_pem_bytes = 16 * 1024;
    // A request's `cipher || iv`, as its encrypted length block announces it.
    std::size_t max_message_bytes = 1024 * 1024;
};

class server_session {
public:
    enum class phase {
        need_input,       // send `take_output()`, then read `bytes_needed()` bytes and `feed` them
        request_ready,    // `request_json()` holds the request; answer with `respond`
        request_rejected, // the request was unreadable (`failure()`); answer with `respond`
        finished,         // send `take_output()`, then close: the exchange is complete
        failed,           // send `take_output()` (maybe a "0"), then close; `failure()` says why
    };

    // `our_key` must have its private half and outlive the session.
    explicit server_session(const rsa_key& our_key, limits bounds = {});
    ~server_session();
    server_session(const server_session&) = delete;
    server_session& operator=(const server_session&) = delete;

    phase current() const noexcept { return phase_; }

    // How many more bytes the machine waits for (0 unless `need_input`).
    std::size_t bytes_needed() const noexcept;

    // Consumes up to `bytes_needed()` bytes of `data` and returns how many it
    // took; the rest belongs to a later read (the protocol has none: a peer
    // sends nothing unasked). Never throws: a malformed input moves to
    // `failed` or `request_rejected`.
    std::size_t feed(std::span<const std::uint8_t> data);

    // The bytes to send now, in order; empties the machine's output.
    std::string take_output();

    // The decrypted request (`request_ready`). Wiped with the session.
    std::string_view request_json() const noexcept { return request_; }

    // Sends `response_json` as the protocol's encrypted message, in
    // `request_ready` or `request_rejected`: the length block now, the body
    // once the peer acknowledges it.
    void respond(std::string_view response_json);

    // Why the connection failed or the request was rejected.
    const std::string& failure() const noexcept { return failure_; }

    // Bytes held for the peer's input: bounded by `limits`, for tests and
    // metrics.
    std::size_t buffered_capacity() const noexcept { return input_.capacity(); }

private:
    enum class step {
        peer_pem_length,
        peer_pem,
        ack_our_pem_length,
        ack_our_pem,
        aes_key_block,
        ack_our_aes_key,
        request_length,
        request_body,
        ack_response_length,
        done,
    };

    void expect(step next, std::size_t size);
    void on_complete_input();
    void on_peer_pem_length();
    void on_peer_pem();
    void on_ack();
    void on_aes_key_block();
    void on_request_length();
    void on_request_body();
    void fail(std::string reason, std::string_view reply = {});
    void reject(std::string reason, std::string_view reply = {});

    const rsa_key& our_key_;
    limits limits_;
    phase phase_ = phase::need_input;
    step step_ = step::peer_pem_length;
    std::size_t expected_ = 0;
    bytes input_;
    std::string output_;
    std::optional<rsa_key> peer_key_;
    aes_key aes_;
    std::string request_;
    bytes pending_body_; // the response's cipher || new_iv, until the peer's ack
    std::string failure_;
};

// The 8-byte length the handshake sends: decimal, right-padded with '='.
std::string padded_length(std::size_t length);

// Parses a padded length ("800=====", "12345678"): 1 to 8 decimal digits,
// then only '='; nullopt for anything else.
std::optional<std::size_t> parse_padded_length(std::string_view text);

} // namespace anweddol::server::classic

#endif
