// The parser of the SSH host key fingerprints a guest prints on its serial
// console (detail/ssh/console_fingerprints.hpp): cloud-init's block as
// consoles really show it, and console bytes that try to confuse it.
#include <anweddol/detail/ssh/console_scanner.hpp>
#include <anweddol/detail/ssh/fingerprint_text.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <ostream>
#include <random>
#include <string>
#include <vector>

using anweddol::detail::console_host_key;
using anweddol::detail::fingerprints_of;
using anweddol::detail::normalize_sha256_fingerprint;
using anweddol::detail::scan_console;

namespace anweddol::detail {
std::ostream& operator<<(std::ostream& out, const console_host_key& key) {
    return out << key.type << " " << key.fingerprint;
}
} // namespace anweddol::detail

namespace {

// Real ssh-keygen -l output for three keys.
const std::string ed25519 = "SHA256:pvPLIxg3DubizDUKemTJSv9d35jbNzI5dgsNf91uM44";
const std::string ecdsa = "SHA256:grlvoMqMQ8gjyhejG+dcmxoCOuC5aG7wFuPq4WHnUlI";
const std::string rsa = "SHA256:JRhYRXtBP+BfVhpSZWBafNgD9nYUvG3vrxk9o5I8P0Y";
const std::string begin = "-----BEGIN SSH HOST KEY FINGERPRINTS-----";
const std::string end = "-----END SSH HOST KEY FINGERPRINTS-----";
const std::string rule = "#############################################################";

std::string line_ed25519(const std::string& host = "anweddol-container") {
    return "256 " + ed25519 + " root@" + host + " (ED25519)";
}
std::string line_ecdsa(const std::string& host = "anweddol-container") {
    return "256 " + ecdsa + " root@" + host + " (ECDSA)";
}

/// cloud-init's tools/write-ssh-key-fingerprints: its block goes through
/// `logger -s -t ec2`, whose stderr reaches the console with `prefix` before
/// every line, then the public keys, unprefixed.
std::string cloud_init_block(const std::string& prefix, const std::vector<std::string>& lines,
                             const std::string& eol = "\r\n") {
    std::string text = prefix + eol + prefix + rule + eol + prefix + begin + eol;
    for (const auto& line : lines)
        text += prefix + line + eol;
    text += prefix + end + eol + prefix + rule + eol;
    text += "-----BEGIN SSH HOST KEY KEYS-----" + eol +
            "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBK "
            "root@anweddol-container" +
            eol + "-----END SSH HOST KEY KEYS-----" + eol;
    return text;
}

const std::vector<console_host_key> both = {{"ED25519", ed25519}, {"ECDSA", ecdsa}};

} // namespace

TEST_CASE("console fingerprints: cloud-init's block as util-linux logger prints it") {
    const std::string console =
        "[    0.000000] Linux version 6.1.0-28-cloud-amd64\r\n"
        "[    1.234567] virtio_net virtio0 eth0: renamed\r\n" +
        cloud_init_block("<14>Nov 29 16:52:57 ec2: ", {line_ecdsa(), line_ed25519()}) +
        "rcS: container ready\r\n";
    const auto scan = scan_console(console);
    CHECK(scan.host_keys_complete);
    CHECK_FALSE(scan.block_open);
    CHECK(scan.host_keys == std::vector<console_host_key>{{"ECDSA", ecdsa}, {"ED25519", ed25519}});
    CHECK(fingerprints_of(scan.host_keys) == std::vector<std::string>{ecdsa, ed25519});
}

