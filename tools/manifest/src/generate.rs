//! Adding a partition to a manifest's text, for generated manifests (the
//! runner's `--guest`).

use crate::parse::toml_error;
use crate::{Error, Errors};
use std::path::PathBuf;
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
    /// An enlightenment profile name (`"none"`, `"hyperv"`); empty: the default.
    pub enlightenments: String,
}

fn path_value(subject: &str, field: &str, path: &std::path::Path) -> Result<Value, Errors> {
    path.to_str()
        .map(|p| Value::String(p.to_string()))
        .ok_or_else(|| Errors::one(Error::partition(subject, field, format!("{} is not UTF-8", path.display()))))
}

/// The manifest `text` with `[partitions.<name>]` added (the partition
/// manager's untyped quota for it is added when the manifest is parsed).
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
    toml::to_string(&doc).map_err(|e| Errors::one(Error::new(origin, "", format!("cannot write TOML: {e}"))))
}
