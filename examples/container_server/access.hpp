// Who may use the server: bearer tokens from --token-file, the Host and
// Origin a request may carry, and the owner token of each container.
//
// Tokens are kept only as SHA-256 digests: the token file holds digests, so
// reading it (or the server's memory) gives nobody a token, and a presented
// token is hashed and compared with CRYPTO_memcmp against every digest,
// each comparison taking the same time whatever the bytes.
#ifndef CONTAINER_SERVER_ACCESS_HPP
#define CONTAINER_SERVER_ACCESS_HPP

#include "messages.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <array>
#include <cstdint>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace example {

using digest = std::array<unsigned char, 32>;

inline digest sha256(std::string_view data) {
    digest out{};
    unsigned int size = 0;
    if (EVP_Digest(data.data(), data.size(), out.data(), &size, EVP_sha256(), nullptr) != 1 ||
        size != out.size())
        throw std::runtime_error("OpenSSL's SHA-256 failed");
    return out;
}

// Whether `token`'s digest is `expected`, in constant time.
inline bool token_matches(std::string_view token, const digest& expected) {
    digest presented = sha256(token);
    const bool same = CRYPTO_memcmp(presented.data(), expected.data(), presented.size()) == 0;
    OPENSSL_cleanse(presented.data(), presented.size());
    return same;
}

// A container's owner token: 32 random bytes in base64url (43 characters),
// handed to the client once; the server keeps its digest only.
struct owner_token {
    std::string token; // the caller wipes it once sent
    digest hash;
};

inline owner_token new_owner_token() {
    static constexpr char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    std::array<unsigned char, 33> bytes{}; // 32 random, and a zero to make whole triples
    if (RAND_bytes(bytes.data(), 32) != 1)
        throw std::runtime_error("OpenSSL's RAND_bytes failed: the random generator has no "
                                 "entropy");
    owner_token made;
    made.token.reserve(44);
    for (std::size_t i = 0; i < bytes.size(); i += 3) {
        const std::uint32_t triple =
            std::uint32_t{bytes[i]} << 16 | std::uint32_t{bytes[i + 1]} << 8 | bytes[i + 2];
        for (int shift = 18; shift >= 0; shift -= 6)
            made.token += alphabet[(triple >> shift) & 0x3f];
    }
    made.token.resize(43); // 256 bits, unpadded
    OPENSSL_cleanse(bytes.data(), bytes.size());
    made.hash = sha256(made.token);
    return made;
}

struct client_entry {
    std::string name;
    digest token_hash;
};

inline std::optional<digest> parse_hex_digest(std::string_view hex) {
    if (hex.size() != 64)
        return std::nullopt;
    digest out{};
    for (std::size_t i = 0; i < hex.size(); ++i) {
        const char c = static_cast<char>(std::tolower(static_cast<unsigned char>(hex[i])));
        const int nibble = c >= '0' && c <= '9'   ? c - '0'
                           : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                                  : -1;
        if (nibble < 0)
            return std::nullopt;
        out[i / 2] = static_cast<unsigned char>(out[i / 2] << 4 | nibble);
    }
    return out;
}

inline bool valid_client_name(std::string_view name) {
    if (name.empty() || name.size() > 64)
        return false;
    for (unsigned char c : name)
        if (!std::isalnum(c) && c != '.' && c != '_' && c != '-' && c != '@')
            return false;
    return true;
}

// --token-file: "NAME SHA256" per line, '#' to the end of a line is a
// comment. Any error stops the server before it listens.
inline std::vector<client_entry> load_token_file(const std::string& path) {
    std::ifstream file(path);
    if (!file)
        bad_usage("cannot read the token file " + path);
    std::vector<client_entry> clients;
    std::set<std::string> names;
    std::string line;
    for (int number = 1; std::getline(file, line); ++number) {
        std::istringstream fields(line.substr(0, line.find('#')));
        std::string name, hex, extra;
        if (!(fields >> name))
            continue; // blank or a comment
        const auto hash = fields >> hex ? parse_hex_digest(hex) : std::nullopt;
        const std::string where = path + " line " + std::to_string(number) + ": ";
        if (!hash || fields >> extra)
            bad_usage(where + "expected NAME and the 64 hex digits of the SHA-256 of the "
                              "client's token (printf %s \"$token\" | sha256sum)");
        if (!valid_client_name(name))
            bad_usage(where + "a client's name has 1 to 64 letters, digits, '.', '_', '-', '@'");
        if (!names.insert(name).second)
            bad_usage(where + "the client " + name + " is named twice");
        for (const auto& other : clients)
            if (other.token_hash == *hash)
                bad_usage(where + "the same token as " + other.name);
        clients.push_back({name, *hash});
    }
    if (clients.empty())
        bad_usage("the token file " + path + " names no client");
    return clients;
}