TEST_CASE("console fingerprints: the test guest's serial console, as it was captured") {
    // The end of tests/guest's ISO booting under QEMU, byte for byte: a
    // first boot that panicked, then the block rcS prints; the keys are
    // those `ssh-keyscan | ssh-keygen -l` reported for that guest.
    const std::string console =
        "[    0.072000]  secondary_startup_64_no_verify+0xe4/0xeb\r\n"
        "[    0.072000]  </TASK>\r\n"
        "[    0.072000] Rebooting in 5 seconds..\r\n"
        "[    0.024000] ..MP-BIOS bug: 8254 timer not connected to IO-APIC\r\n"
        "<14>Nov 29 17:02:14 ec2: \r\n"
        "<14>Nov 29 17:02:14 ec2: #############################################################\r\n"
        "<14>Nov 29 17:02:14 ec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----\r\n"
        "<14>Nov 29 17:02:14 ec2: 256 SHA256:/PGG2BKPZnGJSuTIzk/qh/SR/5hjZgux/xPRPGfBsKA "
        "root@anweddol-container (ECDSA)\r\n"
        "<14>Nov 29 17:02:14 ec2: 256 SHA256:nvus0BBqOtJuCRpbNUnMpBmo5LwqZXk53LVWNsgP7hU "
        "root@anweddol-container (ED25519)\r\n"
        "<14>Nov 29 17:02:14 ec2: -----END SSH HOST KEY FINGERPRINTS-----\r\n"
        "<14>Nov 29 17:02:14 ec2: #############################################################\r\n"
        "-----BEGIN SSH HOST KEY KEYS-----\r\n"
        "ecdsa-sha2-nistp256 "
        "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBHnK5tDDsx9B4Du/"
        "W0zr8EZyxIueTdnicPR3BeRyzyTdcufX0oO3MdEYhFOAIIjibwZLaQZcQ48MSuuWBXlwTSc= "
        "root@anweddol-container\r\n"
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAjMCplMBpLVEa42ZyvwrM42SjxLdb1o0QI9WFwbcfPA "
        "root@anweddol-container\r\n"
        "-----END SSH HOST KEY KEYS-----\r\n"
        "udhcpc: started, v1.35.0\r\n"
        "udhcpc: broadcasting discover\r\n"
        "udhcpc: broadcasting select for 10.0.2.15, server 10.0.2.2\r\n"
        "udhcpc: lease of 10.0.2.15 obtained from 10.0.2.2, lease time 86400\r\n"
        "udhcpc: eth0 has 10.0.2.15\r\n"
        "rcS: container ready\r\n";
    const auto scan = scan_console(console);
    CHECK(scan.host_keys_complete);
    CHECK_FALSE(scan.block_open);
    CHECK(scan.host_keys == std::vector<console_host_key>{
                                {"ECDSA", "SHA256:/PGG2BKPZnGJSuTIzk/qh/SR/5hjZgux/xPRPGfBsKA"},
                                {"ED25519", "SHA256:nvus0BBqOtJuCRpbNUnMpBmo5LwqZXk53LVWNsgP7hU"}});
}

TEST_CASE("console fingerprints: whatever relays the lines, the prefix does not matter") {
    const std::vector<std::string> prefixes = {
        "",                                                          // printed by hand
        "ec2: ",                                                     // BSD's and busybox's logger
        "<14>Jan  6 07:30:24 ec2: ",                                 // util-linux logger
        "[   25.123456] cloud-init[612]: ec2: ",                     // journald to the console
        "[   25.123456] cloud-init[612]: <14>Jan  6 07:30:24 ec2: ", // both
        "\tec2:\t",                                                  // tabs
    };
    for (const auto& prefix : prefixes) {
        INFO("prefix: '" << prefix << "'");
        const auto scan = scan_console(cloud_init_block(prefix, {line_ed25519(), line_ecdsa()}));
        CHECK(scan.host_keys_complete);
        CHECK(scan.host_keys == both);
    }
}

TEST_CASE("console fingerprints: LF, CR LF, bare CR and stray control characters end lines as "
          "a terminal shows them") {
    for (const std::string eol : {"\n", "\r\n", "\r", "\r\r\n", "\n\r"}) {
        INFO("end of line: " << (eol == "\n" ? "LF" : eol == "\r\n" ? "CR LF" : "other"));
        const auto scan =
            scan_console(cloud_init_block("ec2: ", {line_ed25519(), line_ecdsa()}, eol));
        CHECK(scan.host_keys == both);
    }
    // NULs, BEL and DEL inside lines are dropped; trailing blanks ignored.
    std::string console = "ec2: " + begin + "  \r\nec2: 256 " + ed25519 +
                          " root@h\a (ED25519)\x7f\t \r\nec2: " + end + "\r\n";
    console.insert(console.find("KEY ") + 3, 1, '\0');
    REQUIRE(console.find('\0') != std::string::npos);
    const auto scan = scan_console(console);
    CHECK(scan.host_keys_complete);
    CHECK(scan.host_keys == std::vector<console_host_key>{{"ED25519", ed25519}});
}

TEST_CASE("console fingerprints: ANSI escape sequences are not part of the text") {
    const std::string console = "\x1b[0;32m[  OK  ]\x1b[0m Started cloud-final.service\r\n"
                                "\x1b]0;anweddol-container\a\x1b[1mec2: " +
                                begin + "\x1b[0m\r\n" + "\x1b[2K\rec2: 256 " + ed25519 +
                                " root@h \x1b[1;31m(ED25519)\x1b[0m\r\n" + "\x1b(Bec2: 256 " +
                                ecdsa + " root@h (ECDSA)\x1b[K\r\n" +
                                "\x1b]2;title\x1b\\ec2: " + end + "\r\n";
    const auto scan = scan_console(console);
    CHECK(scan.host_keys_complete);
    CHECK(scan.host_keys == both);

    // An escape sequence left open swallows no more than its own line.
    const std::string unterminated = "ec2: " + begin + "\r\n\x1b]0;no end\r\n\x1b[12;\r\n" +
                                     line_ed25519() + "\r\n" + end + "\r\n";
    CHECK(scan_console(unterminated).host_keys ==
          std::vector<console_host_key>{{"ED25519", ed25519}});
}

