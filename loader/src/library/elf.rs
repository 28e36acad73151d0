//! A look at a library's ELF headers and dynamic symbols before the dynamic
//! loader maps it, read with the `object` crate. Opening a library runs its
//! constructors, and the loader trusts the headers: a truncated file makes it
//! map segments past the end of the file (the host dies of SIGBUS), and a
//! library for another machine gets a misleading "No such file" from glibc.
//! So everything that can be known from the file alone is checked here, and
//! a file that exports no plugin entry point is refused before any of its
//! code can run.

use object::elf;
use object::read::elf::{FileHeader, ProgramHeader, Sym};
use object::read::{ReadCache, ReadRef};
use std::fs::File;

/// The symbol a Rust plugin's export macro defines when it was built with
/// `panic = "abort"` (see `plughost_api::export_plugin!`).
const PANIC_ABORT_SYMBOL: &[u8] = plughost_api::__private::PANIC_ABORT_SYMBOL.as_bytes();

/// This host's `e_machine`.
#[cfg(target_arch = "x86_64")]
const HOST_MACHINE: Option<elf::Machine> = Some(elf::EM_X86_64);
#[cfg(target_arch = "aarch64")]
const HOST_MACHINE: Option<elf::Machine> = Some(elf::EM_AARCH64);
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const HOST_MACHINE: Option<elf::Machine> = None;

fn machine_name(machine: elf::Machine) -> String {
    match machine {
        elf::EM_386 => "x86 (32-bit)".to_owned(),
        elf::EM_MIPS => "MIPS".to_owned(),
        elf::EM_PPC => "PowerPC".to_owned(),
        elf::EM_PPC64 => "PowerPC 64".to_owned(),
        elf::EM_S390 => "s390".to_owned(),
        elf::EM_ARM => "ARM (32-bit)".to_owned(),
        elf::EM_X86_64 => "x86_64".to_owned(),
        elf::EM_AARCH64 => "aarch64".to_owned(),
        elf::EM_RISCV => "RISC-V".to_owned(),
        other => format!("machine {}", other.0),
    }
}

/// What a library exports that the host looks for, from its dynamic symbol
/// table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Exports {
    /// abi_stable's root module: a Rust plugin.
    pub rust_root: bool,
    /// `plughost_plugin_entry`: a C plugin.
    pub c_entry: bool,
    /// The export macro's mark of a plugin built with `panic = "abort"`.
    pub panic_abort: bool,
}

impl Exports {
    /// Whether the library exports a plugin entry point at all.
    pub(crate) fn is_plugin(&self) -> bool {
        self.rust_root || self.c_entry
    }
}

/// Check that `file` (of `len` bytes) is a complete 64-bit little-endian ELF
/// shared object for this machine, and read which plugin symbols it exports.
/// Only the headers and the dynamic symbol table are read, never the whole
/// file.
pub(crate) fn inspect(file: &File, len: u64) -> Result<Exports, String> {
    let data = ReadCache::new(file);
    let data = &data;
    let magic = data.read_bytes_at(0, 4).unwrap_or_default();
    if magic != elf::ELFMAG {
        return Err("not a shared library (no ELF header)".to_owned());
    }
    // The class and byte order, for a message better than "unsupported".
    let ident = data.read_bytes_at(0, 16).unwrap_or_default();
    if ident.get(4) == Some(&elf::ELFCLASS32.0) {
        return Err("a 32-bit library; this host loads 64-bit ones".to_owned());
    }
    if ident.get(5) == Some(&elf::ELFDATA2MSB.0) {
        return Err("a big-endian library; this host is little-endian".to_owned());
    }
    let Ok(header) = elf::FileHeader64::<object::LittleEndian>::parse(data) else {
        return Err(
            if len < std::mem::size_of::<elf::FileHeader64<object::LittleEndian>>() as u64 {
                format!("truncated: {len} bytes, too short for an ELF header")
            } else {
                "a corrupt ELF header (unknown class, byte order or version)".to_owned()
            },
        );
    };
    let endian = object::LittleEndian;
    let machine = header.e_machine(endian);
    if let Some(host) = HOST_MACHINE
        && machine != host
    {
        return Err(format!(
            "built for {}, but this host is {}",
            machine_name(machine),
            machine_name(host)
        ));
    }
    if header.e_type(endian) != elf::ET_DYN {
        return Err(
            "an ELF file, but not a shared library (build it as a cdylib, or with cc -shared)"
                .to_owned(),
        );
    }
    let segments = header.program_headers(endian, data).map_err(|_| {
        format!("truncated or corrupt: its program headers lie beyond its {len} bytes")
    })?;
    for segment in segments.iter().filter(|s| s.p_type(endian) == elf::PT_LOAD) {
        let end = segment
            .p_offset(endian)
            .checked_add(segment.p_filesz(endian));
        if end.is_none_or(|end| end > len) {
            return Err(format!(
                "truncated: a segment ends at byte {}, but the file has {len} bytes",
                end.map_or_else(|| "(overflow)".to_owned(), |e| e.to_string())
            ));
        }
    }
    let corrupt = |_| "a corrupt ELF file: its dynamic symbol table cannot be read".to_owned();
    let sections = header.sections(endian, data).map_err(corrupt)?;
    let symbols = sections
        .symbols(endian, data, elf::SHT_DYNSYM)
        .map_err(corrupt)?;
    let mut exports = Exports::default();
    for symbol in symbols.iter() {
        let exported = !symbol.is_undefined(endian)
            && matches!(
                symbol.st_bind(),
                elf::STB_GLOBAL | elf::STB_WEAK | elf::STB_GNU_UNIQUE
            )
            && matches!(
                symbol.st_visibility(),
                elf::STV_DEFAULT | elf::STV_PROTECTED
            );
        if !exported {
            continue;
        }
        let Ok(name) = symbols.symbol_name(endian, symbol) else {
            continue;
        };
        if name == without_nul(super::rust::ROOT_SYMBOL) {
            exports.rust_root = true;
        } else if name == without_nul(plughost_ffi::PLUGHOST_ENTRY_SYMBOL) {
            exports.c_entry = true;
        } else if name == PANIC_ABORT_SYMBOL {
            exports.panic_abort = true;
        }
    }
    Ok(exports)
}

