//! The `hostile` test task (see the library for what it checks).

#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("hostile is a Tessera task; it runs only on the bare target (x86_64-unknown-none).");
}

#[cfg(target_os = "none")]
mod fastpath;
#[cfg(target_os = "none")]
mod flood;
#[cfg(target_os = "none")]
mod fragment;
#[cfg(target_os = "none")]
mod guest;
#[cfg(target_os = "none")]
mod objects;
#[cfg(target_os = "none")]
mod pools;
#[cfg(target_os = "none")]
mod registers;
#[cfg(target_os = "none")]
mod restart;
#[cfg(target_os = "none")]
mod sched;
#[cfg(target_os = "none")]
mod stale;
#[cfg(target_os = "none")]
mod vtl;

#[cfg(target_os = "none")]
mod task {
    use hostile::*;
    use tessera_rt::abi::{MessageInfo, Rights, Sysnum};
    use tessera_rt::{
        CapSlot, ErrorCode, Kernel, Message, ObjectType, Operation, arch, caps, invoke, log, send_with_caps, sys,
    };

    fn check(check: &Check, got: Result<(), ErrorCode>) {
        log!("{}", check.report(got));
    }

    /// One direct port access without a capability: it must fault, so
    /// nothing after it runs.
    fn port_probe(probe: PortProbe) {
        log!("{probe} without an I/O-port capability; this must fault");
        match probe {
            PortProbe::In(port) => {
                let value = arch::probe_port_in(port);
                log!("{probe} returned {value:#x}: FAIL");
            }
            PortProbe::Out(port) => {
                arch::probe_port_out(port, PORT_PROBE_VALUE);
                log!("{probe} went through: FAIL");
            }
        }
    }

