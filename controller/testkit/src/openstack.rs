//! The real `openstack` CLI (python-openstackclient from PyPI, in the shared OpenStack venv)
//! as the tests drive it: without auth straight at an endpoint, or with Keystone password
//! auth through the catalog. Only the flags given here reach the client: `OS_*` variables and
//! cloud configs of the machine running the test are ignored.
//!
//! `run`, `json` and `fails` are test assertions: they panic (at the caller) with the
//! client's output when the command does not do what the test expects.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, Result};
use serde_json::Value;

use crate::keystone::{OPENSTACK_PACKAGES, OPENSTACK_VENV};
use crate::venv::Venv;

/// How the client authenticates.
#[derive(Debug, Clone)]
pub enum OsAuth {
    /// `--os-auth-type none --os-endpoint URL`: straight at a Neutron-compatible endpoint.
    None { endpoint: String },
    /// Keystone v3 password auth (`--os-auth-url`, user, password, project, all in the
    /// `Default` domain); the network endpoint comes from the catalog of `region`.
    Password {
        auth_url: String,
        username: String,
        password: String,
        project: String,
        region: String,
    },
}

impl OsAuth {
    fn args(&self) -> Vec<&str> {
        match self {
            OsAuth::None { endpoint } => vec!["--os-auth-type", "none", "--os-endpoint", endpoint],
            OsAuth::Password {
                auth_url,
                username,
                password,
                project,
                region,
            } => vec![
                "--os-auth-url",
                auth_url,
                "--os-identity-api-version",
                "3",
                "--os-username",
                username,
                "--os-password",
                password,
                "--os-project-name",
                project,
                "--os-user-domain-name",
                "Default",
                "--os-project-domain-name",
                "Default",
                "--os-region-name",
                region,
            ],
        }
    }
}

/// One authenticated `openstack` client.
#[derive(Debug, Clone)]
pub struct Os {
    bin: PathBuf,
    auth: OsAuth,
}

impl Os {
    /// The client of `venv` (see [`Os::venv`]) with `auth`.
    pub fn new(venv: &Venv, auth: OsAuth) -> Os {
        Os {
            bin: venv.bin("openstack"),
            auth,
        }
    }

    /// The OpenStack venv (Keystone, the CLI, tempest; installed on first use, shared with the
    /// Keystone harness). `target_dir`: `env!("CARGO_TARGET_TMPDIR")` of the test.
    pub fn venv(target_dir: &Path) -> Result<Venv> {
        Venv::ensure(target_dir, OPENSTACK_VENV, OPENSTACK_PACKAGES)
    }

    /// Runs `openstack <auth flags> <args>` and returns what it did.
    pub fn command(&self, args: &[&str]) -> Result<Output> {
        let mut cmd = Command::new(&self.bin);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("OS_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("OS_CLIENT_CONFIG_FILE", "/dev/null")
            .args(self.auth.args())
            .args(args)
            .output()
            .with_context(|| format!("failed to run {} {args:?}", self.bin.display()))
    }

    #[track_caller]
    fn output(&self, args: &[&str]) -> Output {
        match self.command(args) {
            Ok(o) => o,
            Err(e) => panic!("{e:#}"),
        }
    }

    /// Runs a command that must succeed (its output is not looked at).
    #[track_caller]
    pub fn run(&self, args: &[&str]) {
        let out = self.output(args);
        assert!(
            out.status.success(),
            "openstack {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs a command with `-f json` that must succeed, and parses what it prints.
    #[track_caller]
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-f", "json"]);
        let out = self.output(&all);
        assert!(
            out.status.success(),
            "openstack {all:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        match serde_json::from_slice(&out.stdout) {
            Ok(v) => v,
            Err(e) => panic!(
                "openstack {all:?}: not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            ),
        }
    }

    /// Runs a command that must fail; returns its stderr.
    #[track_caller]
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.output(args);
        assert!(
            !out.status.success(),
            "openstack {args:?} should have failed:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}
