//! Extended processor state (SDM Vol. 1 chapter 13): the XCR0 components a
//! guest may enable, the checks of XSETBV (SDM Vol. 2D "XSETBV"), which
//! ring 0 emulates for both backends, and the layout of the XSAVE area
//! each VP's state is kept in.

/// XCR0 state-component bits (SDM Vol. 1 §13.1).
pub mod xcr0 {
    pub const X87: u64 = 1 << 0;
    pub const SSE: u64 = 1 << 1;
    pub const AVX: u64 = 1 << 2;
    pub const BNDREGS: u64 = 1 << 3;
    pub const BNDCSR: u64 = 1 << 4;
    pub const OPMASK: u64 = 1 << 5;
    pub const ZMM_HI256: u64 = 1 << 6;
    pub const HI16_ZMM: u64 = 1 << 7;
    pub const PKRU: u64 = 1 << 9;
    pub const TILECFG: u64 = 1 << 17;
    pub const TILEDATA: u64 = 1 << 18;
    /// The three AVX-512 components, enabled together or not at all.
    pub const AVX512: u64 = OPMASK | ZMM_HI256 | HI16_ZMM;
}

/// The components a guest may ever enable, and so the ones ring 0 saves
/// and restores for every VP: x87, SSE, AVX, AVX-512 and PKRU. Left out:
/// MPX (deprecated), AMX (its 8 KiB of tile data do not fit the one-page
/// save area of a VP) and every supervisor component (IA32_XSS is not
/// offered). A guest gets at most what the CPU also has: [`guest_components`].
pub const GUEST_COMPONENTS: u64 = xcr0::X87 | xcr0::SSE | xcr0::AVX | xcr0::AVX512 | xcr0::PKRU;

/// XCR0 after reset (SDM Vol. 1 §13.3): x87 only. The host runs with it,
/// so a guest that never executes XSETBV costs no XCR0 switch.
pub const XCR0_RESET: u64 = xcr0::X87;

/// Bytes of an XSAVE area's legacy region (the FXSAVE image) and header.
pub const LEGACY_REGION: usize = 512;
pub const HEADER: usize = 64;
/// Offsets in the legacy region: the x87 control word, MXCSR, XMM0.
pub const FCW_OFFSET: usize = 0;
pub const MXCSR_OFFSET: usize = 24;
pub const XMM0_OFFSET: usize = 160;
/// XSTATE_BV, the first word of the header: components whose saved state
/// XRSTOR loads (a clear bit initialises the component instead).
pub const XSTATE_BV_OFFSET: usize = LEGACY_REGION;
/// The x87 control word and MXCSR after FNINIT and reset.
pub const FCW_INIT: u16 = 0x037f;
pub const MXCSR_INIT: u32 = 0x1f80;

/// The components the kernel offers guests on a CPU whose XCR0 may hold
/// `cpu` (CPUID.(EAX=0DH,ECX=0):EDX:EAX): [`GUEST_COMPONENTS`] the CPU has,
/// with AVX-512 only if all three of its components and AVX are there, and
/// AVX only with SSE.
pub const fn guest_components(cpu: u64) -> u64 {
    let mut offered = cpu & GUEST_COMPONENTS;
    if offered & xcr0::AVX512 != xcr0::AVX512 || offered & xcr0::AVX == 0 {
        offered &= !xcr0::AVX512;
    }
    if offered & xcr0::SSE == 0 {
        offered &= !(xcr0::AVX | xcr0::AVX512);
    }
    offered
}

/// Size of a standard-format XSAVE area holding `components`, given each
/// component's (size, offset) from CPUID.(EAX=0DH,ECX=i):EAX and EBX.
pub fn area_size(components: u64, layout: impl Fn(u32) -> (u32, u32)) -> usize {
    (2..64)
        .filter(|i| components & (1 << i) != 0)
        .map(|i| {
            let (size, offset) = layout(i);
            offset as usize + size as usize
        })
        .fold(LEGACY_REGION + HEADER, usize::max)
}

/// Largest save area of a VP: one page.
pub const AREA_MAX: usize = crate::paging::PAGE_SIZE as usize;

/// What the kernel offers guests on a CPU whose XCR0 may hold `cpu`, with
/// each component's (size, offset) from `layout`: the components and the
/// bytes of a VP's save area. [`guest_components`], less AVX-512 and PKRU
/// if their area does not fit [`AREA_MAX`]; `None` if even that does not
/// (the kernel then uses FXSAVE and offers no XSAVE). The VID derives the
/// guest's CPUID leaf 0xD from the same function.
pub fn offer(cpu: u64, layout: impl Fn(u32) -> (u32, u32)) -> Option<(u64, usize)> {
    let mut components = guest_components(cpu);
    let mut size = area_size(components, &layout);
    if size > AREA_MAX {
        components &= xcr0::X87 | xcr0::SSE | xcr0::AVX;
        size = area_size(components, &layout);
    }
    (size <= AREA_MAX).then_some((components, size))
}

