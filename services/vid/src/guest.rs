//! The guest as the intercept handlers see it: guest-physical memory and the
//! VP's registers behind a trait ([`Guest`]), so the handlers are pure and
//! tested on the host with a fake. On top of it: the CPU mode of an
//! intercept, segment bases, the guest page-table walk, and fetching the
//! instruction at the guest RIP.

use tlfs::{HvRegisterName, HvX64InterceptMessageHeader};
use x86decode::{CpuMode, Gpr, MAX_INSTRUCTION_LEN, ModeState, Segment};
use x86defs::{CR0_PE, CR0_PG, CR4_LA57, CR4_PAE, CR4_PSE};

/// Guest memory and registers. In the VID task this is a window onto the
/// partition's RAM and `VP_GET_REGISTERS`; in tests, a byte array and a
/// register file. Register *changes* never go through this trait: they are
/// returned in the [`crate::exits::Action`] and applied by the kernel when
/// the VP resumes.
pub trait Guest {
    /// Copies guest-physical `gpa..gpa + buf.len()` into `buf`; false (and
    /// `buf` unspecified) unless the whole range is guest RAM or ROM.
    fn read(&mut self, gpa: u64, buf: &mut [u8]) -> bool;
    /// Writes guest RAM; false (nothing written) unless the whole range is
    /// writable RAM.
    fn write(&mut self, gpa: u64, data: &[u8]) -> bool;
    /// A register's (low, high) value, by TLFS name; `None` if it cannot be
    /// read.
    fn register(&mut self, name: HvRegisterName) -> Option<(u64, u64)>;
    /// The VID's page (of `HV_PAGE_SIZE` bytes) that keeps the RAM beneath
    /// overlay slot `slot` ([`crate::overlay`]); `None` if it has none, and
    /// then an overlay overwrites the RAM it covers.
    fn beneath(&mut self, _slot: usize) -> Option<&mut [u8]> {
        None
    }
    /// Withholds (`held`) or gives back the guest's write access to the RAM
    /// page `gpn` in VTL `vtl`'s view (a read-only overlay:
    /// [`crate::overlay`]); the VID's own writes go on. A guest without
    /// second-level tables ignores it.
    fn hold_write(&mut self, _gpn: u64, _held: bool, _vtl: u8) {}
    /// True if the VID, acting for VTL 0, must not do `need` on some page
    /// of `gpa..gpa + len`: VTL 1 protects it (TLFS 15.9,
    /// [`crate::vsm::protect`]). [`read`](Self::read) and
    /// [`write`](Self::write) refuse such an access too; this tells why.
    fn denied(&mut self, _gpa: u64, _len: usize, _need: crate::vsm::protect::Need) -> bool {
        false
    }
    /// Has the VID's accesses act for VTL `vtl` (at an exit, the exit's
    /// VTL); returns the VTL they acted for. VTL 0's are checked against
    /// VTL 1's protections.
    fn act_for(&mut self, vtl: u8) -> u8 {
        vtl
    }
    /// VSM's ring-0 operations on the partition of this exit (TLFS 15);
    /// `None` where there are none.
    fn vtl_kernel(&mut self) -> Option<&mut dyn crate::vsm::VtlKernel> {
        None
    }

    /// The low 64 bits of a register.
    fn reg(&mut self, name: HvRegisterName) -> Option<u64> {
        self.register(name).map(|(low, _)| low)
    }
}

/// Why a guest linear address could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// A register the translation needs could not be read.
    Register(HvRegisterName),
    /// A paging-structure entry is not present (or the table is not RAM):
    /// the guest would take a #PF, which the VID does not inject.
    NotPresent { linear: u64 },
    /// 5-level paging, which the walk does not implement.
    Unsupported,
}

/// The TLFS register of a general-purpose register.
pub const fn gpr_name(gpr: Gpr) -> HvRegisterName {
    HvRegisterName(HvRegisterName::RAX.0 + gpr.number() as u32)
}

/// The TLFS register of a segment register.
pub const fn segment_name(segment: Segment) -> HvRegisterName {
    match segment {
        Segment::Es => HvRegisterName::ES,
        Segment::Cs => HvRegisterName::CS,
        Segment::Ss => HvRegisterName::SS,
        Segment::Ds => HvRegisterName::DS,
        Segment::Fs => HvRegisterName::FS,
        Segment::Gs => HvRegisterName::GS,
    }
}

/// RFLAGS bits the handlers look at.
pub mod rflags {
    pub const IF: u64 = 1 << 9;
    pub const DF: u64 = 1 << 10;
    pub const VM: u64 = 1 << 17;
}

/// The decoding mode of the VP when it exited, from the intercept header
/// (CR0.PE, EFER.LMA, RFLAGS.VM and the CS attributes).
pub fn cpu_mode(header: &HvX64InterceptMessageHeader) -> CpuMode {
    let cs = header.cs_segment.attributes;
    CpuMode::from_state(ModeState {
        cr0_pe: header.execution_state.cr0_pe(),
        rflags_vm: header.rflags & rflags::VM != 0,
        efer_lma: header.execution_state.efer_lma(),
        cs_l: cs.long(),
        cs_d: cs.default(),
    })
}

