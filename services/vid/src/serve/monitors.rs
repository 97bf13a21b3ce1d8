//! Monitored notifications between exits: the monitor pages of the
//! partitions' monitor connections that are due are inspected
//! ([`crate::monitor`]), and each trigger that fires is an HvSignalEvent
//! through the broker on its partition's behalf, if it names one of the
//! page's targets. A failed signal is discarded (TLFS 11.10.8.2): the
//! trigger stays cleared.

use super::Running;
use crate::host::Services;

/// Inspects the monitor pages due at TSC `now`: whether a signal went to
/// the broker (its deliveries are fetched before the VPs run on), and when
/// the next inspection is due.
pub(super) fn inspect(services: &impl Services, running: &mut [Running<'_>], now: u64) -> (bool, Option<u64>) {
    let mut signalled = false;
    let mut next: Option<u64> = None;
    for r in running.iter_mut().filter(|r| !r.stopped) {
        let partition = r.index;
        for page in r.monitors.iter_mut() {
            if page.monitor.due() <= now {
                page.inspect(now, |s| {
                    signalled = true;
                    let _ = services.signal_event(partition, s.connection_id, s.flag_number);
                });
            }
            next = Some(next.map_or(page.monitor.due(), |n| n.min(page.monitor.due())));
        }
    }
    (signalled, next)
}
