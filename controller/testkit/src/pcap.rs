//! Classic pcap files and DPDK run directories for the tests that drive DPDK's pcap PMD
//! (the fast path, wyvern-p4d, wyvernd's P4 back end). No DPDK dependency: a test writes
//! the input frames here, the PMD reads them, and the PMD's output file is read back here.

use std::path::{Path, PathBuf};

/// Microsecond-resolution pcap magic (what [`write`] produces).
const MAGIC_US: u32 = 0xa1b2_c3d4;
/// Nanosecond-resolution pcap magic (what DPDK's pcap PMD writes on some builds).
const MAGIC_NS: u32 = 0xa1b2_3c4d;
const FILE_HEADER: usize = 24;
const RECORD_HEADER: usize = 16;

/// Writes a classic pcap file (microsecond timestamps, Ethernet link type) holding
/// `frames` in order.
pub fn write(path: &Path, frames: &[Vec<u8>]) -> std::io::Result<()> {
    let mut out =
        Vec::with_capacity(FILE_HEADER + frames.iter().map(|f| f.len() + 16).sum::<usize>());
    out.extend_from_slice(&MAGIC_US.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes()); // version 2.4
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes()); // GMT offset
    out.extend_from_slice(&0u32.to_le_bytes()); // accuracy
    out.extend_from_slice(&65535u32.to_le_bytes()); // snap length
    out.extend_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
    for (i, f) in frames.iter().enumerate() {
        out.extend_from_slice(&1_700_000_000u32.to_le_bytes());
        out.extend_from_slice(&(i as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
    }
    std::fs::write(path, out)
}

/// Reads every frame of a finished pcap file (micro- or nanosecond magic, little-endian).
/// A missing header, an unknown magic or a truncated record is an error: use this once the
/// writer has closed the file.
pub fn read(path: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let bytes = std::fs::read(path)?;
    anyhow::ensure!(bytes.len() >= FILE_HEADER, "{path:?}: no pcap header");
    let (frames, complete) = parse(path, &bytes)?;
    anyhow::ensure!(complete, "{path:?}: truncated record");
    Ok(frames)
}

/// The frames a pcap file holds so far, for polling a file a running PMD is still writing:
/// a file not created yet, a header not written yet or a record still being written gives
/// fewer frames, never an error. An unknown magic is a broken test setup and panics.
pub fn read_available(path: &Path) -> Vec<Vec<u8>> {
    let Ok(bytes) = std::fs::read(path) else {
        return Vec::new();
    };
    if bytes.len() < FILE_HEADER {
        return Vec::new();
    }
    match parse(path, &bytes) {
        Ok((frames, _)) => frames,
        Err(e) => panic!("{e:#}"),
    }
}

/// The complete records of `bytes` (header already length-checked), and whether the file
/// ended exactly after the last one.
fn parse(path: &Path, bytes: &[u8]) -> anyhow::Result<(Vec<Vec<u8>>, bool)> {
    let magic = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    anyhow::ensure!(
        magic == MAGIC_US || magic == MAGIC_NS,
        "{path:?}: unknown pcap magic {magic:#x}"
    );
    let mut at = FILE_HEADER;
    let mut frames = Vec::new();
    while at + RECORD_HEADER <= bytes.len() {
        let incl =
            u32::from_le_bytes([bytes[at + 8], bytes[at + 9], bytes[at + 10], bytes[at + 11]])
                as usize;
        let start = at + RECORD_HEADER;
        if start + incl > bytes.len() {
            return Ok((frames, false));
        }
        frames.push(bytes[start..start + incl].to_vec());
        at = start + incl;
    }
    Ok((frames, at == bytes.len()))
}

/// Removes `/var/run/dpdk/<prefix>` when dropped: DPDK's EAL leaves its runtime files there
/// for every `--file-prefix`, and tests use a unique prefix per process.
pub struct DpdkRunDir {
    /// The value to pass as `--file-prefix`.
    pub prefix: String,
}

impl DpdkRunDir {
    /// A prefix unique to this test process and purpose: `wyv-<purpose>-<pid>`.
    pub fn new(purpose: &str) -> DpdkRunDir {
        DpdkRunDir {
            prefix: format!("wyv-{purpose}-{}", std::process::id()),
        }
    }

    /// The directory the EAL creates for this prefix.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/var/run/dpdk").join(&self.prefix)
    }

    /// EAL arguments for one lcore without hugepages or PCI (what runs here), quiet logs and
    /// this prefix, followed by `vdevs` (`--vdev=...`).
    pub fn eal_args(&self, vdevs: impl IntoIterator<Item = String>) -> Vec<String> {
        let mut args: Vec<String> = [
            "--no-huge",
            "--no-pci",
            "-m",
            "512",
            "--file-prefix",
            &self.prefix,
            "-l",
            "0",
            "--no-telemetry",
            "--log-level=warning",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(vdevs);
        args
    }
}

impl Drop for DpdkRunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.path());
    }
}

/// A temporary directory of pcap files wired as DPDK pcap ports for one EAL process:
/// port 0 replays the given input frames, every other port replays nothing, and port `i`
/// writes what it transmits to `out<i>.pcap`.
pub struct PcapPorts {
    dir: tempfile::TempDir,
    run_dir: DpdkRunDir,
    ports: usize,
}

impl PcapPorts {
    /// Writes the input files; `purpose` makes the EAL's `--file-prefix` unique.
    pub fn new(purpose: &str, input: &[Vec<u8>], ports: usize) -> anyhow::Result<PcapPorts> {
        let dir = tempfile::tempdir()?;
        write(&dir.path().join("in0.pcap"), input)?;
        write(&dir.path().join("empty.pcap"), &[])?;
        Ok(PcapPorts {
            dir,
            run_dir: DpdkRunDir::new(purpose),
            ports,
        })
    }

    /// The EAL arguments for these ports on one lcore without hugepages or PCI (what runs
    /// here), quiet logs, and the unique file prefix.
    pub fn eal_args(&self) -> Vec<String> {
        self.run_dir.eal_args((0..self.ports).map(|i| {
            let rx = if i == 0 { "in0.pcap" } else { "empty.pcap" };
            format!(
                "--vdev=net_pcap{i},rx_pcap={},tx_pcap={}",
                self.dir.path().join(rx).display(),
                self.output(i).display()
            )
        }))
    }

    /// The file port `port` transmits into.
    pub fn output(&self, port: usize) -> PathBuf {
        self.dir.path().join(format!("out{port}.pcap"))
    }

    /// What port `port` has transmitted so far (see [`read_available`]).
    pub fn transmitted(&self, port: usize) -> Vec<Vec<u8>> {
        read_available(&self.output(port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_partial_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.pcap");
        let frames = vec![vec![1u8; 60], vec![2u8; 64], Vec::new()];
        write(&path, &frames).expect("write");
        assert_eq!(read(&path).expect("read"), frames);
        assert_eq!(read_available(&path), frames);

        // A record cut in the middle: the strict reader refuses, the polling one stops early.
        let bytes = std::fs::read(&path).expect("bytes");
        std::fs::write(&path, &bytes[..FILE_HEADER + RECORD_HEADER + 10]).expect("cut");
        assert!(read(&path).is_err());
        assert!(read_available(&path).is_empty());

        assert!(read_available(&dir.path().join("missing.pcap")).is_empty());
        std::fs::write(&path, [0u8; 30]).expect("junk");
        assert!(read(&path).is_err(), "unknown magic must be an error");
    }
}