/// The base of `segment` for a data access: 0 in 64-bit mode except FS and
/// GS (as the CPU does), else the base of the segment register.
pub fn segment_base(guest: &mut impl Guest, mode: CpuMode, segment: Segment) -> Result<u64, Fault> {
    if mode == CpuMode::Long64 && !matches!(segment, Segment::Fs | Segment::Gs) {
        return Ok(0);
    }
    let name = segment_name(segment);
    guest.reg(name).ok_or(Fault::Register(name))
}

/// The linear address of `offset` in a segment with `base`: outside 64-bit
/// mode linear addresses are 32 bits.
pub const fn linear(mode: CpuMode, base: u64, offset: u64) -> u64 {
    let la = base.wrapping_add(offset);
    if matches!(mode, CpuMode::Long64) { la } else { la & 0xffff_ffff }
}

/// Paging-structure entry bits (SDM Vol. 3A 4.5): present, and a leaf
/// above the page table (PS).
pub(crate) const PRESENT: u64 = 1 << 0;
pub(crate) const LARGE: u64 = 1 << 7;
const ADDR: u64 = 0x000f_ffff_ffff_f000;

fn entry64(guest: &mut impl Guest, gpa: u64, linear: u64) -> Result<u64, Fault> {
    let mut b = [0u8; 8];
    if !guest.read(gpa, &mut b) {
        return Err(Fault::NotPresent { linear });
    }
    let e = u64::from_le_bytes(b);
    if e & PRESENT == 0 { Err(Fault::NotPresent { linear }) } else { Ok(e) }
}

fn entry32(guest: &mut impl Guest, gpa: u64, linear: u64) -> Result<u64, Fault> {
    let mut b = [0u8; 4];
    if !guest.read(gpa, &mut b) {
        return Err(Fault::NotPresent { linear });
    }
    let e = u64::from(u32::from_le_bytes(b));
    if e & PRESENT == 0 { Err(Fault::NotPresent { linear }) } else { Ok(e) }
}

/// Translates a guest linear address to guest-physical through the guest's
/// page tables (read with [`Guest::read`]): none with CR0.PG = 0 (or in
/// real mode), 4-level paging with EFER.LMA, PAE, or 32-bit paging (4 MiB
/// pages with CR4.PSE; PSE-36 is not). Large pages are followed.
/// Permissions are not checked and no accessed/dirty bits are set: the VID
/// emulates an access the guest already made (or the fetch of an
/// instruction the CPU already fetched).
pub fn translate(guest: &mut impl Guest, long_mode: bool, cr0_pe: bool, la: u64) -> Result<u64, Fault> {
    if !cr0_pe {
        return Ok(la & 0xffff_ffff);
    }
    let cr0 = guest.reg(HvRegisterName::CR0).ok_or(Fault::Register(HvRegisterName::CR0))?;
    if cr0 & CR0_PG == 0 || cr0 & CR0_PE == 0 {
        return Ok(la & 0xffff_ffff);
    }
    let cr3 = guest.reg(HvRegisterName::CR3).ok_or(Fault::Register(HvRegisterName::CR3))?;
    let cr4 = guest.reg(HvRegisterName::CR4).ok_or(Fault::Register(HvRegisterName::CR4))?;
    if long_mode {
        if cr4 & CR4_LA57 != 0 {
            return Err(Fault::Unsupported);
        }
        let pml4e = entry64(guest, (cr3 & ADDR) + ((la >> 39) & 511) * 8, la)?;
        let pdpte = entry64(guest, (pml4e & ADDR) + ((la >> 30) & 511) * 8, la)?;
        if pdpte & LARGE != 0 {
            return Ok((pdpte & 0x000f_ffff_c000_0000) | (la & 0x3fff_ffff));
        }
        table_pd(guest, pdpte, la)
    } else if cr4 & CR4_PAE != 0 {
        let la = la & 0xffff_ffff;
        let pdpte = entry64(guest, (cr3 & 0xffff_ffe0) + ((la >> 30) & 3) * 8, la)?;
        table_pd(guest, pdpte, la)
    } else {
        let la = la & 0xffff_ffff;
        let pde = entry32(guest, (cr3 & 0xffff_f000) + ((la >> 22) & 0x3ff) * 4, la)?;
        if pde & LARGE != 0 && cr4 & CR4_PSE != 0 {
            return Ok((pde & 0xffc0_0000) | (la & 0x3f_ffff));
        }
        let pte = entry32(guest, (pde & 0xffff_f000) + ((la >> 12) & 0x3ff) * 4, la)?;
        Ok((pte & 0xffff_f000) | (la & 0xfff))
    }
}

