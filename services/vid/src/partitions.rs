//! Running the partitions the manifest gives this VID: each guest kernel is
//! loaded from the boot image with the Multiboot loader, gets one VP, and
//! its intercepts are handled by [`vid::exits::Vmm`] over a window onto its
//! RAM. Every partition's exits arrive on one endpoint; the badge (the
//! partition's index + 1) says whose.

use abi::{CapSlot, ErrorCode, ObjectType, Rights, labels};
use tlfs::{HvMessage, HvRegisterName};
use sysimage::SystemImage;
use sysimage::manifest::TaskIndex;
use tessera_rt::memory::Window;
use tessera_rt::{Message, Operation, caps, invoke, log};
use vid::exits::{Action, Event, GuestConsole, Vmm};
use vid::guest::Guest;
use vid::loader::{self, LoadRequest, Module};

const PAGE: u64 = 4096;
/// Where the boot image is mapped in the VID.
const BOOTFS_AT: u64 = 0x1_0000_0000;
/// Where each partition's RAM is mapped in the VID (64 GiB apart).
const RAM_AT: u64 = 0x10_0000_0000;
const RAM_STRIDE: u64 = 0x10_0000_0000;
/// Legacy memory hole: not RAM in the guest.
const LOW_RAM_END: u64 = 0xa_0000;
const HIGH_RAM_START: u64 = 0x10_0000;
/// The test kernel's read-only page and its signature.
const ROM_GPA: u64 = 0xf_f000;
const ROM_SIGNATURE: &[u8] = b"TESSROM\0";
pub const MAX_RUNNING: usize = 4;

/// Hands out the VID's free capability slots.
pub struct Slots(pub u32);

impl Slots {
    pub fn next(&mut self) -> CapSlot {
        self.0 += 1;
        CapSlot(self.0 - 1)
    }
}

fn retype(untyped: CapSlot, kind: ObjectType, dest: CapSlot, pages: u64) -> Result<(), ErrorCode> {
    invoke(untyped, Operation::UNTYPED_RETYPE, &[u64::from(kind.0), u64::from(dest.0), pages]).map(drop)
}

fn bits(r: Rights) -> u64 {
    u64::from(r.into_bits())
}

/// The partition manager's record of this VID's partitions, when the
/// manifest lets the VID call it: each partition is created, initialized
/// and given VP 0 there as it starts, and finalized when its guest stops,
/// so the manager's view of partition state follows the guests.
struct Registry(Option<CapSlot>);

impl Registry {
    fn find() -> Registry {
        Registry(caps::endpoint(partition_manager_api::ENDPOINT))
    }

    fn client(&self) -> Option<partition_manager_api::Client<tessera_rt::Kernel>> {
        Some(partition_manager_api::Client::new(tessera_rt::Kernel, self.0?))
    }

    /// Records a starting partition; its ID at the manager, if it has one.
    fn register(&self, name: &str) -> Option<u64> {
        let pm = self.client()?;
        let registered = (|| {
            let id = pm.create_partition(0)??;
            pm.initialize_partition(id)??;
            pm.create_vp(id, 0)??;
            Ok::<u64, Failure>(id)
        })();
        match registered {
            Ok(id) => {
                log!("{name}: the partition manager holds it as partition {id}");
                Some(id)
            }
            Err(e) => {
                log!("{name}: the partition manager did not record it: {e}");
                None
            }
        }
    }

    /// Records that a partition's guest stopped: finalized, and the state
    /// the manager now reports for it.
    fn stopped(&self, name: &str, id: Option<u64>) {
        let (Some(pm), Some(id)) = (self.client(), id) else { return };
        let state = (|| {
            pm.finalize_partition(id)??;
            Ok::<_, Failure>(pm.partition_state(id)??)
        })();
        match state {
            Ok(state) => log!("{name}: partition {id} is {state:?} at the partition manager"),
            Err(e) => log!("{name}: the partition manager did not finalize partition {id}: {e}"),
        }
    }
}

/// Why a call to the partition manager failed.
enum Failure {
    Call(tessera_idl::CallError),
    Hv(tlfs::HvError),
}

impl core::fmt::Display for Failure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Failure::Call(e) => write!(f, "call failed: {e:?}"),
            Failure::Hv(e) => write!(f, "status {:#x}", e.status().0),
        }
    }
}

impl From<tessera_idl::CallError> for Failure {
    fn from(e: tessera_idl::CallError) -> Failure {
        Failure::Call(e)
    }
}

impl From<tlfs::HvError> for Failure {
    fn from(e: tlfs::HvError) -> Failure {
        Failure::Hv(e)
    }
}

