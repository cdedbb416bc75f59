// Fuzzes the classic protocol's server session with arbitrary peers' bytes.
//
// The first input byte picks where the hostile bytes start: 0, from the
// connection's first byte; 1, after a valid key exchange (the bytes are the
// request's raw frames); 2, after a valid key exchange with the fields
// "length text" 0xFF "request body" encrypted under the agreed key, so that
// the fuzzer reaches the length checks and the JSON hand-over. The second
// byte sets the size of the chunks the bytes are fed in. Properties: a feed
// never takes more than the session asked for; its buffer never grows past
// the limits; a finished or failed session takes nothing more; a failed one
// sends nothing but the protocol's "0"; a request decrypted under an honest
// length is the body sent.
#include "classic_crypto.hpp"
#include "classic_protocol.hpp"
#include "fuzz_support.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

namespace classic = anweddol::server::classic;

namespace {

using phase = classic::server_session::phase;

// Smaller than the defaults, so that the fuzzer's inputs reach them.
constexpr classic::limits bounds{1024, 4096};

// 2048-bit keys: generated once per process, and cheap per decryption.
const classic::rsa_key& server_key() {
    static const classic::rsa_key key = classic::rsa_key::generate(2048);
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

// Feeds `data` in chunks of `chunk` bytes, checking the properties; returns
// what the session sent meanwhile.
std::string feed(classic::server_session& s, std::string_view data, std::size_t chunk) {
    std::string sent;
    while (!data.empty()) {
        const phase before = s.current();
        const std::size_t needed = s.bytes_needed();
        const std::size_t taken = s.feed(bytes_of(data.substr(0, std::min(chunk, data.size()))));
        ANWEDDOL_FUZZ_CHECK(taken <= needed);
        ANWEDDOL_FUZZ_CHECK(before == phase::need_input || taken == 0);
        ANWEDDOL_FUZZ_CHECK(s.buffered_capacity() <= bounds.max_message_bytes);
        const std::string out = s.take_output();
        sent += out;
        if (s.current() == phase::failed)
            ANWEDDOL_FUZZ_CHECK(out.empty() || out.ends_with("0"), s.failure());
        if (taken == 0)
            break;
        data.remove_prefix(taken);
    }
    return sent;
}

// A valid key exchange as the client; returns the agreed key.
classic::aes_key exchange_keys(classic::server_session& s) {
    const std::string& pem = client_key().public_pem();
    feed(s, classic::padded_length(pem.size()), 64);
    feed(s, pem, 64);
    feed(s, "1", 1);
    feed(s, "1", 1);
    classic::aes_key k;
    classic::random_bytes(k.key);
    classic::random_bytes(k.iv);
    const std::string key_and_iv = text_of(k.key) + text_of(k.iv);
    const std::string block = text_of(server_key().encrypt(bytes_of(key_and_iv)));
    const std::string answer = feed(s, block, 512);
    ANWEDDOL_FUZZ_CHECK(answer.size() == 1 + client_key().modulus_bytes());
    feed(s, "1", 1);
    ANWEDDOL_FUZZ_CHECK(s.current() == phase::need_input && s.bytes_needed() == 16);
    return k;
}

// The encrypted frames of a request whose length text and body are given.
std::string encrypted_request(const classic::aes_key& k, const std::string& length_text,
                              const std::string& body) {
    std::string frames = text_of(classic::aes_encrypt(k, bytes_of(length_text)));
    frames.resize(16); // the server reads one block: a long text is cut
    frames += text_of(classic::aes_encrypt(k, bytes_of(body)));
    frames += std::string(16, 'i');
    return frames;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2)
        return 0;
    const int mode = data[0] % 3;
    const std::size_t chunk = 1 + data[1] % 64;
    const std::string_view rest(reinterpret_cast<const char*>(data + 2), size - 2);

    classic::server_session s(server_key(), bounds);
    std::string body;
    bool honest_length = false; // mode 2: the length text is the frames' own
    if (mode == 0) {
        feed(s, rest, chunk);
    } else {
        const classic::aes_key k = exchange_keys(s);
        if (mode == 1) {
            feed(s, rest, chunk);
        } else {
            const auto fields = anweddol::fuzz::split_fields(
                reinterpret_cast<const std::uint8_t*>(rest.data()), rest.size(), 2);
            body = fields[1];
            const std::size_t cipher = (body.size() / 16 + 1) * 16; // PKCS7
            honest_length = fields[0] == std::to_string(cipher + 16);
            feed(s, encrypted_request(k, fields[0], body), chunk);
        }
    }
    // Only an honest length yields the body sent: CBC has no MAC, so a
    // shorter length whose last block happens to end in valid padding
    // decrypts to a prefix of it (the reference's channel is as malleable).
    if (s.current() == phase::request_ready && mode == 2 && honest_length)
        ANWEDDOL_FUZZ_CHECK(s.request_json() == body, anweddol::fuzz::escaped(s.request_json()));
    if (s.current() == phase::request_ready || s.current() == phase::request_rejected) {
        s.respond(R"({"success":false,"message":"Bad request","data":{}})");
        ANWEDDOL_FUZZ_CHECK(s.take_output().size() == 16);
        const std::string response_body = feed(s, "1", 1);
        ANWEDDOL_FUZZ_CHECK(s.current() == phase::finished);
        ANWEDDOL_FUZZ_CHECK(response_body.size() >= 32 && response_body.size() % 16 == 0);
    }
    if (s.current() == phase::failed || s.current() == phase::finished) {
        ANWEDDOL_FUZZ_CHECK(s.bytes_needed() == 0);
        ANWEDDOL_FUZZ_CHECK(s.feed(bytes_of("1")) == 0);
    }
    return 0;
}
