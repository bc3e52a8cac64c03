//! The install-nomad and run-nomad binaries a build uploads: where they are found, and whether
//! they can run where they will run (an ELF executable for the right machine).
//!
//! The ELF checks are pure functions over the file's bytes; [`load`] is the edge that reads.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::spec::Arch;

/// A tool binary read into memory (they are a few MB; the bytes are hashed and copied as-is).
#[derive(Debug, Clone)]
pub struct ToolBinary {
    pub name: &'static str,
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    pub elf: ElfInfo,
}

/// Why a binary cannot be used; each names the binary, the path and what to do.
#[derive(Debug, thiserror::Error)]
pub enum BinaryError {
    #[error(
        "{name} was not found at {path} (the default: next to image-builder); build it for \
         {arch} (for example `cargo build --release -p {name} --target {rust_target}`) and pass \
         --{name} PATH or set [binaries] {field} in the spec"
    )]
    NotNextToImageBuilder {
        name: &'static str,
        path: PathBuf,
        arch: Arch,
        rust_target: &'static str,
        field: &'static str,
    },
    #[error("failed to read {name} binary {path}: {source}")]
    Read {
        name: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{name} binary {path} is not a Linux executable: {reason}")]
    NotElf {
        name: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error(
        "{name} binary {path} is built for {found}, but it runs on {runs_on} ({arch}); build it \
         with `--target {rust_target}`"
    )]
    WrongMachine {
        name: &'static str,
        path: PathBuf,
        found: Machine,
        runs_on: RunsOn,
        arch: Arch,
        rust_target: &'static str,
    },
}

/// The Rust target that builds a static binary for an arch (what the README recommends).
pub fn rust_target(arch: Arch) -> &'static str {
    match arch {
        Arch::Amd64 => "x86_64-unknown-linux-musl",
        Arch::Arm64 => "aarch64-unknown-linux-musl",
    }
}

/// Where a binary is taken from: the configured path, else next to image-builder.
pub fn locate(
    name: &'static str,
    field: &'static str,
    configured: Option<&Path>,
    arch: Arch,
) -> Result<PathBuf, BinaryError> {
    if let Some(path) = configured {
        return Ok(path.to_path_buf());
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(name)))
        .unwrap_or_else(|| PathBuf::from(name));
    if beside.is_file() {
        Ok(beside)
    } else {
        Err(BinaryError::NotNextToImageBuilder {
            name,
            path: beside,
            arch,
            rust_target: rust_target(arch),
            field,
        })
    }
}

/// Where a binary will run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunsOn {
    /// Inside the image being baked (the Azure target).
    Image,
    /// On this machine (the local target).
    ThisMachine,
}

impl fmt::Display for RunsOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunsOn::Image => f.write_str("the image"),
            RunsOn::ThisMachine => f.write_str("this machine (local target)"),
        }
    }
}

/// Reads a binary and checks it is an ELF executable for `arch`, which is the CPU of where it
/// runs.
pub fn load(
    name: &'static str,
    path: &Path,
    arch: Arch,
    runs_on: RunsOn,
) -> Result<ToolBinary, BinaryError> {
    let bytes = std::fs::read(path).map_err(|source| BinaryError::Read {
        name,
        path: path.to_path_buf(),
        source,
    })?;
    let elf = inspect(&bytes).map_err(|reason| BinaryError::NotElf {
        name,
        path: path.to_path_buf(),
        reason,
    })?;
    if elf.machine != Machine::for_arch(arch) {
        return Err(BinaryError::WrongMachine {
            name,
            path: path.to_path_buf(),
            found: elf.machine,
            runs_on,
            arch,
            rust_target: rust_target(arch),
        });
    }
    // A dynamically linked binary runs here, where it was built; in the image it needs a C
    // library as new as the build machine's.
    if let (Some(interpreter), RunsOn::Image) = (&elf.interpreter, runs_on) {
        tracing::warn!(
            "{name} ({}) is dynamically linked (interpreter {interpreter}): it must find a \
             compatible C library on {runs_on}; a static build (--target {}) avoids that",
            path.display(),
            rust_target(arch)
        );
    }
    Ok(ToolBinary {
        name,
        path: path.to_path_buf(),
        bytes,
        elf,
    })
}

/// The CPU an ELF file is built for (`e_machine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Machine {
    X86_64,
    Aarch64,
    Other(u16),
}

impl Machine {
    /// ELF machine numbers from the System V ABI: EM_X86_64 = 62, EM_AARCH64 = 183.
    fn from_raw(raw: u16) -> Self {
        match raw {
            62 => Machine::X86_64,
            183 => Machine::Aarch64,
            other => Machine::Other(other),
        }
    }

    pub fn for_arch(arch: Arch) -> Self {
        match arch {
            Arch::Amd64 => Machine::X86_64,
            Arch::Arm64 => Machine::Aarch64,
        }
    }
}

impl fmt::Display for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Machine::X86_64 => f.write_str("x86-64 (amd64)"),
            Machine::Aarch64 => f.write_str("AArch64 (arm64)"),
            Machine::Other(n) => write!(f, "ELF machine {n}"),
        }
    }
}

/// What the ELF header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfInfo {
    pub machine: Machine,
    /// The dynamic loader (`PT_INTERP`), when the binary is dynamically linked.
    pub interpreter: Option<String>,
}

const PT_INTERP: u32 = 3;
/// `e_type`: ET_EXEC and ET_DYN (position-independent executables are ET_DYN).
const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;

