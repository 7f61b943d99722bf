//! Runs the `rte-smoke` binary (EAL init, bursts, mbufs, rule lowering, flow calls,
//! cleanup) under valgrind: no invalid accesses anywhere and no definite leaks.
//!
//! DPDK keeps some allocations for the life of the process (EAL, driver and plugin state
//! that rte_eal_cleanup does not release), reported as "still reachable" or "possibly
//! lost": only definite leaks count (`--errors-for-leak-kinds=definite`). No suppression
//! file is needed with DPDK 22.11. A second run with a deliberate leak proves the check
//! can fail.

mod common;

use std::process::Command;

#[test]
fn smoke_binary_is_clean_under_valgrind() {
    if Command::new("valgrind").arg("--version").output().is_err() {
        eprintln!("SKIP: valgrind is not installed (apt-get install -y valgrind)");
        return;
    }
    let run_dir = common::RunDir::new("vg");
    let out = valgrind(&run_dir.prefix, false);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "valgrind reported errors (exit {:?}):\n{stdout}\n{stderr}",
        out.status.code()
    );
    assert!(
        stdout.contains("forwarded 3200 packets, 10 flow validations answered ENOSYS"),
        "{stdout}\n{stderr}"
    );
    assert!(stderr.contains("ERROR SUMMARY: 0 errors"), "{stderr}");
    assert!(
        stderr.contains("definitely lost: 0 bytes")
            || stderr.contains("All heap blocks were freed"),
        "{stderr}"
    );
}

fn valgrind(prefix: &str, leak_on_purpose: bool) -> std::process::Output {
    let mut cmd = Command::new("valgrind");
    cmd.args([
        "--error-exitcode=99",
        "--leak-check=full",
        "--errors-for-leak-kinds=definite",
        "--show-leak-kinds=definite",
    ])
    .arg(env!("CARGO_BIN_EXE_rte-smoke"))
    .arg(prefix);
    if leak_on_purpose {
        cmd.arg("--leak-on-purpose");
    }
    cmd.output().expect("run valgrind")
}

#[test]
fn valgrind_check_catches_a_definite_leak() {
    if Command::new("valgrind").arg("--version").output().is_err() {
        eprintln!("SKIP: valgrind is not installed (apt-get install -y valgrind)");
        return;
    }
    let run_dir = common::RunDir::new("vgleak");
    let out = valgrind(&run_dir.prefix, true);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(99),
        "the deliberate leak must fail the run:\n{stderr}"
    );
    assert!(
        stderr.contains("definitely lost: 4,096 bytes in 1 blocks"),
        "{stderr}"
    );
}
