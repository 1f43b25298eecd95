// Seccomp (runtime-spec §3): the BPF program is compiled with libseccomp in the parent, before
// fork; the child only loads the ready program (no allocation between fork and exec).
#pragma once

#include <linux/filter.h>

#include <vector>

#include "openshell/core/result.hpp"

namespace openshell::runtime {

struct SeccompOptions {
  // Spec §3.2 lists the child filter; `allow_user_namespaces` etc. would go here when a policy
  // option needs them. Nothing configurable yet besides the network families.
  bool allow_inet = true;  // AF_INET/AF_INET6 sockets (the child reaches the proxy on loopback)
};

struct SeccompProgram {
  std::vector<sock_filter> instructions;
};

// Parent side: compile the filter (blocked families, blocked calls, flag-conditional blocks,
// clone3 -> ENOSYS, foreign architectures killed, x32 covered; EPERM for blocked calls).
// Errors name the layer ("seccomp: ...").
Result<SeccompProgram> build_seccomp(const SeccompOptions& options);

// Child side, between fork and exec: async-signal-safe. Requires no_new_privs already set (the
// Landlock step sets it; this sets it too). Returns 0 or an errno value.
int apply_seccomp(const SeccompProgram& program) noexcept;

// The bypass monitor's filter (DESIGN.md "Network path"): connect, sendto with an address,
// sendmsg and sendmmsg raise a user notification; everything else passes. It only watches: the
// monitor answers SECCOMP_USER_NOTIF_FLAG_CONTINUE, so each call then fails or succeeds as it
// would have. Errors name the layer ("bypass monitor: ...").
Result<SeccompProgram> build_bypass_filter();

// Child side: installs the filter with a new listener. Must come before the deny filter, which
// refuses seccomp(2). Async-signal-safe; returns the listener fd or a negated errno value.
int install_bypass_filter(const SeccompProgram& program) noexcept;

}  // namespace openshell::runtime