/// One running partition, as its exit handler sees it.
struct Running {
    name: &'static str,
    /// Its ID at the partition manager, when registered there.
    managed: Option<u64>,
    vp: CapSlot,
    ram: &'static mut [u8],
    vmm: Vmm,
    console: GuestConsole,
    exits: u64,
}

/// The guest as the intercept handler sees it: RAM through the window,
/// the ROM page, registers through VP_GET_REGISTERS.
struct View<'r> {
    vp: CapSlot,
    ram: &'r mut [u8],
}

impl View<'_> {
    fn in_ram(&self, gpa: u64, len: usize) -> Option<core::ops::Range<usize>> {
        let end = gpa.checked_add(len as u64)?;
        let ram = (gpa < LOW_RAM_END && end <= LOW_RAM_END) || (gpa >= HIGH_RAM_START && end <= self.ram.len() as u64);
        ram.then_some(gpa as usize..end as usize)
    }
}

impl Guest for View<'_> {
    fn read(&mut self, gpa: u64, buf: &mut [u8]) -> bool {
        if let Some(range) = self.in_ram(gpa, buf.len()) {
            buf.copy_from_slice(&self.ram[range]);
            return true;
        }
        let rom = ROM_GPA..ROM_GPA + PAGE;
        if rom.contains(&gpa) && gpa + buf.len() as u64 <= rom.end {
            for (i, b) in buf.iter_mut().enumerate() {
                let at = (gpa - ROM_GPA) as usize + i;
                *b = ROM_SIGNATURE.get(at).copied().unwrap_or(0);
            }
            return true;
        }
        false
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> bool {
        match self.in_ram(gpa, data.len()) {
            Some(range) => {
                self.ram[range].copy_from_slice(data);
                true
            }
            None => false,
        }
    }

    fn register(&mut self, name: HvRegisterName) -> Option<(u64, u64)> {
        let reply = invoke(self.vp, Operation::VP_GET_REGISTERS, &[1, u64::from(name.0)]).ok()?;
        let w = reply.words();
        Some((*w.first()?, *w.get(1)?))
    }
}

/// The partitions this VID runs, if the boot image gives it any.
pub fn run(untyped: CapSlot, task: CapSlot, slots: &mut Slots) -> Result<bool, ErrorCode> {
    let Some(bootfs) = caps::find("bootfs", ObjectType::MEMORY) else { return Ok(false) };
    let size = invoke(bootfs, Operation::CAP_IDENTIFY, &[])?.words()[3];
    // The boot image stays mapped for the VID's life.
    let bytes = Window::map(task, bootfs, BOOTFS_AT, 0, size / PAGE, false)?.leak();
    let image = SystemImage::parse(bytes).map_err(|_| ErrorCode::INVALID_ARGUMENT)?;
    let me = tessera_rt::startup::task_name();
    let Some(index) = image.manifest.tasks.iter().position(|t| t.name == me) else { return Ok(false) };
    let exits = slots.next();
    retype(untyped, ObjectType::ENDPOINT, exits, 0)?;
    let registry = Registry::find();
    let mut running: heapless::Vec<Running, MAX_RUNNING> = heapless::Vec::new();
    for (k, p) in image.manifest.partitions_of(TaskIndex(index as u8)).enumerate().take(MAX_RUNNING) {
        match start(&image, p, k, untyped, task, exits, slots) {
            Ok(mut r) => {
                r.managed = registry.register(r.name);
                let _ = running.push(r);
            }
            Err(e) => log!("{}: cannot start the partition: {e:?}", p.name),
        }
    }
    if running.is_empty() {
        return Ok(false);
    }
    serve(exits, &mut running, &registry)?;
    Ok(true)
}

