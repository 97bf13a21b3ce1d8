//! Adding a partition to a manifest's text, for generated manifests (the
//! runner's `--guest`).

use crate::parse::{parse_size, toml_error};
use crate::{Error, Errors};
use std::path::PathBuf;
use sysimage::manifest::PARTITION_OVERHEAD;
use toml::{Table, Value};

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
}

fn path_value(subject: &str, field: &str, path: &std::path::Path) -> Result<Value, Errors> {
    path.to_str()
        .map(|p| Value::String(p.to_string()))
        .ok_or_else(|| Errors::one(Error::partition(subject, field, format!("{} is not UTF-8", path.display()))))
}

/// Bytes of a size value as written in a manifest (0 if it is not one).
fn size_of(value: Option<&Value>) -> u64 {
    match value {
        Some(Value::Integer(n)) => u64::try_from(*n).unwrap_or(0),
        Some(Value::String(s)) => parse_size(s).unwrap_or(0),
        _ => 0,
    }
}

/// The manifest `text` with `[partitions.<name>]` added, and the VID task's
/// `untyped` quota raised, if it is lower, to what all its partitions need
/// (memory + 1 MiB each). Comments and layout are not kept. The result is
/// not checked: [`crate::parse`] it.
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

    let partitions = doc.entry("partitions").or_insert_with(|| Value::Table(Table::new()));
    let Value::Table(partitions) = partitions else {
        return Err(Errors::one(Error::new(origin, "partitions", "is not a table")));
    };
    if partitions.contains_key(&spec.name) {
        return Err(Errors::one(Error::partition(&spec.name, "", "is already declared in the manifest")));
    }
    partitions.insert(spec.name.clone(), Value::Table(table));
    let needed: u64 = partitions
        .values()
        .filter_map(Value::as_table)
        .filter(|p| p.get("vid").and_then(Value::as_str) == Some(spec.vid.as_str()))
        .map(|p| size_of(p.get("memory")).saturating_add(PARTITION_OVERHEAD))
        .fold(0, u64::saturating_add);
    if let Some(Value::Table(vid)) = doc.get_mut("tasks").and_then(|t| t.get_mut(&spec.vid))
        && size_of(vid.get("untyped")) < needed
    {
        vid.insert("untyped".into(), Value::Integer(i64::try_from(needed).unwrap_or(i64::MAX)));
    }
    toml::to_string(&doc).map_err(|e| Errors::one(Error::new(origin, "", format!("cannot write TOML: {e}"))))
}
