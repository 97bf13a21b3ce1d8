//! `[partitions.NAME] enlightenments`: a profile name, or a table of a base
//! profile and per-enlightenment overrides, checked for coherence with
//! [`Enlightenments::for_each_error`] (the same check the compiled manifest
//! gets).
//!
//! ```toml
//! enlightenments = "hyperv"            # or "hyperv-vsm", or "none" (the default)
//!
//! [partitions.linux.enlightenments]    # or: a base profile and overrides
//! profile = "hyperv"
//! reference_tsc = false
//! ```

use crate::Error;
use crate::parse::did_you_mean;
use sysimage::{Enlightenment, Enlightenments};
use toml::Value;

/// The profile a partition without `enlightenments` gets: none, so a guest
/// sees no hypervisor (what the Multiboot test kernels expect).
pub const DEFAULT_PROFILE: &str = "none";

/// `"a", "b" or "c"`.
fn profile_names() -> String {
    let names: Vec<String> = Enlightenments::PROFILES.iter().map(|(n, _)| format!("\"{n}\"")).collect();
    match names.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

fn profile(partition: &str, field: &str, name: &str, e: &mut Vec<Error>) -> Option<Enlightenments> {
    let set = Enlightenments::profile(name);
    if set.is_none() {
        let hint = did_you_mean(name, Enlightenments::PROFILES.iter().map(|(n, _)| *n));
        e.push(Error::partition(
            partition,
            field,
            format!("unknown profile \"{name}\"{hint} (use {})", profile_names()),
        ));
    }
    set
}

/// The enlightenments `value` asks for; `None` if it is wrong (reported).
pub(crate) fn check(partition: &str, value: Option<&Value>, e: &mut Vec<Error>) -> Option<Enlightenments> {
    const FIELD: &str = "enlightenments";
    let before = e.len();
    let err = |e: &mut Vec<Error>, field: &str, msg: String| e.push(Error::partition(partition, field, msg));
    let set = match value {
        None => Enlightenments::profile(DEFAULT_PROFILE),
        Some(Value::String(name)) => profile(partition, FIELD, name, e),
        Some(Value::Table(table)) => {
            let base = match table.get("profile") {
                None => Enlightenments::profile(DEFAULT_PROFILE),
                Some(Value::String(name)) => profile(partition, "enlightenments.profile", name, e),
                Some(_) => {
                    err(e, "enlightenments.profile", format!("must be a profile name ({})", profile_names()));
                    None
                }
            };
            let mut set = base.unwrap_or(Enlightenments::NONE);
            for (key, v) in table.iter().filter(|(k, _)| *k != "profile") {
                let Some(feature) = Enlightenment::from_name(key) else {
                    let hint = did_you_mean(key, Enlightenment::ALL.iter().map(|f| f.name()));
                    err(e, FIELD, format!("unknown enlightenment \"{key}\"{hint}"));
                    continue;
                };
                match v {
                    Value::Boolean(on) => set = set.with(feature, *on),
                    _ => err(e, &format!("{FIELD}.{key}"), "must be true or false".into()),
                }
            }
            Some(set)
        }
        Some(_) => {
            err(
                e,
                FIELD,
                format!("must be a profile name ({}) or a table of a profile and overrides", profile_names()),
            );
            None
        }
    };
    if e.len() > before {
        return None;
    }
    let set = set?;
    set.for_each_error(|problem| err(e, FIELD, problem.to_string()));
    if e.len() > before { None } else { Some(set) }
}

/// The profile's name if `set` is one, else the enlightenments it holds.
pub(crate) fn describe(set: Enlightenments) -> String {
    if let Some((name, _)) = Enlightenments::PROFILES.iter().find(|(_, p)| *p == set) {
        return (*name).to_string();
    }
    set.iter().map(Enlightenment::name).collect::<Vec<_>>().join("+")
}
