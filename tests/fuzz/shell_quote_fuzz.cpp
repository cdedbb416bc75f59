// shell_quote: whatever the bytes (but NUL, which no shell word can hold),
// a POSIX shell reading the quoted word gets one word with exactly those
// bytes. The oracle is the real thing: the guest's shell (busybox ash) and
// the host's /bin/sh, each run on every input.
#include "fuzz_support.hpp"

#include <anweddol/detail/ssh/shell_quote.hpp>

#include <algorithm>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace anweddol::fuzz;
    std::string value(reinterpret_cast<const char*>(data), size);
    std::erase(value, '\0');
    const std::string quoted = anweddol::detail::shell_quote(value);
    ANWEDDOL_FUZZ_CHECK(quoted.size() >= 2 && quoted.front() == '\'' && quoted.back() == '\'',
                        escaped(quoted));
    // As the setup command uses it: a word among others. `$#` says the
    // shell saw one word, and printf gives it back byte for byte.
    const std::string script = "set -- " + quoted + "; printf '%s\\0%s' \"$#\" \"$1\"";
    const std::string expected = std::string("1") + '\0' + value;
    for (const auto& shell : posix_shells()) {
        const shell_result got = run_shell(shell, script);
        ANWEDDOL_FUZZ_CHECK(got.status == 0 && got.out == expected,
                            shell[0] + " read " + escaped(got.out) + " (status " +
                                std::to_string(got.status) + ") from " + escaped(quoted) +
                                ", expected 1\\x00" + escaped(value));
    }
    return 0;
}