/// Reads the ELF header and program headers of a 64-bit executable.
/// Layout: System V ABI, "ELF Header" and "Program Header" (ELF-64 Object File Format).
pub fn inspect(bytes: &[u8]) -> Result<ElfInfo, String> {
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" {
        return Err("no ELF header (is it a script, or not a Linux binary?)".into());
    }
    if bytes[4] != 2 {
        return Err("it is a 32-bit ELF file; Nomad images are 64-bit".into());
    }
    let little = match bytes[5] {
        1 => true,
        2 => false,
        other => return Err(format!("unknown ELF data encoding {other}")),
    };
    let u16_at = |at: usize| -> Option<u16> {
        let b: [u8; 2] = bytes.get(at..at + 2)?.try_into().ok()?;
        Some(if little {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        })
    };
    let u32_at = |at: usize| -> Option<u32> {
        let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        Some(if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    };
    let u64_at = |at: usize| -> Option<u64> {
        let b: [u8; 8] = bytes.get(at..at + 8)?.try_into().ok()?;
        Some(if little {
            u64::from_le_bytes(b)
        } else {
            u64::from_be_bytes(b)
        })
    };
    let truncated = || "the ELF header is truncated".to_string();
    let e_type = u16_at(16).ok_or_else(truncated)?;
    if e_type != ET_EXEC && e_type != ET_DYN {
        return Err(format!("ELF type {e_type} is not an executable"));
    }
    let machine = Machine::from_raw(u16_at(18).ok_or_else(truncated)?);
    let phoff = u64_at(32).ok_or_else(truncated)? as usize;
    let phentsize = u16_at(54).ok_or_else(truncated)? as usize;
    let phnum = u16_at(56).ok_or_else(truncated)? as usize;
    let mut interpreter = None;
    for i in 0..phnum {
        let at = phoff + i * phentsize;
        let Some(p_type) = u32_at(at) else { break };
        if p_type == PT_INTERP {
            let offset = u64_at(at + 8).unwrap_or(0) as usize;
            let size = u64_at(at + 32).unwrap_or(0) as usize;
            if let Some(raw) = bytes.get(offset..offset.saturating_add(size)) {
                let text = String::from_utf8_lossy(raw);
                interpreter = Some(text.trim_end_matches('\0').to_string());
            }
        }
    }
    Ok(ElfInfo {
        machine,
        interpreter,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal little-endian ELF-64 executable header for a machine, optionally with a
    /// PT_INTERP program header naming `interp`.
    pub(crate) fn elf_bytes(machine: u16, interp: Option<&str>) -> Vec<u8> {
        let mut b = vec![0u8; 64];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2; // 64-bit
        b[5] = 1; // little-endian
        b[6] = 1; // version
        b[16..18].copy_from_slice(&ET_DYN.to_le_bytes());
        b[18..20].copy_from_slice(&machine.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        b[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
        let phnum: u16 = u16::from(interp.is_some());
        b[56..58].copy_from_slice(&phnum.to_le_bytes());
        if let Some(interp) = interp {
            let mut ph = vec![0u8; 56];
            ph[..4].copy_from_slice(&PT_INTERP.to_le_bytes());
            let offset = 64u64 + 56;
            ph[8..16].copy_from_slice(&offset.to_le_bytes());
            ph[32..40].copy_from_slice(&(interp.len() as u64 + 1).to_le_bytes());
            b.extend(ph);
            b.extend(interp.as_bytes());
            b.push(0);
        }
        b
    }

    #[test]
    fn reads_machine_and_interpreter() {
        let info = inspect(&elf_bytes(62, Some("/lib64/ld-linux-x86-64.so.2"))).unwrap();
        assert_eq!(info.machine, Machine::X86_64);
        assert_eq!(
            info.interpreter.as_deref(),
            Some("/lib64/ld-linux-x86-64.so.2")
        );
        let info = inspect(&elf_bytes(183, None)).unwrap();
        assert_eq!(info.machine, Machine::Aarch64);
        assert_eq!(info.interpreter, None);
    }

    #[test]
    fn scripts_and_32_bit_files_are_refused() {
        assert!(inspect(b"#!/bin/sh\necho hi\n")
            .unwrap_err()
            .contains("no ELF header"));
        let mut b = elf_bytes(62, None);
        b[4] = 1;
        assert!(inspect(&b).unwrap_err().contains("32-bit"));
    }

    #[test]
    fn the_running_test_binary_matches_the_host() {
        let exe = std::env::current_exe().unwrap();
        let info = inspect(&std::fs::read(exe).unwrap()).unwrap();
        let host = Arch::host().expect("tests run on amd64 or arm64");
        assert_eq!(info.machine, Machine::for_arch(host));
    }

    #[test]
    fn a_wrong_machine_names_both_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("install-nomad");
        std::fs::write(&path, elf_bytes(62, None)).unwrap();
        let err = load("install-nomad", &path, Arch::Arm64, RunsOn::Image).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("built for x86-64 (amd64)"), "{text}");
        assert!(text.contains("runs on the image (arm64)"), "{text}");
        assert!(text.contains("aarch64-unknown-linux-musl"), "{text}");
        assert!(load("install-nomad", &path, Arch::Amd64, RunsOn::Image).is_ok());
    }

    #[test]
    fn a_configured_path_is_used_as_is() {
        let p = Path::new("/somewhere/install-nomad");
        assert_eq!(
            locate("install-nomad", "install_nomad", Some(p), Arch::Amd64).unwrap(),
            p
        );
    }
}
