# ANWEDDOL_SANITIZE: build this project's own programs (the compiled library,
# the tests, and whatever else is built in that tree) with GCC's sanitizers.
#   -DANWEDDOL_SANITIZE=address,undefined   AddressSanitizer (with LeakSanitizer)
#                                           and UndefinedBehaviorSanitizer
#   -DANWEDDOL_SANITIZE=thread              ThreadSanitizer
# Use a build directory of its own: every object changes. Any report fails
# the program (-fno-sanitize-recover, and halt_on_error in scripts/test.sh).
set(ANWEDDOL_SANITIZE "" CACHE STRING
    "Sanitizers for the project's own programs: address,undefined or thread (empty: none)")

if(ANWEDDOL_SANITIZE)
  set(flags -fsanitize=${ANWEDDOL_SANITIZE} -fno-sanitize-recover=all
      -fno-omit-frame-pointer)
  add_compile_options(${flags})
  add_link_options(${flags})
  # Warnings that only the sanitizers' instrumentation brings, each turned
  # off here alone:
  # - maybe-uninitialized: ASan's and UBSan's instrumentation defeats GCC 12's
  #   flow analysis, which then flags <regex> code that Catch2 instantiates;
  #   not code of ours.
  # - tsan: GCC warns that ThreadSanitizer does not model
  #   std::atomic_thread_fence, which Asio's and Boost's headers use.
  # - mismatched-new-delete: the instrumented inlining of Asio's coroutine
  #   frame allocator (awaitable_frame's operator new and delete, which use
  #   aligned_new/aligned_delete) shows GCC 12 a free() it cannot match.
  add_compile_options(-Wno-maybe-uninitialized -Wno-mismatched-new-delete)
  if(ANWEDDOL_SANITIZE MATCHES "thread")
    add_compile_options(-Wno-tsan)
  endif()
endif()
