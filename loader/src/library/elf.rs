//! A look at a library's ELF header and program headers before the dynamic
//! loader maps it. The loader trusts them: a truncated file makes it map
//! segments past the end of the file and the host dies of SIGBUS, and a
//! library for another machine gets a misleading "No such file" from glibc.
//! Both are refused here with a message that says what is wrong.

use std::fs::File;
use std::os::unix::fs::FileExt;

const PT_LOAD: u32 = 1;
const ET_DYN: u16 = 3;

/// This host's `e_machine`.
#[cfg(target_arch = "x86_64")]
const HOST_MACHINE: u16 = 62;
#[cfg(target_arch = "aarch64")]
const HOST_MACHINE: u16 = 183;
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const HOST_MACHINE: u16 = 0;

fn machine_name(machine: u16) -> String {
    match machine {
        3 => "x86 (32-bit)".to_owned(),
        8 => "MIPS".to_owned(),
        20 => "PowerPC".to_owned(),
        21 => "PowerPC 64".to_owned(),
        22 => "s390".to_owned(),
        40 => "ARM (32-bit)".to_owned(),
        62 => "x86_64".to_owned(),
        183 => "aarch64".to_owned(),
        243 => "RISC-V".to_owned(),
        other => format!("machine {other}"),
    }
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// Check that `file` (of `len` bytes) is a complete 64-bit little-endian ELF
/// shared object for this machine.
pub(crate) fn check(file: &File, len: u64) -> Result<(), String> {
    let mut header = [0u8; 64];
    let read = file
        .read_at(&mut header, 0)
        .map_err(|e| format!("cannot read: {e}"))?;
    if read < 4 || &header[..4] != b"\x7fELF" {
        return Err("not a shared library (no ELF header)".to_owned());
    }
    if read < 64 {
        return Err(format!(
            "truncated: {len} bytes, too short for an ELF header"
        ));
    }
    if header[4] != 2 {
        return Err("a 32-bit library; this host loads 64-bit ones".to_owned());
    }
    if header[5] != 1 {
        return Err("a big-endian library; this host is little-endian".to_owned());
    }
    let machine = u16_at(&header, 18);
    if HOST_MACHINE != 0 && machine != HOST_MACHINE {
        return Err(format!(
            "built for {}, but this host is {}",
            machine_name(machine),
            machine_name(HOST_MACHINE)
        ));
    }
    if u16_at(&header, 16) != ET_DYN {
        return Err(
            "an ELF file, but not a shared library (build it as a cdylib, or with cc -shared)"
                .to_owned(),
        );
    }
    let (phoff, phentsize, phnum) = (
        u64_at(&header, 32),
        u64::from(u16_at(&header, 54)),
        u64::from(u16_at(&header, 56)),
    );
    let table_end = phoff.checked_add(phentsize.saturating_mul(phnum));
    if phentsize < 56 || table_end.is_none_or(|end| end > len) {
        return Err(format!(
            "truncated or corrupt: its program headers lie beyond its {len} bytes"
        ));
    }
    let mut entry = vec![0u8; phentsize as usize];
    for i in 0..phnum {
        file.read_exact_at(&mut entry, phoff + i * phentsize)
            .map_err(|e| format!("cannot read: {e}"))?;
        if u32_at(&entry, 0) != PT_LOAD {
            continue;
        }
        let end = u64_at(&entry, 8).checked_add(u64_at(&entry, 32));
        if end.is_none_or(|end| end > len) {
            return Err(format!(
                "truncated: a segment ends at byte {}, but the file has {len} bytes",
                end.map_or_else(|| "(overflow)".to_owned(), |e| e.to_string())
            ));
        }
    }
    Ok(())
}
