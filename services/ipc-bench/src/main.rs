//! The IPC benchmark. The same binary runs as two tasks (see
//! `tests/manifests/bench.toml`): the one that serves "bench" echoes every
//! call; the one that uses it times round trips with rdtsc. Under QEMU with
//! `-icount shift=0` rdtsc counts guest instructions, so the figures are
//! instruction counts and repeat exactly from run to run.
//!
//! A client named [`ACROSS`] has its server on another CPU (the manifest's
//! `cpu`, `tests/manifests/smp-ipc-bench.toml`) and times only the round
//! trip, which then wakes the other CPU with an IPI each way. It reads the
//! TSC on its own CPU only; under `-icount` the TSC counts the
//! instructions of every CPU (QEMU runs them in turn on one host thread),
//! so the figure includes what the other CPU ran meanwhile.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("ipc-bench is a Tessera task; it runs only on the bare target (x86_64-unknown-none).");
}

#[cfg(target_os = "none")]
mod task {
    use tessera_rt::arch::rdtsc;
    use tessera_rt::{CapSlot, Message, Operation, caps, invoke_in_place, log, recv_in_place, reply_recv_in_place};

    const WARM_UP: u32 = 100;
    const ROUNDS: u32 = 1000;
    /// The task that serves "bench".
    const SERVER: &str = "bench-server";
    /// The client whose server is on another CPU.
    const ACROSS: &str = "bench-client-across";

    pub fn main() {
        let name = tessera_rt::startup::task_name();
        match caps::find("bench", tessera_rt::ObjectType::ENDPOINT) {
            Some(endpoint) if name == SERVER => serve(endpoint),
            Some(endpoint) if name == ACROSS => measure_across(endpoint),
            Some(endpoint) => measure(endpoint),
            None => log!("no \"bench\" endpoint"),
        }
    }

    /// Echoes every message back, forever.
    fn serve(endpoint: CapSlot) {
        let mut message = Message::new(0);
        if recv_in_place(endpoint, &mut message).is_err() {
            return;
        }
        loop {
            if reply_recv_in_place(endpoint, &mut message).is_err() {
                return;
            }
        }
    }

    /// Runs `op` ROUNDS times after a warm-up; returns (mean, min) cycles per op.
    fn time(mut op: impl FnMut()) -> (u64, u64) {
        for _ in 0..WARM_UP {
            op();
        }
        let mut min = u64::MAX;
        let start = rdtsc();
        for _ in 0..ROUNDS {
            let t = rdtsc();
            op();
            min = min.min(rdtsc() - t);
        }
        ((rdtsc() - start) / u64::from(ROUNDS), min)
    }

    fn measure(endpoint: CapSlot) {
        let mut message = Message::new(1);
        let (round_trip, round_trip_min) = time(|| {
            message.clear(1);
            let _ = tessera_rt::call_in_place(endpoint, &mut message);
        });
        let mut identify = Message::new(Operation::CAP_IDENTIFY.0);
        let (null, null_min) = time(|| {
            identify.clear(Operation::CAP_IDENTIFY.0);
            let _ = invoke_in_place(endpoint, &mut identify);
        });
        log!("bench: ipc call+reply round trip: {round_trip} cycles (min {round_trip_min}) over {ROUNDS} rounds");
        log!("bench: null invocation (CAP_IDENTIFY): {null} cycles (min {null_min}) over {ROUNDS} rounds");
    }

    fn measure_across(endpoint: CapSlot) {
        let mut message = Message::new(1);
        let (mean, min) = time(|| {
            message.clear(1);
            let _ = tessera_rt::call_in_place(endpoint, &mut message);
        });
        log!("bench: ipc call+reply round trip across CPUs: {mean} cycles (min {min}) over {ROUNDS} rounds");
    }
}

#[cfg(target_os = "none")]
tessera_rt::entry!(task::main);
