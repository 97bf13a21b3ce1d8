//! The manifest parser and compiler (`tessera-manifest`): any text as a
//! system manifest.
//!
//! Oracles: a manifest the parser accepts compiles, its compiled form is
//! accepted by the supervisor's parser (`sysimage`) and says the same
//! (tasks, endpoints, partitions in the same order with the same
//! fields), and the bootfs built from it is accepted whole; the summary
//! and every error message can be printed.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sysimage::SystemImage;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let manifest = match tessera_manifest::parse(text, "fuzz.toml") {
        Ok(m) => m,
        Err(errors) => {
            let _ = errors.to_string();
            return;
        }
    };
    let _ = tessera_manifest::summary(&manifest);
    let image = tessera_fuzz::system_image(&manifest);
    let image = image.unwrap_or_else(|e| panic!("an accepted manifest is refused: {e}"));
    let system = SystemImage::parse(&image).unwrap_or_else(|e| panic!("its bootfs is refused: {e}"));
    let compiled = &system.manifest;
    assert_eq!(compiled.system, manifest.name);
    assert_eq!(compiled.tasks.len(), manifest.tasks.len());
    for (c, t) in compiled.tasks.iter().zip(&manifest.tasks) {
        assert_eq!(
            (c.name, c.binary, c.priority, c.memory, c.stack),
            (&*t.name, &*t.binary, t.priority, t.memory, t.stack)
        );
        assert_eq!((c.restart, c.untyped, &c.io_ports[..]), (t.restart, t.untyped, &t.io_ports[..]));
        let serves: Vec<usize> = c.serves.iter().map(|e| usize::from(e.0)).collect();
        let uses: Vec<usize> = c.uses.iter().map(|u| usize::from(u.endpoint.0)).collect();
        let interrupts: Vec<u32> = c.interrupts.iter().map(|g| g.0).collect();
        assert_eq!((serves, uses, interrupts), (t.serves.clone(), t.uses.clone(), t.interrupts.clone()));
        assert!(system.binary(c).is_some());
    }
    assert_eq!(compiled.endpoints.len(), manifest.endpoints.len());
    for (c, e) in compiled.endpoints.iter().zip(&manifest.endpoints) {
        assert_eq!((c.name, usize::from(c.server.0)), (&*e.name, e.server));
    }
    assert_eq!(compiled.partitions.len(), manifest.partitions.len());
    for (c, p) in compiled.partitions.iter().zip(&manifest.partitions) {
        assert_eq!((c.name, c.cmdline, c.memory, c.vcpus), (&*p.name, &*p.cmdline, p.memory, p.vcpus));
        assert_eq!(
            (c.exit_timeout_ms, usize::from(c.vid.0), c.enlightenments),
            (p.exit_timeout_ms, p.vid, p.enlightenments)
        );
        assert_eq!(c.modules.len(), p.modules.len());
    }
});
