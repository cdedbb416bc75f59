// console_scanner: the input is console bytes (noise, then an endpoint
// block made up from the second field, then more noise: fields split at
// 0xFF bytes), and the first byte picks the size of the pieces they arrive
// in. Properties: the pieces' split changes nothing the scanner announces;
// every key it announces is a well-formed SHA-256 fingerprint; the log never
// shows the endpoint block's password more often than the noise itself
// holds it; and without an endpoint marker the log is the input, byte for
// byte.
#include "fuzz_support.hpp"

#include <anweddol/detail/ssh/console_scanner.hpp>
#include <anweddol/detail/ssh/fingerprint_text.hpp>

#include <algorithm>

namespace {

std::size_t occurrences(std::string_view text, std::string_view what) {
    std::size_t n = 0;
    for (auto at = text.find(what); !what.empty() && at != std::string_view::npos;
         at = text.find(what, at + 1))
        ++n;
    return n;
}

struct scanned {
    anweddol::detail::console_announcement announced;
    std::string log;
};

scanned scan(std::string_view console, std::size_t piece) {
    anweddol::detail::console_scanner scanner;
    scanned result;
    const auto to_log = [&](std::string_view shown) {
        result.log += shown;
    };
    for (std::size_t at = 0; at < console.size(); at += piece)
        scanner.feed(console.substr(at, piece), to_log);
    result.announced = scanner.announcement();
    return result;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace anweddol::fuzz;
    if (size == 0)
        return 0;
    const std::size_t piece = 1 + data[0] % 64;
    const auto fields = split_fields(data + 1, size - 1, 3);
    // A password of the allowed alphabet, made from the second field.
    std::string password;
    for (const char c : fields[1])
        password += "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
            [static_cast<unsigned char>(c) % 62];
    password.resize(std::clamp<std::size_t>(password.size(), 20, 128), 'x');
    const std::string noise = fields[0] + fields[2];
    const std::string console = fields[0] + "\n-----BEGIN ANWEDDOL ENDPOINT-----\npassword " +
                                password + "\nfeatures\n-----END ANWEDDOL ENDPOINT-----\n" +
                                fields[2];

    const auto whole = scan(console, console.size() + 1);
    const auto pieces = scan(console, piece);
    const auto& a = whole.announced;
    const auto& b = pieces.announced;
    ANWEDDOL_FUZZ_CHECK(
        a.host_keys == b.host_keys && a.host_keys_complete == b.host_keys_complete &&
            a.block_open == b.block_open && a.endpoint.has_value() == b.endpoint.has_value(),
        escaped(console));
    ANWEDDOL_FUZZ_CHECK(!a.endpoint || (a.endpoint->password == b.endpoint->password &&
                                        a.endpoint->features == b.endpoint->features));
    ANWEDDOL_FUZZ_CHECK(whole.log == pieces.log, escaped(whole.log) + "\n" + escaped(pieces.log));
    for (const auto& key : a.host_keys)
        ANWEDDOL_FUZZ_CHECK(anweddol::detail::normalize_sha256_fingerprint(key.fingerprint) ==
                                key.fingerprint,
                            key.fingerprint);
    ANWEDDOL_FUZZ_CHECK(occurrences(pieces.log, password) <= occurrences(noise, password),
                        escaped(pieces.log));

    // Noise alone, without an endpoint marker, reaches the log untouched.
    // (Without escapes, and with the control bytes a terminal drops taken
    // out, the marker would show if it were there: "ANWEDD\0OL" is one.)
    std::string visible = noise;
    std::erase_if(visible, [](char c) {
        return (static_cast<unsigned char>(c) < 0x20 && c != '\n' && c != '\r') || c == 0x7F;
    });
    if (noise.find('\x1b') == std::string::npos &&
        visible.find("ANWEDDOL ENDPOINT") == std::string::npos)
        ANWEDDOL_FUZZ_CHECK(scan(noise, piece).log == noise, escaped(noise));
    return 0;
}
