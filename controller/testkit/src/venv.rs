//! Python virtualenvs with real peers from PyPI (openstack CLI, keystone, tempest, moto,
//! karborclient, p4runtime) for the tests that drive wyvern with them.
//!
//! A venv lives under the build's target dir, so a fresh clone (CI) builds it from PyPI and a
//! developer's later runs reuse it. A marker file named after the exact package list records
//! a completed install: an interrupted install is redone, never half-used. A file lock
//! serialises test processes that want the same venv at the same moment.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// A venv with a pinned package list installed.
#[derive(Debug, Clone)]
pub struct Venv {
    dir: PathBuf,
}

impl Venv {
    /// `<target dir>/venv-<name>` with `packages` (pip requirement strings) installed.
    ///
    /// `target_dir` is any path inside the cargo target dir; pass
    /// `env!("CARGO_TARGET_TMPDIR")` from an integration test.
    pub fn ensure(target_dir: &Path, name: &str, packages: &[&str]) -> Result<Venv> {
        let root = target_root(target_dir);
        std::fs::create_dir_all(&root)
            .with_context(|| format!("failed to create {}", root.display()))?;
        let dir = root.join(format!("venv-{name}"));
        let lock_path = root.join(format!("venv-{name}.lock"));
        let lock = File::create(&lock_path)
            .with_context(|| format!("failed to create {}", lock_path.display()))?;
        lock.lock()
            .with_context(|| format!("failed to lock {}", lock_path.display()))?;
        let marker = dir.join(format!(".installed-{}", marker_name(packages)));
        if marker.exists() {
            return Ok(Venv { dir });
        }
        let _ = std::fs::remove_dir_all(&dir);
        run(
            Command::new("python3").args(["-m", "venv"]).arg(&dir),
            "python3 -m venv (is python3-venv installed?)",
        )?;
        let mut pip = Command::new(dir.join("bin/pip"));
        pip.args(["install", "--disable-pip-version-check", "-q"])
            .args(packages);
        run(&mut pip, &format!("pip install {}", packages.join(" ")))?;
        std::fs::write(&marker, packages.join("\n"))
            .with_context(|| format!("failed to write {}", marker.display()))?;
        Ok(Venv { dir })
    }

    /// The venv's root directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A program installed in the venv (`bin/<name>`).
    pub fn bin(&self, name: &str) -> PathBuf {
        self.dir.join("bin").join(name)
    }

    /// The venv's Python interpreter.
    pub fn python(&self) -> PathBuf {
        self.bin("python")
    }
}

/// `<target>` from `<target>/tmp` (CARGO_TARGET_TMPDIR) or `<target>/<profile>/...`: the first
/// ancestor holding a `CACHEDIR.TAG` (cargo writes one at the target root), else the path itself.
fn target_root(p: &Path) -> PathBuf {
    p.ancestors()
        .find(|a| a.join("CACHEDIR.TAG").exists())
        .unwrap_or(p)
        .to_path_buf()
}

/// A file-name-safe digest of the package list (FNV-1a, so the marker changes with the pins).
fn marker_name(packages: &[&str]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in packages.join("\n").bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("failed to run {what}"))?;
    if !out.status.success() {
        bail!(
            "failed to {what}:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
