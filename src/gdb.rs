//! `--gdb`: QEMU's GDB stub, and the `gdb` command that attaches to it.
//!
//! QEMU waits for the debugger before the first instruction (`-S`) and
//! listens on 127.0.0.1 only. The command loads the symbols of:
//! - the microkernel (`file`): an ELF64 linked and run at its higher-half
//!   addresses, valid in every address space (ring 0 is mapped in all);
//! - the loader (`add-symbol-file`, at its link addresses: it runs
//!   identity-mapped at 1 MiB). Its ELF64 is used, not the ELF32 QEMU
//!   loads, which carries no debug information. Its entry is 32-bit code:
//!   `set architecture i386` to disassemble it, `i386:x86-64` after;
//! - one ring-3 task (`--gdb-task`), at its link addresses. Every task is
//!   linked at the same user addresses, so its symbols mean something only
//!   while that task's address space (its CR3) is active.
//!
//! QEMU's stub is the machine's: it sees L1, the hypervisor, and under TCG
//! also the guest (L2) while a VP runs, because TCG emulates VMRUN by
//! loading the guest's state into the CPU it shows: a breakpoint at a guest
//! address stops there with the guest's registers (`--gdb-guest` loads its
//! symbols). The stub does not translate memory through nested paging, so
//! what it reads there (`x`, disassembly, backtraces, variables) is host
//! memory, not the guest's (checked with QEMU 7.2). Bochs has a stub only
//! when compiled with `--enable-gdb-stub`, which Debian's is not.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The stub's default TCP port (QEMU's `-s`).
pub const DEFAULT_PORT: u16 = 1234;

/// What `--gdb` asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stub {
    pub port: u16,
    /// The task ELF whose symbols are added (`--gdb-task`).
    pub task: Option<PathBuf>,
    /// The guest kernel's ELF whose symbols are added (`--gdb-guest`),
    /// instead of the loader's: both are linked at 1 MiB.
    pub guest: Option<PathBuf>,
}

/// The symbol files of the images QEMU boots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Symbols {
    pub kernel: PathBuf,
    pub loader: PathBuf,
}

impl Symbols {
    /// The images `build.rs` produced for this runner.
    pub fn built() -> Self {
        Symbols { kernel: crate::images::kernel_elf().to_path_buf(), loader: crate::images::loader_elf64() }
    }
}

impl Stub {
    /// QEMU's arguments: listen on 127.0.0.1:PORT, CPUs stopped until gdb
    /// continues.
    pub fn qemu_args(&self) -> Vec<String> {
        vec!["-gdb".into(), format!("tcp:127.0.0.1:{}", self.port), "-S".into()]
    }

    /// The `gdb` command that loads the symbols and attaches.
    pub fn command(&self, symbols: &Symbols) -> Command {
        let mut cmd = Command::new("gdb");
        cmd.arg("-q");
        let mut ex = |line: String| {
            cmd.arg("-ex").arg(line);
        };
        ex("set confirm off".into());
        ex("set pagination off".into());
        ex(format!("file {}", symbols.kernel.display()));
        let low = self.guest.as_ref().unwrap_or(&symbols.loader);
        ex(format!("add-symbol-file {}", low.display()));
        if let Some(task) = &self.task {
            ex(format!("add-symbol-file {}", task.display()));
        }
        ex(format!("target remote 127.0.0.1:{}", self.port));
        cmd
    }
}

/// The ELF of task `name` among the built tasks in `task_dir`, or the
/// names there are to choose from.
pub fn task_elf(task_dir: &Path, name: &str) -> Result<PathBuf, String> {
    let path = task_dir.join(name);
    let is_elf = |p: &Path| std::fs::read(p).is_ok_and(|data| data.starts_with(b"\x7fELF"));
    if !name.contains('/') && is_elf(&path) {
        return Ok(path);
    }
    let mut names: Vec<String> = std::fs::read_dir(task_dir)
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter(|e| is_elf(&e.path()))
                .filter(|e| !["tessera-", "guest-"].iter().any(|p| e.file_name().to_string_lossy().starts_with(p)))
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    Err(format!("--gdb-task {name}: no such task binary in {}; built: {}", task_dir.display(), names.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(cmd: &Command) -> Vec<String> {
        std::iter::once(cmd.get_program()).chain(cmd.get_args()).map(|a| a.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn the_gdb_command_loads_kernel_loader_and_task_then_attaches() {
        let stub = Stub { port: 4321, task: Some("/b/vid".into()), guest: None };
        let symbols = Symbols { kernel: "/b/tessera-microkernel".into(), loader: "/b/tessera-loader".into() };
        assert_eq!(
            words(&stub.command(&symbols)),
            [
                "gdb",
                "-q",
                "-ex",
                "set confirm off",
                "-ex",
                "set pagination off",
                "-ex",
                "file /b/tessera-microkernel",
                "-ex",
                "add-symbol-file /b/tessera-loader",
                "-ex",
                "add-symbol-file /b/vid",
                "-ex",
                "target remote 127.0.0.1:4321",
            ]
        );
        let plain = Stub { port: DEFAULT_PORT, task: None, guest: None };
        assert!(!words(&plain.command(&symbols)).iter().any(|w| w.contains("vid")));
        assert_eq!(plain.qemu_args(), ["-gdb", "tcp:127.0.0.1:1234", "-S"]);
        // A guest kernel's symbols take the loader's place (both at 1 MiB).
        let guest = Stub { port: DEFAULT_PORT, task: None, guest: Some("/g/kernel.elf".into()) };
        let words = words(&guest.command(&symbols));
        assert!(words.contains(&"add-symbol-file /g/kernel.elf".to_string()), "{words:?}");
        assert!(!words.iter().any(|w| w.contains("tessera-loader")), "{words:?}");
    }

    #[test]
    fn a_task_must_be_a_built_elf() {
        let dir = std::env::temp_dir().join(format!("tessera-gdb-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("vid"), b"\x7fELF....").unwrap();
        std::fs::write(dir.join("vid.d"), b"deps").unwrap();
        std::fs::write(dir.join("tessera-microkernel"), b"\x7fELF....").unwrap();
        std::fs::write(dir.join("guest-testkernel"), b"\x7fELF....").unwrap();
        assert_eq!(task_elf(&dir, "vid"), Ok(dir.join("vid")));
        let err = task_elf(&dir, "vid.d").unwrap_err();
        assert!(err.ends_with("built: vid"), "{err}");
        assert!(task_elf(&dir, "../vid").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
