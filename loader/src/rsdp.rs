//! Finding the ACPI RSDP the legacy-BIOS way (ACPI 6.5, 5.2.5.1): in the
//! first KiB of the EBDA, then in 0xE0000..0x100000, on 16-byte boundaries.

use crate::PhysMemory;

const SIGNATURE: &[u8; 8] = b"RSD PTR ";
const V1_LEN: u64 = 20;
const V2_LEN: u64 = 36;
const EBDA_POINTER: u64 = 0x40e;
const BIOS_AREA: (u64, u64) = (0xe_0000, 0x10_0000);

/// True if a valid RSDP (checksums of ACPI 1.0 and, for revision ≥ 2, 2.0) is at `addr`.
pub fn is_rsdp<M: PhysMemory>(mem: &M, addr: u64) -> bool {
    let Some(head) = mem.bytes(addr, V1_LEN) else {
        return false;
    };
    if &head[..8] != SIGNATURE || checksum(head) != 0 {
        return false;
    }
    let revision = head[15];
    if revision < 2 {
        return true;
    }
    let Some(len) = mem.u32_at(addr + 20) else {
        return false;
    };
    let len = u64::from(len);
    (V2_LEN..=4096).contains(&len) && mem.bytes(addr, len).is_some_and(|all| checksum(all) == 0)
}

fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |acc, b| acc.wrapping_add(*b))
}

fn scan<M: PhysMemory>(mem: &M, start: u64, end: u64) -> Option<u64> {
    (start..end).step_by(16).find(|&addr| is_rsdp(mem, addr))
}

/// The RSDP's physical address, or `None` on a machine without one.
pub fn find_in_bios_areas<M: PhysMemory>(mem: &M) -> Option<u64> {
    let ebda = mem.u16_at(EBDA_POINTER).map(|segment| u64::from(segment) << 4);
    if let Some(found) = ebda.filter(|e| (0x8_0000..0xa_0000).contains(e)).and_then(|e| scan(mem, e, e + 1024)) {
        return Some(found);
    }
    scan(mem, BIOS_AREA.0, BIOS_AREA.1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BufferMemory;

    fn rsdp(revision: u8) -> std::vec::Vec<u8> {
        let mut r = std::vec::Vec::from(&SIGNATURE[..]);
        r.push(0); // checksum, fixed below
        r.extend_from_slice(b"TESSER");
        r.push(revision);
        r.extend_from_slice(&0x7fe_0000u32.to_le_bytes());
        r[8] = 0u8.wrapping_sub(checksum(&r));
        if revision >= 2 {
            r.extend_from_slice(&36u32.to_le_bytes());
            r.extend_from_slice(&0x7fe_1000u64.to_le_bytes());
            r.extend_from_slice(&[0, 0, 0, 0]);
            r[32] = 0u8.wrapping_sub(checksum(&r));
        }
        r
    }

    fn low_memory() -> std::vec::Vec<u8> {
        vec![0u8; 0x10_0000]
    }

    #[test]
    fn finds_rsdp_in_bios_area() {
        let mut mem = low_memory();
        mem[0xf_5a40..0xf_5a40 + 36].copy_from_slice(&rsdp(2));
        assert_eq!(find_in_bios_areas(&BufferMemory { base: 0, data: &mem }), Some(0xf_5a40));
    }

    #[test]
    fn prefers_the_ebda() {
        let mut mem = low_memory();
        mem[0x40e..0x410].copy_from_slice(&0x9fc0u16.to_le_bytes());
        mem[0x9_fc10..0x9_fc10 + 20].copy_from_slice(&rsdp(0));
        mem[0xe_0000..0xe_0000 + 20].copy_from_slice(&rsdp(0));
        assert_eq!(find_in_bios_areas(&BufferMemory { base: 0, data: &mem }), Some(0x9_fc10));
    }

    #[test]
    fn bad_checksums_and_misalignment_are_skipped() {
        let mut mem = low_memory();
        let mut bad = rsdp(2);
        bad[30] ^= 1; // breaks the extended checksum only
        mem[0xe_1000..0xe_1000 + 36].copy_from_slice(&bad);
        mem[0xe_2008..0xe_2008 + 20].copy_from_slice(&rsdp(0)); // not 16-byte aligned
        assert_eq!(find_in_bios_areas(&BufferMemory { base: 0, data: &mem }), None);
        let mem = BufferMemory { base: 0, data: &mem };
        assert!(!is_rsdp(&mem, 0xe_1000));
    }

    #[test]
    fn unreadable_memory_finds_nothing() {
        let mem = vec![0u8; 0x1000];
        assert_eq!(find_in_bios_areas(&BufferMemory { base: 0, data: &mem }), None);
    }
}
