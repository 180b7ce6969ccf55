//! Old linkers' "0" tombstones in DWARF, found and patched to -1.

use super::dwarf::DwarfReader;

/// Byte patches that turn "0" tombstones of old linkers into -1 tombstones.
#[derive(Default)]
pub(super) struct TombstonePatches {
    /// (offset in .debug_info, new bytes)
    pub(super) info: Vec<(usize, Vec<u8>)>,
    /// (offset in .debug_ranges, new bytes)
    pub(super) ranges: Vec<(usize, Vec<u8>)>,
}

impl TombstonePatches {
    pub(super) fn is_empty(&self) -> bool {
        self.info.is_empty() && self.ranges.is_empty()
    }
}

/// Old wasm-ld versions resolved the DWARF addresses of functions removed by
/// `--gc-sections` to 0 (plus the size for an end address) instead of the -1
/// tombstone. Such a range overlaps the first live functions of the code
/// section and breaks look-ups there (addr2line's binary search assumes
/// non-overlapping functions). No live code starts below the first body, so
/// every `DW_AT_low_pc` (of a subprogram, or a compile unit without
/// `DW_AT_ranges`) below it, and every DWARF 4 `.debug_ranges` entry of a
/// compile unit starting below it, is dead: this finds them, only in compile
/// units whose ranges reach below the first body (none with a current
/// toolchain, so this usually costs one pass over the unit headers).
pub(super) fn find_zero_tombstones(
    dwarf: &gimli::Dwarf<DwarfReader>,
    first_body: u64,
) -> TombstonePatches {
    let mut patches = TombstonePatches::default();
    let mut headers = dwarf.units();
    while let Ok(Some(header)) = headers.next() {
        let Ok(unit) = dwarf.unit(header) else {
            continue;
        };
        let suspicious = (|| -> gimli::Result<bool> {
            let mut ranges = dwarf.unit_ranges(&unit)?;
            while let Some(r) = ranges.next()? {
                if r.begin < first_body {
                    return Ok(true);
                }
            }
            Ok(false)
        })()
        .unwrap_or(false);
        if suspicious {
            // Errors stop the walk of this unit; what was found stays.
            let _ = patch_unit(dwarf, &unit, first_body, &mut patches);
        }
    }
    patches
}

fn patch_unit(
    dwarf: &gimli::Dwarf<DwarfReader>,
    unit: &gimli::Unit<DwarfReader>,
    first_body: u64,
    patches: &mut TombstonePatches,
) -> gimli::Result<()> {
    use gimli::constants::*;
    let size = unit.header.address_size();
    if !matches!(size, 4 | 8) {
        return Ok(());
    }
    let ones = u64::MAX >> (64 - 8 * u32::from(size));
    let mut entries = unit.entries_raw(None)?;
    let mut is_root = true;
    while !entries.is_empty() {
        let Some(abbrev) = entries.read_abbreviation()? else {
            continue;
        };
        let tag = abbrev.tag();
        let has = |name| abbrev.attributes().iter().any(|s| s.name() == name);
        let contiguous = has(DW_AT_high_pc) && !has(DW_AT_ranges);
        let patchable =
            contiguous && (tag == DW_TAG_subprogram || (is_root && tag == DW_TAG_compile_unit));
        for spec in abbrev.attributes() {
            let attr = entries.read_attribute(*spec)?;
            if is_root && attr.name() == DW_AT_ranges && unit.header.version() <= 4 {
                if let Some(offset) = dwarf.attr_ranges_offset(unit, attr.value())? {
                    patch_debug_ranges(dwarf, unit, offset.0, first_body, patches);
                }
            }
            if !patchable || attr.name() != DW_AT_low_pc || spec.form() != DW_FORM_addr {
                continue;
            }
            let gimli::AttributeValue::Addr(low) = attr.value() else {
                continue;
            };
            if low >= first_body {
                continue;
            }
            let end = entries.next_offset().0;
            let Some(pos) = end
                .checked_sub(usize::from(size))
                .and_then(|p| gimli::UnitOffset(p).to_debug_info_offset(&unit.header))
            else {
                continue;
            };
            patches
                .info
                .push((pos.0, ones.to_le_bytes()[..usize::from(size)].to_vec()));
        }
        is_root = false;
    }
    Ok(())
}

/// Empties the entries of a DWARF 4 range list that start below the first
/// body (they belong to removed functions): each becomes `[1, 1)`, which is
/// neither an end-of-list nor a base-address entry and covers nothing.
fn patch_debug_ranges(
    dwarf: &gimli::Dwarf<DwarfReader>,
    unit: &gimli::Unit<DwarfReader>,
    offset: usize,
    first_body: u64,
    patches: &mut TombstonePatches,
) {
    let size = usize::from(unit.header.address_size());
    let data: &[u8] = gimli::Section::reader(dwarf.ranges.debug_ranges()).bytes();
    let ones = u64::MAX >> (64 - 8 * size as u32);
    let mut base = unit.low_pc;
    let mut at = offset;
    let read = |at: usize| -> Option<u64> {
        let b = data.get(at..at.checked_add(size)?)?;
        let mut v = [0u8; 8];
        v[..size].copy_from_slice(b);
        Some(u64::from_le_bytes(v))
    };
    // Bounded by the section: every entry advances by 2 * size bytes.
    while let (Some(begin), Some(end)) = (read(at), read(at + size)) {
        if begin == 0 && end == 0 {
            break;
        }
        if begin == ones {
            base = end;
        } else if begin < end && base.saturating_add(begin) < first_body {
            let mut one = vec![0u8; size];
            one[0] = 1;
            patches.ranges.push((at, one.clone()));
            patches.ranges.push((at + size, one));
        }
        at += 2 * size;
    }
}