TEST_CASE("console fingerprints: kernel messages interleaved with the block are skipped") {
    const std::string console =
        "ec2: " + begin + "\n" + "[    3.141592] random: crng init done\n" +
        "ec2: " + line_ed25519() + "\n" + "[    3.200000] virtio_net: SHA256: (offload) 256 (X)\n" +
        "udhcpc: sending discover\n" + "ec2: " + line_ecdsa() + "\n" + "ec2: " + end + "\n";
    const auto scan = scan_console(console);
    CHECK(scan.host_keys == both);
}

TEST_CASE("console fingerprints: a block still arriving is not trusted yet") {
    const std::string full = cloud_init_block("ec2: ", {line_ed25519(), line_ecdsa()});
    // Every prefix of the output: no keys until the END marker's line ends
    // (or the text stops right after it), and never a partial set.
    const std::size_t end_at = full.find(end);
    for (std::size_t size = 0; size <= full.size(); ++size) {
        const auto scan = scan_console(std::string_view(full).substr(0, size));
        if (size < end_at + end.size()) {
            INFO("first " << size << " bytes");
            CHECK_FALSE(scan.host_keys_complete);
            CHECK(scan.host_keys.empty());
            CHECK(scan.block_open == (size >= full.find(begin) + begin.size()));
        } else {
            CHECK(scan.host_keys_complete);
            CHECK_FALSE(scan.block_open);
            CHECK(scan.host_keys == both);
        }
    }
}

TEST_CASE("console fingerprints: the first complete block counts, a later one changes nothing") {
    const std::string first = cloud_init_block("ec2: ", {line_ed25519()});
    const std::string second = cloud_init_block("ec2: ", {line_ecdsa()});
    // A later block (another boot's, or injected by a process of the guest)
    // does not replace the first: the old parser took the last one.
    auto scan = scan_console(first + "reboot: Restarting system\r\n" + second);
    CHECK(scan.host_keys == std::vector<console_host_key>{{"ED25519", ed25519}});
    CHECK_FALSE(scan.block_open);

    // Nor does a later block that has begun keep the first one from being
    // trusted.
    scan = scan_console(first + "ec2: " + begin + "\r\nec2: " + line_ecdsa());
    CHECK(scan.host_keys_complete);
    CHECK_FALSE(scan.block_open);
    CHECK(scan.host_keys == std::vector<console_host_key>{{"ED25519", ed25519}});

    // A block cut off (by a reboot) never counts, not even merged with the next.
    scan = scan_console("ec2: " + begin + "\r\nec2: " + line_ed25519() +
                        "\r\n[    0.000000] Linux version\r\n" + second);
    CHECK(scan.host_keys == std::vector<console_host_key>{{"ECDSA", ecdsa}});
}

TEST_CASE("console fingerprints: only well-formed SHA-256 lines inside a block count") {
    const std::vector<std::string> rejected = {
        // MD5, as old and new ssh-keygen print it
        "2048 d0:10:ba:b4:56:38:c1:36:00:74:b6:3d:52:ee:ad:30 /etc/ssh/ssh_host_rsa_key.pub (RSA)",
        "256 MD5:d0:10:ba:b4:56:38:c1:36:00:74:b6:3d:52:ee:ad:30 root@h (ED25519)",
        "256 SHA512:" + ed25519.substr(7) + " root@h (ED25519)",
        "256 " + ed25519.substr(0, ed25519.size() - 1) + " root@h (ED25519)",  // 42 characters
        "256 " + ed25519 + "A root@h (ED25519)",                               // 44
        "256 " + ed25519.substr(0, ed25519.size() - 1) + "5 root@h (ED25519)", // not canonical
        "256 " + ed25519.substr(0, 20) + "*" + ed25519.substr(21) + " root@h (ED25519)",
        "256 " + ed25519 + " root@h",                   // no type
        "256 " + ed25519 + " root@h (ed25519)",         // not as ssh-keygen prints it
        "256 " + ed25519 + " root@h ()",                // empty type
        "256 " + ed25519 + " root@h (ED25519) trailer", // the type is not last
        "256 " + ed25519 + " (ED25519)",                // no comment at all
        ed25519 + " root@h (ED25519)",                  // no size
        "x256 " + ed25519 + " root@h (ED25519)",        // the size glued to something
        "1234567 " + ed25519 + " root@h (ED25519)",     // no key has that many bits
        "256  " + ed25519 + " root@h (ED25519)",        // two spaces
        "256 " + ed25519 + "root@h (ED25519)",          // glued to the comment
        "256 " + ed25519 + " root@h(ED25519)",          // type glued to the comment
    };
    for (const auto& line : rejected) {
        INFO(line);
        const auto scan = scan_console(begin + "\n" + line + "\n" + end + "\n");
        CHECK(scan.host_keys_complete);
        CHECK(scan.host_keys.empty());
    }
    // Accepted: '=' padding, a comment with spaces, RSA's bits, "-SK" types.
    const auto scan = scan_console(begin + "\n256 " + ed25519 + "= no comment (ED25519)\n3072 " +
                                   rsa + " root@host with spaces (RSA)\n256 " + ecdsa +
                                   " sk (ECDSA-SK)\n" + end + "\n");
    CHECK(scan.host_keys ==
          std::vector<console_host_key>{{"ED25519", ed25519}, {"RSA", rsa}, {"ECDSA-SK", ecdsa}});
}

