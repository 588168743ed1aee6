//! The Debian architectures ipa-build can build for, and what each one is
//! called by the other tools involved.
//!
//! `debian.arch` in a profile is a Debian architecture name (`amd64`); the
//! ELF reader, the dynamic loader's search path, the agent's Rust target
//! and the ISO boot loaders each spell it differently. This table is the one
//! place those spellings live, so adding an architecture is one row here,
//! not a hunt for `x86_64` across the crate.

/// One architecture the builder supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arch {
    /// Debian's name, as in `Architecture:` fields and `binary-ARCH/` paths.
    pub debian: &'static str,
    /// The ELF `e_machine`, as the `object` crate names it.
    pub elf: object::Architecture,
    /// The multiarch triplet: `/usr/lib/<triplet>` holds the shared libraries.
    pub triplet: &'static str,
    /// The Rust target the static agent is built for (musl), and the glibc
    /// one tried with `crt-static` when musl is not available.
    pub rust_musl: &'static str,
    pub rust_gnu: &'static str,
    /// The kernel image's file name prefix in the kernel package's `boot/`.
    pub kernel_image: &'static str,
    /// Whether stage 9 can make a hybrid ISO (isolinux BIOS + GRUB x86_64
    /// EFI) for this architecture.
    pub iso: bool,
}

/// Every supported architecture; the first is the default.
pub const ARCHES: &[Arch] = &[
    Arch {
        debian: "amd64",
        elf: object::Architecture::X86_64,
        triplet: "x86_64-linux-gnu",
        rust_musl: "x86_64-unknown-linux-musl",
        rust_gnu: "x86_64-unknown-linux-gnu",
        kernel_image: "vmlinuz",
        iso: true,
    },
    Arch {
        debian: "arm64",
        elf: object::Architecture::Aarch64,
        triplet: "aarch64-linux-gnu",
        rust_musl: "aarch64-unknown-linux-musl",
        rust_gnu: "aarch64-unknown-linux-gnu",
        kernel_image: "vmlinuz",
        iso: false,
    },
];

/// The default (and the agent's when no profile says otherwise): amd64.
pub const DEFAULT: &Arch = &ARCHES[0];

#[derive(Debug, thiserror::Error)]
pub enum ArchError {
    #[error(
        "debian.arch `{0}` is not supported; ipa-build builds for {known}",
        known = ARCHES.iter().map(|a| a.debian).collect::<Vec<_>>().join(", ")
    )]
    Unsupported(String),
    #[error(
        "an ISO cannot be built for debian.arch `{0}` (its boot loaders are isolinux and x86_64 GRUB); \
         drop `iso` from output.formats"
    )]
    NoIso(&'static str),
}

impl Arch {
    /// The row for a Debian architecture name.
    pub fn from_debian(name: &str) -> Result<&'static Arch, ArchError> {
        ARCHES
            .iter()
            .find(|a| a.debian == name)
            .ok_or_else(|| ArchError::Unsupported(name.to_string()))
    }

    /// The row for an ELF machine, if we build for it.
    pub fn from_elf(machine: object::Architecture) -> Option<&'static Arch> {
        ARCHES.iter().find(|a| a.elf == machine)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_and_unknown_names() {
        assert_eq!(
            Arch::from_debian("amd64").unwrap().triplet,
            "x86_64-linux-gnu"
        );
        assert_eq!(
            Arch::from_elf(object::Architecture::Aarch64)
                .unwrap()
                .debian,
            "arm64"
        );
        let msg = Arch::from_debian("s390x").unwrap_err().to_string();
        assert!(
            msg.contains("s390x") && msg.contains("amd64, arm64"),
            "{msg}"
        );
    }
}