// Who sent a request: the client's name from the token file ("" with
// --no-auth), or a refusal.
struct authentication {
    bool authenticated = false;
    std::string principal;
    bool token_given = false; // for WWW-Authenticate's error="invalid_token"
};

class access_policy {
public:
    // `port`: where the server listens, for the default allowed Host values.
    access_policy(const server_settings& settings, std::uint16_t port)
        : no_auth_(settings.no_auth)
        , hosts_(settings.allowed_hosts.begin(), settings.allowed_hosts.end())
        , origins_(settings.allowed_origins.begin(), settings.allowed_origins.end()) {
        if (!no_auth_)
            clients_ = load_token_file(settings.token_file);
        for (std::string_view name : {"127.0.0.1", "localhost"}) {
            hosts_.insert(std::string(name) + ":" + std::to_string(port));
            if (port == 80)
                hosts_.insert(std::string(name));
        }
    }

    // A Host header (exactly one) among the allowed, so that a page whose
    // name an attacker rebinds to 127.0.0.1 is refused; no Origin, or an
    // allowed one, so that a browser's cross-site request is refused.
    std::optional<refusal> check_host_and_origin(const request_type& request) const {
        const auto host = request.find(http::field::host);
        if (request.count(http::field::host) != 1 || !hosts_.contains(lower_case(host->value())))
            return refusal{http::status::misdirected_request,
                           "this server answers to Host " + *hosts_.begin() +
                               " (or another --allowed-host) only"};
        for (auto origins = request.equal_range(http::field::origin);
             origins.first != origins.second; ++origins.first)
            if (!origins_.contains(lower_case(origins.first->value())))
                return refusal{http::status::forbidden,
                               "requests from the Origin " +
                                   std::string(origins.first->value().substr(0, 100)) +
                                   " are not allowed (see --allowed-origin)"};
        return std::nullopt;
    }

    authentication authenticate(const request_type& request) const {
        if (no_auth_)
            return {true, "", false};
        const auto given = request.count(http::field::authorization);
        if (given == 0)
            return {false, "", false};
        const std::string_view value = request[http::field::authorization];
        const auto token = bearer_token(value);
        if (given != 1 || !token)
            return {false, "", true};
        // Every digest is compared, whichever matches.
        const digest presented = sha256(*token);
        const client_entry* found = nullptr;
        for (const auto& client : clients_)
            if (CRYPTO_memcmp(presented.data(), client.token_hash.data(), presented.size()) == 0)
                found = &client;
        if (!found)
            return {false, "", true};
        return {true, found->name, true};
    }

private:
    // "Bearer TOKEN", the scheme in any case, TOKEN a b64token (RFC 6750).
    static std::optional<std::string_view> bearer_token(std::string_view value) {
        constexpr std::string_view scheme = "bearer ";
        if (value.size() <= scheme.size() || lower_case(value.substr(0, scheme.size())) != scheme)
            return std::nullopt;
        value.remove_prefix(scheme.size());
        while (!value.empty() && value.front() == ' ')
            value.remove_prefix(1);
        if (value.empty() || value.size() > 512)
            return std::nullopt;
        std::size_t i = 0;
        for (; i < value.size(); ++i) {
            const unsigned char c = static_cast<unsigned char>(value[i]);
            if (!std::isalnum(c) && std::string_view("-._~+/").find(c) == std::string_view::npos)
                break;
        }
        if (i == 0 || value.find_first_not_of('=', i) != std::string_view::npos)
            return std::nullopt;
        return value;
    }

    bool no_auth_;
    std::vector<client_entry> clients_;
    std::set<std::string> hosts_;
    std::set<std::string> origins_;
};

} // namespace example

#endif
