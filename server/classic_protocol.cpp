#include "classic_protocol.hpp"

#include <algorithm>
#include <cstdio>
#include <stdexcept>
#include <utility>

namespace anweddol::server::classic {

namespace {

constexpr char ack_ok = '1';
constexpr std::string_view reply_ok = "1";
constexpr std::string_view reply_nok = "0";
constexpr std::size_t iv_size = 16;
constexpr std::size_t aes_block = 16;
// What the peer's RSA block carries: a 32-byte AES-256 key, then a 16-byte IV.
constexpr std::size_t key_and_iv_size = 32 + iv_size;

// A printable rendering of a few hostile bytes, for reasons that get logged.
std::string printable(std::span<const std::uint8_t> data) {
    std::string out;
    for (const std::uint8_t c : data) {
        if (c >= 0x20 && c < 0x7F && c != '\\' && c != '"') {
            out += static_cast<char>(c);
        } else {
            char hex[5];
            std::snprintf(hex, sizeof hex, "\\x%02x", c);
            out += hex;
        }
    }
    return out;
}

std::string_view as_text(std::span<const std::uint8_t> data) {
    return {reinterpret_cast<const char*>(data.data()), data.size()};
}

std::span<const std::uint8_t> as_bytes(std::string_view text) {
    return {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()};
}

// The decimal the reference's str(int) writes: digits only, no sign, no
// space; up to 15 of them, all that fits one AES block with its padding.
std::optional<std::size_t> parse_decimal(std::string_view text) {
    if (text.empty() || text.size() >= aes_block)
        return std::nullopt;
    std::size_t value = 0;
    for (const char c : text) {
        if (c < '0' || c > '9')
            return std::nullopt;
        value = value * 10 + static_cast<std::size_t>(c - '0');
    }
    return value;
}

} // namespace

std::string padded_length(std::size_t length) {
    std::string text = std::to_string(length);
    if (text.size() < 8)
        text.append(8 - text.size(), '=');
    return text;
}

std::optional<std::size_t> parse_padded_length(std::string_view text) {
    const std::size_t digits = text.find_first_not_of("0123456789");
    const std::string_view number = text.substr(0, digits);
    if (number.empty() || number.size() > 8)
        return std::nullopt;
    if (digits != std::string_view::npos &&
        text.find_first_not_of('=', digits) != std::string_view::npos)
        return std::nullopt;
    return parse_decimal(number);
}

server_session::server_session(const rsa_key& our_key, limits bounds)
    : our_key_(our_key)
    , limits_(bounds) {
    if (!our_key.has_private())
        throw std::invalid_argument("the classic protocol needs the server's private key");
    expect(step::peer_pem_length, 8);
}

server_session::~server_session() {
    wipe(input_);
    wipe(request_);
}

std::size_t server_session::bytes_needed() const noexcept {
    return phase_ == phase::need_input ? expected_ - input_.size() : 0;
}

void server_session::expect(step next, std::size_t size) {
    step_ = next;
    expected_ = size;
    input_.clear();
    phase_ = phase::need_input;
}

std::size_t server_session::feed(std::span<const std::uint8_t> data) {
    const std::size_t take = std::min(data.size(), bytes_needed());
    const std::size_t wanted = input_.size() + take;
    // Grow with what arrives, never past what the step expects: a peer that
    // announces a large message and sends little costs little.
    if (wanted > input_.capacity())
        input_.reserve(std::min(expected_, std::max(wanted, 2 * input_.capacity())));
    input_.insert(input_.end(), data.begin(), data.begin() + static_cast<std::ptrdiff_t>(take));
    if (take != 0 && input_.size() == expected_)
        on_complete_input();
    return take;
}

std::string server_session::take_output() {
    return std::exchange(output_, {});
}

void server_session::fail(std::string reason, std::string_view reply) {
    output_ += reply;
    failure_ = std::move(reason);
    phase_ = phase::failed;
    step_ = step::done;
}

void server_session::reject(std::string reason, std::string_view reply) {
    output_ += reply;
    failure_ = std::move(reason);
    phase_ = phase::request_rejected;
    step_ = step::done;
}

void server_session::on_complete_input() {
    switch (step_) {
    case step::peer_pem_length:
        return on_peer_pem_length();
    case step::peer_pem:
        return on_peer_pem();
    case step::ack_our_pem_length:
    case step::ack_our_pem:
    case step::ack_our_aes_key:
    case step::ack_response_length:
        return on_ack();
    case step::aes_key_block:
        return on_aes_key_block();
    case step::request_length:
        return on_request_length();
    case step::request_body:
        return on_request_body();
    case step::done:
        return;
    }
}

void server_session::on_peer_pem_length() {
    const auto length = parse_padded_length(as_text(input_));
    if (!length || *length == 0)
        return fail("the client's key length \"" + printable(input_) +
                        "\" is not a positive decimal padded with '=' to 8 bytes",
                    reply_nok);
    if (*length > limits_.max_pem_bytes)
        return fail("the client's key would be " + std::to_string(*length) + " bytes; at most " +
                        std::to_string(limits_.max_pem_bytes) + " are accepted",
                    reply_nok);
    output_ += reply_ok;
    expect(step::peer_pem, *length);
}

void server_session::on_peer_pem() {
    try {
        peer_key_.emplace(rsa_key::from_public_pem(as_text(input_)));
    } catch (const crypto_error& e) {
        return fail(std::string("the client's key is refused: ") + e.what(), reply_nok);
    }
    output_ += reply_ok;
    output_ += padded_length(our_key_.public_pem().size());
    expect(step::ack_our_pem_length, 1);
}

void server_session::on_ack() {
    if (input_[0] != ack_ok) {
        static constexpr const char* refused[] = {"the length of the server's key",
                                                  "the server's key", "the AES key",
                                                  "the response's length"};
        const std::size_t which = step_ == step::ack_our_pem_length ? 0
                                  : step_ == step::ack_our_pem      ? 1
                                  : step_ == step::ack_our_aes_key  ? 2
                                                                    : 3;
        return fail(std::string("the client refused ") + refused[which] + " (it answered \"" +
                    printable(input_) + "\")");
    }
    switch (step_) {
    case step::ack_our_pem_length:
        output_ += our_key_.public_pem();
        return expect(step::ack_our_pem, 1);
    case step::ack_our_pem:
        return expect(step::aes_key_block, our_key_.modulus_bytes());
    case step::ack_our_aes_key:
        return expect(step::request_length, aes_block);
    default:
        // The response's length was acknowledged: its body goes, and the IV
        // rotates to the one at the body's end, as both reference peers do.
        std::copy(pending_body_.end() - iv_size, pending_body_.end(), aes_.iv.begin());
        output_.append(as_text(pending_body_));
        pending_body_.clear();
        phase_ = phase::finished;
        step_ = step::done;
    }
}

void server_session::on_aes_key_block() {
    bytes key_and_iv;
    try {
        key_and_iv = our_key_.decrypt(input_);
    } catch (const crypto_error& e) {
        return fail(std::string("the client's AES key block is refused: ") + e.what(), reply_nok);
    }
    if (key_and_iv.size() != key_and_iv_size) {
        wipe(key_and_iv);
        return fail("the client's AES key block holds " + std::to_string(key_and_iv.size()) +
                        " bytes, not a 32-byte key and a 16-byte IV",
                    reply_nok);
    }
    std::copy_n(key_and_iv.begin(), aes_.key.size(), aes_.key.begin());
    std::copy_n(key_and_iv.begin() + aes_.key.size(), iv_size, aes_.iv.begin());
    // The reference's server answers with the very key and IV it received,
    // under the client's key: its AES wrapper was just overwritten with them.
    bytes answer;
    try {
        answer = peer_key_->encrypt(key_and_iv);
    } catch (const crypto_error& e) {
        wipe(key_and_iv);
        return fail(std::string("cannot encrypt the AES key for the client: ") + e.what());
    }
    wipe(key_and_iv);
    output_ += reply_ok;
    output_.append(as_text(answer));
    expect(step::ack_our_aes_key, 1);
}

void server_session::on_request_length() {
    std::string text;
    try {
        const bytes plain = aes_decrypt(aes_, input_);
        text.assign(as_text(plain));
    } catch (const crypto_error& e) {
        // The reference answers without a "0" here (its int() raised first).
        return reject(std::string("the request's length block does not decrypt: ") + e.what());
    }
    const auto length = parse_decimal(text);
    if (!length)
        return reject("the request's length \"" + printable(as_bytes(text)) +
                      "\" is not a decimal");
    // A body is at least one AES block and the IV, in whole blocks.
    if (*length < aes_block + iv_size || *length % aes_block != 0)
        return reject("the request's length " + std::to_string(*length) +
                          " is not whole AES blocks followed by a 16-byte IV",
                      reply_nok);
    if (*length > limits_.max_message_bytes)
        return reject("the request would be " + std::to_string(*length) + " bytes; at most " +
                          std::to_string(limits_.max_message_bytes) + " are accepted",
                      reply_nok);
    output_ += reply_ok;
    expect(step::request_body, *length);
}

void server_session::on_request_body() {
    const std::span<const std::uint8_t> body(input_);
    bytes plain;
    try {
        plain = aes_decrypt(aes_, body.first(body.size() - iv_size));
    } catch (const crypto_error& e) {
        // The IV does not rotate: the reference decrypts before it adopts
        // the new one, and answers under the old.
        return reject(std::string("the request does not decrypt: ") + e.what());
    }
    std::copy(body.end() - iv_size, body.end(), aes_.iv.begin());
    request_.assign(as_text(plain));
    wipe(plain);
    phase_ = phase::request_ready;
    step_ = step::done;
}

void server_session::respond(std::string_view response_json) {
    if (phase_ != phase::request_ready && phase_ != phase::request_rejected)
        throw std::logic_error("server_session::respond: no request to answer");
    const bytes cipher = aes_encrypt(aes_, as_bytes(response_json));
    std::array<std::uint8_t, iv_size> new_iv;
    random_bytes(new_iv);
    const bytes length_block = aes_encrypt(aes_, as_bytes(std::to_string(cipher.size() + iv_size)));
    output_.append(as_text(length_block));
    pending_body_ = cipher;
    pending_body_.insert(pending_body_.end(), new_iv.begin(), new_iv.end());
    expect(step::ack_response_length, 1);
}

} // namespace anweddol::server::classic