/// How XSETBV fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XsetbvFault {
    /// #UD: CR4.OSXSAVE is clear.
    InvalidOpcode,
    /// #GP(0): not CPL 0, not XCR0, or a value XCR0 cannot take.
    GeneralProtection,
}

/// What a guest's XSETBV does: the new XCR0, or the fault it raises
/// (SDM Vol. 2D "XSETBV", Protected Mode Exceptions). `index` is ECX,
/// `value` EDX:EAX, `offered` what the guest may enable.
pub fn xsetbv(index: u32, value: u64, cpl: u8, osxsave: bool, offered: u64) -> Result<u64, XsetbvFault> {
    use xcr0::*;
    if !osxsave {
        return Err(XsetbvFault::InvalidOpcode);
    }
    let avx512 = value & AVX512;
    let invalid = cpl != 0
        || index != 0
        || value & !offered != 0
        || value & X87 == 0
        || (value & AVX != 0 && value & SSE == 0)
        || (avx512 != 0 && (avx512 != AVX512 || value & (SSE | AVX) != SSE | AVX))
        || (value & BNDREGS == 0) != (value & BNDCSR == 0)
        || (value & TILECFG == 0) != (value & TILEDATA == 0);
    if invalid { Err(XsetbvFault::GeneralProtection) } else { Ok(value) }
}

#[cfg(test)]
mod tests {
    use super::xcr0::*;
    use super::*;

    const ALL: u64 = X87 | SSE | AVX | AVX512 | PKRU;

    #[test]
    fn xsetbv_accepts_what_the_sdm_allows() {
        for value in [X87, X87 | SSE, X87 | SSE | AVX, X87 | SSE | AVX | AVX512, X87 | PKRU] {
            assert_eq!(xsetbv(0, value, 0, true, ALL), Ok(value), "{value:#x}");
        }
    }

    #[test]
    fn xsetbv_refuses_what_the_sdm_refuses() {
        let gp = Err(XsetbvFault::GeneralProtection);
        assert_eq!(xsetbv(0, X87 | SSE, 0, false, ALL), Err(XsetbvFault::InvalidOpcode));
        assert_eq!(xsetbv(0, X87 | SSE, 3, true, ALL), gp, "CPL 3");
        assert_eq!(xsetbv(1, X87 | SSE, 0, true, ALL), gp, "XCR1 is read-only");
        assert_eq!(xsetbv(0, 0, 0, true, ALL), gp, "x87 cleared");
        assert_eq!(xsetbv(0, SSE, 0, true, ALL), gp, "x87 cleared");
        assert_eq!(xsetbv(0, X87 | AVX, 0, true, ALL), gp, "AVX without SSE");
        assert_eq!(xsetbv(0, X87 | SSE | OPMASK, 0, true, ALL), gp, "part of AVX-512");
        assert_eq!(xsetbv(0, X87 | SSE | AVX512, 0, true, ALL), gp, "AVX-512 without AVX");
        assert_eq!(xsetbv(0, X87 | SSE | AVX, 0, true, X87 | SSE), gp, "AVX not offered");
        assert_eq!(xsetbv(0, X87 | 1 << 63, 0, true, ALL), gp, "reserved bit");
        assert_eq!(xsetbv(0, X87 | BNDREGS | BNDCSR, 0, true, ALL | BNDREGS | BNDCSR), Ok(X87 | BNDREGS | BNDCSR));
        assert_eq!(xsetbv(0, X87 | BNDREGS, 0, true, ALL | BNDREGS | BNDCSR), gp, "half of MPX");
        assert_eq!(xsetbv(0, X87 | SSE | TILECFG, 0, true, !0), gp, "half of AMX");
    }

    #[test]
    fn guests_get_whole_groups_the_cpu_has() {
        assert_eq!(guest_components(X87 | SSE), X87 | SSE);
        assert_eq!(guest_components(X87 | SSE | AVX | BNDREGS | BNDCSR), X87 | SSE | AVX);
        assert_eq!(guest_components(X87 | SSE | AVX | OPMASK | ZMM_HI256), X87 | SSE | AVX);
        assert_eq!(guest_components(X87 | SSE | AVX | AVX512 | PKRU | TILECFG | TILEDATA), ALL);
        assert_eq!(guest_components(X87 | AVX), X87);
    }

    #[test]
    fn area_size_covers_the_furthest_component() {
        // Skylake-SP offsets and sizes.
        let layout = |i| match i {
            2 => (256, 576),
            5 => (64, 1088),
            6 => (512, 1152),
            7 => (1024, 1664),
            9 => (8, 2688),
            _ => (0, 0),
        };
        assert_eq!(area_size(X87 | SSE, layout), 576);
        assert_eq!(area_size(X87 | SSE | AVX, layout), 832);
        assert_eq!(area_size(ALL, layout), 2696);
    }
}
