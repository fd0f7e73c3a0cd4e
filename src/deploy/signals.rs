//! The signals `ezforge` sends to what it started: a whole process group (the supervisor's
//! stop) or one process (the sandbox's sweep of a server user's processes). Below both, so
//! that neither imports the other for it.

/// Sends `signal` to a whole process group.
#[allow(unsafe_code)]
pub fn signal_group(pgid: u32, signal: i32) {
    let Ok(pgid) = i32::try_from(pgid) else {
        return;
    };
    if pgid <= 1 {
        return;
    }
    // SAFETY: kill(2) takes plain integers and touches no memory of ours; a negative pid
    // addresses the process group the child leads (it was started with process_group(0)).
    unsafe {
        libc::kill(-pgid, signal);
    }
}

/// Sends SIGKILL to one process (never to init or to a group).
#[allow(unsafe_code)]
pub fn kill_pid(pid: i32) {
    if pid > 1 {
        // SAFETY: kill(2) takes plain integers and touches no memory of ours.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}
