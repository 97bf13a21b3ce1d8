//! The `sched-tuner` test task (`tests/manifests/classic-runtime.toml`):
//! once the VID has attached partitions `w100`, `w200` and `w700` at the
//! scheduler, it changes their weights at run time to [`WEIGHTS`] through
//! its `sched-control` capability, after showing that the same request on
//! its plain `scheduler` capability is refused, and that bad requests are
//! refused and change nothing. Every outcome is logged; one that is not
//! the expected one is logged as `FAIL: ...`.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("sched-tuner is a Tessera task; it runs only on the bare target (x86_64-unknown-none).");
}

/// The weights it sets, by partition.
#[cfg(target_os = "none")]
const WEIGHTS: [(&str, u32); 3] = [("w100", 100), ("w200", 200), ("w700", 700)];

/// Ticks it waits for the partitions to be attached.
#[cfg(target_os = "none")]
const WAIT_TICKS: u64 = 1000;

#[cfg(target_os = "none")]
fn main() {
    use scheduler_api::{CONTROL_ENDPOINT, Client, ENDPOINT, ServiceError};
    use tessera_rt::{Kernel, caps, log, recv_timeout};
    /// One whole logical processor (TLFS units).
    const ONE_LP: u32 = 0x10000;

    let (Some(control), Some(plain), Some(clock)) =
        (caps::endpoint(CONTROL_ENDPOINT), caps::endpoint(ENDPOINT), caps::endpoint("sched-tuner"))
    else {
        log!("FAIL: it needs \"{CONTROL_ENDPOINT}\", \"{ENDPOINT}\" and its own \"sched-tuner\" endpoint");
        return;
    };
    let control = Client::new(Kernel, control);
    let plain = Client::new(Kernel, plain);
    let read = |name: &str| plain.classic(name.as_bytes()).ok().and_then(Result::ok);
    let start = tessera_rt::ticks();
    while WEIGHTS.iter().any(|(name, _)| read(name).is_none()) {
        if tessera_rt::ticks() - start > WAIT_TICKS {
            log!("FAIL: the partitions were not attached at the scheduler within {WAIT_TICKS} ticks");
            return;
        }
        let _ = recv_timeout(clock, 1);
    }
    for (name, _) in WEIGHTS {
        if let Some((reserve, cap, weight)) = read(name) {
            log!("{name}: attached with reserve {reserve:#x}, cap {cap:#x}, weight {weight}");
        }
    }
    let expect = |what: &str, got: Result<Result<(), ServiceError>, _>, want: Result<(), ServiceError>| {
        if got == Ok(want) {
            log!("{what}: {want:?}");
        } else {
            log!("FAIL: {what}: {got:?}, not {want:?}");
        }
    };
    let (first, _) = WEIGHTS[0];
    let before = read(first);
    // The plain capability is no authority, even for a valid request.
    expect(
        "without sched-control",
        plain.set_classic(first.as_bytes(), 0, ONE_LP, 100),
        Err(ServiceError::PermissionDenied),
    );
    // Requests the manifest would refuse.
    let bad = ServiceError::InvalidArgument;
    expect("weight 0", control.set_classic(first.as_bytes(), 0, ONE_LP, 0), Err(bad));
    expect("weight 10001", control.set_classic(first.as_bytes(), 0, ONE_LP, 10_001), Err(bad));
    expect("cap 0", control.set_classic(first.as_bytes(), 0, 0, 100), Err(bad));
    expect("reserve above cap", control.set_classic(first.as_bytes(), 0x8000, 0x4000, 100), Err(bad));
    expect("unknown partition", control.set_classic(b"nobody", 0, ONE_LP, 100), Err(ServiceError::NotFound));
    if read(first) == before {
        log!("bad requests changed nothing: {first} {before:?}");
    } else {
        log!("FAIL: bad requests changed {first} from {before:?} to {:?}", read(first));
    }
    // Reserves that do not fit one CPU: 3/4 of it, then 1/2 more.
    let (second, _) = WEIGHTS[1];
    let second_before = read(second);
    expect("reserve 0xc000", control.set_classic(first.as_bytes(), 0xc000, ONE_LP, 700), Ok(()));
    expect("reserve 0x8000 beside it", control.set_classic(second.as_bytes(), 0x8000, ONE_LP, 200), Err(bad));
    if read(second) != second_before {
        log!("FAIL: a refused reserve changed {second} from {second_before:?} to {:?}", read(second));
    }
    for (name, weight) in WEIGHTS {
        let old = read(name).map_or(0, |(_, _, w)| w);
        match control.set_classic(name.as_bytes(), 0, ONE_LP, weight) {
            Ok(Ok(())) => log!("{name}: weight {old} -> {weight}, set through {CONTROL_ENDPOINT}"),
            other => log!("FAIL: {name}: weight {weight}: {other:?}"),
        }
    }
    log!("done at tick {}", tessera_rt::ticks());
}

tessera_rt::entry!(main);