TEST_CASE("console fingerprints: lines outside a block, stray markers and repeats do not count") {
    const std::string console = line_ed25519() + "\n" + end + "\n" + "ec2: " + begin + "\n" +
                                line_ecdsa() + "\n" + line_ecdsa() + "\n" + end + "\n" +
                                line_ed25519() + "\n" + end + "\n" +
                                "-----BEGIN SSH HOST KEY FINGERPRINTS----- and more\n";
    const auto scan = scan_console(console);
    CHECK(scan.host_keys_complete);
    CHECK_FALSE(scan.block_open); // the marker was not at the end of its line
    CHECK(scan.host_keys == std::vector<console_host_key>{{"ECDSA", ecdsa}});

    CHECK_FALSE(scan_console("").host_keys_complete);
    CHECK_FALSE(scan_console(line_ed25519() + "\n").host_keys_complete);
    const auto empty_block = scan_console(begin + "\n" + end);
    CHECK(empty_block.host_keys_complete);
    CHECK(empty_block.host_keys.empty());
}

TEST_CASE("console fingerprints: random bytes never crash it nor make up a key") {
    std::mt19937_64 random(20261129);
    std::uniform_int_distribution<int> byte(0, 255);
    const std::string alphabet = "\x1b[];()\r\n -:SHA256=+/0123456789AEIMQUYcgkosw";
    std::uniform_int_distribution<std::size_t> pick(0, alphabet.size() - 1);
    const std::string block = cloud_init_block("ec2: ", {line_ed25519(), line_ecdsa()});
    for (int round = 0; round < 2000; ++round) {
        std::string noise(static_cast<std::size_t>(byte(random)) * 8, '\0');
        for (auto& c : noise)
            c = round % 2 ? static_cast<char>(byte(random)) : alphabet[pick(random)];
        // Noise alone: whatever it finds is well formed.
        const auto scan = scan_console(noise);
        for (const auto& key : scan.host_keys) {
            CHECK(normalize_sha256_fingerprint(key.fingerprint) == key.fingerprint);
            CHECK_FALSE(key.type.empty());
        }
        // A real block after the noise (on a line of its own) is found whole.
        const auto found = scan_console(noise + "\r\n" + block + noise);
        REQUIRE(found.host_keys_complete);
        CHECK(found.host_keys == both);
    }
    // Long inputs without a line end or with endless escapes: linear work.
    CHECK_FALSE(scan_console(std::string(4 << 20, 'A')).host_keys_complete);
    std::string escapes;
    for (int i = 0; i < 200000; ++i)
        escapes += "\x1b[1;";
    CHECK(scan_console(escapes + "\n" + block).host_keys == both);
}

TEST_CASE("normalize_sha256_fingerprint accepts what ssh-keygen prints, and nothing else") {
    const std::string base64 = ed25519.substr(7);
    CHECK(normalize_sha256_fingerprint(ed25519) == ed25519);
    CHECK(normalize_sha256_fingerprint(base64) == ed25519);
    CHECK(normalize_sha256_fingerprint(ed25519 + "=") == ed25519);
    CHECK(normalize_sha256_fingerprint(base64 + "=") == ed25519);
    CHECK_FALSE(normalize_sha256_fingerprint(""));
    CHECK_FALSE(normalize_sha256_fingerprint("SHA256:"));
    CHECK_FALSE(normalize_sha256_fingerprint(ed25519 + "=="));
    CHECK_FALSE(normalize_sha256_fingerprint("sha256:" + base64));
    CHECK_FALSE(
        normalize_sha256_fingerprint("MD5:d0:10:ba:b4:56:38:c1:36:00:74:b6:3d:52:ee:ad:30"));
    CHECK_FALSE(normalize_sha256_fingerprint(" " + ed25519));
    CHECK_FALSE(normalize_sha256_fingerprint(ed25519.substr(0, ed25519.size() - 1) + "B"));
}