    pub fn main() {
        if let Some(probe) = PortProbe::from_task_name(tessera_rt::startup::task_name()) {
            return port_probe(probe);
        }
        log!("starting");
        let own = caps::find("self", ObjectType::TASK).zip(caps::find("untyped", ObjectType::UNTYPED));
        if tessera_rt::startup::task_name() == POOLS_INSTANCE {
            if let Some((task, untyped)) = own {
                crate::pools::probe(&mut crate::objects::Own::new(task, untyped, caps::first_unnamed_slot()));
            }
            return;
        }
        if tessera_rt::startup::task_name() == FRAGMENT_INSTANCE {
            if let Some((task, untyped)) = own {
                crate::fragment::run(task, untyped, caps::first_unnamed_slot());
            }
            return;
        }
        if tessera_rt::startup::task_name() == RESTART_INSTANCE {
            if let Some((task, untyped)) = own {
                crate::restart::incarnation(&mut crate::objects::Own::new(task, untyped, caps::first_unnamed_slot()));
            }
            return;
        }
        let console = caps::endpoint(console_api::ENDPOINT).unwrap_or(CapSlot::NULL);

        // 1. Capabilities it does not hold.
        check(&INVOKE_NULL_SLOT, invoke(CapSlot::NULL, Operation::CAP_IDENTIFY, &[]).map(drop));
        check(&INVOKE_UNHELD_SLOT, invoke(CapSlot(u32::MAX), Operation::CAP_IDENTIFY, &[]).map(drop));

        // 2. A task operation on an endpoint: MR0 memory slot, MR1 address,
        //    MR2 rights, MR3 offset << 32 | pages.
        let rw = Rights::new().with_read(true).with_write(true).into_bits();
        check(
            &TASK_MAP_ON_ENDPOINT,
            invoke(console, Operation::TASK_MAP, &[u64::from(console.0), 0x1000_0000, u64::from(rw), 1]).map(drop),
        );

        // 3. Forge the supervisor's badge from its own badged capability.
        let destination = caps::first_unnamed_slot();
        let send = Rights::new().with_send(true).into_bits();
        check(
            &MINT_FROM_BADGED,
            invoke(console, Operation::CAP_MINT, &[u64::from(destination.0), u64::from(send), 1]).map(drop),
        );

        // 4. A length the message format can express but the IPC buffer cannot hold.
        let overlong = MessageInfo::new().with_label(console_api::ops::write).with_length(127);
        check(&OVERLONG_MESSAGE, sys::syscall(Sysnum::SEND, u64::from(console.0), overlong, [0; 4], 0).error.result());

        // 4b. A label only the kernel may put on a message: the receiver
        //     would take it for its bound notification's wake-up.
        let forged = MessageInfo::new().with_label(abi::labels::NOTIFICATION);
        check(&KERNEL_LABEL, sys::syscall(Sysnum::SEND, u64::from(console.0), forged, [0; 4], 0).error.result());

        // 5. Transfer a capability from an empty slot.
        check(
            &EMPTY_CAP_TRANSFER,
            send_with_caps(console, &Message::new(console_api::ops::write), &[CapSlot::NULL], false),
        );

        // 6. Pass itself off as the supervisor, whatever its badge.
        let client = console_api::Client::new(Kernel, console);
        let tried = RENAME_BADGES.clone().count();
        let refused = RENAME_BADGES.filter(|&badge| rename_refused(&client.name_client(badge, b"supervisor"))).count();
        log!(
            "console name_client(badge 1..={}, \"supervisor\") -> refused {refused}/{tried} (expected all PermissionDenied): {}",
            RENAME_BADGES.end(),
            verdict(refused == tried)
        );

        // 7. Reach another task's memory: no slot it holds names a memory
        //    object and a task at once, so none maps anything.
        let mapped = (1..=64u32)
            .filter(|&slot| {
                let args = [u64::from(slot), 0x5000_0000, u64::from(rw), 1];
                invoke(CapSlot(slot), Operation::TASK_MAP, &args).is_ok()
            })
            .count();
        log!("TASK_MAP through each of slots 1..=64 -> {mapped} succeeded (expected 0): {}", verdict(mapped == 0));

        // 8. A syscall with RFLAGS.NT set: ring 0 must clear it on entry.
        let status = ErrorCode(arch::syscall_with_nested_task_flag());
        log!("{}", NESTED_TASK_SYSCALL.report_allowed(status.result()));

        // 9. With an untyped quota and its own task capability: the kernel's objects.
        if let Some((task, untyped)) = own {
            let mut own = crate::objects::Own::new(task, untyped, caps::first_unnamed_slot());
            crate::objects::stale_guest_mappings(&mut own);
            crate::objects::stale_task_mappings(&mut own);
            crate::objects::task_move_cap(&mut own);
            crate::objects::kernel_memory_is_charged(&mut own);
            crate::objects::revoke_ends_everything(&mut own);
            crate::objects::quota_loop_is_bounded(&mut own);
            crate::objects::pool_entries_are_bounded(&mut own);
            crate::objects::stale_thread_capability(&mut own);
            crate::objects::thread_addresses_are_checked(&mut own);
            crate::objects::top_page_is_not_mappable(&mut own);
            crate::registers::loaded_registers_are_checked(&mut own);
            crate::registers::a_refused_register_sets_none(&mut own);
            crate::registers::cpl_follows_ss(&mut own);
            crate::vtl::vtl_contexts_and_views(&mut own);
            crate::sched::orphaned_thread_runs_at_the_default(&mut own);
            crate::stale::monitor_of_deleted_endpoint(&mut own);
            crate::fastpath::confuse_the_fast_path(&mut own);
            crate::flood::fault_lines_are_rate_limited(&mut own);
            crate::objects::storm(&mut own);
        }

        // 10. Read the kernel's image. This faults; nothing after it runs.
        const KERNEL_ADDRESS: u64 = 0xffff_ffff_8000_0000;
        log!("reading kernel memory at {KERNEL_ADDRESS:#x}; this must fault");
        let value = arch::probe_read(KERNEL_ADDRESS);
        log!("read of kernel memory returned {value:#x}: FAIL");
    }
}

tessera_rt::entry!(task::main);
