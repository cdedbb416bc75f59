//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_COMMAND_RESULT_HPP
#define ANWEDDOL_COMMAND_RESULT_HPP

/// anweddol::command_result (std_out, std_err, exit_status, exit_signal),
/// anweddol::output_stream and anweddol::command_options: what a remote
/// command printed and how it ended, and how it runs.
#include <anweddol/detail/ssh/command_result.hpp>

#endif
