// The random secrets the server hands out, and the hashes it keeps of them:
// client tokens, access tokens, container SSH credentials, SHA-256 digests
// (of a token, and of the container ISO, hashed once at start). Every
// random byte comes from OpenSSL's CSPRNG (RAND_bytes).
#ifndef ANWEDDOL_SERVER_TOKENS_HPP
#define ANWEDDOL_SERVER_TOKENS_HPP

#include <anweddol/secret.hpp>

#include <filesystem>
#include <string>
#include <string_view>

namespace anweddol::server {

// The client token CREATE hands out, as the reference's
// secrets.token_urlsafe(191): 191 random bytes in base64url without padding,
// 255 characters matching ^[0-9a-zA-Z_-]{255}$ (the length both the client's
// and the server's validators demand). Throws std::runtime_error when the
// CSPRNG fails.
secret generate_client_token();

// An access token, as the reference's tools/access_token.py makes them
// (secrets.token_urlsafe(93)): 93 random bytes, base64url without padding,
// 124 characters. Throws std::runtime_error when the CSPRNG fails.
secret generate_access_token();

// The SSH user a container's client logs in as: "user_" and 5 digits,
// uniform over 10000..99999 (the reference draws from 10000..90000; the
// client's validator only asks for ^user_[0-9]{5}$).
std::string generate_container_username();

// That user's password: 120 characters (the reference's
// DEFAULT_CONTAINER_CLIENT_SSH_PASSWORD_LENGTH) uniform over [A-Za-z0-9],
// the alphabet the client's validator accepts.
secret generate_container_password();

// SHA-256 of `bytes`, 64 lower-case hex digits: how tokens are stored (as
// the reference's hashlib.sha256(token.encode()).hexdigest(), so that an
// access token database written by the reference stays valid).
std::string sha256_hex(std::string_view bytes);

// SHA-256 of a file's contents, read in blocks (an ISO is hundreds of MB).
// Blocking: call it once, at start, or on a worker thread. Throws
// std::system_error naming the file when it cannot be opened or read.
std::string file_sha256_hex(const std::filesystem::path& file);

// Whether `a` and `b` are equal, in a time that depends on their lengths
// only, never on where they differ (CRYPTO_memcmp): for comparing a stored
// hash with a presented one.
bool constant_time_equal(std::string_view a, std::string_view b) noexcept;

} // namespace anweddol::server

#endif
