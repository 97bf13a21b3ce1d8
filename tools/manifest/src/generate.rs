//! Adding a partition to a manifest's text, for generated manifests (the
//! runner's `--guest`).

use crate::parse::toml_error;
use crate::{Error, Errors};
use std::path::PathBuf;
use toml::{Table, Value};

/// The task serving VMBus: a partition added to a manifest that has one
/// gets its VMBus connections with it ([`with_partition`]).
pub const VMBUS_HOST: &str = "vmbus-host";
/// The VMBus host's port for the added partition, and (the host's
/// convention) the ID of its connection answering what reaches that port.
pub const VMBUS_HOST_PORT: u32 = 1;
/// The added partition's port for the host's answers.
pub const VMBUS_GUEST_PORT: u32 = 2;

/// A partition to add with [`with_partition`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionSpec {
    pub name: String,
    /// Written as given: make it absolute unless the generated manifest sits
    /// next to the files.
    pub image: PathBuf,
    pub modules: Vec<PathBuf>,
    pub cmdline: String,
    /// Bytes of guest RAM.
    pub memory: u64,
    pub vcpus: u8,
    /// The task that runs it.
    pub vid: String,
    /// An enlightenment profile name (`"none"`, `"hyperv"`); empty: the default.
    pub enlightenments: String,
}

fn path_value(subject: &str, field: &str, path: &std::path::Path) -> Result<Value, Errors> {
    path.to_str()
        .map(|p| Value::String(p.to_string()))
        .ok_or_else(|| Errors::one(Error::partition(subject, field, format!("{} is not UTF-8", path.display()))))
}

/// The manifest `text` with `[partitions.<name>]` added (the partition
/// manager's untyped quota for it is added when the manifest is parsed),
/// and, if the manifest has a [`VMBUS_HOST`] task and the partition's
/// profile has the SynIC its messages need, the partition's VMBus
/// connections ([`vmbus_connections`]).
/// Comments and layout are not kept. The result is not checked:
/// [`crate::parse`] it.
pub fn with_partition(text: &str, origin: &str, spec: &PartitionSpec) -> Result<String, Errors> {
    let mut doc: Table = toml::from_str(text).map_err(|e| Errors::one(toml_error(&e, text, origin)))?;
    let mut table = Table::new();
    table.insert("image".into(), path_value(&spec.name, "image", &spec.image)?);
    if !spec.modules.is_empty() {
        let modules = spec.modules.iter().map(|m| path_value(&spec.name, "modules", m)).collect::<Result<_, _>>()?;
        table.insert("modules".into(), Value::Array(modules));
    }
    if !spec.cmdline.is_empty() {
        table.insert("cmdline".into(), Value::String(spec.cmdline.clone()));
    }
    let memory = i64::try_from(spec.memory).unwrap_or(i64::MAX);
    table.insert("memory".into(), Value::Integer(memory));
    table.insert("vcpus".into(), Value::Integer(spec.vcpus.into()));
    table.insert("vid".into(), Value::String(spec.vid.clone()));
    if !spec.enlightenments.is_empty() {
        table.insert("enlightenments".into(), Value::String(spec.enlightenments.clone()));
    }

    let partitions = doc.entry("partitions").or_insert_with(|| Value::Table(Table::new()));
    let Value::Table(partitions) = partitions else {
        return Err(Errors::one(Error::new(origin, "partitions", "is not a table")));
    };
    if partitions.contains_key(&spec.name) {
        return Err(Errors::one(Error::partition(&spec.name, "", "is already declared in the manifest")));
    }
    partitions.insert(spec.name.clone(), Value::Table(table));
    let has_host = doc.get("tasks").and_then(Value::as_table).is_some_and(|t| t.contains_key(VMBUS_HOST));
    let profile = if spec.enlightenments.is_empty() { "none" } else { spec.enlightenments.as_str() };
    let has_synic =
        sysimage::Enlightenments::profile(profile).is_some_and(|e| e.contains(sysimage::Enlightenment::Synic));
    if has_host && has_synic {
        let connections = doc.entry("connections").or_insert_with(|| Value::Array(Vec::new()));
        let Value::Array(connections) = connections else {
            return Err(Errors::one(Error::new(origin, "connections", "is not an array of tables")));
        };
        connections.extend(vmbus_connections(&spec.name).into_iter().map(Value::Table));
    }
    toml::to_string(&doc).map_err(|e| Errors::one(Error::new(origin, "", format!("cannot write TOML: {e}"))))
}

/// Partition `name`'s VMBus connections: its connection
/// `vmbus_host::MESSAGE_CONNECTION_ID` (4) to the host's message port
/// [`VMBUS_HOST_PORT`], and the host's connection of the same ID to the
/// partition's message port [`VMBUS_GUEST_PORT`] at VP
/// `vmbus_host::MESSAGE_VP`, SINT `vmbus_host::MESSAGE_SINT` (2), where
/// Linux reads VMBus messages.
pub fn vmbus_connections(name: &str) -> [Table; 2] {
    let entry = |from: &str, to: &str, connection_id: u32, port_id: u32, target_vp: u32, sint: u8| {
        let mut t = Table::new();
        t.insert("from".into(), Value::String(from.into()));
        t.insert("to".into(), Value::String(to.into()));
        t.insert("type".into(), Value::String("message".into()));
        t.insert("connection_id".into(), Value::Integer(connection_id.into()));
        t.insert("port_id".into(), Value::Integer(port_id.into()));
        t.insert("target_vp".into(), Value::Integer(target_vp.into()));
        t.insert("sint".into(), Value::Integer(sint.into()));
        t
    };
    [
        entry(name, VMBUS_HOST, vmbus_host::MESSAGE_CONNECTION_ID, VMBUS_HOST_PORT, 0, 0),
        entry(VMBUS_HOST, name, VMBUS_HOST_PORT, VMBUS_GUEST_PORT, vmbus_host::MESSAGE_VP, vmbus_host::MESSAGE_SINT),
    ]
}