fn start(
    image: &SystemImage<'static>,
    p: &sysimage::manifest::Partition<'static>,
    k: usize,
    untyped: CapSlot,
    task: CapSlot,
    exits: CapSlot,
    slots: &mut Slots,
) -> Result<Running, ErrorCode> {
    let kernel = image.guest_image(p).ok_or(ErrorCode::INVALID_ARGUMENT)?;
    let mut modules: heapless::Vec<Module<'static>, 4> = heapless::Vec::new();
    for name in &p.modules {
        let bytes = image.bootfs.file(name).ok_or(ErrorCode::INVALID_ARGUMENT)?;
        let _ = modules.push(Module { string: name, bytes });
    }
    let pages = p.memory / PAGE;
    let (ram, rom, partition, vp, exit_cap) = (slots.next(), slots.next(), slots.next(), slots.next(), slots.next());
    retype(untyped, ObjectType::MEMORY, ram, pages)?;
    retype(untyped, ObjectType::MEMORY, rom, 1)?;
    retype(untyped, ObjectType::PARTITION, partition, 0)?;
    retype(untyped, ObjectType::VP, vp, 0)?;
    invoke(exits, Operation::CAP_MINT, &[u64::from(exit_cap.0), bits(Rights::new().with_send(true)), k as u64 + 1])?;

    // Load the kernel into RAM through a window that stays mapped: the exit
    // handler reads and writes guest memory through it.
    let window = Window::map(task, ram, RAM_AT + k as u64 * RAM_STRIDE, 0, pages, true)?;
    let ram_bytes = window.leak_mut().ok_or(ErrorCode::INVALID_STATE)?;
    let mut area = [0u8; 1024];
    let request = LoadRequest { kernel, modules: &modules, cmdline: p.cmdline, ram_size: p.memory };
    let plan = loader::plan(&request, &mut area).map_err(|e| {
        log!("{}: the guest kernel cannot be loaded: {e:?}", p.name);
        ErrorCode::INVALID_ARGUMENT
    })?;
    plan.apply(ram_bytes).map_err(|_| ErrorCode::INVALID_ARGUMENT)?;
    let registers = plan.set_registers_words();

    let mut rom_window = Window::map(task, rom, RAM_AT - PAGE, 0, 1, true)?;
    if let Some(b) = rom_window.bytes_mut() {
        b[..ROM_SIGNATURE.len()].copy_from_slice(ROM_SIGNATURE);
    }
    rom_window.unmap(task)?;

    let rw = Rights::new().with_read(true).with_write(true).with_execute(true);
    let rx = Rights::new().with_read(true).with_execute(true);
    invoke(partition, Operation::PARTITION_MAP, &[u64::from(ram.0), 0, bits(rw), LOW_RAM_END / PAGE])?;
    let high = pages - HIGH_RAM_START / PAGE;
    invoke(
        partition,
        Operation::PARTITION_MAP,
        &[u64::from(ram.0), HIGH_RAM_START, bits(rw), (HIGH_RAM_START / PAGE) << 32 | high],
    )?;
    invoke(partition, Operation::PARTITION_MAP, &[u64::from(rom.0), ROM_GPA, bits(rx), 1])?;
    invoke(vp, Operation::VP_CONFIGURE, &[u64::from(partition.0), u64::from(exit_cap.0), 0, 0])?;
    invoke(vp, Operation::VP_SET_REGISTERS, &registers)?;
    log!(
        "{}: Multiboot kernel at {:#x}, {} MiB of RAM, command line \"{}\"; starting its VP",
        p.name,
        plan.entry,
        p.memory >> 20,
        p.cmdline
    );
    if p.vcpus > 1 {
        log!("{}: {} VPs requested; this VID runs only VP 0 for now", p.name, p.vcpus);
    }
    invoke(vp, Operation::VP_START, &[])?;
    Ok(Running {
        name: p.name,
        managed: None,
        vp,
        ram: ram_bytes,
        vmm: Vmm::new(),
        console: GuestConsole::default(),
        exits: 0,
    })
}

/// Handles exits of every running partition until all have stopped.
fn serve(exits: CapSlot, running: &mut [Running], registry: &Registry) -> Result<(), ErrorCode> {
    let mut live = running.len();
    let mut received = tessera_rt::recv(exits)?;
    loop {
        let k = received.badge.0.wrapping_sub(1) as usize;
        let mut reply = Message::new(labels::VP_STOP);
        if let (Some(r), Ok(message)) = (running.get_mut(k), HvMessage::from_words(received.message.words())) {
            r.exits += 1;
            let name = r.name;
            let console = &mut r.console;
            let mut view = View { vp: r.vp, ram: r.ram };
            let action = r.vmm.handle(&message, &mut view, |event| match event {
                Event::Console(b) => {
                    if let Some(line) = console.byte(b) {
                        log!("{name}: {}", core::str::from_utf8(&line).unwrap_or("?"));
                    }
                }
                other => log!("{name}: {other}"),
            });
            match action {
                Action::Resume(updates) => {
                    reply.clear(labels::VP_RESUME);
                    let _ = reply.push(updates.len() as u64);
                    for (register, value) in updates {
                        let _ = reply.push(u64::from(register.0));
                        let _ = reply.push(value);
                        let _ = reply.push(0);
                    }
                }
                Action::Stop(stop) => {
                    log!("{name}: {stop} after {} exits", r.exits);
                    registry.stopped(name, r.managed);
                    let _ = reply.push(0);
                    live -= 1;
                    if live == 0 {
                        return tessera_rt::reply(&reply);
                    }
                }
            }
        } else {
            let _ = reply.push(0);
        }
        received = tessera_rt::reply_recv(exits, &reply)?;
    }
}
