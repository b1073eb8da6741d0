//! Child processes of a harness (the chaos cluster, the bench, the demo, the cli tests).

use std::process::Command;

/// Makes the kernel kill the child (SIGKILL) when the thread that started it dies, so that no node outlives
/// a harness that crashed or was killed. Linux only (`PR_SET_PDEATHSIG`); elsewhere it does nothing.
///
/// The signal follows the death of the spawning *thread*, not only of the process: spawn from a thread that
/// lives as long as the child should.
pub fn die_with_parent(cmd: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: the closure runs in the child between fork and exec, where only async-signal-safe calls
        // are allowed; prctl is one, and the closure allocates nothing and takes no lock.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}