fn without_nul(symbol: &[u8]) -> &[u8] {
    symbol.strip_suffix(b"\0").unwrap_or(symbol)
}

#[cfg(test)]
mod tests {
    //! Each refusal, on this test program's own executable (a position-
    //! independent executable is an ELF shared object) with one field changed.
    use super::*;
    use std::io::Write;

    fn inspect_bytes(bytes: &[u8]) -> Result<Exports, String> {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "plughost-elf-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::File::create(&path)
            .and_then(|mut f| f.write_all(bytes))
            .expect("write the test file");
        let file = File::open(&path).expect("open the test file");
        let _ = std::fs::remove_file(&path);
        inspect(&file, bytes.len() as u64)
    }

    fn this_program() -> Vec<u8> {
        std::fs::read("/proc/self/exe").expect("read /proc/self/exe")
    }

    #[test]
    fn a_complete_library_without_plugin_symbols_exports_none() {
        let exports = inspect_bytes(&this_program()).expect("a valid ELF shared object");
        assert_eq!(exports, Exports::default());
        assert!(!exports.is_plugin());
    }

    #[test]
    fn each_malformed_header_is_refused_with_its_own_reason() {
        let whole = this_program();
        let with = |at: usize, bytes: &[u8]| {
            let mut copy = whole.clone();
            copy[at..at + bytes.len()].copy_from_slice(bytes);
            inspect_bytes(&copy).unwrap_err()
        };
        assert_eq!(
            inspect_bytes(b"#!/bin/sh\n").unwrap_err(),
            "not a shared library (no ELF header)"
        );
        assert_eq!(
            inspect_bytes(b"\x7fEL").unwrap_err(),
            "not a shared library (no ELF header)"
        );
        assert_eq!(
            inspect_bytes(&whole[..40]).unwrap_err(),
            "truncated: 40 bytes, too short for an ELF header"
        );
        assert_eq!(
            with(4, &[1]),
            "a 32-bit library; this host loads 64-bit ones"
        );
        assert_eq!(
            with(5, &[2]),
            "a big-endian library; this host is little-endian"
        );
        if HOST_MACHINE == Some(elf::EM_X86_64) {
            assert_eq!(
                with(18, &183u16.to_le_bytes()),
                "built for aarch64, but this host is x86_64"
            );
        }
        assert_eq!(
            with(16, &2u16.to_le_bytes()),
            "an ELF file, but not a shared library (build it as a cdylib, or with cc -shared)"
        );
        // e_phoff far beyond the end of the file.
        assert_eq!(
            with(32, &(1u64 << 40).to_le_bytes()),
            format!(
                "truncated or corrupt: its program headers lie beyond its {} bytes",
                whole.len()
            )
        );
    }

    #[test]
    fn a_truncated_library_is_refused_before_its_segments_are_mapped() {
        let whole = this_program();
        let reason = inspect_bytes(&whole[..5000]).unwrap_err();
        assert!(
            reason.starts_with("truncated: a segment ends at byte "),
            "{reason}"
        );
        assert!(reason.ends_with("but the file has 5000 bytes"), "{reason}");
    }
}
