// The cost of reading a guest's console as it arrives (issue 19, section 3):
// 1 MiB of console output, in the 4 KiB pieces libvirt's stream hands over,
// into the log's 8 KiB ring with its scanner, beside the ring's copy alone
// (the scanner's own share is the difference). The reading it replaced
// parsed the whole ring's text every 100 ms: 0.84 s per parse of a 1 MiB
// ring. Each byte is looked at once, so the time per MiB stays flat
// whatever the line lengths; the runs below vary them to show it.
//
// Usage: console_scan_benchmark [rounds]
#include "../common/statistics.hpp"

#include <anweddol/detail/libvirt/console_log.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace {

// 1 MiB of lines of `line_bytes`, with escape sequences, CR LF and a
// host-key block in the middle.
std::string console_output(std::size_t line_bytes) {
    std::string text;
    const std::string block =
        "<14>Nov 29 17:02:14 ec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----\r\n"
        "<14>Nov 29 17:02:14 ec2: 256 SHA256:pvPLIxg3DubizDUKemTJSv9d35jbNzI5dgsNf91uM44 "
        "root@h (ED25519)\r\n"
        "<14>Nov 29 17:02:14 ec2: -----END SSH HOST KEY FINGERPRINTS-----\r\n";
    while (text.size() < (1u << 20)) {
        if (text.size() >= (1u << 19) && text.find("BEGIN SSH") == std::string::npos)
            text += block;
        text += "\x1b[0m" + std::string(line_bytes, 'k') + "\r\n";
    }
    return text;
}

template <class Append>
double seconds_per_mib(const std::string& text, int rounds, Append append) {
    std::vector<double> runs;
    for (int round = 0; round < rounds; ++round) {
        const auto began = std::chrono::steady_clock::now();
        append(text);
        runs.push_back(anweddol::bench::seconds(std::chrono::steady_clock::now() - began) *
                       static_cast<double>(1u << 20) / static_cast<double>(text.size()));
    }
    return anweddol::bench::percentile(runs, 0.5);
}

} // namespace

int main(int argc, char** argv) {
    const int rounds = argc > 1 ? std::atoi(argv[1]) : 20;
    std::printf("%12s %16s %16s %10s\n", "line bytes", "ring+scan ms/MiB", "ring only ms/MiB",
                "keys");
    for (const std::size_t line_bytes : {10u, 80u, 1000u, 8000u}) {
        const std::string text = console_output(line_bytes);
        std::size_t keys = 0;
        const double scanned = seconds_per_mib(text, rounds, [&](const std::string& t) {
            anweddol::detail::console_ring ring(8192);
            for (std::size_t at = 0; at < t.size(); at += 4096)
                ring.append(std::string_view(t).substr(at, 4096));
            keys = ring.announcement().host_keys.size();
        });
        // The ring's copy alone: the same appends into a plain 8 KiB tail.
        const double copied = seconds_per_mib(text, rounds, [&](const std::string& t) {
            std::string tail;
            for (std::size_t at = 0; at < t.size(); at += 4096) {
                tail += std::string_view(t).substr(at, 4096);
                if (tail.size() > 8192)
                    tail.erase(0, tail.size() - 8192);
            }
        });
        std::printf("%12zu %16.3f %16.3f %10zu\n", line_bytes, scanned * 1e3, copied * 1e3, keys);
    }
}
