//! System calls a confined program may not make, filtered by seccomp in the launcher. Landlock
//! covers files, binding, signals and tracing; these are the calls that would reach beyond the
//! program all the same: changing other processes' limits and scheduling (ezforge's own, when it
//! runs as the same user), new namespaces (a larger kernel surface), the shared kernel keyring,
//! io_uring, and, for a stdio server, listening at all (`listen` on an unbound socket takes a
//! port that Landlock's bind rule never sees).

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

/// Installs the filters; the program inherits them and cannot remove them.
pub fn apply(may_listen: bool) -> Result<(), String> {
    let arch = std::env::consts::ARCH.try_into().map_err(|_| {
        format!(
            "no seccomp filter for this architecture ({})",
            std::env::consts::ARCH
        )
    })?;
    fn fail(e: impl std::fmt::Display) -> String {
        format!("cannot build the seccomp filter: {e}")
    }
    let refused = SeccompFilter::new(
        refused_calls(may_listen).map_err(fail)?,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(fail)?;
    // clone3 passes its flags in memory, out of a filter's reach: "not implemented" makes the
    // C library fall back to clone, whose flags the filter above reads.
    let clone3 = SeccompFilter::new(
        BTreeMap::from([(libc::SYS_clone3, vec![])]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .map_err(fail)?;
    let mut programs = Vec::new();
    for filter in [refused, clone3] {
        programs.push(BpfProgram::try_from(filter).map_err(fail)?);
    }
    if std::env::consts::ARCH == "x86_64" {
        programs.push(no_x32_calls());
    }
    for program in programs {
        seccompiler::apply_filter(&program)
            .map_err(|e| format!("cannot install the seccomp filter: {e}"))?;
    }
    Ok(())
}

/// On x86_64, the x32 ABI's calls: the same architecture, their numbers with bit 30 set, so
/// the filters above (which match exact numbers) would let `unshare` or `bpf` through under
/// another number on a kernel built with x32. All of them are refused ("not implemented").
fn no_x32_calls() -> BpfProgram {
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const JSET_K: u16 = 0x45; // BPF_JMP | BPF_JSET | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    let op = |code, jt, jf, k| seccompiler::sock_filter { code, jt, jf, k };
    vec![
        op(LD_W_ABS, 0, 0, 4), // seccomp_data.arch
        op(JEQ_K, 0, 3, AUDIT_ARCH_X86_64),
        op(LD_W_ABS, 0, 0, 0), // seccomp_data.nr
        op(JSET_K, 0, 1, X32_SYSCALL_BIT),
        op(RET_K, 0, 0, libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
        op(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ]
}

type Rules = BTreeMap<i64, Vec<SeccompRule>>;

fn refused_calls(may_listen: bool) -> Result<Rules, seccompiler::BackendError> {
    let arg_not_zero = |arg: u8| -> Result<Vec<SeccompRule>, seccompiler::BackendError> {
        Ok(vec![SeccompRule::new(vec![SeccompCondition::new(
            arg,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::Ne,
            0,
        )?])?])
    };
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    // Another process's limits, priority, CPUs, memory: only its own (pid 0).
    for call in [
        libc::SYS_prlimit64,
        libc::SYS_sched_setaffinity,
        libc::SYS_sched_setscheduler,
        libc::SYS_sched_setparam,
        libc::SYS_sched_setattr,
        libc::SYS_migrate_pages,
        libc::SYS_move_pages,
    ] {
        rules.insert(call, arg_not_zero(0)?);
    }
    // setpriority(which, who, prio) and ioprio_set(which, who, prio): `who` 0 is itself.
    rules.insert(libc::SYS_setpriority, arg_not_zero(1)?);
    rules.insert(libc::SYS_ioprio_set, arg_not_zero(1)?);
    // New namespaces, by clone's flags (clone3 is turned away separately).
    let namespaces = [
        libc::CLONE_NEWUSER,
        libc::CLONE_NEWNS,
        libc::CLONE_NEWNET,
        libc::CLONE_NEWPID,
        libc::CLONE_NEWIPC,
        libc::CLONE_NEWUTS,
        libc::CLONE_NEWCGROUP,
    ];
    let mut clone = Vec::new();
    for flag in namespaces {
        let flag = flag as u64;
        clone.push(SeccompRule::new(vec![SeccompCondition::new(
            0,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(flag),
            flag,
        )?])?);
    }
    rules.insert(libc::SYS_clone, clone);
    // Refused whatever their arguments.
    let mut always = vec![
        libc::SYS_unshare,
        libc::SYS_setns,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_userfaultfd,
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_chroot,
        libc::SYS_fsopen,
        libc::SYS_fsmount,
        libc::SYS_open_tree,
        libc::SYS_move_mount,
    ];
    if !may_listen {
        always.push(libc::SYS_listen);
    }
    for call in always {
        rules.insert(call, vec![]);
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a program made of loads, `jeq`, `jset` and returns on (arch, nr).
    fn run(program: &BpfProgram, arch: u32, nr: u32) -> u32 {
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let op = &program[pc];
            let jump = |taken: bool| pc + 1 + usize::from(if taken { op.jt } else { op.jf });
            match op.code {
                0x20 => (acc, pc) = (if op.k == 4 { arch } else { nr }, pc + 1),
                0x15 => pc = jump(acc == op.k),
                0x45 => pc = jump(acc & op.k != 0),
                0x06 => return op.k,
                other => panic!("unexpected instruction {other:#x}"),
            }
        }
    }

    #[test]
    fn x32_calls_are_refused_and_native_ones_left_to_the_other_filters() {
        let program = no_x32_calls();
        let denied = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
        let x86_64 = 0xc000_003e;
        assert_eq!(run(&program, x86_64, 0x4000_0000 | 272), denied);
        assert_eq!(run(&program, x86_64, 0x4000_0000), denied);
        assert_eq!(run(&program, x86_64, 272), libc::SECCOMP_RET_ALLOW);
        assert_eq!(
            run(&program, 0x4000_0003, 0x4000_0000 | 5),
            libc::SECCOMP_RET_ALLOW
        );
    }

    #[test]
    fn the_filters_build_for_this_machine() {
        let arch = std::env::consts::ARCH
            .try_into()
            .expect("a supported architecture");
        for may_listen in [true, false] {
            let rules = refused_calls(may_listen).expect("rules");
            assert_eq!(rules.contains_key(&libc::SYS_listen), !may_listen);
            let filter = SeccompFilter::new(
                rules,
                SeccompAction::Allow,
                SeccompAction::Errno(libc::EPERM as u32),
                arch,
            )
            .expect("filter");
            let program: BpfProgram = filter.try_into().expect("compiles");
            assert!(!program.is_empty());
        }
    }
}