/// The page-directory and page-table levels shared by 4-level and PAE paging.
fn table_pd(guest: &mut impl Guest, pdpte: u64, la: u64) -> Result<u64, Fault> {
    let pde = entry64(guest, (pdpte & ADDR) + ((la >> 21) & 511) * 8, la)?;
    if pde & LARGE != 0 {
        return Ok((pde & 0x000f_ffff_ffe0_0000) | (la & 0x1f_ffff));
    }
    let pte = entry64(guest, (pde & ADDR) + ((la >> 12) & 511) * 8, la)?;
    Ok((pte & ADDR) | (la & 0xfff))
}

/// Where the VP's linear addresses go: the intercept's mode bits, for
/// [`translate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Paging {
    pub long_mode: bool,
    pub cr0_pe: bool,
}

impl Paging {
    pub fn of(header: &HvX64InterceptMessageHeader) -> Paging {
        Paging { long_mode: header.execution_state.efer_lma(), cr0_pe: header.execution_state.cr0_pe() }
    }

    /// Reads `buf.len()` bytes at a linear address, page by page; the number
    /// of bytes read before the first that is not readable RAM.
    pub fn read(self, guest: &mut impl Guest, la: u64, buf: &mut [u8]) -> usize {
        let mut done = 0;
        while done < buf.len() {
            let at = la.wrapping_add(done as u64);
            let chunk = ((0x1000 - (at & 0xfff)) as usize).min(buf.len() - done);
            let Ok(gpa) = translate(guest, self.long_mode, self.cr0_pe, at) else { break };
            if !guest.read(gpa, &mut buf[done..done + chunk]) {
                // Byte by byte, to stop exactly where RAM ends.
                for i in 0..chunk {
                    if !guest.read(gpa + i as u64, &mut buf[done..done + 1]) {
                        return done;
                    }
                    done += 1;
                }
                return done;
            }
            done += chunk;
        }
        done
    }

    /// Writes `data` at a linear address; false if any of it is not
    /// writable RAM (the part before may have been written).
    pub fn write(self, guest: &mut impl Guest, la: u64, data: &[u8]) -> bool {
        let mut done = 0;
        while done < data.len() {
            let at = la.wrapping_add(done as u64);
            let chunk = ((0x1000 - (at & 0xfff)) as usize).min(data.len() - done);
            let Ok(gpa) = translate(guest, self.long_mode, self.cr0_pe, at) else { return false };
            if !guest.write(gpa, &data[done..done + chunk]) {
                return false;
            }
            done += chunk;
        }
        true
    }
}

/// Fetches up to [`MAX_INSTRUCTION_LEN`] bytes at the intercept's CS:RIP;
/// returns the buffer and how many bytes could be read (the decoder says
/// whether that is enough).
pub fn fetch(guest: &mut impl Guest, header: &HvX64InterceptMessageHeader) -> ([u8; MAX_INSTRUCTION_LEN], usize) {
    let mode = cpu_mode(header);
    let base = if mode == CpuMode::Long64 { 0 } else { header.cs_segment.base };
    let la = linear(mode, base, header.rip & mode.ip_mask());
    let mut bytes = [0u8; MAX_INSTRUCTION_LEN];
    let n = Paging::of(header).read(guest, la, &mut bytes);
    (bytes, n)
}

/// 64 KiB of flat RAM at GPA 0, each byte 0xAA at first: the guest of the
/// SynIC and synthetic-MSR host tests; then the pages that keep the RAM
/// beneath the overlays, and the pages whose guest writes are withheld (GPN, VTL).
#[cfg(test)]
pub struct TestRam(pub Vec<u8>, pub Vec<u8>, pub Vec<(u64, u8)>);

#[cfg(test)]
impl Default for TestRam {
    fn default() -> TestRam {
        TestRam(
            vec![0xaa; 0x1_0000],
            vec![0; crate::overlay::slots(abi::limits::MAX_VPS_PER_PARTITION) << 12],
            Vec::new(),
        )
    }
}

#[cfg(test)]
impl TestRam {
    pub fn new() -> TestRam {
        TestRam::default()
    }

    pub fn page(&self, gpn: u64) -> &[u8] {
        &self.0[(gpn as usize) << 12..((gpn as usize) + 1) << 12]
    }
}

#[cfg(test)]
impl Guest for TestRam {
    fn read(&mut self, gpa: u64, buf: &mut [u8]) -> bool {
        let Some(src) = self.0.get(gpa as usize..gpa as usize + buf.len()) else { return false };
        buf.copy_from_slice(src);
        true
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> bool {
        let Some(dst) = self.0.get_mut(gpa as usize..gpa as usize + data.len()) else { return false };
        dst.copy_from_slice(data);
        true
    }

    fn register(&mut self, _: tlfs::HvRegisterName) -> Option<(u64, u64)> {
        None
    }

    fn beneath(&mut self, slot: usize) -> Option<&mut [u8]> {
        self.1.get_mut(slot << 12..(slot + 1) << 12)
    }

    fn hold_write(&mut self, gpn: u64, held: bool, vtl: u8) {
        self.2.retain(|&g| g != (gpn, vtl));
        if held {
            self.2.push((gpn, vtl));
        }
    }
}
