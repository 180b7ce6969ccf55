//! The 64-byte file header (SPEC.md §1.1).

use crate::error::ReadError;

pub const MAGIC: [u8; 8] = *b"WRECTRC\0";
pub const VERSION_MAJOR: u16 = 3;
/// The oldest major version this crate still reads (2.x: SPEC.md §7).
pub const OLDEST_MAJOR: u16 = 2;
/// 3.1 added the ring layout (SPEC.md §5), 3.2 the component module
/// record fields (SPEC.md §2.2), 3.3 the request record (SPEC.md §2.8).
pub const VERSION_MINOR: u16 = 3;
pub const BYTE_ORDER_MARK: u32 = 0x0A0B_0C0D;
pub const HEADER_SIZE: usize = 64;
/// Offset of the committed-length word.
pub const COMMITTED_OFFSET: usize = 48;

/// The architecture whose addresses a trace holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Unknown,
    X86_64,
    Aarch64,
}

impl Arch {
    pub fn host() -> Arch {
        if cfg!(target_arch = "x86_64") {
            Arch::X86_64
        } else if cfg!(target_arch = "aarch64") {
            Arch::Aarch64
        } else {
            Arch::Unknown
        }
    }

    fn code(self) -> u16 {
        match self {
            Arch::Unknown => 0,
            Arch::X86_64 => 1,
            Arch::Aarch64 => 2,
        }
    }

    fn from_code(c: u16) -> Arch {
        match c {
            1 => Arch::X86_64,
            2 => Arch::Aarch64,
            _ => Arch::Unknown,
        }
    }
}

/// The header's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub version_major: u16,
    pub version_minor: u16,
    pub arch: Arch,
    pub header_size: u16,
    pub page_size: u32,
    pub monotonic_clock_id: u32,
    pub cpu_clock_id: u32,
    /// `CLOCK_REALTIME` in ns since the Unix epoch, at `monotonic_reference_ns`.
    pub wall_reference_ns: u64,
    pub monotonic_reference_ns: u64,
    pub committed_len: u64,
    pub layout: u8,
}

impl Header {
    /// A header for a new trace written on this machine, with its clocks read now.
    pub fn for_this_host() -> Header {
        let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u32;
        let monotonic_reference_ns = crate::clock_ns(libc::CLOCK_MONOTONIC);
        let wall_reference_ns = crate::clock_ns(libc::CLOCK_REALTIME);
        Header {
            version_major: VERSION_MAJOR,
            version_minor: VERSION_MINOR,
            arch: Arch::host(),
            header_size: HEADER_SIZE as u16,
            page_size,
            monotonic_clock_id: libc::CLOCK_MONOTONIC as u32,
            cpu_clock_id: libc::CLOCK_THREAD_CPUTIME_ID as u32,
            wall_reference_ns,
            monotonic_reference_ns,
            committed_len: HEADER_SIZE as u64,
            layout: 0,
        }
    }

    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..10].copy_from_slice(&self.version_major.to_le_bytes());
        b[10..12].copy_from_slice(&self.version_minor.to_le_bytes());
        b[12..16].copy_from_slice(&BYTE_ORDER_MARK.to_le_bytes());
        b[16..18].copy_from_slice(&self.arch.code().to_le_bytes());
        b[18..20].copy_from_slice(&self.header_size.to_le_bytes());
        b[20..24].copy_from_slice(&self.page_size.to_le_bytes());
        b[24..28].copy_from_slice(&self.monotonic_clock_id.to_le_bytes());
        b[28..32].copy_from_slice(&self.cpu_clock_id.to_le_bytes());
        b[32..40].copy_from_slice(&self.wall_reference_ns.to_le_bytes());
        b[40..48].copy_from_slice(&self.monotonic_reference_ns.to_le_bytes());
        b[48..56].copy_from_slice(&self.committed_len.to_le_bytes());
        b[56] = self.layout;
        let check = crate::crc16(&b[..COMMITTED_OFFSET]);
        b[58..60].copy_from_slice(&check.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<Header, ReadError> {
        if b.is_empty() {
            return Err(ReadError::ShortHeader(0));
        }
        if b.len() < 8 || b[0..8] != MAGIC {
            return Err(ReadError::NotATrace);
        }
        if b.len() < HEADER_SIZE {
            return Err(ReadError::ShortHeader(b.len() as u64));
        }
        let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
        let version_major = u16_at(8);
        let version_minor = u16_at(10);
        if u32_at(12) != BYTE_ORDER_MARK {
            return Err(ReadError::BadByteOrder);
        }
        if version_major < OLDEST_MAJOR {
            return Err(ReadError::OldVersion {
                major: version_major,
                minor: version_minor,
            });
        }
        if version_major > VERSION_MAJOR {
            return Err(ReadError::UnsupportedVersion {
                major: version_major,
                minor: version_minor,
            });
        }
        if u16_at(58) != crate::crc16(&b[..COMMITTED_OFFSET]) {
            return Err(ReadError::BadHeader("its check does not match bytes 0-47"));
        }
        let header_size = u16_at(18);
        if (header_size as usize) < HEADER_SIZE {
            return Err(ReadError::BadHeader("header size below 64"));
        }
        let layout = b[56];
        if layout > crate::ring::LAYOUT_RING {
            return Err(ReadError::BadHeader(
                "unknown layout (written by a newer wrec: use a newer wanalyze)",
            ));
        }
        if layout == crate::ring::LAYOUT_RING
            && (header_size as usize) < crate::ring::RING_HEADER_SIZE
        {
            return Err(ReadError::BadHeader(
                "a ring trace's header size is below 128",
            ));
        }
        Ok(Header {
            version_major,
            version_minor,
            arch: Arch::from_code(u16_at(16)),
            header_size,
            page_size: u32_at(20),
            monotonic_clock_id: u32_at(24),
            cpu_clock_id: u32_at(28),
            wall_reference_ns: u64_at(32),
            monotonic_reference_ns: u64_at(40),
            committed_len: u64_at(48),
            layout,
        })
    }
}
